"""A setting the bot cannot use stops `python -m bot console …` and `serve` with one line on
stderr and exit 2 (refused), never a traceback; HTTP mode never runs without request signing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.config import ConfigError
from tests.support.runbooks import bot_env
from tests.support.slack_fixtures import standin  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parent.parent
CONSOLE = ["console", "--user", "U0RAFAEL", "status"]


def run_bot(env: dict, args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def assert_refused_in_one_line(p: subprocess.CompletedProcess, *expected: str) -> None:
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr[-2000:]
    for text in expected:
        assert text in lines[0], lines[0]


def _roster_directory(tmp_path: Path) -> str:
    (tmp_path / "rosterdir").mkdir()
    return str(tmp_path / "rosterdir")


def _roster_binary(tmp_path: Path) -> str:
    path = tmp_path / "roster.bin"
    path.write_bytes(bytes(range(256)) * 4)
    return str(path)


BAD = [
    ("MIGRATE_ROSTER", _roster_directory, "is a directory"),
    ("MIGRATE_ROSTER", _roster_binary, "is not UTF-8 text"),
    (
        "MIGRATE_RUNBOOK",
        _roster_directory,
        "is a directory: MIGRATE_RUNBOOK names its runbook.toml",
    ),  # was a traceback
    ("MIGRATE_RUNBOOK", _roster_binary, "not valid UTF-8"),
    ("REDIS_URL", lambda _: "notaurl", "REDIS_URL must be a redis://"),
    ("MIGRATE_LOCK_TTL_SECONDS", lambda _: "nan", "MIGRATE_LOCK_TTL_SECONDS must be a number greater than 0"),
    ("MIGRATE_LOCK_TTL_SECONDS", lambda _: "inf", "MIGRATE_LOCK_TTL_SECONDS must be a number greater than 0"),
    ("MIGRATE_LOCK_TTL_SECONDS", lambda _: "-5", "MIGRATE_LOCK_TTL_SECONDS must be a number greater than 0"),
    ("MIGRATE_LOCK_TTL_SECONDS", lambda _: "0", "MIGRATE_LOCK_TTL_SECONDS must be a number greater than 0"),
    (
        "MIGRATE_LOCK_TTL_SECONDS",
        lambda _: "1e308",
        "MIGRATE_LOCK_TTL_SECONDS must be a number greater than 0 and at most 1,000,000",
    ),  # was OverflowError at preflight
    (
        "MIGRATE_APPROVAL_TTL_HOURS",
        lambda _: "1e300",
        "MIGRATE_APPROVAL_TTL_HOURS must be a number greater than 0",
    ),
    (
        "MIGRATE_APPROVAL_TTL_HOURS",
        lambda _: "-inf",
        "MIGRATE_APPROVAL_TTL_HOURS must be a number greater than 0",
    ),
    (
        "MIGRATE_HEALTH_INTERVAL_SECONDS",
        lambda _: "NaN",
        "MIGRATE_HEALTH_INTERVAL_SECONDS must be a number at least 0",
    ),
    (
        "MIGRATE_FOLLOWUP_HOURS",
        lambda _: "1,nan",
        "MIGRATE_FOLLOWUP_HOURS must be comma-separated positive numbers",
    ),
]


@pytest.mark.parametrize("mode", ["console", "serve"])
@pytest.mark.parametrize("name,value,message", BAD, ids=[f"{n}={i}" for i, (n, _, _) in enumerate(BAD)])
def test_an_unusable_setting_is_one_line_and_exit_2(settings, tmp_path, mode, name, value, message):
    env = {**bot_env(settings), name: value(tmp_path), "PORT": "1"}  # PORT 1: serve never gets to listen
    p = run_bot(env, CONSOLE if mode == "console" else ["serve"])
    assert_refused_in_one_line(p, message)


def test_a_redis_url_with_a_password_is_never_quoted(settings):
    env = {**bot_env(settings), "REDIS_URL": "redis//:Pw0rdInRedisUrl@host:6379"}
    p = run_bot(env, CONSOLE)
    assert_refused_in_one_line(p, "REDIS_URL")
    assert "Pw0rdInRedisUrl" not in p.stderr + p.stdout


def test_serve_in_http_mode_without_a_signing_secret_refuses_to_start(settings):
    env = bot_env(settings)
    env.pop("SLACK_SIGNING_SECRET")
    env["PORT"] = "1"
    p = run_bot(env, ["serve"])
    assert_refused_in_one_line(p, "SLACK_SIGNING_SECRET")


def test_the_slack_app_cannot_be_built_with_an_empty_signing_secret(settings, standin):  # noqa: F811
    from bot.slack.app import build_app
    from bot.slack.bridge import Bridge
    from commands import Core

    for empty in (None, ""):
        core = Core.from_settings(settings.with_(slack_signing_secret=empty, slack_api_url=standin.base_url))
        bridge = Bridge.create(core)
        try:
            with pytest.raises(ConfigError, match="SLACK_SIGNING_SECRET"):
                build_app(bridge)
        finally:
            bridge.close()


def test_in_socket_mode_the_app_still_checks_signatures_with_a_secret_nobody_knows(settings, standin):  # noqa: F811
    from bot.slack.app import signing_secret

    socket = settings.with_(slack_signing_secret=None, slack_app_token="xapp-1-socket")
    first, second = signing_secret(socket), signing_secret(socket)
    assert len(first) >= 32 and first != second


def test_the_built_app_itself_refuses_an_unsigned_request(settings, standin, caplog):  # noqa: F811
    """bolt's own check stays on behind the edge's: an unsigned request dispatched straight to
    the app is 401, runs nothing, and its body is not logged."""
    import logging
    import time
    import urllib.parse

    from slack_bolt.request import BoltRequest

    from bot.slack.app import build_app
    from bot.slack.bridge import Bridge
    from commands import Core

    caplog.set_level(logging.DEBUG)
    core = Core.from_settings(settings.with_(slack_api_url=standin.base_url))
    bridge = Bridge.create(core)
    try:
        app = build_app(bridge)
        body = urllib.parse.urlencode(
            {
                "command": "/migrate",
                "text": "approve BODYMARKER",
                "user_id": "U0DYLAN",
                "team_id": "T0TEAM",
                "trigger_id": "1.1.t",
                "response_url": standin.response_url(),
            }
        )
        headers = {
            "content-type": ["application/x-www-form-urlencoded"],
            "x-slack-signature": ["v0=" + "0" * 64],
            "x-slack-request-timestamp": [str(int(time.time()))],
        }
        response = app.dispatch(BoltRequest(body=body, headers=headers))
        assert bridge.wait_work(10)
    finally:
        bridge.close()
    assert response.status == 401
    assert not any("BODYMARKER" in r.getMessage() for r in caplog.records)


def test_a_database_url_with_an_sslpassword_is_never_shown(settings):
    """Fails without the fix: `status` printed `Migration 006 on postgresql://…?sslpassword=<it>`."""
    env = {**bot_env(settings), "DATABASE_URL": settings.database_url + "?sslpassword=S3cretKeyPass"}
    p = run_bot(env, CONSOLE)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "sslpassword=***" in p.stdout
    assert "S3cretKeyPass" not in p.stdout + p.stderr
