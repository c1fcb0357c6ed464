"""A fleet run in Redis: one runbook going to many databases, wave by wave (issue 18).

Each target database keeps its own run (state/runs.py under `Keys(prefix, identity)`: its
phases, ledger, lock and rollback are its own). This module keeps what spans them: which
databases the fleet run covers, in which wave, how far each one got, the wave cursor and the
failure count, and the rule that decides what may start next. Every status change of the fleet
or of one of its targets goes through the two writers below, each ONE WATCH/MULTI/EXEC that
checks the transition table, writes the state, appends the change to the fleet's event stream
(the reporting hook) and appends an audit event (state.audit's shape, mirrored to PostgreSQL
when an EventLog is given), like `RunStore.transition` does for a run.

Keys (state.keys.FleetKeys, under `<prefix>:fleet:`): `current` (the current fleet id),
`index` (ids by creation time), `run:<id>` (hash: the fleet's fields as JSON), `run:<id>:targets`
(hash: target name -> JSON TargetState), `run:<id>:events` (stream), `audit` (stream),
`audit:mirror-pending` (list).

API (FleetStore(redis, prefix, events=None)):

- `create(actor, runbook, targets, parallel=, stop_after_failures=, meta=)` -> FleetRun: a new
  fleet run in PREFLIGHT whose targets ((name, wave) pairs or core.targets.Target) are PENDING;
  it becomes the current one. Refused (IllegalTransition) while the current one is ACTIVE.
- `get(id)`, `current()`, `history(limit)` -> FleetRun (None when absent).
- `transition(id, to, actor=, action=, fields=, expect=)` -> FleetRun: THE writer of the fleet's
  status (FLEET_TRANSITIONS). `fields`: approval, preflight, decision, result, meta, backup_policy.
  FAILED -> RUNNING (a new `run` after a stop) puts FAILED and SKIPPED targets back to GO and
  the failure count to 0.
- `move(id, name, to, actor=, action=, fields=, expect=)` -> TargetState: THE writer of a
  target's status (TARGET_TRANSITIONS). `fields`: phase, identity, run_id, error, reason, backup,
  worker, detail. QUEUED -> RUNNING is refused unless the fleet is RUNNING, not stopped (failures
  < stop_after_failures) and the target's wave is the wave cursor: the rule that nothing new
  starts after the failures, checked atomically whichever process asks. RUNNING -> RUNNING is a
  take-over (another worker resumes it): `attempts` counts the starts. -> FAILED counts a
  failure (in the same MULTI). started_at is set at the first RUNNING, ended_at at the end.
- `set_phase(id, name, phase, actor=)`: the phase a running target is in (no status change):
  an event of kind "phase" (the card's table updates in place; no thread line).
- `advance(id, actor=)` -> Advance: the wave rule (`decide` below, pure), applied in one MULTI:
  GO targets of the cursor's wave become QUEUED up to `parallel` at once (QUEUED and RUNNING
  ones count); when the wave has ended and all of it succeeded the cursor moves to the next
  wave; when stopped (failures reached), GO/QUEUED targets become SKIPPED and, once none is
  RUNNING, the fleet FAILED; after the last wave succeeded the fleet SUCCEEDED. The caller
  (workflows/fleet) enqueues a job for each name in `Advance.queued`. Idempotent: calling it
  twice changes nothing the second time.
- `events(id, after="0-0", count=)` -> list[FleetEvent]: the reporting hook. Every change above
  appends one entry to the fleet's stream: kind "target" (a target's status changed: from, to;
  one thread line each), "phase" (a running target's phase: edit the table), "fleet" (the fleet's
  status changed). Read with the last `FleetEvent.id` seen as `after` (XREAD-style).
- `audit_events(id=None)`: the fleet audit stream, oldest first.

May import: core, and state's own modules (like every state module).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from secrets import token_hex
from typing import Any, cast

from redis import Redis
from redis.client import Pipeline
from sqlalchemy.exc import SQLAlchemyError

from core import clock
from state.audit import EventLog, make_event, stream_fields
from state.codec import as_text, dumps
from state.keys import FleetKeys
from state.machine import IllegalTransition

log = logging.getLogger(__name__)

__all__ = [
    "ACTIVE",
    "Advance",
    "FleetEvent",
    "FleetRun",
    "FleetStatus",
    "FleetStore",
    "IllegalTransition",
    "TargetState",
    "TargetStatus",
    "decide",
]


class FleetStatus(StrEnum):
    PREFLIGHT = "preflight running"
    GO = "go"  # at least one target GO: waiting for the TPM
    NO_GO = "no-go"  # no target GO
    APPROVED = "approved"
    SCHEDULED = "scheduled"
    DEFERRED = "deferred"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # stopped after failures, or a wave did not succeed entirely
    ROLLING_BACK = "rolling back"
    ROLLED_BACK = "rolled back"


class TargetStatus(StrEnum):
    PENDING = "pending"
    PREFLIGHT = "preflight"
    GO = "go"
    NO_GO = "no-go"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"  # not started: the fleet stopped after failures, or a wave did not succeed
    ROLLING_BACK = "rolling back"
    ROLLED_BACK = "rolled back"
    ROLLBACK_FAILED = "rollback failed"


F, T = FleetStatus, TargetStatus
FLEET_TRANSITIONS: dict[FleetStatus, frozenset[FleetStatus]] = {
    F.PREFLIGHT: frozenset({F.GO, F.NO_GO}),
    F.GO: frozenset({F.APPROVED, F.SCHEDULED, F.DEFERRED}),
    F.NO_GO: frozenset({F.DEFERRED}),
    F.APPROVED: frozenset({F.APPROVED, F.SCHEDULED, F.DEFERRED, F.RUNNING}),
    F.SCHEDULED: frozenset({F.APPROVED, F.SCHEDULED, F.DEFERRED, F.RUNNING}),
    F.DEFERRED: frozenset(),
    F.RUNNING: frozenset({F.SUCCEEDED, F.FAILED}),
    F.SUCCEEDED: frozenset({F.ROLLING_BACK}),
    F.FAILED: frozenset({F.RUNNING, F.ROLLING_BACK}),
    F.ROLLING_BACK: frozenset({F.ROLLED_BACK, F.FAILED}),
    F.ROLLED_BACK: frozenset({F.ROLLING_BACK}),
}
TARGET_TRANSITIONS: dict[TargetStatus, frozenset[TargetStatus]] = {
    T.PENDING: frozenset({T.PREFLIGHT, T.SKIPPED}),
    T.PREFLIGHT: frozenset({T.GO, T.NO_GO}),
    T.GO: frozenset({T.QUEUED, T.SKIPPED}),
    T.NO_GO: frozenset(),  # not part of this fleet run: a new preflight starts a new one
    T.QUEUED: frozenset({T.RUNNING, T.SKIPPED, T.FAILED}),  # -> FAILED: its start refused (approval)
    T.RUNNING: frozenset({T.RUNNING, T.SUCCEEDED, T.FAILED}),  # RUNNING -> RUNNING: taken over
    T.SUCCEEDED: frozenset({T.ROLLING_BACK}),
    T.FAILED: frozenset({T.GO, T.ROLLING_BACK}),
    T.SKIPPED: frozenset({T.GO}),  # a new `run` after a stop
    T.ROLLING_BACK: frozenset({T.ROLLING_BACK, T.ROLLED_BACK, T.ROLLBACK_FAILED}),
    T.ROLLED_BACK: frozenset({T.ROLLING_BACK}),
    T.ROLLBACK_FAILED: frozenset({T.ROLLING_BACK}),
}
assert set(FLEET_TRANSITIONS) == set(FleetStatus) and set(TARGET_TRANSITIONS) == set(TargetStatus)

# Fleet statuses during which work is in progress: no new fleet run may replace it.
ACTIVE: frozenset[FleetStatus] = frozenset({F.PREFLIGHT, F.RUNNING, F.ROLLING_BACK})
# Target statuses that hold a place in the wave's `parallel` (started or about to).
BUSY: frozenset[TargetStatus] = frozenset({T.QUEUED, T.RUNNING})
# Target statuses that end a target's part of a fleet run.
ENDED: frozenset[TargetStatus] = frozenset(
    {T.SUCCEEDED, T.FAILED, T.SKIPPED, T.ROLLED_BACK, T.ROLLBACK_FAILED}
)
# Targets that belong to the run (approved GO, whatever became of them since).
IN_RUN: frozenset[TargetStatus] = frozenset({T.GO, T.QUEUED, T.RUNNING, T.SUCCEEDED, T.FAILED, T.SKIPPED})

FLEET_WRITABLE = ("approval", "preflight", "decision", "result", "meta", "backup_policy")
TARGET_WRITABLE = ("phase", "identity", "run_id", "error", "reason", "backup", "worker", "detail")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass
class TargetState:
    """One database's part of a fleet run. No URL: `url_env` names where it is read from."""

    name: str
    wave: int
    order: int  # position in the targets file
    status: TargetStatus = T.PENDING
    phase: int | None = None  # the phase running, or the last one touched
    identity: str | None = None  # `<system id>/<database>` (state.keys.database_identity)
    run_id: str | None = None  # the target's own run (state/runs.py under its identity)
    error: str | None = None  # why it failed (redacted by the caller)
    reason: str | None = None  # why it is NO-GO or SKIPPED
    backup: dict[str, Any] | None = None  # pre-flight's backup: {"path", "sha256", ...} or {"skipped": why}
    worker: str | None = None  # the worker process working on it
    detail: dict[str, Any] | None = None  # anything else the adapters show (free JSON)
    attempts: int = 0  # how many times a worker started it (2+: taken over)
    queued_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def duration(self) -> float | None:
        """Seconds from the first start to the end (or to now while it runs)."""
        if self.started_at is None:
            return None
        return ((self.ended_at or clock.now()) - self.started_at).total_seconds()

    def to_json(self) -> str:
        data = asdict(self)
        data["status"] = str(self.status)
        for key in ("queued_at", "started_at", "ended_at", "updated_at"):
            data[key] = _iso(data[key])
        return dumps(data)

    @classmethod
    def from_json(cls, raw: bytes | str) -> TargetState:
        data = json.loads(raw)
        data["status"] = TargetStatus(data["status"])
        for key in ("queued_at", "started_at", "ended_at", "updated_at"):
            data[key] = _dt(data.get(key))
        return cls(**{k: v for k, v in data.items() if k in _TARGET_FIELDS})


