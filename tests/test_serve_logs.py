"""`serve` says what it does in its log: one line per command handled and per change of a
run's state, and one clear line (never a traceback) when it cannot start."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from commands.result import Post
from tests.support.runbooks import bot_env
from tests.support.slack_fixtures import standin  # noqa: F401 (fixture)
from tests.support.slack_standin import RunningBot

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def real_bot(settings, standin):
    running = RunningBot(settings, standin)
    yield running
    running.close()


def test_one_line_per_command_and_per_state_change(real_bot, standin, caplog):
    caplog.set_level(logging.INFO)
    real_bot.slack.slash("U0RAFAEL", "status")
    real_bot.slack.slash("U0STRANGER", "incident start \x1b[31mhello")
    real_bot.slack.slash("U0RAFAEL", "stauts")
    standin.wait_for(lambda c: c.method == "response_url", count=3, timeout=30)
    real_bot.bridge.reporter.post(
        Post("phase_done", "Phase 1 complete (1.2 s vs estimate 3 min)", run_id="r-log")
    )
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("bot.slack")]
    assert "command by U0RAFAEL: status -> ok" in lines
    assert "command by U0STRANGER: incident start [31mhello -> refused" not in lines
    assert any(
        l.startswith("command by U0STRANGER: incident start ")
        and l.endswith("-> refused")
        and "\x1b" not in l
        for l in lines
    ), lines
    assert "command by U0RAFAEL: stauts -> refused" in lines
    assert "run r-log: Phase 1 complete (1.2 s vs estimate 3 min)" in lines


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def _serve(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bot", "serve"],
        env={**env, "PORT": _free_port()},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )


def _one_line(p: subprocess.CompletedProcess) -> str:
    lines = [line for line in p.stderr.splitlines() if line.strip() and " INFO " not in line]
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr[-3000:]
    return lines[0]


def test_every_missing_setting_is_named_at_once(settings):
    env = {
        k: v
        for k, v in bot_env(settings).items()
        if k not in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "MIGRATE_CHANNEL")
    }
    p = _serve(env)
    line = _one_line(p)
    assert p.returncode == 2
    for name in ("SLACK_BOT_TOKEN", "MIGRATE_CHANNEL", "SLACK_SIGNING_SECRET"):
        assert name in line, line


def test_slack_unreachable_at_start_is_one_line(settings):
    p = _serve({**bot_env(settings), "SLACK_API_URL": "http://127.0.0.1:9/api/"})
    line = _one_line(p)
    assert p.returncode == 1 and line.startswith(
        "unreachable: Slack is unreachable at http://127.0.0.1:9/api/"
    ), line


class _RejectingSlack(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # every Web API call: the token is not valid
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"ok": False, "error": "invalid_auth"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_a_rejected_token_at_start_is_one_line(settings):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RejectingSlack)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        p = _serve(
            {**bot_env(settings), "SLACK_API_URL": f"http://127.0.0.1:{server.server_address[1]}/api/"}
        )
    finally:
        server.shutdown()
        server.server_close()
    line = _one_line(p)
    assert p.returncode == 2 and "Slack rejected SLACK_BOT_TOKEN (invalid_auth)" in line, line
    assert settings.slack_bot_token not in p.stderr
