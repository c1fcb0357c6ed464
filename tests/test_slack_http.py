"""The bot's HTTP edge, served by waitress in-process: signatures, acks, health, Home (Slack retries
of a request: tests/test_slack_guards.py, against the real command core)."""

from __future__ import annotations

import json
import logging
import time
import urllib.error

import pytest

from tests.support.slack_fixtures import bot, scripted, standin  # noqa: F401 (fixtures)
from tests.support.slack_standin import RunningBot, ScriptedCommands

TPM = "U0DYLAN"


def test_help_is_acked_and_answered_privately_through_the_response_url(bot, standin, scripted):
    reply = bot.slack.slash("U0NOBODY", "help")
    assert reply.status == 200 and reply.headers.get("X-Slack-No-Retry") == "1"
    answer = standin.wait_for(lambda c: c.method == "response_url")[0]
    assert answer.body["response_type"] == "ephemeral" and "/migrate status" in answer.body["text"]
    assert scripted.ran("help") == 1
    assert standin.calls_of("chat.postMessage") == []  # nothing in the channel


def test_a_bad_signature_is_rejected_with_401_and_runs_nothing(bot, scripted):
    reply = bot.slack.slash(TPM, "help", bad_signature=True)
    assert reply.status == 401
    assert scripted.executed == []


def test_a_stale_timestamp_is_rejected_with_401_and_runs_nothing(bot, scripted):
    reply = bot.slack.slash(TPM, "help", timestamp=int(time.time()) - 600)
    assert reply.status == 401
    assert scripted.executed == []


def test_healthz_is_200_when_redis_and_the_database_answer(bot):
    reply = bot.get("/healthz")
    assert reply.status == 200 and reply.json() == {"redis": "ok", "database": "ok"}


def test_healthz_is_503_naming_the_database_when_it_is_unreachable(settings, standin):
    """The database stops accepting connections while the bot runs (the bot needs it at
    start-up: its run state is keyed on the identity the server reports)."""
    import psycopg
    from psycopg import sql

    from tests.support import pg

    running = RunningBot(settings, standin, handle=ScriptedCommands())
    name = sql.Identifier(psycopg.conninfo.conninfo_to_dict(settings.database_url)["dbname"])
    with psycopg.connect(pg.SERVER_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(name))
        try:
            reply = running.get("/healthz")
        finally:
            admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(name))
            running.close()
    assert reply.status == 503 and reply.json() == {"redis": "ok", "database": "unreachable"}


def test_opening_the_home_tab_publishes_the_current_run_and_history(bot, standin):
    reply = bot.slack.event({"type": "app_home_opened", "user": TPM, "channel": "D0HOME", "tab": "home"})
    assert reply.status == 200
    call = standin.wait_method("views.publish")[0]
    assert call.body["user_id"] == TPM
    text = json.dumps(call.body["view"])
    assert "Current run" in text and "No run in progress." in text and "Last runs" in text


def test_unknown_paths_are_404(bot):
    assert bot.get("/nope").status == 404


def test_healthz_is_503_naming_redis_when_it_is_unreachable(settings, standin):
    down = settings.with_(redis_url="redis://:RedisPw0rd@127.0.0.1:1/0")
    running = RunningBot(down, standin, handle=ScriptedCommands())
    try:
        reply = running.get("/healthz")
    finally:
        running.close()
    assert reply.status == 503 and reply.json() == {"redis": "unreachable", "database": "ok"}
    assert "RedisPw0rd" not in reply.body


