"""The bot's process: HTTP through waitress (`POST /slack/events`, `GET /healthz`), or
Socket Mode when SLACK_APP_TOKEN is set. The outbox worker runs beside either."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.request import BoltRequest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.signature import SignatureVerifier
from waitress.server import create_server  # what `waitress.create_server` is (its stubs omit the re-export)

from bot.fleet import start_for_serve
from bot.slack import health
from bot.slack.app import build_app
from bot.slack.bridge import Bridge
from commands import Core
from core.config import ConfigError
from core.redact import first_line
from scheduling import hooks

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
DEFAULT_PORT = 3000
MAX_BODY = 1_000_000  # Slack's payloads are small; refuse anything absurd


def _headers(environ: dict[str, Any]) -> dict[str, str]:
    headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = environ[key]
    return headers


def _respond(start_response, status: int, body: bytes, headers: list[tuple[str, str]]) -> Iterable[bytes]:
    reason = {
        200: "OK",
        400: "Bad Request",
        401: "Unauthorized",
        404: "Not Found",
        413: "Payload Too Large",
        503: "Service Unavailable",
    }
    start_response(f"{status} {reason.get(status, 'Status')}", headers + [("Content-Length", str(len(body)))])
    return [body]


def _unverified(verifier: SignatureVerifier, raw: bytes, headers: dict[str, str]) -> tuple[int, bytes] | None:
    """(status, answer) for a request that must not reach bolt, or None when it is signed.

    Checked here, before bolt sees the request: bolt builds a request by parsing the body, and
    its own check logs the whole body of a badly signed request, so an anonymous 1 MB body
    would be parsed and logged (and the log line redacted) on the way to its 401. Here it
    costs one HMAC, and the log says only that it came, how big it was, and why it was refused.
    """
    try:
        body = raw.decode("utf-8")
    except UnicodeDecodeError:  # Slack sends UTF-8 only: nothing else can carry a valid signature
        log.warning("refused a request to %s: its %d-byte body is not UTF-8", EVENTS_PATH, len(raw))
        return 400, b"body is not UTF-8"
    try:
        signed = verifier.is_valid(
            body, headers.get("x-slack-request-timestamp"), headers.get("x-slack-signature")
        )
    except ValueError:  # a timestamp that is not a number
        signed = False
    if not signed:
        log.warning(
            "refused a request to %s: missing, bad or stale signature (%d bytes)", EVENTS_PATH, len(raw)
        )
        return 401, b"invalid request"
    return None


def make_wsgi_app(core, app: App) -> Callable:
    """A WSGI app: Slack's requests (signature checked here, then again by bolt) to bolt,
    health to `health`."""
    verifier = SignatureVerifier(core.settings.slack_signing_secret)

    def wsgi(environ, start_response):
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")
        if path == "/healthz" and method == "GET":
            healthy, status = health.check(core)
            return _respond(
                start_response,
                200 if healthy else 503,
                json.dumps(status).encode(),
                [("Content-Type", "application/json")],
            )
        if path != EVENTS_PATH or method != "POST":
            return _respond(start_response, 404, b"not found", [("Content-Type", "text/plain")])
        length = int(environ.get("CONTENT_LENGTH") or 0)  # waitress answers 400 to a malformed one
        if length > MAX_BODY:
            return _respond(start_response, 413, b"too large", [("Content-Type", "text/plain")])
        raw, headers = environ["wsgi.input"].read(length), _headers(environ)
        refused = _unverified(verifier, raw, headers)
        if refused is not None:
            return _respond(start_response, refused[0], refused[1], [("Content-Type", "text/plain")])
        try:  # bolt parses the body while building the request: JSON that is not an object fails there
            bolt_headers: dict[str, str | Sequence[str]] = dict(headers)  # bolt's type: values may be lists
            request = BoltRequest(
                body=raw.decode("utf-8"), query=environ.get("QUERY_STRING"), headers=bolt_headers
            )
        except (ValueError, AttributeError):
            log.warning(
                "refused a signed request to %s: its %d-byte body is not a Slack payload",
                EVENTS_PATH,
                len(raw),
            )
            return _respond(start_response, 400, b"not a Slack payload", [("Content-Type", "text/plain")])
        response = app.dispatch(request)
        out = [
            (k, v) for k, values in response.headers.items() for v in values if k.lower() != "content-length"
        ]
        # Every request is acked within milliseconds and deduplicated: Slack must not re-send.
        out.append(("X-Slack-No-Retry", "1"))
        return _respond(start_response, response.status, (response.body or "").encode("utf-8"), out)

    return wsgi


# waitress buffers a request's whole body (up to 1 GB by default, spilling to temporary files)
# before the WSGI app can answer 413: an anonymous client could fill the disk BACKUP_DIR is on.
# With these limits waitress itself answers 413 as soon as the declared or received size passes.
MAX_HEADERS = 64 * 1024


def http_server(wsgi: Callable, *, host: str, port: int, threads: int):
    """The waitress server for `wsgi`, with the body and header limits above."""
    return create_server(
        wsgi,
        host=host,
        port=port,
        threads=threads,
        ident="migrate-bot",
        max_request_body_size=MAX_BODY,
        max_request_header_size=MAX_HEADERS,
    )


def _port() -> int:
    raw = os.environ.get("PORT") or str(DEFAULT_PORT)
    if not raw.isascii() or not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ConfigError(f"PORT must be a TCP port number, 1-65535 (got {raw[:20]!r})")
    return int(raw)


class SlackUnreachable(ConnectionError):
    """Slack's Web API did not answer at start: the message names the URL and the reason."""


