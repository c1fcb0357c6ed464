"""Rebuilding the run state after Redis lost it, from the PostgreSQL event history.

Every transition's audit event carries what it wrote (status, phase states, fields), so the
last run can be replayed from `migrate_bot.run_events`. What the history never held is
listed, not invented; the rebuilt run's approval and preflight are revoked, so nothing runs
until a fresh preflight (and a new approval).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from core import clock
from state.approval import revoke
from state.audit import EventLog
from state.machine import ACTIVE, PHASE_BUSY, IllegalTransition, PhaseStatus, Status
from state.runs import WRITABLE, PhaseState, Run, RunStore

REBUILT_REASON = "the run state was rebuilt from history after Redis lost it: run a fresh preflight"
_ALWAYS_MISSING = [
    "adapter references stored outside transitions (e.g. the Slack thread of the run)",
    "events that had not yet been copied to PostgreSQL when Redis lost them",
    "idempotency records of recent requests",
]


@dataclass
class RecoveryReport:
    rebuilt: bool
    run: Run | None
    missing: list[str] = field(default_factory=list)
    message: str = ""
    events: int = 0  # how many events the rebuild replayed


def rebuild_from_history(
    store: RunStore, events: EventLog, *, ledger: Sequence[Mapping[str, Any]] = ()
) -> RecoveryReport:
    """If Redis has no current run but PostgreSQL has history, rebuild the last run (and the
    incident flag) from its events, mark it rebuilt, and say what could not be rebuilt.

    `ledger`: rows of the executor's file ledger (`engine.ledger.applied_files`), if the
    caller has them: a file committed during a phase the history leaves unfinished is named,
    since the database may hold part of that phase."""
    current = store.current()
    if current is not None:
        return RecoveryReport(False, current, message="the run state is in Redis: nothing to rebuild")
    try:
        run_ids = events.last_run_ids(1)
        history = events.events(run_ids[0], limit=100_000) if run_ids else []
        incident = _last_incident(events.events(None, limit=1000))
    except SQLAlchemyError as exc:
        return RecoveryReport(
            False, None, message=f"the event history in PostgreSQL is unreachable ({type(exc).__name__})"
        )
    if not history:
        return RecoveryReport(False, None, message="no run in the event history: nothing to rebuild")
    run, missing = replay(history)
    unfinished = _unfinished_phases(run)
    _make_safe(run, missing)
    missing.extend(_committed_in_unfinished(run, unfinished, ledger))
    try:
        store.restore(
            run,
            actor="bot",
            incident=incident,
            evidence={"events": len(history), "status": str(run.status), "missing": missing},
        )
    except IllegalTransition:
        return RecoveryReport(False, store.current(), message="another process rebuilt the run state first")
    return RecoveryReport(True, run, missing, _message(run, len(history), missing), len(history))


def replay(history: Sequence[Mapping[str, Any]]) -> tuple[Run, list[str]]:
    """The run as its transition events left it, and what the events did not tell."""
    missing: list[str] = []
    first = history[0]
    created = next((e for e in history if _move(e).get("from") is None and _move(e).get("to")), None)
    if created is None:
        missing.append("who started the run and its runbook's phases (its first event is not in the history)")
    origin = created or first
    run = Run(
        id=first["run_id"],
        target=first.get("target") or "",
        runbook=_move(origin).get("runbook") or "unknown",
        status=Status(_move(origin).get("to") or Status.PREFLIGHT_RUNNING),
        created_at=_at(origin),
        created_by=origin["actor"] if created else "unknown",
        updated_at=_at(origin),
        phases=_initial_phases(_move(origin)),
    )
    for event in history:
        move = _move(event)
        if move.get("from") is None:
            continue  # the creation, applied above
        if move.get("to"):
            _apply_event(run, event, move)
    return run, missing


def _initial_phases(created: Mapping[str, Any]) -> dict[int, PhaseState]:
    checks = set(created.get("verification") or ())
    return {
        int(n): PhaseState(kind="verification" if n in checks else "migration")
        for n in created.get("phases") or ()
    }


def _apply_event(run: Run, event: Mapping[str, Any], move: Mapping[str, Any]) -> None:
    run.status, run.updated_at = Status(move["to"]), _at(event)
    if move.get("phase") is not None:
        run.phase = move["phase"]
    for n, state in (move.get("phases") or {}).items():
        run.phases[int(n)] = PhaseState.from_dict(state)
    for name, value in (move.get("fields") or {}).items():
        if name in WRITABLE:
            setattr(run, name, {**run.meta, **(value or {})} if name == "meta" else value)


def _make_safe(run: Run, missing: list[str]) -> None:
    """Nothing resumes and nothing runs on an old approval: work that was in progress is
    interrupted, approval and preflight are revoked, a scheduled GO is void."""
    if run.status in ACTIVE:
        missing.append(f"the outcome of the work in progress (the run was {run.status}): marked interrupted")
        run.status = Status.INTERRUPTED
        for state in run.phases.values():
            if state.status in PHASE_BUSY:
                state.status, state.error = PhaseStatus.FAILED, "interrupted (state rebuilt from history)"
    if run.status is Status.SCHEDULED:
        missing.append("the scheduled start (the GO scheduled is void: preflight and approve again)")
    missing.extend(_ALWAYS_MISSING)
    run.approval = revoke(run.approval, REBUILT_REASON)
    run.preflight = revoke(run.preflight, REBUILT_REASON)
    run.meta = {**run.meta, "rebuilt": "true", "rebuilt_at": clock.now().isoformat()}


def _unfinished_phases(run: Run) -> dict[int, PhaseStatus]:
    """Phases the history leaves busy or failed (the database may hold part of them), with
    the status the history ends with."""
    unfinished = {PhaseStatus.RUNNING, PhaseStatus.ROLLING_BACK, PhaseStatus.FAILED}
    return {n: state.status for n, state in run.phases.items() if state.status in unfinished}


def _committed_in_unfinished(
    run: Run, phases: Mapping[int, PhaseStatus], ledger: Sequence[Mapping[str, Any]]
) -> list[str]:
    notes = []
    for row in ledger:
        phase = row.get("phase")
        state = run.phases.get(phase) if phase is not None else None
        if row.get("run_id") != run.id or row.get("phase") not in phases or state is None:
            continue
        committed = row.get("started_at")
        if state.started_at and committed and committed < state.started_at:
            continue  # from an earlier attempt of the phase
        notes.append(
            f"whether phase {row['phase']} is applied: the ledger shows {row['file']} (step {row['step']}) "
            f"committed while the history ends with the phase {phases[row['phase']]}: check the database"
        )
    return notes


def _last_incident(history: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The incident in progress according to the latest incident start/clear event."""
    for event in reversed(history):
        if event["action"] == "incident start":
            return (event.get("evidence") or {}).get("incident")
        if event["action"] == "incident clear":
            return None
    return None


def _message(run: Run, count: int, missing: list[str]) -> str:
    return (
        f"Redis had lost the run state. Rebuilt run {run.id} ({run.status}) from {count} events "
        f"in PostgreSQL. Could not rebuild: {'; '.join(missing)}. "
        "Nothing will run until a fresh preflight."
    )


def _move(event: Mapping[str, Any]) -> Mapping[str, Any]:
    return (event.get("evidence") or {}).get("transition") or {}


def _at(event: Mapping[str, Any]) -> datetime:
    return datetime.fromisoformat(event["at"])
