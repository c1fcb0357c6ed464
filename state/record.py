"""A run as data: its phase states, its fields, and how a transition changes them.

Pure (no Redis): `state.runs.RunStore` reads and writes these records; `apply_transition`
is the one place that says what a status change does to a run's phases.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from copy import copy
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from core import clock
from state.codec import as_text, dumps
from state.machine import ACTIVE, PHASE_BUSY, PhaseStatus, Status

# Run fields a transition may write; `meta` is merged, the others replaced.
WRITABLE = ("preflight", "approval", "decision", "result", "meta")
_PHASE_DEFAULT = {
    Status.RUNNING: PhaseStatus.RUNNING,
    Status.PHASE_DONE: PhaseStatus.SUCCEEDED,
    Status.VERIFYING: PhaseStatus.RUNNING,
    Status.SUCCEEDED: PhaseStatus.SUCCEEDED,
    Status.FAILED: PhaseStatus.FAILED,
    Status.ABORTED: PhaseStatus.FAILED,
    Status.INTERRUPTED: PhaseStatus.FAILED,
    Status.ROLLING_BACK: PhaseStatus.ROLLING_BACK,
    Status.ROLLED_BACK: PhaseStatus.ROLLED_BACK,
}


@dataclass
class PhaseState:
    status: PhaseStatus = PhaseStatus.PENDING
    started_at: datetime | None = None
    finished_at: datetime | None = None
    actor: str | None = None
    error: str | None = None
    file: str | None = None
    duration: float | None = None  # seconds, started_at to finished_at
    kind: str = "migration"  # migration | verification (checks only: nothing to roll back)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = str(self.status)
        for key in ("started_at", "finished_at"):
            data[key] = _iso(data[key])
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PhaseState:
        return cls(
            status=PhaseStatus(data.get("status", "pending")),
            started_at=_dt(data.get("started_at")),
            finished_at=_dt(data.get("finished_at")),
            actor=data.get("actor"),
            error=data.get("error"),
            file=data.get("file"),
            duration=data.get("duration"),
            kind=data.get("kind", "migration"),
        )


@dataclass
class Run:
    id: str
    target: str
    runbook: str
    status: Status
    created_at: datetime
    created_by: str
    updated_at: datetime
    phase: int | None = None  # current/last phase touched
    phases: dict[int, PhaseState] = field(default_factory=dict)
    preflight: dict[str, Any] | None = (
        None  # the preflight report: outcome, at, expires_at, checksums, backup{path,sha256,size}
    )
    approval: dict[str, Any] | None = None  # see state.approval.bind_approval
    decision: dict[str, Any] | None = None  # {by, at, what: go|scheduled|no-go, reason}
    result: dict[str, Any] | None = None  # the run's outcome facts (template fields, gates)
    meta: dict[str, str] = field(default_factory=dict)  # adapter data (Slack channel/ts); "rebuilt"

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def to_hash(self) -> dict[str, str]:
        """The run hash's fields (phases excluded: they live in their own hash)."""
        data = {
            "id": self.id,
            "target": self.target,
            "runbook": self.runbook,
            "status": str(self.status),
            "created_at": _iso(self.created_at),
            "created_by": self.created_by,
            "updated_at": _iso(self.updated_at),
            "phase": self.phase,
            **{name: getattr(self, name) for name in WRITABLE},
        }
        return {k: dumps(v) for k, v in data.items()}

    def phases_hash(self, numbers: Iterable[int] | None = None) -> dict[str, str]:
        """Phase number -> stored JSON, of every phase or of `numbers`."""
        chosen = self.phases if numbers is None else {n: self.phases[n] for n in numbers}
        return {str(n): json.dumps(p.to_dict()) for n, p in chosen.items()}

    @classmethod
    def from_hashes(cls, run: Mapping[Any, Any], phases: Mapping[Any, Any]) -> Run:
        """From the two hashes as Redis answers them (bytes or str field names)."""
        data = {as_text(k): json.loads(v) for k, v in run.items()}
        return cls(
            id=data["id"],
            target=data["target"],
            runbook=data["runbook"],
            status=Status(data["status"]),
            created_at=datetime.fromisoformat(data["created_at"]),
            created_by=data["created_by"],
            updated_at=datetime.fromisoformat(data["updated_at"]),
            phase=data.get("phase"),
            phases={
                int(as_text(n)): _phase_state(v) for n, v in sorted(phases.items(), key=lambda kv: int(kv[0]))
            },
            preflight=data.get("preflight"),
            approval=data.get("approval"),
            decision=data.get("decision"),
            result=data.get("result"),
            meta=data.get("meta") or {},
        )


_DECODED: dict[bytes | str, PhaseState] = {}  # stored JSON -> its PhaseState (copies are handed out)


def _phase_state(raw: bytes | str) -> PhaseState:
    """A stored phase state, decoded once per distinct value: a run of many phases is read
    several times per step, and most of its phases do not change."""
    known = _DECODED.get(raw)
    if known is None:
        if len(_DECODED) >= 4096:
            _DECODED.clear()
        known = _DECODED[raw] = PhaseState.from_dict(json.loads(raw))
    return copy(known)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def apply_transition(
    run: Run,
    to: Status,
    *,
    actor: str,
    phase: int | None = None,
    phase_status: PhaseStatus | None = None,
    fields: Mapping[str, Any] | None = None,
    error: str | None = None,
    file: str | None = None,
) -> list[int]:
    """Change `run` in memory for a transition already checked (pure: the store writes the
    result); return the phase numbers whose state changed."""
    now = clock.now()
    run.status, run.updated_at = to, now
    for name, value in (fields or {}).items():
        setattr(run, name, {**run.meta, **(value or {})} if name == "meta" else value)
    changed: list[int] = []
    if phase is not None:
        run.phase = phase
        status = phase_status or _PHASE_DEFAULT.get(to)
        if status is not None:
            _set_phase(run, phase, PhaseStatus(status), now, actor, error, file)
            changed.append(phase)
        if to is Status.VERIFYING:
            run.phases[phase].kind = "verification"
    if to is Status.RESTORED:
        # The database is the pre-migration backup again: no phase is applied any more.
        # Durations are kept as they were measured: a phase already rolled back keeps its
        # rollback's, a phase the restore undid keeps its own run's (the restore is not its rollback).
        for n, state in run.phases.items():
            if (
                state.status not in (PhaseStatus.PENDING, PhaseStatus.ROLLED_BACK)
                and state.kind == "migration"
                and n not in changed
            ):
                state.status, state.finished_at, state.error = PhaseStatus.ROLLED_BACK, now, None
                changed.append(n)
    if to not in ACTIVE:
        # No phase stays busy once the work stopped: whatever was running did not finish.
        for n, state in run.phases.items():
            if state.status in PHASE_BUSY and n not in changed:
                _set_phase(run, n, PhaseStatus.FAILED, now, actor, error or str(to), file)
                changed.append(n)
    return changed


def _set_phase(
    run: Run, n: int, status: PhaseStatus, now: datetime, actor: str, error: str | None, file: str | None
) -> None:
    state = run.phases.setdefault(n, PhaseState())
    if status in PHASE_BUSY:
        run.phases[n] = PhaseState(status=status, started_at=now, actor=actor, file=file, kind=state.kind)
        return
    state.status, state.finished_at = status, now
    state.duration = (now - state.started_at).total_seconds() if state.started_at else None
    state.error = error
    state.file = file or state.file
