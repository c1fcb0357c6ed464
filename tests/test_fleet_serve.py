"""`serve` with MIGRATE_TARGETS works on fleet runs: its own fleet worker takes the jobs of a
fleet run started elsewhere (here: by this test, as another process's `run` would)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from commands.fleet_run import fleet_context
from state.fleet import FleetStatus as F
from tests.support.fleet import (
    COORDINATOR,
    ROOT,
    applied_files,
    close,
    preflight_and_approve,
    process_core,
    scratch_fleet,
    small_runbook,
)
from tests.support.runbooks import free_port
from tests.support.slack_fixtures import standin  # noqa: F401 (fixture)
from workflows.fleet import waves
from workflows.fleet.queue import FleetQueue


@pytest.mark.slow
def test_serve_runs_a_fleet_worker(settings, tmp_path, standin):
    fleet = scratch_fleet(settings.with_(runbook_path=small_runbook(tmp_path / "rb")), tmp_path, [0, 1, 1])
    core = process_core(fleet)
    serve = None
    try:
        fleet_id = preflight_and_approve(core)
        port = free_port()
        env = {**fleet.process_env(), "SLACK_API_URL": standin.base_url, "PORT": str(port)}
        log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - closed below
        serve = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve"], cwd=ROOT, env=env, stdout=log, stderr=log
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert serve.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[
                -3000:
            ]
            time.sleep(0.2)

        ctx = fleet_context(core)
        queue = FleetQueue(fleet.settings.redis_url, fleet.settings.redis_prefix)
        waves.start(ctx, queue, fleet_id, COORDINATOR)  # the jobs go to the queue; serve takes them
        done = waves.wait(ctx, fleet_id, timeout=120)
        queue.close()

        assert done.status is F.SUCCEEDED, {n: (str(t.status), t.error) for n, t in done.targets.items()}
        assert {t.worker for t in done.targets.values()} == {f"{socket.gethostname()}:{serve.pid}"}
        for name in fleet.names:
            assert len(applied_files(fleet.url(name))) == 2
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=60) == 0
        log.close()
    finally:
        if serve is not None and serve.poll() is None:
            serve.kill()
            serve.wait(timeout=30)
        close(core)
        fleet.drop()
