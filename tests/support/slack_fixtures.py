"""Fixtures for tests that talk to the bot's HTTP edge: the Slack stand-in and a running bot.

Import them into a test module (`from tests.support.slack_fixtures import bot, scripted, standin`).
"""

from __future__ import annotations

import pytest

from tests.support.slack_standin import RunningBot, ScriptedCommands, SlackStandIn


@pytest.fixture
def standin():
    with SlackStandIn() as s:
        yield s


@pytest.fixture
def scripted():
    return ScriptedCommands()


@pytest.fixture
def bot(settings, standin, scripted):
    """The bot served in-process against the stand-in, its commands scripted."""
    running = RunningBot(settings, standin, handle=scripted)
    yield running
    running.close()
