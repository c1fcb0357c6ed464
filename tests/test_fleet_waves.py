"""A fleet run of 8 scratch databases in 3 waves (1 canary, 3, 4), by the fleet workers on the
queue: one pre-flight summary and ONE approval, then `run`: canary first, a wave only after the
previous one succeeded, `parallel` at once, a failure in wave 1 stops wave 2 while what runs in
wave 1 finishes."""

from __future__ import annotations

import pytest

from commands.fleet_run import fleet_context
from state.fleet import FleetStatus as F
from state.fleet import TargetStatus as T
from tests.support.fleet import (
    COORDINATOR,
    TPM,
    applied_files,
    close,
    console,
    preflight_and_approve,
    process_core,
    run_events,
    scratch_fleet,
    small_runbook,
)

WAVES = [0, 1, 1, 1, 2, 2, 2, 2]  # t0 the canary; t1-t3 wave 1; t4-t7 wave 2
FILES = ["001_items.up.sql", "002_label_index.up.sql"]


@pytest.fixture
def fleet_of(settings, tmp_path):
    made = []

    def make(runbook, **options):
        fleet = scratch_fleet(settings.with_(runbook_path=runbook), tmp_path, WAVES, **options)
        core = process_core(fleet)
        made.append((fleet, core))
        return fleet, core

    yield make
    for fleet, core in made:
        close(core)
        fleet.drop()


def test_one_approval_then_run_canary_first_wave_by_wave_parallel_at_once(fleet_of, tmp_path):
    fleet, core = fleet_of(small_runbook(tmp_path / "rb", sleep=0.3), parallel=2)
    fleet_id = preflight_and_approve(core)  # one preflight, ONE approval by the TPM

    code, out = console(core, COORDINATOR, "run")  # the console: a worker runs in this process

    assert code == 0, out[-3000:]
    assert f"Fleet run {fleet_id}: 8 of 8 databases succeeded" in out
    ctx = fleet_context(core)
    done = ctx.fleets.get(fleet_id)
    assert done.status is F.SUCCEEDED
    decisions = [e for e in ctx.fleets.audit_events(fleet_id) if e["actor"] == TPM]
    assert [e["action"] for e in decisions] == ["approve"]  # one decision covered all 8
    targets = done.targets
    canary = targets["t0"]
    for name in ("t1", "t2", "t3", "t4", "t5", "t6", "t7"):  # the others start only after the canary
        assert targets[name].started_at >= canary.ended_at, name
    wave1_end = max(targets[n].ended_at for n in ("t1", "t2", "t3"))
    for name in ("t4", "t5", "t6", "t7"):  # wave 2 only once wave 1 succeeded entirely
        assert targets[name].started_at >= wave1_end, name
    spans = [(t.started_at, t.ended_at) for t in targets.values()]
    for start, _ in spans:  # never more than `parallel` (2) at once
        assert sum(1 for s, e in spans if s <= start < e) <= 2
    for name in fleet.names:  # every step once per database, by that database's own run
        rows = applied_files(fleet.url(name))
        assert [f for f, _ in rows] == FILES, (name, rows)
        assert {r for _, r in rows} == {targets[name].run_id}
        assert targets[name].attempts == 1
        actions = [a for a, _ in run_events(fleet.url(name), targets[name].run_id)]
        assert actions.count("approve") == 1 and actions.count("verification passed") == 1
    kinds = [(e.target, e.after) for e in ctx.fleets.events(fleet_id) if e.kind == "target"]
    assert (
        kinds.count(("t0", "succeeded")) == 1 and len(kinds) == 8 * 5
    )  # preflight, go, queued, running, succeeded


def test_a_failure_in_wave_1_stops_wave_2_and_lets_wave_1_finish(fleet_of, tmp_path):
    fleet, core = fleet_of(small_runbook(tmp_path / "rb", sleep=1.0), parallel=3)
    # t1 fails in its phase 2; t2 and t3 run beside it (parallel 3) and finish
    runbook = small_runbook(tmp_path / "rb2", sleep=1.0, fail_on=(fleet.dbnames["t1"],))
    fleet.settings = fleet.settings.with_(runbook_path=runbook)
    close(core)
    core = process_core(fleet)
    try:
        fleet_id = preflight_and_approve(core)
        code, out = console(core, COORDINATOR, "run")
        done = fleet_context(core).fleets.get(fleet_id)
    finally:
        close(core)

    assert code == 1, out[-3000:]  # the console: it ran, and the outcome is a failure
    assert f"Fleet run {fleet_id} stopped (failed): 3 of 8 databases succeeded" in out
    assert "❌ t1 (wave 1): phase 2" in out and "⏭️ t4 (wave 2): not started: the fleet stopped" in out
    status = {n: t.status for n, t in done.targets.items()}
    assert done.status is F.FAILED and done.failures == 1
    assert status == {
        "t0": T.SUCCEEDED, "t1": T.FAILED, "t2": T.SUCCEEDED, "t3": T.SUCCEEDED,
        "t4": T.SKIPPED, "t5": T.SKIPPED, "t6": T.SKIPPED, "t7": T.SKIPPED,
    }  # fmt: skip
    assert "planted failure" in done.targets["t1"].error and done.targets["t1"].phase == 2
    assert "stopped after 1 failure" in done.targets["t4"].reason
    # what ran in wave 1 beside the failure finished after it failed
    assert max(done.targets[n].ended_at for n in ("t2", "t3")) > done.targets["t1"].ended_at
    for name in ("t4", "t5", "t6", "t7"):  # nothing of wave 2 touched its database
        assert done.targets[name].started_at is None
        assert not [a for a, _ in run_events(fleet.url(name)) if a.startswith("phase")]
    assert [f for f, _ in applied_files(fleet.url("t1"))] == ["001_items.up.sql"]