def check_slack(settings) -> None:
    """Ask Slack who the token is (auth.test) before anything starts: a rejected token is a
    ConfigError, an unreachable API SlackUnreachable — each one line, never a traceback (nor
    slack_sdk's own log line per attempt)."""
    api_url = settings.slack_api_url
    client = WebClient(base_url=api_url, token=settings.slack_bot_token, retry_handlers=[], timeout=15)
    sdk_log = logging.getLogger("slack_sdk")
    level, sdk_log.level = sdk_log.level, logging.CRITICAL
    try:
        client.auth_test()
    except SlackApiError as exc:
        error = exc.response.get("error") if exc.response is not None else "error"
        raise ConfigError(
            f"Slack rejected SLACK_BOT_TOKEN ({error}): install the app and use its "
            "xoxb- bot token (see README, Configuration)"
        ) from None
    except (SlackClientError, OSError) as exc:
        reason = first_line(exc) or type(exc).__name__
        raise SlackUnreachable(
            f"Slack is unreachable at {api_url} ({reason}): check the network or SLACK_API_URL"
        ) from None
    finally:
        sdk_log.setLevel(level)


def serve(settings) -> None:
    """Run the bot until interrupted: Core, bolt App, outbox worker, then HTTP or Socket Mode."""
    # Every missing setting named at once; HTTP mode refuses to start rather than serve unsigned.
    settings.require(
        "database_url",
        "slack_bot_token",
        "channel",
        *(() if settings.slack_app_token else ("slack_signing_secret",)),
    )
    port = _port()
    core = Core.from_settings(settings, schedule=hooks.ProcessSchedule)
    bridge = Bridge.create(core)
    check_slack(settings)
    app = build_app(bridge)
    # SIGTERM (Heroku/Railway restarts) must run the `finally` below, which releases the
    # outbox lock: otherwise the next process waits for its TTL before it may deliver.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    bridge.worker.start()
    scheduler = hooks.serve(core, lambda: bridge.reporter)
    fleet_worker = start_for_serve(core)  # MIGRATE_TARGETS: this process works on fleet runs too
    try:
        if settings.slack_app_token:
            log.info("Socket Mode: connecting to Slack")
            SocketModeHandler(app, settings.slack_app_token).start()
        else:
            log.info("listening on port %d (POST %s, GET /healthz)", port, EVENTS_PATH)
            http_server(make_wsgi_app(core, app), host="0.0.0.0", port=port, threads=16).run()
    finally:
        if fleet_worker is not None:
            fleet_worker.stop()
        scheduler.shutdown(wait=False)
        bridge.close()