_TARGET_FIELDS = {f for f in TargetState.__dataclass_fields__}


@dataclass
class FleetRun:
    id: str
    runbook: str
    status: FleetStatus
    created_at: datetime
    created_by: str
    updated_at: datetime
    parallel: int
    stop_after_failures: int
    targets: dict[str, TargetState] = field(default_factory=dict)  # in file order
    wave: int | None = None  # the wave cursor: the wave running (None before the run)
    failures: int = 0
    approval: dict[str, Any] | None = None
    preflight: dict[str, Any] | None = None
    decision: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    backup_policy: str | None = None  # "every" | "canary" (pre-flight; README)

    @property
    def stopped(self) -> bool:
        """The failures reached stop_after_failures: nothing new starts."""
        return self.failures >= self.stop_after_failures

    def waves(self) -> list[int]:
        return sorted({t.wave for t in self.targets.values()})

    def in_wave(self, wave: int) -> list[TargetState]:
        return [t for t in self.targets.values() if t.wave == wave]

    def with_status(self, *statuses: TargetStatus) -> list[TargetState]:
        return [t for t in self.targets.values() if t.status in statuses]

    def counts(self) -> dict[str, int]:
        """{status: how many targets}, for summaries."""
        found: dict[str, int] = {}
        for t in self.targets.values():
            found[str(t.status)] = found.get(str(t.status), 0) + 1
        return found

    # ---- storage
    _SCALARS = ("id", "runbook", "created_by", "parallel", "stop_after_failures", "wave", "failures")
    _DICTS = ("approval", "preflight", "decision", "result", "meta", "backup_policy")

    def to_hash(self) -> dict[str, str]:
        data = {k: dumps(getattr(self, k)) for k in (*self._SCALARS, *self._DICTS)}
        data["status"] = dumps(str(self.status))
        data["created_at"] = dumps(_iso(self.created_at))
        data["updated_at"] = dumps(_iso(self.updated_at))
        return data

    @classmethod
    def from_hashes(cls, fleet: Mapping[Any, Any], targets: Mapping[Any, Any]) -> FleetRun:
        data = {as_text(k): json.loads(v) for k, v in fleet.items()}
        states = sorted((TargetState.from_json(v) for v in targets.values()), key=lambda t: t.order)
        return cls(
            id=data["id"],
            runbook=data["runbook"],
            status=FleetStatus(data["status"]),
            created_at=datetime.fromisoformat(data["created_at"]),
            created_by=data["created_by"],
            updated_at=datetime.fromisoformat(data["updated_at"]),
            parallel=data["parallel"],
            stop_after_failures=data["stop_after_failures"],
            targets={t.name: t for t in states},
            wave=data.get("wave"),
            failures=data.get("failures") or 0,
            approval=data.get("approval"),
            preflight=data.get("preflight"),
            decision=data.get("decision"),
            result=data.get("result"),
            meta=data.get("meta") or {},
            backup_policy=data.get("backup_policy"),
        )


