"""The run's lifecycle: one explicit transition table and the phase guards. Pure, no Redis.

`RunStore.transition` is the only writer of a run's status, and it asks `check_transition`
first, so every legal move is listed in `TRANSITIONS` below and nowhere else.

The guards read a run through `Run` below, a Protocol of the few fields they need:
state/record.py (the run as data) builds on this module's statuses, and this module
imports nothing from it, so the two do not import each other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, Protocol


class Status(StrEnum):
    PREFLIGHT_RUNNING = "preflight running"
    GO = "go"
    NO_GO = "no-go"
    APPROVED = "approved"
    SCHEDULED = "scheduled"
    DEFERRED = "deferred"
    RUNNING = "running"
    PHASE_DONE = "phase done"
    VERIFYING = "verifying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ROLLING_BACK = "rolling back"
    ROLLED_BACK = "rolled back"
    RESTORE_REQUESTED = "restore requested"
    RESTORING = "restoring"
    RESTORED = "restored"
    ABORTED = "aborted"
    INTERRUPTED = "interrupted"


class PhaseStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ROLLING_BACK = "rolling back"
    ROLLED_BACK = "rolled back"


class Phase(Protocol):
    """What the guards read of one phase's state (state.record.PhaseState); read-only."""

    @property
    def status(self) -> PhaseStatus: ...
    @property
    def kind(self) -> str: ...
    @property
    def error(self) -> str | None: ...


class Run(Protocol):
    """What the guards read of a run (state.record.Run); read-only, so that a record's
    `dict[int, PhaseState]` is a `Mapping[int, Phase]`."""

    @property
    def status(self) -> Status: ...
    @property
    def phase(self) -> int | None: ...
    @property
    def phases(self) -> Mapping[int, Phase]: ...
    @property
    def preflight(self) -> Mapping[str, Any] | None: ...
    @property
    def approval(self) -> Mapping[str, Any] | None: ...


S = Status
# Statuses during which work is in progress and holds the run lock.
ACTIVE: frozenset[Status] = frozenset(
    {S.PREFLIGHT_RUNNING, S.RUNNING, S.VERIFYING, S.ROLLING_BACK, S.RESTORING}
)

# Resting statuses after work touched the database (PHASE_DONE, SUCCEEDED, FAILED, ABORTED,
# INTERRUPTED, ROLLED_BACK) lead to a roll back, a restore, a re-verification or a phase run
# again (the phase guards decide which phase). They never go back to APPROVED: an approval
# that expired there is renewed in place (commands/renew.py), the run keeping its status.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    S.PREFLIGHT_RUNNING: frozenset({S.GO, S.NO_GO, S.ABORTED, S.INTERRUPTED}),
    S.GO: frozenset({S.APPROVED, S.SCHEDULED, S.DEFERRED}),
    S.NO_GO: frozenset({S.DEFERRED}),
    S.APPROVED: frozenset({S.APPROVED, S.SCHEDULED, S.DEFERRED, S.RUNNING}),
    # a scheduled run starts at its time, is cancelled (deferred), moved (scheduled again) or
    # brought forward by the TPM's GO now (approved)
    S.SCHEDULED: frozenset({S.APPROVED, S.SCHEDULED, S.DEFERRED, S.RUNNING}),
    S.DEFERRED: frozenset(),  # final: a new preflight starts a new run
    S.RUNNING: frozenset({S.PHASE_DONE, S.FAILED, S.ROLLING_BACK, S.ABORTED, S.INTERRUPTED}),
    S.PHASE_DONE: frozenset({S.RUNNING, S.VERIFYING, S.ROLLING_BACK, S.RESTORE_REQUESTED}),
    S.VERIFYING: frozenset({S.SUCCEEDED, S.FAILED, S.ABORTED, S.INTERRUPTED}),
    S.SUCCEEDED: frozenset({S.VERIFYING, S.ROLLING_BACK, S.RESTORE_REQUESTED}),
    # FAILED -> ROLLED_BACK: only `rollback accept` of the difference a phase rollback left (guarded below)
    S.FAILED: frozenset({S.RUNNING, S.VERIFYING, S.ROLLING_BACK, S.ROLLED_BACK, S.RESTORE_REQUESTED}),
    S.ROLLING_BACK: frozenset({S.ROLLED_BACK, S.FAILED, S.ABORTED, S.INTERRUPTED}),
    S.ROLLED_BACK: frozenset({S.RUNNING, S.ROLLING_BACK, S.RESTORE_REQUESTED}),
    S.RESTORE_REQUESTED: frozenset({S.RESTORE_REQUESTED, S.RESTORING, S.ROLLING_BACK}),
    S.RESTORING: frozenset({S.RESTORED, S.FAILED, S.INTERRUPTED}),
    S.RESTORED: frozenset(),  # final: the database is the backup; a new preflight starts over
    S.ABORTED: frozenset({S.RUNNING, S.VERIFYING, S.ROLLING_BACK, S.RESTORE_REQUESTED}),
    S.INTERRUPTED: frozenset({S.RUNNING, S.VERIFYING, S.ROLLING_BACK, S.RESTORE_REQUESTED}),
}
assert set(TRANSITIONS) == set(Status), "every status needs a row in the table"
FINAL: frozenset[Status] = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)

