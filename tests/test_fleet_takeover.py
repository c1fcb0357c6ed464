"""A fleet worker process SIGKILLed mid-wave: a second process takes its databases over within
a minute and finishes the fleet run; no database runs anything twice (every step once in each
database's ledger, nothing of a finished database run again); the progress (wave cursor, what
succeeded) survived the death of the only worker."""

from __future__ import annotations

import os
import signal
import socket
import time

import pytest

from commands.fleet_run import fleet_context
from state.fleet import FleetStatus as F
from state.fleet import TargetStatus as T
from tests.support.fleet import (
    COORDINATOR,
    applied_files,
    close,
    preflight_and_approve,
    process_core,
    run_events,
    scratch_fleet,
    small_runbook,
    start_worker_process,
)
from workflows.fleet import waves
from workflows.fleet.queue import FleetQueue

WAVES = [0, 1, 1, 1, 2, 2, 2, 2]
FILES = ["001_items.up.sql", "002_label_index.up.sql"]


@pytest.fixture
def processes():
    started = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def wait_until(what, predicate, timeout: float, poll: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_a_killed_worker_s_databases_are_finished_by_another_process_none_twice(
    settings, tmp_path, processes
):
    fleet = scratch_fleet(
        settings.with_(runbook_path=small_runbook(tmp_path / "rb", sleep=2.5)), tmp_path, WAVES, parallel=3
    )
    try:
        core = process_core(fleet)
        fleet_id = preflight_and_approve(core)
        ctx = fleet_context(core)
        queue = FleetQueue(fleet.settings.redis_url, fleet.settings.redis_prefix)
        env = fleet.process_env()

        first = start_worker_process(env, tmp_path / "worker-a.log", threads=3)
        processes.append(first)
        waves.start(ctx, queue, fleet_id, COORDINATOR)

        def mid_wave_1():
            run = ctx.fleets.get(fleet_id)
            busy = [t for t in run.in_wave(1) if t.status is T.RUNNING and t.phase is not None]
            return run.targets["t0"].status is T.SUCCEEDED and len(busy) == 3 and busy

        in_flight = {t.name for t in wait_until("wave 1 running", mid_wave_1, timeout=120)}
        os.kill(first.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        first.wait(timeout=10)
        before = ctx.fleets.get(fleet_id)
        assert before.targets["t0"].status is T.SUCCEEDED and before.wave == 1

        second = start_worker_process(env, tmp_path / "worker-b.log", threads=3)
        processes.append(second)
        worker_b = f"{socket.gethostname()}:{second.pid}"

        taken = wait_until(
            "the take-over",
            lambda: [e for e in ctx.fleets.events(fleet_id) if e.action == "taken over"],
            timeout=90,
        )
        took = time.monotonic() - killed_at
        assert took < 60, took
        done = waves.wait(ctx, fleet_id, timeout=240)

        assert done.status is F.SUCCEEDED, {n: (str(t.status), t.error) for n, t in done.targets.items()}
        taken_over = {e.target for e in ctx.fleets.events(fleet_id) if e.action == "taken over"}
        assert taken_over == in_flight and {e.actor for e in taken} == {worker_b}
        for name, target in done.targets.items():
            rows = applied_files(fleet.url(name))
            assert [f for f, _ in rows] == FILES, (name, rows)  # every step once, in order
            assert {r for _, r in rows} == {target.run_id}
            actions = [a for a, _ in run_events(fleet.url(name), target.run_id)]
            committed = [actions.count("step 1.1 committed"), actions.count("step 2.1 committed")]
            if name in in_flight:
                # at most once each: a kill between a step's commit and its audit event loses the
                # event, not the commit (the ledger row above); the resumed run skips that step
                assert max(committed) <= 1, actions
                # the dead worker's run was marked interrupted, then resumed by the second process:
                # the interrupted phase started again, steps committed before were skipped
                assert target.attempts == 2 and target.worker == worker_b
                assert actions.count("interrupted") <= 1, actions  # killed mid-phase, or between phases
                assert actions.count("phase 1 complete") == 1 and actions.count("phase 2 complete") == 1, (
                    actions
                )
            else:
                # finished before the kill (t0) or started after it (wave 2): run once, by one worker
                assert committed == [1, 1] and target.attempts == 1 and "interrupted" not in actions, (
                    name,
                    actions,
                )
                assert actions.count("phase 1 start") == 1 and actions.count("phase 2 start") == 1
        assert done.targets["t0"].ended_at < min(done.targets[n].started_at for n in ("t1", "t2", "t3"))
        for name in ("t4", "t5", "t6", "t7"):
            assert done.targets[name].worker == worker_b
        print(f"take-over {took:.1f} s after SIGKILL")
        queue.close()
        close(core)
    finally:
        fleet.drop()


@pytest.mark.slow
def test_the_progress_survives_a_restart_of_every_worker(settings, tmp_path, processes):
    """The only worker stopped (SIGTERM: what it runs finishes, nothing new starts there) mid-wave;
    nobody works for a while; a new process carries on from the wave cursor: no database twice."""
    fleet = scratch_fleet(
        settings.with_(runbook_path=small_runbook(tmp_path / "rb", sleep=1.0)), tmp_path, WAVES, parallel=2
    )
    try:
        core = process_core(fleet)
        fleet_id = preflight_and_approve(core)
        ctx = fleet_context(core)
        queue = FleetQueue(fleet.settings.redis_url, fleet.settings.redis_prefix)
        env = fleet.process_env()
        first = start_worker_process(env, tmp_path / "worker-a.log", threads=2)
        processes.append(first)
        worker_a = f"{socket.gethostname()}:{first.pid}"
        waves.start(ctx, queue, fleet_id, COORDINATOR)

        def wave_1_running():
            run = ctx.fleets.get(fleet_id)
            busy = [t.name for t in run.in_wave(1) if t.status is T.RUNNING]
            return busy if len(busy) == 2 else None  # parallel 2: t1 and t2, t3 waits

        running = set(wait_until("wave 1 running", wave_1_running, timeout=120))
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=240) == 0  # SIGTERM: its running targets finish first (slow under load)
        stopped = ctx.fleets.get(fleet_id)
        for name in running:  # what it ran finished before it exited
            assert stopped.targets[name].status is T.SUCCEEDED
        assert stopped.status is F.RUNNING and stopped.wave == 1
        time.sleep(3)  # nobody works: nothing moves
        assert ctx.fleets.get(fleet_id).targets == stopped.targets

        second = start_worker_process(env, tmp_path / "worker-b.log", threads=2)
        processes.append(second)
        done = waves.wait(ctx, fleet_id, timeout=240)

        assert done.status is F.SUCCEEDED, {n: (str(t.status), t.error) for n, t in done.targets.items()}
        for name, target in done.targets.items():
            assert target.attempts == 1, name
            assert [f for f, _ in applied_files(fleet.url(name))] == FILES, name
        assert {n for n, t in done.targets.items() if t.worker == worker_a} == {"t0", *running}
        queue.close()
        close(core)
    finally:
        fleet.drop()