@dataclass(frozen=True)
class FleetEvent:
    """One entry of a fleet's event stream: what the card and the thread render."""

    id: str  # stream id: pass it as `after` to read what came next
    kind: str  # "target" | "phase" | "fleet"
    fleet: str
    at: datetime
    actor: str
    action: str
    target: str | None = None
    wave: int | None = None
    before: str | None = None  # status before ("from")
    after: str | None = None  # status after ("to")
    phase: int | None = None
    error: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Advance:
    """What `advance` did: targets to enqueue, targets skipped, the fleet's new status if any."""

    queued: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    wave: int | None = None  # the cursor after it
    finished: FleetStatus | None = None  # SUCCEEDED / FAILED when the run just ended

    @property
    def changed(self) -> bool:
        return bool(self.queued or self.skipped or self.finished)


@dataclass(frozen=True)
class _Plan:
    queue: tuple[str, ...] = ()
    skip: tuple[tuple[str, str], ...] = ()  # (name, reason)
    wave: int | None = None
    finish: FleetStatus | None = None


def decide(fleet: FleetRun) -> _Plan:
    """The wave rule, pure: what `advance` does to `fleet` (RUNNING) now.

    The cursor's wave runs its GO targets, `parallel` at once; the next wave starts only when
    every target of this one that is in the run succeeded (NO-GO ones are not in it). Stopped
    (failures reached stop_after_failures), or a wave ended with a failure: what has not
    started is SKIPPED and the fleet ends FAILED once nothing runs."""
    if fleet.status is not F.RUNNING:
        return _Plan(wave=fleet.wave)
    waves = fleet.waves()
    cursor = fleet.wave if fleet.wave is not None else waves[0]
    running = [t for t in fleet.targets.values() if t.status is T.RUNNING]
    if fleet.stopped:
        reason = f"not started: the fleet stopped after {fleet.failures} failure(s)"
        skip = tuple((t.name, reason) for t in fleet.with_status(T.GO, T.QUEUED))
        return _Plan(skip=skip, wave=cursor, finish=None if running else F.FAILED)
    for wave in (w for w in waves if w >= cursor):
        members = [t for t in fleet.in_wave(wave) if t.status in IN_RUN]
        waiting = [t.name for t in members if t.status is T.GO]
        busy = sum(1 for t in members if t.status in BUSY)
        if waiting or busy:  # the wave goes on (below the failure limit, its other targets start)
            return _Plan(queue=tuple(waiting[: max(fleet.parallel - busy, 0)]), wave=wave)
        failed = [t for t in members if t.status in (T.FAILED, T.SKIPPED)]
        if failed:  # the wave ended without succeeding entirely: the next one never starts
            names = ", ".join(t.name for t in failed)
            reason = f"not started: wave {wave} did not succeed ({names})"
            later = [t for t in fleet.targets.values() if t.wave > wave and t.status in (T.GO, T.QUEUED)]
            return _Plan(skip=tuple((t.name, reason) for t in later), wave=wave, finish=F.FAILED)
        # this wave ended and all of it succeeded: on to the next
    return _Plan(wave=waves[-1], finish=F.SUCCEEDED)


