"""`status` says only what is true now: no withdrawn approval, no "valid until" on a finished
run, no bare "go" before the TPM decided, no verification result older than a rollback, and
each phase's duration one number wherever it is shown."""

from __future__ import annotations

import re
from datetime import timedelta

from commands import Core
from core import clock
from state.machine import PhaseStatus as P
from state.machine import Status as S
from state.runs import apply_transition
from tests.support.flow import COORDINATOR, LIU, SERGEI, TPM, Console
from tests.support.state import make_run


def test_a_run_awaiting_the_decision_is_not_called_go(ready):
    console = Console(Core.from_settings(ready))
    assert console(COORDINATOR, "preflight")[0] == 0
    code, out = console(COORDINATOR, "status")
    assert "awaiting the TPM's GO / NO-GO" in out and not re.search(r"Run \S+: go \(", out)


def test_a_deferred_run_lists_neither_its_approval_nor_its_schedule(ready):
    console = Console(Core.from_settings(ready))
    code, out = console(COORDINATOR, "preflight")
    assert code == 0, out
    at = (clock.now() + timedelta(hours=2)).replace(second=0, microsecond=0)
    code, out = console(TPM, f"approve at {at:%Y-%m-%dT%H:%MZ}")
    assert code == 0, out
    assert console(TPM, "defer traffic spike")[0] == 0
    code, out = console(COORDINATOR, "status")
    assert "NO-GO by <@U0DYLAN>: traffic spike" in out
    assert "Approval:" not in out and "scheduled for" not in out and "valid until" not in out


def test_finished_run_phase_states_and_durations(ready):
    console = Console(Core.from_settings(ready))
    console.approved()
    code, phase1 = console(LIU, "run phase 1")
    assert code == 0, phase1
    assert console(SERGEI, "run phase 2")[0] == 0
    assert console(COORDINATOR, "verify")[0] == 0
    took = re.search(r"Phase 1 complete \((.+?) vs estimate", phase1).group(1)

    code, out = console(COORDINATOR, "status")
    assert "valid until" not in out and "(used by this run)" in out
    assert f"Phase 1 Database infrastructure: succeeded, {took} vs estimate" in out  # the channel's number

    assert console(COORDINATOR, "rollback phase 2")[0] == 0
    assert console(COORDINATOR, "rollback phase 1")[0] == 0
    code, out = console(COORDINATOR, "status")
    assert re.search(r"Phase 3 [^\n]*: succeeded before later changes \(verify again\)", out), out
    assert not re.search(r"Phase 3 [^\n]*: succeeded,", out)


def test_a_restore_keeps_the_duration_of_rollbacks_done_before_it():
    run = make_run(S.ROLLED_BACK, {1: P.SUCCEEDED, 2: P.ROLLED_BACK}, phase=2)
    run.phases[2].started_at = clock.now() - timedelta(seconds=30)
    run.phases[2].finished_at = clock.now() - timedelta(seconds=27)
    run.phases[2].duration = 3.0
    run.phases[1].started_at = clock.now() - timedelta(seconds=60)
    run.phases[1].finished_at = clock.now() - timedelta(seconds=55)
    run.phases[1].duration = 5.0
    apply_transition(run, S.RESTORE_REQUESTED, actor="U0DYLAN")
    apply_transition(run, S.RESTORING, actor="U0DYLAN")
    apply_transition(run, S.RESTORED, actor="U0DYLAN")
    assert run.phases[2].duration == 3.0 and run.phases[1].status is P.ROLLED_BACK
    assert run.phases[1].duration == 5.0  # the phase's own run time, not "until the restore"
