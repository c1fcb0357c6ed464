"""The append-only history of every run, kept twice: a Redis stream and a PostgreSQL table.

`RunStore` appends each event to the stream inside the same MULTI/EXEC as the state change
it records, and queues it for `EventLog`, which writes it to `migrate_bot.run_events`
(SQLAlchemy Core, psycopg 3). Redis can lose its data; the PostgreSQL copy is what
`status`, the report's sign-off and `state.recovery` read back.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from redis import Redis
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    MetaData,
    Table,
    Text,
    create_engine,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.engine import Engine, make_url

from core import clock
from state.codec import as_text, dumps
from state.keys import Keys

SCHEMA = "migrate_bot"
_metadata = MetaData(schema=SCHEMA)
run_events = Table(
    "run_events",
    _metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),  # bigserial
    Column("event_id", Text, unique=True),  # set by the writer: a replayed mirror write is a no-op
    Column("at", DateTime(timezone=True), nullable=False),
    Column("target", Text, nullable=False),
    Column("run_id", Text),
    Column("actor", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("evidence", JSONB, nullable=False),
    Index("run_events_target_run", "target", "run_id", "at"),
)


def make_event(
    *,
    target: str,
    action: str,
    actor: str,
    outcome: str,
    run_id: str | None,
    evidence: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """One audit event as plain JSON-able data (the caller has redacted `evidence`)."""
    return {
        "event_id": uuid.uuid4().hex,
        "at": clock.now().isoformat(),
        "target": target,
        "run_id": run_id,
        "actor": actor,
        "action": action,
        "outcome": outcome,
        "evidence": json.loads(dumps(evidence or {})),  # plain JSON from here on: stream, list, table agree
    }


def stream_fields(event: Mapping[str, Any]) -> dict[str, str]:
    """The event as Redis stream fields (strings only)."""
    return {k: dumps(v) if k == "evidence" else ("" if v is None else str(v)) for k, v in event.items()}


def _from_stream(stream_id: bytes | str, fields: Mapping[bytes | str, bytes | str]) -> dict[str, Any]:
    event: dict[str, Any] = {as_text(k): as_text(v) for k, v in fields.items()}
    event["evidence"] = json.loads(event.get("evidence") or "{}")
    event["run_id"] = event.get("run_id") or None
    event["stream_id"] = as_text(stream_id)
    return event


def redis_events(
    redis: Redis, keys: Keys, run_id: str | None = None, count: int = 200
) -> list[dict[str, Any]]:
    """The last `count` events of the stream (of one run, if given), oldest first."""
    found: list[dict[str, Any]] = []
    upper = "+"
    while len(found) < count:
        # XREVRANGE's entries always have an id and fields (redis-py's StreamEntry allows None
        # for XCLAIM's deleted entries)
        batch = cast(
            "list[tuple[bytes | str, dict[bytes | str, bytes | str]]]",
            redis.xrevrange(keys.audit_stream(), max=upper, min="-", count=500),
        )
        for stream_id, fields in batch:
            event = _from_stream(stream_id, fields)
            if run_id is None or event["run_id"] == run_id:
                found.append(event)
        if len(batch) < 500:
            break
        upper = "(" + as_text(batch[-1][0])  # exclusive: continue below the last id seen
    return list(reversed(found[:count]))


def sqlalchemy_url(database_url: str) -> str:
    """The same database as a SQLAlchemy URL on the psycopg 3 driver."""
    return make_url(database_url).set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


class EventLog:
    """`migrate_bot.run_events` in the target database; created on first use."""

    def __init__(self, database_url: str | None, *, target: str):
        self.target = target
        self.database_url = database_url
        self._engine: Engine | None = None
        self._ready = False

    @property
    def engine(self) -> Engine:
        if self.database_url is None:
            raise RuntimeError("no database configured for the event log (DATABASE_URL)")
        if self._engine is None:
            # A small pool: a run writes a few events per phase, and a fresh connection for each
            # cost more than the phase's own SQL. An idle pooled connection holds no lock; a
            # restore closes the pool before its rename (and terminates what is left), and
            # pre-ping replaces a connection that was terminated meanwhile.
            self._engine = create_engine(
                sqlalchemy_url(self.database_url),
                pool_size=1,
                max_overflow=4,
                pool_pre_ping=True,
                connect_args={"connect_timeout": 5},
            )
        return self._engine

    def _ensure_table(self) -> None:
        """Create the schema and table once; an advisory lock keeps two bots from racing."""
        if self._ready:
            return
        with self.engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('migrate_bot.run_events'))"))
            conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
            _metadata.create_all(conn, checkfirst=True)
        self._ready = True

    def write(self, event: Mapping[str, Any]) -> None:
        """Insert one event; the same `event_id` written twice is kept once."""
        self.write_many([event])

    def write_many(self, events: Sequence[Mapping[str, Any]]) -> None:
        """Insert events in one transaction (all or none); an `event_id` already there is kept once."""
        self._ensure_table()
        stmt = insert(run_events).on_conflict_do_nothing(index_elements=["event_id"])
        with self.engine.begin() as conn:
            conn.execute(stmt, [self._row(e) for e in events])

    def _row(self, event: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "event_id": event.get("event_id"),
            "at": datetime.fromisoformat(event["at"]),
            "target": event.get("target") or self.target,
            "run_id": event.get("run_id"),
            "actor": event["actor"],
            "action": event["action"],
            "outcome": event["outcome"],
            "evidence": dict(event.get("evidence") or {}),
        }

    def events(self, run_id: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """The last `limit` events of this target (of one run, if given), oldest first."""
        self._ensure_table()
        query = select(run_events).where(run_events.c.target == self.target)
        if run_id is not None:
            query = query.where(run_events.c.run_id == run_id)
        query = query.order_by(run_events.c.at.desc(), run_events.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [_row_event(r) for r in reversed(rows)]

    def last_run_ids(self, limit: int = 10) -> list[str]:
        """Ids of the most recently created runs of this target, newest first."""
        self._ensure_table()
        started = func.min(run_events.c.at)
        query = (
            select(run_events.c.run_id)
            .where(run_events.c.target == self.target, run_events.c.run_id.is_not(None))
            .group_by(run_events.c.run_id)
            .order_by(started.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(query)]

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()

    def reset(self) -> None:
        """Forget the connections and the table check: the database behind the URL was
        replaced (a restore swapped it), and its event table may not exist yet."""
        self.close()
        self._ready = False


def _row_event(row: Mapping[Any, Any]) -> dict[str, Any]:
    event = {k: row[k] for k in ("event_id", "target", "run_id", "actor", "action", "outcome", "evidence")}
    event["at"] = row["at"].isoformat()
    return event


def _transition(event: Mapping[str, Any]) -> Mapping[str, Any]:
    return (event.get("evidence") or {}).get("transition") or {}


def signoff(events: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The report's sign-off, derived from what happened: who ran preflight (reviewed by),
    who approved and when, and the scheduled execution time if the GO was scheduled."""
    out: dict[str, Any] = {
        "reviewed_by": None,
        "reviewed_at": None,
        "approved_by": None,
        "approved_at": None,
        "scheduled_execution": None,
        "mode": None,
        "deferred_by": None,
        "deferred_reason": None,
    }
    for event in events:
        move = _transition(event)
        to = move.get("to")
        if to == "preflight running" and move.get("from") is None:
            out["reviewed_by"], out["reviewed_at"] = event["actor"], event["at"]
        elif to in ("approved", "scheduled") and "approval" in (move.get("fields") or {}):
            approval = move["fields"]["approval"] or {}
            out["approved_by"], out["approved_at"] = event["actor"], event["at"]
            out["mode"] = approval.get("mode")
            out["scheduled_execution"] = approval.get("scheduled_for")
        elif to == "deferred":
            decision = (move.get("fields") or {}).get("decision") or {}
            out["deferred_by"], out["deferred_reason"] = event["actor"], decision.get("reason")
    return out