def _as_stored(fields: Mapping[str, Any] | None, allowed: tuple[str, ...], writer: str) -> dict[str, Any]:
    unknown = set(fields or {}) - set(allowed)
    if unknown:
        raise ValueError(f"{writer} cannot write {sorted(unknown)} (writable: {', '.join(allowed)})")
    stored: dict[str, Any] = json.loads(dumps(fields or {}))
    return stored


class FleetStore:
    """The fleet runs of one bot prefix, in Redis; the audit trail mirrored to `events`."""

    def __init__(self, redis: Redis, prefix: str, *, events: EventLog | None = None):
        self.redis = redis
        self.keys = FleetKeys(prefix)
        self.mirror = events

    # ------------------------------------------------------------ reading

    def get(self, fleet_id: str) -> FleetRun | None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.hgetall(self.keys.fleet(fleet_id))
        pipe.hgetall(self.keys.targets(fleet_id))
        fleet, targets = pipe.execute()
        return FleetRun.from_hashes(fleet, targets) if fleet else None

    def current(self) -> FleetRun | None:
        fleet_id = self.redis.get(self.keys.current())
        return self.get(as_text(fleet_id)) if fleet_id else None

    def history(self, limit: int = 10) -> list[FleetRun]:
        # without withscores the members alone (redis-py types the reply for both forms)
        ids = cast("list[bytes | str]", self.redis.zrevrange(self.keys.index(), 0, max(limit, 1) - 1))
        return [f for f in (self.get(as_text(i)) for i in ids) if f]

    def target(self, fleet_id: str, name: str) -> TargetState | None:
        raw = self.redis.hget(self.keys.targets(fleet_id), name)
        return TargetState.from_json(raw) if raw else None

    def _load(self, pipe: Pipeline, fleet_id: str) -> FleetRun | None:
        fleet = pipe.hgetall(self.keys.fleet(fleet_id))
        return FleetRun.from_hashes(fleet, pipe.hgetall(self.keys.targets(fleet_id))) if fleet else None

    # ------------------------------------------------------------ creating

    def create(
        self,
        actor: str,
        runbook: str,
        targets: Iterable[Any],
        *,
        parallel: int = 4,
        stop_after_failures: int = 1,
        meta: Mapping[str, Any] | None = None,
    ) -> FleetRun:
        """A new fleet run in PREFLIGHT, every target PENDING; it becomes the current one.
        `targets`: core.targets.Target objects or (name, wave) pairs, in file order."""
        pairs = [(t.name, t.wave) if hasattr(t, "wave") else (t[0], int(t[1])) for t in targets]
        if not pairs:
            raise ValueError("a fleet run needs at least one target")
        if len({n for n, _ in pairs}) != len(pairs):
            raise ValueError("two targets of a fleet run have the same name")
        now = clock.now()
        fleet = FleetRun(
            id=f"fleet-{runbook}-{now:%Y%m%d-%H%M%S}-{token_hex(2)}",
            runbook=runbook,
            status=F.PREFLIGHT,
            created_at=now,
            created_by=actor,
            updated_at=now,
            parallel=int(parallel),
            stop_after_failures=int(stop_after_failures),
            targets={
                name: TargetState(name=name, wave=wave, order=i, updated_at=now)
                for i, (name, wave) in enumerate(pairs)
            },
            meta=dict(meta or {}),
        )
        evidence = {
            "targets": [{"name": n, "wave": w} for n, w in pairs],
            "parallel": fleet.parallel,
            "stop_after_failures": fleet.stop_after_failures,
        }

        def txn(pipe: Pipeline) -> None:
            previous_id = pipe.get(self.keys.current())
            previous = None
            if previous_id:
                previous_id = as_text(previous_id)
                pipe.watch(self.keys.fleet(previous_id))
                previous = self._load(pipe, previous_id)
            if previous is not None and previous.status in ACTIVE:
                raise IllegalTransition(
                    f"fleet run {previous.id} is {previous.status}: wait for it to finish before a new preflight"
                )
            pipe.multi()
            self._write(pipe, fleet, fleet.targets.values())
            pipe.set(self.keys.current(), fleet.id)
            pipe.zadd(self.keys.index(), {fleet.id: now.timestamp()})
            self._emit(pipe, fleet, "fleet", actor, "fleet created", before=None, after=str(fleet.status))
            self._audit(pipe, fleet.id, "fleet created", actor, {**evidence, "replaces": previous_id})

        self.redis.transaction(txn, self.keys.current())
        self.flush_mirror()
        return fleet

    # ------------------------------------------------------------ the fleet's status

    def transition(
        self,
        fleet_id: str,
        to: FleetStatus,
        *,
        actor: str,
        action: str,
        fields: Mapping[str, Any] | None = None,
        expect: Collection[FleetStatus] | None = None,
        evidence: Mapping[str, Any] | None = None,
    ) -> FleetRun:
        """Move the fleet run to `to` with `fields`, atomically with its events; IllegalTransition
        (a sentence) when the table refuses it or it is not in an `expect`ed status."""
        to = FleetStatus(to)
        stored = _as_stored(fields, FLEET_WRITABLE, "transition")

        def change(pipe: Pipeline, fleet: FleetRun) -> list[TargetState]:
            _check(fleet.status, to, FLEET_TRANSITIONS, "the fleet run")
            before = fleet.status
            touched: list[TargetState] = []
            if before is F.FAILED and to is F.RUNNING:  # a new `run` after a stop: retry what did not succeed
                fleet.failures = 0
                fleet.wave = None
                for t in fleet.with_status(T.FAILED, T.SKIPPED):
                    touched.append(
                        self._set(pipe, fleet, t, T.GO, actor, action, {"error": None, "reason": None})
                    )
            if to is F.RUNNING and fleet.wave is None:
                fleet.wave = fleet.waves()[0]
            fleet.status = to
            for name, value in stored.items():
                setattr(fleet, name, {**fleet.meta, **value} if name == "meta" else value)
            fleet.updated_at = clock.now()
            self._emit(pipe, fleet, "fleet", actor, action, before=str(before), after=str(to))
            self._audit(
                pipe,
                fleet.id,
                action,
                actor,
                {**(evidence or {}), "transition": {"from": str(before), "to": str(to), "fields": stored}},
            )
            return touched

        return self._update(fleet_id, change, expect=expect)

    # ------------------------------------------------------------ a target's status

    def move(
        self,
        fleet_id: str,
        name: str,
        to: TargetStatus,
        *,
        actor: str,
        action: str,
        fields: Mapping[str, Any] | None = None,
        expect: Collection[TargetStatus] | None = None,
        evidence: Mapping[str, Any] | None = None,
    ) -> TargetState:
        """Move target `name` of the fleet run to `to` (with `fields`), in one MULTI with its
        event and audit; IllegalTransition when the table or the start rule refuses it."""
        to = TargetStatus(to)
        stored = _as_stored(fields, TARGET_WRITABLE, "move")
        moved: list[TargetState] = []

        def change(pipe: Pipeline, fleet: FleetRun) -> list[TargetState]:
            target = fleet.targets.get(name)
            if target is None:
                raise IllegalTransition(
                    f"the fleet run has no target {name!r} (targets: {', '.join(fleet.targets)})"
                )
            if expect is not None and target.status not in expect:
                raise IllegalTransition(
                    f"target {name} is {target.status}; this needs it "
                    + " or ".join(str(TargetStatus(s)) for s in expect)
                )
            _check(target.status, to, TARGET_TRANSITIONS, f"target {name}")
            if to is T.RUNNING and target.status is T.QUEUED:
                _may_start(fleet, target)
            moved[:] = [self._set(pipe, fleet, target, to, actor, action, stored, evidence)]
            return moved

        self._update(fleet_id, change)
        return moved[0]

    def set_phase(self, fleet_id: str, name: str, phase: int | None, *, actor: str) -> TargetState:
        """Record the phase target `name` is in (no status change): a "phase" event."""
        found: list[TargetState] = []

        def change(pipe: Pipeline, fleet: FleetRun) -> list[TargetState]:
            target = fleet.targets.get(name)
            if target is None:
                raise IllegalTransition(f"the fleet run has no target {name!r}")
            target.phase = phase
            target.updated_at = clock.now()
            self._emit(pipe, fleet, "phase", actor, "phase", target=target, phase=phase)
            found.append(target)
            return [target]

        self._update(fleet_id, change)
        return found[0]

    # ------------------------------------------------------------ the wave rule

    def advance(self, fleet_id: str, *, actor: str) -> Advance:
        """Apply `decide` (the wave rule) in one MULTI; see the module docstring."""
        done: list[Advance] = []

        def change(pipe: Pipeline, fleet: FleetRun) -> list[TargetState]:
            plan = decide(fleet)
            touched: list[TargetState] = []
            for name, reason in plan.skip:
                touched.append(
                    self._set(
                        pipe, fleet, fleet.targets[name], T.SKIPPED, actor, "skipped", {"reason": reason}
                    )
                )
            for name in plan.queue:
                touched.append(self._set(pipe, fleet, fleet.targets[name], T.QUEUED, actor, "queued", {}))
            moved_wave = plan.wave is not None and plan.wave != fleet.wave and fleet.status is F.RUNNING
            if moved_wave:
                self._audit(
                    pipe, fleet.id, "wave started", actor, {"wave": plan.wave, "previous": fleet.wave}
                )
                fleet.wave = plan.wave
            if plan.finish is not None:
                before = fleet.status
                _check(before, plan.finish, FLEET_TRANSITIONS, "the fleet run")
                fleet.status = plan.finish
                fleet.result = {
                    "status": str(plan.finish),
                    "at": clock.now().isoformat(),
                    "counts": fleet.counts(),
                }
                self._emit(
                    pipe,
                    fleet,
                    "fleet",
                    actor,
                    f"fleet {plan.finish}",
                    before=str(before),
                    after=str(plan.finish),
                )
                self._audit(
                    pipe,
                    fleet.id,
                    f"fleet {plan.finish}",
                    actor,
                    {"transition": {"from": str(before), "to": str(plan.finish)}, "counts": fleet.counts()},
                )
            if touched or moved_wave or plan.finish is not None:
                fleet.updated_at = clock.now()
            done[:] = [
                Advance(
                    queued=plan.queue,
                    skipped=tuple(n for n, _ in plan.skip),
                    wave=fleet.wave,
                    finished=plan.finish,
                )
            ]
            return touched

        self._update(fleet_id, change)
        return done[0]

    # ------------------------------------------------------------ the reporting hook

    def events(self, fleet_id: str, after: str = "0-0", count: int = 1000) -> list[FleetEvent]:
        """The fleet's changes after stream id `after`, oldest first."""
        # XRANGE's entries always have an id and fields (redis-py's StreamEntry allows None for XCLAIM's)
        entries = cast(
            "list[tuple[bytes | str, dict[bytes | str, bytes | str]]]",
            self.redis.xrange(self.keys.events(fleet_id), min=f"({after}", max="+", count=count),
        )
        return [_event_from_stream(i, f) for i, f in entries]

    def audit_events(self, fleet_id: str | None = None, count: int = 1000) -> list[dict[str, Any]]:
        """The fleet audit stream (of one fleet run, if given), oldest first."""
        found = []
        entries = cast(
            "list[tuple[bytes | str, dict[bytes | str, bytes | str]]]",
            self.redis.xrange(self.keys.audit_stream(), count=100_000),
        )  # as in events()
        for stream_id, fields in entries:
            event: dict[str, Any] = {as_text(k): as_text(v) for k, v in fields.items()}
            event["evidence"] = json.loads(event.get("evidence") or "{}")
            event["stream_id"] = as_text(stream_id)
            if fleet_id is None or event.get("run_id") == fleet_id:
                found.append(event)
        return found[-count:]

    # ------------------------------------------------------------ internals

    def _update(
        self,
        fleet_id: str,
        change: Callable[[Pipeline, FleetRun], Iterable[TargetState]],
        *,
        expect: Collection[FleetStatus] | None = None,
    ) -> FleetRun:
        """The one read-check-write of a fleet run: WATCH both hashes, load, let `change` check
        and change it (queuing its events into the pipe), write the fleet and the targets it
        returns, EXEC. `change` is called again when another writer got in first."""

        def txn(pipe: Pipeline) -> FleetRun:
            fleet = self._load(pipe, fleet_id)
            if fleet is None:
                raise IllegalTransition(f"there is no fleet run {fleet_id}")
            if expect is not None and fleet.status not in expect:
                raise IllegalTransition(
                    f"the fleet run is {fleet.status}; this needs it to be "
                    + " or ".join(str(FleetStatus(s)) for s in expect)
                )
            pipe.multi()  # commands queued from here on: change() only queues
            touched = change(pipe, fleet)
            self._write(pipe, fleet, touched)
            return fleet

        # redis-py types `func` as returning None and the result as EXEC's list; with
        # value_from_callable=True the result is what `func` returned.
        fleet: FleetRun = self.redis.transaction(  # type: ignore[assignment]
            txn,  # type: ignore[arg-type]
            self.keys.fleet(fleet_id),
            self.keys.targets(fleet_id),
            value_from_callable=True,
        )
        self.flush_mirror()
        return fleet

    def _set(
        self,
        pipe: Pipeline,
        fleet: FleetRun,
        target: TargetState,
        to: TargetStatus,
        actor: str,
        action: str,
        fields: Mapping[str, Any],
        evidence: Mapping[str, Any] | None = None,
    ) -> TargetState:
        """Apply one target move to `target` (already checked) and queue its event and audit."""
        now = clock.now()
        before = target.status
        for name, value in fields.items():
            setattr(target, name, value)
        target.status = to
        target.updated_at = now
        if to is T.QUEUED:
            target.queued_at = now
        if to is T.RUNNING:
            target.attempts += 1
            if before is not T.RUNNING:
                target.started_at, target.ended_at = now, None
        if to is T.ROLLING_BACK and before is not T.ROLLING_BACK:
            target.ended_at = None
        if to in ENDED:
            target.ended_at = now
        if to is T.GO and before in (T.FAILED, T.SKIPPED):
            target.started_at = target.ended_at = None
        if to is T.FAILED:
            fleet.failures += 1
        fleet.targets[target.name] = target
        self._emit(
            pipe,
            fleet,
            "target",
            actor,
            action,
            target=target,
            before=str(before),
            after=str(to),
            phase=target.phase,
            error=target.error if to in (T.FAILED, T.ROLLBACK_FAILED) else None,
            reason=target.reason if to in (T.NO_GO, T.SKIPPED) else None,
        )
        self._audit(
            pipe,
            fleet.id,
            action,
            actor,
            {
                **(evidence or {}),
                "target": target.name,
                "wave": target.wave,
                "identity": target.identity,
                "run": target.run_id,
                "transition": {"from": str(before), "to": str(to), "fields": dict(fields)},
                **({"failures": fleet.failures} if to is T.FAILED else {}),
            },
        )
        return target

    def _write(self, pipe: Pipeline, fleet: FleetRun, targets: Iterable[TargetState]) -> None:
        # The arg-type ignores here and on xadd: redis-py wants a Mapping keyed by its whole
        # union of field types, and Mapping is invariant in its key: a dict[str, str] is refused.
        pipe.hset(self.keys.fleet(fleet.id), mapping=fleet.to_hash())  # type: ignore[arg-type]
        states = {t.name: t.to_json() for t in targets}
        if states:
            pipe.hset(self.keys.targets(fleet.id), mapping=states)  # type: ignore[arg-type]

    def _emit(
        self,
        pipe: Pipeline,
        fleet: FleetRun,
        kind: str,
        actor: str,
        action: str,
        *,
        target: TargetState | None = None,
        before: str | None = None,
        after: str | None = None,
        phase: int | None = None,
        error: str | None = None,
        reason: str | None = None,
    ) -> None:
        entry = {
            "kind": kind,
            "fleet": fleet.id,
            "at": clock.now().isoformat(),
            "actor": actor,
            "action": action,
            "target": target.name if target else "",
            "wave": "" if target is None else str(target.wave),
            "from": before or "",
            "to": after or "",
            "phase": "" if phase is None else str(phase),
            "error": error or "",
            "reason": reason or "",
        }
        pipe.xadd(self.keys.events(fleet.id), entry)  # type: ignore[arg-type]  # see _write

    def _audit(
        self, pipe: Pipeline, fleet_id: str, action: str, actor: str, evidence: Mapping[str, Any]
    ) -> None:
        event = make_event(
            target=f"fleet:{fleet_id}",
            action=action,
            actor=actor,
            outcome="ok",
            run_id=fleet_id,
            evidence=evidence,
        )
        pipe.xadd(self.keys.audit_stream(), stream_fields(event))  # type: ignore[arg-type]  # see _write
        if self.mirror is not None:
            pipe.rpush(self.keys.mirror_pending(), dumps(event))

    def flush_mirror(self) -> int:
        """Write pending fleet audit events to PostgreSQL (one transaction per batch), oldest
        first; on failure they stay pending for the next write. Returns how many are pending."""
        if self.mirror is None:
            return 0
        key = self.keys.mirror_pending()
        while batch := self.redis.lrange(key, 0, 99):
            try:
                self.mirror.write_many([json.loads(raw) for raw in batch])
            except (SQLAlchemyError, OSError) as exc:
                log.warning("fleet audit mirror to PostgreSQL failed: %s", type(exc).__name__)
                return self.redis.llen(key)
            pipe = self.redis.pipeline(transaction=False)
            for raw in batch:
                pipe.lrem(key, 1, raw)  # type: ignore[arg-type]  # redis-py types the value str; LRANGE answered bytes, which LREM matches
            pipe.execute()
        return 0


