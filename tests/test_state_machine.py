"""The lifecycle table and the phase guards (pure: no Redis)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from state.machine import (
    ACTIVE,
    FINAL,
    ROLLBACK_DIFFERENCE,
    TRANSITIONS,
    IllegalTransition,
    applied_phases,
    check_transition,
    why_phase_cannot_roll_back,
    why_phase_cannot_start,
)
from state.machine import PhaseStatus as P
from state.machine import Status as S
from state.runs import apply_transition
from tests.support.state import make_run

APPROVAL = {"by": "U0DYLAN"}
GO_PREFLIGHT = {"outcome": "GO"}
# In the enum's order, not the sets' (whose order varies with hash randomization between processes:
# pytest-xdist's workers must collect the same ids in the same order).
LEGAL = [(a, b) for a in S for b in S if b in TRANSITIONS[a]]
ILLEGAL = [(a, b) for a, b in itertools.product(S, S) if b not in TRANSITIONS[a]]


def run_ready_for(current: S, to: S):
    """A run in `current` whose phases satisfy the phase guards of a move to `to`, and that phase."""
    if to is S.RUNNING:
        return make_run(current, approval=APPROVAL), 1
    if to is S.PHASE_DONE:
        return make_run(current, {1: P.RUNNING, 2: P.PENDING}, phase=1), 1
    if to is S.ROLLING_BACK:
        first = P.RUNNING if current is S.RUNNING else P.SUCCEEDED
        return make_run(current, {1: first, 2: P.PENDING}, phase=1), 1
    if to is S.ROLLED_BACK and current is S.FAILED:  # `rollback accept` of the difference a rollback left
        run = make_run(current, {1: P.FAILED, 2: P.PENDING}, phase=1)
        run.phases[1].error = ROLLBACK_DIFFERENCE
        return run, 1
    if to is S.ROLLED_BACK:
        return make_run(current, {1: P.ROLLING_BACK, 2: P.PENDING}, phase=1), 1
    if to is S.VERIFYING:
        return make_run(current, {1: P.SUCCEEDED, 2: P.SUCCEEDED, 3: P.PENDING}), 3
    if to in (S.APPROVED, S.SCHEDULED):
        return make_run(current, preflight=GO_PREFLIGHT), None
    return make_run(current), None


def test_every_status_has_a_row_and_active_is_as_documented():
    assert set(TRANSITIONS) == set(S)
    assert ACTIVE == {S.PREFLIGHT_RUNNING, S.RUNNING, S.VERIFYING, S.ROLLING_BACK, S.RESTORING}
    assert FINAL == {S.DEFERRED, S.RESTORED}
    # a run whose owner died can always be marked interrupted
    assert all(S.INTERRUPTED in TRANSITIONS[s] for s in ACTIVE)


@pytest.mark.parametrize("current,to", LEGAL, ids=[f"{a}->{b}" for a, b in LEGAL])
def test_every_legal_transition_is_accepted(current, to):
    run, phase = run_ready_for(current, to)
    check_transition(run, to, phase=phase)


@pytest.mark.parametrize("current,to", ILLEGAL, ids=[f"{a}->{b}" for a, b in ILLEGAL])
def test_every_illegal_transition_is_refused_with_a_readable_reason(current, to):
    run, phase = run_ready_for(current, to)  # the phases would allow it: the table must refuse
    with pytest.raises(IllegalTransition) as caught:
        check_transition(run, to, phase=phase)
    reason = caught.value.reason
    assert f"the run is {current}" in reason and str(to) in reason
    assert str(caught.value) == reason


def test_a_phase_move_without_a_phase_number_is_refused():
    with pytest.raises(IllegalTransition, match="needs a phase number"):
        check_transition(make_run(S.APPROVED, approval=APPROVAL), S.RUNNING)


def test_no_approval_without_a_go_preflight():
    for preflight in (None, {"outcome": "NO-GO"}):
        with pytest.raises(IllegalTransition, match="it has no GO preflight"):
            check_transition(make_run(S.GO, preflight=preflight), S.APPROVED)


def test_no_phase_runs_without_an_approval_on_record():
    interrupted_preflight = make_run(S.INTERRUPTED)
    with pytest.raises(IllegalTransition, match="phase 1 cannot start: the run has no approval"):
        check_transition(interrupted_preflight, S.RUNNING, phase=1)


@pytest.mark.parametrize(
    "phases,n,reason",
    [
        ({1: P.PENDING, 2: P.PENDING}, 2, "phase 2 cannot start: phase 1 has not succeeded"),
        ({1: P.FAILED, 2: P.PENDING}, 2, "phase 2 cannot start: phase 1 has not succeeded"),
        ({1: P.SUCCEEDED, 2: P.PENDING}, 1, "phase 1 already succeeded: roll it back first"),
        ({1: P.RUNNING, 2: P.PENDING}, 1, "phase 1 is running right now"),
        ({1: P.PENDING}, 4, "there is no phase 4 (phases: 1, 2, 3)"),
    ],
)
def test_phase_start_guard_names_the_rule(phases, n, reason):
    assert why_phase_cannot_start(make_run(S.APPROVED, phases), n, [1, 2, 3]) == reason


@pytest.mark.parametrize(
    "phases,n",
    [
        ({1: P.PENDING, 2: P.PENDING}, 1),
        ({1: P.SUCCEEDED, 2: P.PENDING}, 2),
        ({1: P.SUCCEEDED, 2: P.FAILED}, 2),
        ({1: P.SUCCEEDED, 2: P.ROLLED_BACK}, 2),
        ({1: P.ROLLED_BACK, 2: P.PENDING}, 1),
    ],
)
def test_phase_start_guard_allows_the_next_phase_and_retries(phases, n):
    assert why_phase_cannot_start(make_run(S.APPROVED, phases), n, [1, 2, 3]) is None


@pytest.mark.parametrize(
    "phases,n,reason",
    [
        ({1: P.SUCCEEDED, 2: P.SUCCEEDED}, 1, "roll back phase 2 first: it is applied"),
        ({1: P.SUCCEEDED, 2: P.FAILED}, 1, "roll back phase 2 first: it is failed and may be partly applied"),
        ({1: P.PENDING, 2: P.PENDING}, 1, "phase 1 has not run"),
        ({1: P.ROLLED_BACK, 2: P.PENDING}, 1, "phase 1 is already rolled back"),
    ],
)
def test_rollback_guard_enforces_newest_phase_first(phases, n, reason):
    assert why_phase_cannot_roll_back(make_run(S.SUCCEEDED, phases), n) == reason


def test_rollback_refusal_reaches_the_caller_through_check_transition():
    run = make_run(S.SUCCEEDED, {1: P.SUCCEEDED, 2: P.SUCCEEDED, 3: P.SUCCEEDED})
    with pytest.raises(IllegalTransition, match="roll back phase 2 first: it is applied"):
        check_transition(run, S.ROLLING_BACK, phase=1)
    check_transition(run, S.ROLLING_BACK, phase=2)  # phase 3 only verified: it does not block
    with pytest.raises(IllegalTransition, match="phase 3 only verifies: there is nothing to roll back"):
        check_transition(run, S.ROLLING_BACK, phase=3)


def test_the_verification_phase_is_not_started_as_a_migration_phase():
    run = make_run(S.PHASE_DONE, {1: P.SUCCEEDED, 2: P.SUCCEEDED, 3: P.PENDING})
    assert why_phase_cannot_start(run, 3, [1, 2, 3]) == "phase 3 is the verification: run verify"


def test_verification_needs_every_earlier_phase_succeeded():
    run = make_run(S.PHASE_DONE, {1: P.SUCCEEDED, 2: P.FAILED, 3: P.PENDING})
    with pytest.raises(IllegalTransition, match="verification cannot start: phase 2 has not succeeded"):
        check_transition(run, S.VERIFYING, phase=3)


# A random walk over the lifecycle: whatever is attempted, the phases applied to the
# database always form a prefix (phase n applied only on top of phases 1..n-1 succeeded).
MOVES = st.tuples(st.sampled_from(list(S)), st.sampled_from([None, 1, 2, 3]))


@settings(max_examples=300, deadline=None)
@given(st.lists(MOVES, max_size=40))
def test_random_walks_never_apply_a_phase_out_of_order(moves):
    run = make_run(S.GO, approval=APPROVAL, preflight=GO_PREFLIGHT)
    for to, phase in moves:
        try:
            check_transition(run, to, phase=phase)
        except IllegalTransition as exc:
            assert exc.reason  # every refusal says why
            continue
        apply_transition(run, to, actor="U", phase=phase)
        applied = applied_phases(run)
        for n in applied:
            assert all(run.phases[m].status is P.SUCCEEDED for m in run.phases if m < n), (
                to,
                phase,
                run.phases,
            )
        if run.status not in ACTIVE:
            assert not any(s.status in (P.RUNNING, P.ROLLING_BACK) for s in run.phases.values())


def test_a_failed_phase_moves_to_rolled_back_only_by_accepting_the_difference_its_rollback_left():
    run = make_run(S.FAILED, {1: P.FAILED, 2: P.PENDING}, phase=1)
    with pytest.raises(IllegalTransition) as caught:  # failed for another reason: nothing to accept
        check_transition(run, S.ROLLED_BACK, phase=1)
    assert "no rollback difference to accept" in caught.value.reason
    run.phases[1].error = ROLLBACK_DIFFERENCE
    check_transition(run, S.ROLLED_BACK, phase=1)
