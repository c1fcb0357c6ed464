"""GO scheduled for a fleet: at its time the first worker sweep starts the canary wave; a start
missed by more than MIGRATE_SCHEDULE_LATE_MINUTES (no worker was running) is deferred, with
the reason, and nothing runs."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from commands.fleet_run import fleet_context
from core import clock
from state.fleet import FleetStatus as F
from state.fleet import TargetStatus as T
from tests.support.fleet import COORDINATOR, TPM, close, console, process_core, scratch_fleet, small_runbook
from workflows.fleet import waves
from workflows.fleet.queue import FleetQueue
from workflows.fleet.worker import FleetWorker


@pytest.fixture
def three(settings, tmp_path):
    fleet = scratch_fleet(settings.with_(runbook_path=small_runbook(tmp_path / "rb")), tmp_path, [0, 1, 1])
    core = process_core(fleet)
    code, out = console(core, COORDINATOR, "preflight")
    assert code == 0, out[-2000:]
    yield fleet, core
    close(core)
    fleet.drop()


def test_a_go_scheduled_starts_the_canary_at_its_time(three):
    fleet, core = three
    at = clock.now().replace(microsecond=0) + timedelta(seconds=6)
    code, out = console(core, TPM, f"approve at {at.isoformat()}")
    assert code == 0, out
    ctx = fleet_context(core)
    fleet_id = ctx.fleets.current().id
    assert ctx.fleets.current().status is F.SCHEDULED
    code, out = console(core, COORDINATOR, "run")
    assert code == 2 and "starts by itself" in out  # not before its time
    queue = FleetQueue(ctx.settings.redis_url, ctx.settings.redis_prefix)
    worker = FleetWorker(ctx, queue, threads=2, sweep_every=0.5).start()
    try:
        assert ctx.fleets.get(fleet_id).status is F.SCHEDULED
        waves_run = _wait_status(ctx, fleet_id, F.SUCCEEDED, timeout=120)
    finally:
        worker.stop(timeout=30)
        queue.close()
    assert waves_run.targets["t0"].started_at >= at  # the canary started at the time, not before
    assert all(t.status is T.SUCCEEDED for t in waves_run.targets.values())
    assert min(waves_run.targets[n].started_at for n in ("t1", "t2")) >= waves_run.targets["t0"].ended_at


def test_a_missed_scheduled_start_is_deferred_with_the_reason(three):
    fleet, core = three
    at = clock.now() + timedelta(seconds=2)
    code, out = console(core, TPM, f"approve at {at.isoformat()}")
    assert code == 0, out
    ctx = fleet_context(core)
    ctx.settings = ctx.settings.with_(schedule_late_minutes=0.01)  # 0.6 s late is too late here
    fleet_id = ctx.fleets.current().id
    queue = FleetQueue(ctx.settings.redis_url, ctx.settings.redis_prefix)
    try:
        time.sleep(3.5)
        assert waves.sweep(ctx, queue) is None
    finally:
        queue.close()
    run = ctx.fleets.get(fleet_id)
    assert run.status is F.DEFERRED and "scheduled start was missed" in run.decision["reason"]
    assert all(t.started_at is None for t in run.targets.values())


def _wait_status(ctx, fleet_id, status, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = ctx.fleets.get(fleet_id)
        if run.status is status:
            return run
        time.sleep(0.2)
    raise AssertionError(f"fleet run not {status}: {ctx.fleets.get(fleet_id).status}")