def _check(current: StrEnum, to: StrEnum, table: Mapping[Any, frozenset[Any]], what: str) -> None:
    allowed = table[current]
    if to not in allowed:
        if not allowed:
            raise IllegalTransition(f"{what} is {current}, which is final here (it cannot become {to})")
        raise IllegalTransition(
            f"{what} is {current}: it cannot become {to} (from {current} it can become: {', '.join(sorted(allowed))})"
        )


def _may_start(fleet: FleetRun, target: TargetState) -> None:
    """The start rule (QUEUED -> RUNNING), checked inside the MULTI of the move."""
    if fleet.status is not F.RUNNING:
        raise IllegalTransition(f"target {target.name} cannot start: the fleet run is {fleet.status}")
    if fleet.stopped:
        raise IllegalTransition(
            f"target {target.name} cannot start: the fleet stopped after {fleet.failures} failure(s)"
        )
    if fleet.wave != target.wave:
        raise IllegalTransition(
            f"target {target.name} (wave {target.wave}) cannot start: wave {fleet.wave} is running"
        )


def _event_from_stream(stream_id: bytes | str, fields: Mapping[bytes | str, bytes | str]) -> FleetEvent:
    data = {as_text(k): as_text(v) for k, v in fields.items()}
    return FleetEvent(
        id=as_text(stream_id),
        kind=data["kind"],
        fleet=data["fleet"],
        at=datetime.fromisoformat(data["at"]),
        actor=data["actor"],
        action=data["action"],
        target=data.get("target") or None,
        wave=int(data["wave"]) if data.get("wave") else None,
        before=data.get("from") or None,
        after=data.get("to") or None,
        phase=int(data["phase"]) if data.get("phase") else None,
        error=data.get("error") or None,
        reason=data.get("reason") or None,
    )
