"""With SLACK_APP_TOKEN set, `python -m bot serve` runs in Socket Mode: it opens a connection
with the app-level token (apps.connections.open) and needs no signing secret or port; over
that WebSocket it acks envelopes and runs the commands they carry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from state.keys import Keys, database_identity
from tests.support.slack_socket import SocketModeServer, SocketModeSlack
from tests.support.slack_standin import SlackStandIn
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
APP_TOKEN = "xapp-1-A0APP-123-S3cretAppToken"


def _serve_in_socket_mode(settings, standin) -> subprocess.Popen:
    """`python -m bot serve` with an app-level token and no signing secret, on the stand-in."""
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "SLACK_BOT_TOKEN": settings.slack_bot_token,
        "SLACK_APP_TOKEN": APP_TOKEN,
        "SLACK_API_URL": standin.base_url,
        "MIGRATE_CHANNEL": "C0MIGRATE",
        "MIGRATE_REDIS_PREFIX": settings.redis_prefix,
        "MIGRATE_ROSTER": str(settings.roster_path),
    }
    env.pop("SLACK_SIGNING_SECRET", None)
    return subprocess.Popen(
        [sys.executable, "-m", "bot", "serve"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def test_serve_with_an_app_token_opens_a_socket_mode_connection(settings, redis_client):
    with SlackStandIn() as standin:
        proc = _serve_in_socket_mode(settings, standin)
        try:
            call = standin.wait_method("apps.connections.open", timeout=30)[0]
            lock = Keys(settings.redis_prefix, database_identity(settings.database_url)).outbox_lock(
                "C0MIGRATE"
            )
            assert wait_until(lambda: redis_client.exists(lock) == 1)  # the outbox worker holds it
        finally:
            proc.terminate()
            output = proc.communicate(timeout=10)[0].decode()
        assert call.headers["authorization"] == f"Bearer {APP_TOKEN}"
        assert proc.returncode == 0  # SIGTERM is a clean shutdown
        assert redis_client.exists(lock) == 0  # released, so a restarted bot delivers at once
        assert "S3cretAppToken" not in output and settings.slack_bot_token not in output


@pytest.mark.alone  # an upper bound on elapsed time: tests/support/alone.py
def test_socket_mode_acks_a_slash_command_envelope_and_the_command_runs(settings, redis_client):
    """Over Socket Mode the ack is a message on the WebSocket (envelope_id) instead of an HTTP
    answer: it must come back within Slack's 3 s, and the command then runs as over HTTP —
    a private answer through response_url, a channel post through the Web API."""
    with SocketModeServer() as server, SocketModeSlack(server) as standin:
        proc = _serve_in_socket_mode(settings, standin)
        try:
            assert server.wait_connected(30), "the bot never opened the Socket Mode connection"

            def slash(user: str, text: str) -> str:
                trigger = f"{time.time()}.trigger"
                envelope = server.send(
                    "slash_commands",
                    {
                        "token": "legacy",
                        "team_id": "T0TEAM",
                        "team_domain": "lancio",
                        "channel_id": "C0MIGRATE",
                        "channel_name": "migrations",
                        "user_id": user,
                        "user_name": user.lower(),
                        "command": "/migrate",
                        "text": text,
                        "api_app_id": "A0APP",
                        "is_enterprise_install": "false",
                        "response_url": standin.response_url(trigger),
                        "trigger_id": trigger,
                    },
                )
                return envelope

            envelope = slash("U0RAFAEL", "help")
            took, ack = server.ack_of(envelope)
            assert took < 3.0 and ack["envelope_id"] == envelope
            answer = standin.wait_for(
                lambda c: c.method == "response_url" and "preflight" in json.dumps(c.body)
            )[0]
            assert answer.body.get("response_type", "ephemeral") == "ephemeral"

            envelope = slash("U0LIU", "incident start primary database unreachable")
            took, _ = server.ack_of(envelope)
            assert took < 3.0
            post = standin.wait_method(
                "chat.postMessage", where=lambda b: "unreachable" in json.dumps(b), timeout=15
            )[0]
            assert post.body["channel"] == "C0MIGRATE"
        finally:
            proc.terminate()
            output = proc.communicate(timeout=10)[0].decode()
        assert proc.returncode == 0, output[-2000:]
        assert "S3cretAppToken" not in output and settings.slack_bot_token not in output
