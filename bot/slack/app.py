"""The bolt App: verified requests, acked at once, listeners registered from listeners/."""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from slack_bolt import App

from bot.slack.bridge import Bridge
from bot.slack.listeners import register_listeners

log = logging.getLogger(__name__)

LISTENER_THREADS = 64


def build_app(bridge: Bridge) -> App:
    """The App for `bridge`: its WebClient (SLACK_API_URL, retry handlers), signature checks on."""
    settings = bridge.core.settings
    app = App(
        client=bridge.client,
        signing_secret=settings.slack_signing_secret or "",
        request_verification_enabled=bool(settings.slack_signing_secret),  # Socket Mode: unsigned
        process_before_response=False,  # dispatch() returns at ack(); listeners finish on bolt's pool
        # bolt's default pool has 5 threads: a sixth request would wait for a free one before
        # its ack. Listeners ack first, so enough threads keep every ack immediate.
        listener_executor=ThreadPoolExecutor(max_workers=LISTENER_THREADS, thread_name_prefix="slack-listener"),
        logger=log,
    )
    register_listeners(app, bridge)

    @app.error
    def on_error(error, body) -> None:
        log.error("slack listener failed: %s", bridge.redact(repr(error)))

    return app
