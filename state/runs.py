"""Runs in Redis: the record of one execution of a runbook, and the one function that moves
its status (`RunStore.transition`).

Layout (names in `state.keys`): a hash per run (each field a JSON value), a hash of its
phase states, the id of the current run, an index of runs by creation time, and the audit
stream. A transition re-reads the run under WATCH, checks the transition table, and writes
the status, the phase state, the fields and the audit event in one MULTI/EXEC.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from copy import copy
from secrets import token_hex
from typing import TYPE_CHECKING, Any, cast

from redis import Redis
from redis.client import Pipeline
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError

from core import clock
from core.redact import first_line, redact
from state.audit import EventLog, make_event, stream_fields
from state.codec import as_text, dumps
from state.keys import Keys
from state.machine import ACTIVE, IllegalTransition, PhaseStatus, Status, check_transition
from state.record import WRITABLE, PhaseState, Run, apply_transition

if TYPE_CHECKING:
    from state.lock import RunLock

__all__ = ["PhaseState", "Run", "RunStore", "WRITABLE", "apply_transition"]
log = logging.getLogger(__name__)


def _as_stored(fields: Mapping[str, Any] | None, writer: str) -> dict[str, Any]:
    """`fields` checked against WRITABLE and round-tripped through JSON, as stored: the Run a
    write returns equals the Run read back."""
    unknown = set(fields or {}) - set(WRITABLE)
    if unknown:
        raise ValueError(f"{writer} cannot write {sorted(unknown)} (writable: {', '.join(WRITABLE)})")
    stored: dict[str, Any] = json.loads(dumps(fields or {}))
    return stored


class RunStore:
    """Runs of one target database, in Redis; the audit trail mirrored to `events`."""

    def __init__(
        self, redis: Redis, keys: Keys, *, events: EventLog | None = None, secrets: Iterable[str] = ()
    ):
        self.redis = redis
        self.keys = keys
        self.events = events
        self._secrets = tuple(secrets)  # only to keep them out of our own log lines

    # ------------------------------------------------------------ reading

    def get(self, run_id: str) -> Run | None:
        pipe = self.redis.pipeline(transaction=True)  # one consistent snapshot of both hashes
        pipe.hgetall(self.keys.run(run_id))
        pipe.hgetall(self.keys.run_phases(run_id))
        run, phases = pipe.execute()
        return Run.from_hashes(run, phases) if run else None

    def get_existing(self, run_id: str) -> Run:
        """The run `run_id`, which the caller knows exists (its work holds the run lock, or it
        just read it); KeyError naming it otherwise."""
        run = self.get(run_id)
        if run is None:
            raise KeyError(f"there is no run {run_id}")
        return run

    def meta(self, run_id: str) -> dict[str, str] | None:
        """The run's adapter data alone (None: no such run): what a watcher polling a few
        times a second needs, without decoding the whole record each time."""
        raw = self.redis.hget(self.keys.run(run_id), "meta")
        return None if raw is None else (json.loads(raw) or {})

    def fields(self, run_id: str, *names: str) -> dict[str, Any]:
        """Some of a run's fields (decoded; absent ones left out), without reading the rest."""
        values = self.redis.hmget(self.keys.run(run_id), list(names))
        return {name: json.loads(v) for name, v in zip(names, values, strict=True) if v is not None}

    def current(self) -> Run | None:
        run_id = self.redis.get(self.keys.current())
        return self.get(as_text(run_id)) if run_id else None

    def history(self, limit: int = 10) -> list[Run]:
        """The last `limit` runs, newest first."""
        # without withscores the members alone (redis-py types the reply for both forms)
        ids = cast("list[bytes | str]", self.redis.zrevrange(self.keys.runs_index(), 0, max(limit, 1) - 1))
        return [run for run in (self.get(as_text(i)) for i in ids) if run]

    def _load(self, pipe: Pipeline, run_id: str) -> Run | None:
        """Read a run inside a WATCH block (immediate-execution mode)."""
        run = pipe.hgetall(self.keys.run(run_id))
        return Run.from_hashes(run, pipe.hgetall(self.keys.run_phases(run_id))) if run else None

    # ------------------------------------------------------------ creating

    def create(
        self,
        actor: str,
        runbook: str,
        *,
        phases: Iterable[int] = (),
        verification: Iterable[int] = (),
        meta: Mapping[str, str] | None = None,
    ) -> Run:
        """A new run in PREFLIGHT_RUNNING that becomes the current one. Refused while the
        current run is active (its work holds the lock). `phases`: the runbook's phase
        numbers, recorded as pending so that the phase guards know them; `verification`:
        those that only check (run by VERIFYING, never rolled back)."""
        now = clock.now()
        checks = set(verification)
        states = {
            n: PhaseState(kind="verification" if n in checks else "migration")
            for n in sorted({*phases, *checks})
        }
        run = Run(
            id=f"{runbook}-{now:%Y%m%d-%H%M%S}-{token_hex(2)}",
            target=self.keys.target,
            runbook=runbook,
            status=Status.PREFLIGHT_RUNNING,
            created_at=now,
            created_by=actor,
            updated_at=now,
            phases=states,
            meta=dict(meta or {}),
        )
        move = {
            "from": None,
            "to": str(run.status),
            "runbook": runbook,
            "phases": sorted(run.phases),
            "verification": sorted(checks),
            "fields": {"meta": run.meta},
        }

        def txn(pipe: Pipeline) -> None:
            previous = self._watch_current(pipe)
            if previous is not None and previous.active:
                raise IllegalTransition(
                    f"run {previous.id} is {previous.status}: wait for it to finish "
                    "(or abort it) before starting a new preflight"
                )
            event = self._event(
                "run created",
                actor,
                "ok",
                run.id,
                {"transition": move, "replaces": previous.id if previous else None},
            )
            pipe.multi()
            self._write(pipe, run)
            pipe.set(self.keys.current(), run.id)
            pipe.zadd(self.keys.runs_index(), {run.id: now.timestamp()})
            self._append(pipe, event)

        self.redis.transaction(txn, self.keys.current())
        self.flush_mirror()
        return run

    def _watch_current(self, pipe: Pipeline) -> Run | None:
        """Inside a transaction watching `current`: watch and read the current run too."""
        current_id = pipe.get(self.keys.current())
        if not current_id:
            return None
        current_id = as_text(current_id)
        pipe.watch(self.keys.run(current_id), self.keys.run_phases(current_id))
        return self._load(pipe, current_id)

    def _write(self, pipe: Pipeline, run: Run) -> None:
        # The arg-type ignores here and in _append: redis-py wants a Mapping keyed by its
        # whole union of field types, and Mapping is invariant in its key: a dict[str, str] is refused.
        pipe.hset(self.keys.run(run.id), mapping=run.to_hash())  # type: ignore[arg-type]
        if run.phases:
            pipe.hset(self.keys.run_phases(run.id), mapping=run.phases_hash())  # type: ignore[arg-type]

    def _write_changes(
        self, pipe: Pipeline, run: Run, stored: Mapping[Any, Any], phases_before: Mapping[int, PhaseState]
    ) -> None:
        """What a change made differ from the hashes as read (under WATCH, so still as read):
        the run's fields whose stored JSON differs, the phases whose state differs. A run of
        many phases is not re-serialized whole for each step."""
        old = {as_text(k): as_text(v) for k, v in stored.items()}
        fields = {k: v for k, v in run.to_hash().items() if old.get(k) != v}
        if fields:
            pipe.hset(self.keys.run(run.id), mapping=fields)  # type: ignore[arg-type]
        phases = run.phases_hash(n for n, p in run.phases.items() if phases_before.get(n) != p)
        if phases:
            pipe.hset(self.keys.run_phases(run.id), mapping=phases)  # type: ignore[arg-type]

    # ------------------------------------------------------------ the one status writer

    def transition(
        self,
        run_id: str,
        to: Status,
        *,
        actor: str,
        action: str,
        phase: int | None = None,
        phase_status: PhaseStatus | None = None,
        fields: Mapping[str, Any] | None = None,
        evidence: Mapping[str, Any] | None = None,
        outcome: str = "ok",
        expect: Collection[Status] | None = None,
        error: str | None = None,
        file: str | None = None,
    ) -> Run:
        """Move run `run_id` to `to`, atomically with its phase state, `fields` and the audit
        event; raise IllegalTransition (with a reason) when the lifecycle refuses the move.

        `expect`: statuses the run must be in (guards against a command acting on a state
        that changed since it looked). `phase_status` defaults from `to` (RUNNING -> running,
        PHASE_DONE -> succeeded, ...). `error`/`file`: recorded on the phase state."""
        return self._transition(
            run_id,
            Status(to),
            actor=actor,
            action=action,
            phase=phase,
            phase_status=phase_status,
            fields=fields,
            evidence=evidence,
            outcome=outcome,
            expect=expect,
            error=error,
            file=file,
        )

    def _transition(
        self,
        run_id: str,
        to: Status,
        *,
        actor: str,
        action: str,
        phase: int | None,
        phase_status: PhaseStatus | None,
        fields: Mapping[str, Any] | None,
        evidence: Mapping[str, Any] | None,
        outcome: str,
        expect: Collection[Status] | None,
        error: str | None,
        file: str | None,
        watch: tuple[str, ...] = (),
        guard: Callable[[Pipeline, Run], None] | None = None,
    ) -> Run:
        fields = _as_stored(fields, "transition")

        def move(pipe: Pipeline, run: Run) -> dict[str, Any]:
            check_transition(run, to, phase=phase)
            self._refuse_if_not_current(pipe, run, to)
            if guard:
                guard(pipe, run)
            before = run.status
            changed = apply_transition(
                run,
                to,
                actor=actor,
                phase=phase,
                phase_status=phase_status,
                fields=fields,
                error=error,
                file=file,
            )
            # what the move wrote, so that state.recovery can replay it from the history
            return {
                **(evidence or {}),
                "transition": {
                    "from": str(before),
                    "to": str(to),
                    "phase": phase,
                    "phases": {str(n): run.phases[n].to_dict() for n in changed},
                    "fields": fields,
                },
            }

        return self._update(
            run_id,
            move,
            actor=actor,
            action=action,
            outcome=outcome,
            expect=expect,
            watch=(self.keys.current(), *watch),
        )

    def _update(
        self,
        run_id: str,
        change: Callable[[Pipeline, Run], dict[str, Any]],
        *,
        actor: str,
        action: str,
        outcome: str,
        expect: Collection[Status] | None,
        watch: tuple[str, ...] = (),
    ) -> Run:
        """The one read-check-write of a run: in a WATCH/MULTI transaction, load the run, check
        it is in an `expect`ed status, let `change` check and change it (returning the audit
        evidence), and write it together with its audit event."""

        def txn(pipe: Pipeline) -> Run:
            stored: Mapping[Any, Any] = pipe.hgetall(self.keys.run(run_id))
            if not stored:
                raise IllegalTransition(f"there is no run {run_id}")
            run = Run.from_hashes(stored, pipe.hgetall(self.keys.run_phases(run_id)))
            if expect is not None and run.status not in expect:
                raise IllegalTransition(
                    f"the run is {run.status}; this needs it to be "
                    + " or ".join(str(Status(s)) for s in expect)
                )
            phases_before = {n: copy(p) for n, p in run.phases.items()}
            event = self._event(action, actor, outcome, run.id, change(pipe, run))
            pipe.multi()
            self._write_changes(pipe, run, stored, phases_before)
            self._append(pipe, event)
            return run

        # redis-py types `func` as returning None and the result as EXEC's list; with
        # value_from_callable=True the result is what `func` returned.
        run: Run = self.redis.transaction(  # type: ignore[assignment]
            txn,  # type: ignore[arg-type]
            self.keys.run(run_id),
            self.keys.run_phases(run_id),
            *watch,
            value_from_callable=True,
        )
        self.flush_mirror()
        return run

    def _refuse_if_not_current(self, pipe: Pipeline, run: Run, to: Status) -> None:
        """Work may only start on the current run: an old run must not take the lock's place."""
        if to not in ACTIVE:
            return
        current = pipe.get(self.keys.current())
        if current is None or as_text(current) != run.id:
            raise IllegalTransition(f"run {run.id} is no longer the current run: run preflight again")

    # ------------------------------------------------------------ other writes

    def update_record(
        self,
        run_id: str,
        *,
        fields: Mapping[str, Any],
        actor: str,
        action: str,
        expect: Collection[Status],
        evidence: Mapping[str, Any] | None = None,
        unchanged_since: Any = None,
    ) -> Run:
        """Write `fields` of a run that stays in its status (e.g. an approval renewed mid-run),
        atomically with the audit event; IllegalTransition when the run is no longer in one of
        the `expect`ed statuses, or (with `unchanged_since`, its updated_at as the caller read
        it) when anything of it changed since the caller looked."""
        stored = _as_stored(fields, "update_record")

        def rewrite(pipe: Pipeline, run: Run) -> dict[str, Any]:
            if unchanged_since is not None and run.updated_at != unchanged_since:
                raise IllegalTransition("the run changed while this was being checked: try again")
            for name, value in stored.items():
                setattr(run, name, value)
            run.updated_at = clock.now()
            return {**(evidence or {}), "fields": sorted(stored)}

        return self._update(run_id, rewrite, actor=actor, action=action, outcome="ok", expect=expect)

    def update_meta(self, run_id: str, **meta: str) -> None:
        """Merge adapter data into the run (no status change, no audit event)."""
        key = self.keys.run(run_id)

        def txn(pipe: Pipeline) -> None:
            raw = pipe.hget(key, "meta")
            if raw is None:
                raise KeyError(f"there is no run {run_id}")
            merged = {**json.loads(raw), **meta}
            pipe.multi()
            pipe.hset(key, "meta", dumps(merged))

        self.redis.transaction(txn, key)

    def record(
        self,
        action: str,
        *,
        actor: str,
        outcome: str,
        run_id: str | None = None,
        evidence: Mapping[str, Any] | None = None,
    ) -> None:
        """An audit event without a status change (refusals, commands, checks)."""
        pipe = self.redis.pipeline(transaction=True)
        self._append(pipe, self._event(action, actor, outcome, run_id, evidence))
        pipe.execute()
        self.flush_mirror()

    def set_incident(self, actor: str, text: str) -> None:
        """A critical incident in progress: it blocks GO and run until cleared."""
        incident = {"by": actor, "at": clock.now().isoformat(), "text": text}
        self._incident_write(actor, "incident start", incident)

    def clear_incident(self, actor: str) -> None:
        self._incident_write(actor, "incident clear", None)

    def _incident_write(self, actor: str, action: str, incident: dict[str, Any] | None) -> None:
        current = self.redis.get(self.keys.current())
        evidence = {"incident": incident if incident else self.incident()}
        pipe = self.redis.pipeline(transaction=True)
        if incident:
            pipe.set(self.keys.incident(), dumps(incident))
        else:
            pipe.delete(self.keys.incident())
        self._append(pipe, self._event(action, actor, "ok", as_text(current) if current else None, evidence))
        pipe.execute()
        self.flush_mirror()

    def incident(self) -> dict[str, Any] | None:
        """{by, at, text} of the incident in progress, or None."""
        raw = self.redis.get(self.keys.incident())
        return json.loads(raw) if raw else None

    def first_delivery(self, request_id: str, ttl: int = 3600) -> bool:
        """True the first time `request_id` is seen (within `ttl` seconds), False after:
        a retried or double-clicked request is executed once."""
        return bool(
            self.redis.set(self.keys.request_seen(request_id), clock.now().isoformat(), nx=True, ex=ttl)
        )

    def detect_interrupted(self, lock: RunLock) -> Run | None:
        """If the current run is active but nobody holds the run lock (its owner died and the
        TTL expired), mark it INTERRUPTED (a busy phase becomes failed, "interrupted") and
        return it. Nothing is resumed. Call it before acquiring the lock."""
        run = self.current()
        if run is None or not run.active or lock.held():
            return None

        def lock_still_free(pipe: Pipeline, _run: Run) -> None:
            if pipe.exists(self.keys.lock()):  # someone took the lock since we looked
                raise IllegalTransition("the run lock is held again")

        try:
            return self._transition(
                run.id,
                Status.INTERRUPTED,
                actor="bot",
                action="interrupted",
                phase=None,
                phase_status=None,
                fields=None,
                evidence={
                    "status_before": str(run.status),
                    "phase": run.phase,
                    "reason": "the process doing this run stopped renewing the run lock",
                },
                outcome="interrupted",
                expect=ACTIVE,
                error="interrupted",
                file=None,
                watch=(self.keys.lock(),),
                guard=lock_still_free,
            )
        except IllegalTransition:
            return None  # it finished, or a live owner holds the lock after all

    def restore(
        self, run: Run, *, actor: str, evidence: Mapping[str, Any], incident: dict[str, Any] | None = None
    ) -> None:
        """Write a run rebuilt from history (state.recovery) and make it current, unless a
        current run appeared meanwhile; restore the incident flag with it. Audited as "run rebuilt"."""

        def txn(pipe: Pipeline) -> None:
            if pipe.get(self.keys.current()):
                raise IllegalTransition("a current run exists: nothing to rebuild")
            pipe.multi()
            self._write(pipe, run)
            pipe.set(self.keys.current(), run.id)
            pipe.zadd(self.keys.runs_index(), {run.id: run.created_at.timestamp()})
            if incident:
                pipe.set(self.keys.incident(), dumps(incident), nx=True)
            self._append(pipe, self._event("run rebuilt", actor, "ok", run.id, evidence))

        self.redis.transaction(txn, self.keys.current())
        self.flush_mirror()

    # ------------------------------------------------------------ audit

    def _event(
        self, action: str, actor: str, outcome: str, run_id: str | None, evidence: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        return make_event(
            target=self.keys.target,
            action=action,
            actor=actor,
            outcome=outcome,
            run_id=run_id,
            evidence=evidence,
        )

    def _append(self, pipe: Pipeline, event: Mapping[str, Any]) -> None:
        """Queue the event into the stream and, when PostgreSQL mirrors it, the pending list
        (both inside the caller's MULTI): a crash after EXEC loses no mirror write."""
        pipe.xadd(self.keys.audit_stream(), stream_fields(event))  # type: ignore[arg-type]  # see _write
        if self.events is not None:
            pipe.rpush(self.keys.mirror_pending(), dumps(event))

    def flush_mirror(self) -> int:
        """Write pending events to PostgreSQL, oldest first; stop at the first failure (they
        stay pending for the next write). Returns how many are still pending."""
        key = self.keys.mirror_pending()
        if self.events is None:
            return 0
        while batch := self.redis.lrange(key, 0, 99):
            try:
                self.events.write_many([json.loads(raw) for raw in batch])  # one transaction: all or none
            except (OperationalError, InterfaceError, OSError) as exc:
                return self._mirror_unreachable(key, exc)
            except SQLAlchemyError:
                if not self._flush_one_by_one(
                    self.events, key, batch
                ):  # find the refused one, keep the order
                    return self.redis.llen(key)
                continue
            self._forget_pending(key, batch)
        return 0

    def _flush_one_by_one(self, events: EventLog, key: str, batch: list[Any]) -> bool:
        """The batch one event at a time: a refused event is set aside so it cannot block the
        events behind it. False when PostgreSQL became unreachable (the rest stay pending)."""
        for raw in batch:
            try:
                events.write(json.loads(raw))
            except (OperationalError, InterfaceError, OSError) as exc:
                self._mirror_unreachable(key, exc)
                return False
            except SQLAlchemyError as exc:
                # This event is refused (not the connection): it stays in Redis under mirror_failed.
                log.error("audit event refused by PostgreSQL, kept in Redis: %s", self._first_line(exc))
                self.redis.rpush(self.keys.mirror_failed(), raw)
            self._forget_pending(key, [raw])
        return True

    def _forget_pending(self, key: str, written: list[Any]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for raw in written:
            pipe.lrem(key, 1, raw)  # exact value: safe if another process flushed it too
        pipe.execute()

    def _mirror_unreachable(self, key: str, exc: BaseException) -> int:
        # PostgreSQL unreachable: keep everything pending, in order, for the next write.
        pending = self.redis.llen(key)
        log.warning(
            "audit mirror to PostgreSQL failed, %d event(s) pending: %s", pending, self._first_line(exc)
        )
        return pending

    def _first_line(self, exc: BaseException) -> str:
        return redact(first_line(exc), self._secrets)

    def mirror_backlog(self) -> int:
        """Events not yet written to PostgreSQL."""
        return self.redis.llen(self.keys.mirror_pending())
