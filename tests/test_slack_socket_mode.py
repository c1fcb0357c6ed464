"""With SLACK_APP_TOKEN set, `python -m bot serve` runs in Socket Mode: it opens a connection
with the app-level token (apps.connections.open) and needs no signing secret or port."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.support.waiting import wait_until
from state.keys import Keys, target_identity
from tests.support.slack_standin import SlackStandIn

ROOT = Path(__file__).resolve().parent.parent


def test_serve_with_an_app_token_opens_a_socket_mode_connection(settings, redis_client):
    with SlackStandIn() as standin:
        env = {**os.environ, "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
               "SLACK_BOT_TOKEN": settings.slack_bot_token, "SLACK_APP_TOKEN": "xapp-1-A0APP-123-S3cretAppToken",
               "SLACK_API_URL": standin.base_url, "MIGRATE_CHANNEL": "C0MIGRATE",
               "MIGRATE_REDIS_PREFIX": settings.redis_prefix, "MIGRATE_ROSTER": str(settings.roster_path)}
        env.pop("SLACK_SIGNING_SECRET", None)
        proc = subprocess.Popen([sys.executable, "-m", "bot", "serve"], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            call = standin.wait_method("apps.connections.open", timeout=30)[0]
            lock = Keys(settings.redis_prefix, target_identity(settings.database_url)).outbox_lock("C0MIGRATE")
            assert wait_until(lambda: redis_client.exists(lock) == 1)  # the outbox worker holds it
        finally:
            proc.terminate()
            output = proc.communicate(timeout=10)[0].decode()
        assert call.headers["authorization"] == "Bearer xapp-1-A0APP-123-S3cretAppToken"
        assert proc.returncode == 0  # SIGTERM is a clean shutdown
        assert redis_client.exists(lock) == 0  # released, so a restarted bot delivers at once
        assert "S3cretAppToken" not in output and settings.slack_bot_token not in output