# Transitions that concern one phase, and so need `phase=`.
_PHASE_TARGETS = frozenset({S.RUNNING, S.PHASE_DONE, S.ROLLING_BACK, S.ROLLED_BACK})
_APPLIED = frozenset(
    {PhaseStatus.SUCCEEDED, PhaseStatus.FAILED, PhaseStatus.RUNNING, PhaseStatus.ROLLING_BACK}
)
# Phase statuses during which work on that phase is in progress.
PHASE_BUSY = frozenset({PhaseStatus.RUNNING, PhaseStatus.ROLLING_BACK})
# Statuses that end the work on a phase: the phase named must be the one in progress.
_CLOSING = frozenset({S.SUCCEEDED, S.FAILED, S.ABORTED, S.INTERRUPTED})


class IllegalTransition(Exception):
    """A move the lifecycle does not allow; `reason` is a sentence a person can read."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def check_transition(run: Run, to: Status, *, phase: int | None = None) -> None:
    """Raise IllegalTransition unless `run` may move to `to` (for `phase`, where it matters)."""
    to = Status(to)
    allowed = TRANSITIONS[run.status]
    if to not in allowed:
        raise IllegalTransition(_table_reason(run.status, to, allowed))
    if to in _PHASE_TARGETS and phase is None:
        raise IllegalTransition(f"moving the run to {to} needs a phase number")
    reason = _approval_reason(run, to) or _phase_reason(run, to, phase)
    if reason:
        raise IllegalTransition(reason)


def _table_reason(current: Status, to: Status, allowed: frozenset[Status]) -> str:
    if not allowed:
        return (
            f"the run is {current}, which is final: run preflight to start a new run (it cannot become {to})"
        )
    options = ", ".join(sorted(allowed))
    return f"the run is {current}: it cannot become {to} (from {current} it can become: {options})"


def _approval_reason(run: Run, to: Status) -> str | None:
    """An approval stands on a GO preflight (e.g. not on a preflight that was interrupted)."""
    if to in (S.APPROVED, S.SCHEDULED):
        outcome = str((run.preflight or {}).get("outcome", "")).lower()
        if outcome != "go":
            return f"the run cannot become {to}: it has no GO preflight (run preflight)"
    return None


def _phase_reason(run: Run, to: Status, phase: int | None) -> str | None:
    if phase is None:
        return None
    numbers = sorted(set(run.phases) | {phase})
    if to is S.RUNNING:
        if not run.approval:
            # e.g. a run interrupted during its preflight: it was never approved
            return (
                f"phase {phase} cannot start: the run has no approval (the TPM approves after a GO preflight)"
            )
        return why_phase_cannot_start(run, phase, numbers)
    if to is S.ROLLING_BACK:
        if run.status is S.RUNNING and run.phase == phase:
            # the failure policy rolls back the phase that just failed, still marked running
            return _newer_applied(run, phase)
        return why_phase_cannot_roll_back(run, phase)
    if to is S.VERIFYING:
        return _lower_not_succeeded(run, phase, "verification")
    current = _status_of(run, phase)
    if to in _CLOSING and current not in PHASE_BUSY:
        return f"phase {phase} is {current}, not in progress: it cannot be marked {to}"
    if to is S.PHASE_DONE and current is not PhaseStatus.RUNNING:
        return f"phase {phase} is {current}, not running: it cannot be marked done"
    if to is S.ROLLED_BACK and run.status is S.FAILED:
        return (
            None
            if left_difference(run, phase)
            else (
                f"phase {phase} has no rollback difference to accept: roll it back (`rollback phase {phase}`) or restore"
            )
        )
    if to is S.ROLLED_BACK and current is not PhaseStatus.ROLLING_BACK:
        return f"phase {phase} is {current}, not rolling back: it cannot be marked rolled back"
    return None


def _is_check(run: Run, n: int) -> bool:
    state = run.phases.get(n)
    return state is not None and state.kind == "verification"


def _status_of(run: Run, n: int) -> PhaseStatus:
    state = run.phases.get(n)
    return state.status if state else PhaseStatus.PENDING


def why_phase_cannot_start(run: Run, n: int, phase_numbers: Sequence[int]) -> str | None:
    """Why phase `n` may not run now, or None. Phases run in order; a phase that succeeded
    runs again only after it was rolled back."""
    if n not in phase_numbers:
        return f"there is no phase {n} (phases: {', '.join(map(str, phase_numbers))})"
    if _is_check(run, n):
        return f"phase {n} is the verification: run verify"
    status = _status_of(run, n)
    if status in PHASE_BUSY:
        return f"phase {n} is {status} right now"
    if status is PhaseStatus.SUCCEEDED:
        return f"phase {n} already succeeded: roll it back first"
    return _lower_not_succeeded(run, n, f"phase {n}", phase_numbers)


def _lower_not_succeeded(run: Run, n: int, what: str, numbers: Sequence[int] | None = None) -> str | None:
    for m in sorted(run.phases if numbers is None else numbers):
        if m < n and _status_of(run, m) is not PhaseStatus.SUCCEEDED:
            return f"{what} cannot start: phase {m} has not succeeded"
    return None


def why_phase_cannot_roll_back(run: Run, n: int) -> str | None:
    """Why phase `n` may not be rolled back now, or None. Newest applied phase first."""
    if _is_check(run, n):
        return f"phase {n} only verifies: there is nothing to roll back"
    status = _status_of(run, n)
    if status is PhaseStatus.PENDING:
        return f"phase {n} has not run"
    if status is PhaseStatus.ROLLED_BACK:
        return f"phase {n} is already rolled back"
    if status in PHASE_BUSY:
        return f"phase {n} is {status} right now"
    return _newer_applied(run, n)


def _newer_applied(run: Run, n: int) -> str | None:
    for m in sorted(run.phases, reverse=True):
        status = _status_of(run, m)
        if m > n and status in _APPLIED and not _is_check(run, m):
            if status is PhaseStatus.SUCCEEDED:
                return f"roll back phase {m} first: it is applied"
            return f"roll back phase {m} first: it is {status} and may be partly applied"
    return None


# The phase error of a rollback that ran but did not return the database to the state before
# the phase (its proof failed): the one failure the TPM may accept (`rollback accept`).
ROLLBACK_DIFFERENCE = "rollback left a difference"


def left_difference(run: Run, n: int) -> bool:
    """Phase `n` failed because its rollback ran and left a difference, and nothing happened to
    it since (a new attempt replaces the phase's state and its error)."""
    state = run.phases.get(n)
    return (
        run.status is S.FAILED
        and state is not None
        and state.status is PhaseStatus.FAILED
        and state.error == ROLLBACK_DIFFERENCE
    )


def applied_phases(run: Run) -> list[int]:
    """Migration phases whose changes may be in the database (succeeded, failed part-way, or busy)."""
    return [n for n in sorted(run.phases) if _status_of(run, n) in _APPLIED and not _is_check(run, n)]
