"""Bolt listeners, one module per kind of request; each exposes `register(app, bridge)`."""

from __future__ import annotations

from bot.slack.listeners import actions, commands, events, views


def register_listeners(app, bridge) -> None:
    for module in (commands, actions, views, events):
        module.register(app, bridge)
