"""The bolt App: verified requests, acked at once, listeners registered from listeners/."""

from __future__ import annotations

import logging
import secrets
from concurrent.futures import ThreadPoolExecutor

from slack_bolt import App

from bot.slack.bridge import Bridge
from bot.slack.identity import Installation, team_guard
from bot.slack.listeners import register_listeners
from core.config import ConfigError

log = logging.getLogger(__name__)

LISTENER_THREADS = 64


def signing_secret(settings) -> str:
    """The secret bolt checks every HTTP request with; bolt's check is never turned off.

    HTTP mode needs SLACK_SIGNING_SECRET. Socket Mode payloads are not signed (bolt skips the
    check for them alone), so without the setting the check runs with a random secret: a
    request reaching this app over HTTP can then never be accepted."""
    if settings.slack_signing_secret:
        return settings.slack_signing_secret
    if settings.slack_app_token:
        return secrets.token_hex(32)
    raise ConfigError(
        "set SLACK_SIGNING_SECRET: HTTP mode verifies every request Slack sends (see README, Configuration)"
    )


def build_app(bridge: Bridge) -> App:
    """The App for `bridge`: its WebClient (SLACK_API_URL, retry handlers), signature checks on."""
    settings = bridge.core.settings
    app = App(
        client=bridge.client,
        signing_secret=signing_secret(settings),
        request_verification_enabled=True,
        process_before_response=False,  # dispatch() returns at ack(); listeners finish on bolt's pool
        # bolt's default pool has 5 threads: a sixth request would wait for a free one before
        # its ack. Listeners ack first, so enough threads keep every ack immediate.
        listener_executor=ThreadPoolExecutor(
            max_workers=LISTENER_THREADS, thread_name_prefix="slack-listener"
        ),
        logger=log,
    )
    # The edge (server.py) refuses unsigned requests before bolt sees them; bolt's own check
    # stays as a second line, but its log of a refused request quotes the whole body.
    logging.getLogger("slack_bolt.RequestVerification").setLevel(logging.WARNING)
    app.middleware(team_guard(Installation.of(bridge.client)))  # before every listener
    register_listeners(app, bridge)

    @app.error
    def on_error(error, body) -> None:
        log.error("slack listener failed: %s", bridge.redact(repr(error)))

    return app