def _post_raw(bot, body: bytes, headers: dict) -> tuple[int, float]:
    """POST raw bytes to /slack/events; (status, seconds until the answer)."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(bot.slack.url, data=body, headers=headers, method="POST")
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, time.perf_counter() - start
    except urllib.error.HTTPError as err:
        return err.code, time.perf_counter() - start


def _signed_headers(bot, raw: bytes) -> dict:
    import hashlib
    import hmac

    ts = str(int(time.time()))
    digest = hmac.new(
        bot.settings.slack_signing_secret.encode(), b"v0:" + ts.encode() + b":" + raw, hashlib.sha256
    )
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": "v0=" + digest.hexdigest(),
    }


def test_an_unsigned_megabyte_body_is_refused_without_being_logged_or_run(bot, scripted, caplog):
    """bolt logged the whole body of a badly signed request; the edge refuses it first and logs
    one short line (size and reason, no content)."""
    caplog.set_level(logging.DEBUG)
    marker = "UNSIGNEDMARKER"
    body = ("text=" + ("a://u:" + marker) * 50_000)[:990_000].encode()
    status, _ = _post_raw(
        bot,
        body,
        {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": str(int(time.time())),
            "X-Slack-Signature": "v0=" + "0" * 64,
        },
    )
    assert status == 401 and scripted.executed == []
    logged = [r.getMessage() for r in caplog.records]
    assert not any(marker in line for line in logged)
    assert any("signature" in line and "990000 bytes" in line for line in logged)
    assert all(len(line) < 1000 for line in logged)


def test_a_body_that_is_not_utf8_is_refused_with_400_signed_or_not(bot, scripted):
    raw = b"command=%2Fmigrate&text=\xff\xfe\xc3(help"
    signed, _ = _post_raw(bot, raw, _signed_headers(bot, raw))
    unsigned, _ = _post_raw(
        bot,
        raw,
        {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": str(int(time.time())),
            "X-Slack-Signature": "v0=" + "1" * 64,
        },
    )
    assert (signed, unsigned) == (400, 400)
    assert scripted.executed == []


def test_a_timestamp_that_is_not_a_number_is_refused_with_401(bot, scripted):
    status, _ = _post_raw(
        bot,
        b"text=help",
        {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": "soon",
            "X-Slack-Signature": "v0=00",
        },
    )
    assert status == 401 and scripted.executed == []


@pytest.mark.parametrize(
    "raw,content_type",
    [
        (b"{", "application/json"),
        (b"[1, 2]", "application/json"),
        (b'"text"', "application/json"),
        (b"payload={", "application/x-www-form-urlencoded"),
        (b"payload=%5B1%5D", "application/x-www-form-urlencoded"),
    ],
)
def test_a_signed_body_that_is_not_a_slack_payload_is_400_not_500(bot, scripted, raw, content_type):
    status, _ = _post_raw(bot, raw, {**_signed_headers(bot, raw), "Content-Type": content_type})
    assert status == 400 and scripted.executed == []


def test_an_oversized_body_is_refused_before_it_is_received(bot, scripted):
    """Fails without the fix: waitress buffered any body up to 1 GB (spilling to temporary
    files) before the bot could answer 413, so an anonymous client declaring 500 MB and sending
    slowly held a connection and disk space; now waitress answers 413 without reading it."""
    import socket
    from urllib.parse import urlsplit

    target = urlsplit(bot.url)
    with socket.create_connection((target.hostname, target.port), timeout=5) as conn:
        conn.sendall(
            b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 500000000\r\n\r\n" + b"a" * 1000
        )
        answer = conn.recv(200)  # socket.timeout (5 s) when the server waits for the rest
    assert answer.startswith(b"HTTP/1.1 413"), answer
    assert scripted.executed == []


def test_oversized_headers_are_refused(bot, scripted):
    # waitress answers 431 after reading 64 KB of the 100 KB of headers and closes the socket; with
    # the rest still unread the kernel may send a reset that overtakes the 431 (seen under load).
    # Either way the request was refused before bolt saw it, and the server still answers.
    try:
        status, _ = _post_raw(
            bot,
            b"text=help",
            {"X-Padding": "p" * 100_000, "Content-Type": "application/x-www-form-urlencoded"},
        )
    except (ConnectionResetError, BrokenPipeError) as reset:
        status = type(reset).__name__
    except urllib.error.URLError as err:
        assert isinstance(err.reason, (ConnectionResetError, BrokenPipeError)), err
        status = type(err.reason).__name__
    assert status in (431, 400, "ConnectionResetError", "BrokenPipeError"), status
    assert _post_raw(bot, b"", {})[0] == 401  # still serving: an unsigned request is refused as before
    assert scripted.executed == []
