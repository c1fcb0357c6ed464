"""Who holds the lock a migration is waiting for, seen from another connection.

While a file runs, a watcher polls `pg_blocking_pids()` for the executor's backend a few
times per lock_timeout, so that when the statement gives up (55P03) the report can name
the backend that held the lock: its pid, query, state, age, lock mode and relation.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from pglast.parser import normalize

from core.redact import redact
from engine.locks import holder_query

QUERY_CHARS = 300

# The lock the executor waits for (granted = false) and the blockers' granted lock on the
# same relation, if it is a relation lock.
_BLOCKERS_SQL = """
SELECT a.pid, coalesce(a.query, ''), coalesce(a.state, ''),
       extract(epoch FROM now() - coalesce(a.xact_start, a.query_start, now()))::float8,
       l.mode, l.relation::regclass::text
FROM unnest(pg_blocking_pids(%(pid)s)) AS b(pid)
JOIN pg_stat_activity a ON a.pid = b.pid
LEFT JOIN LATERAL (
    SELECT hl.mode, hl.relation FROM pg_locks hl
    WHERE hl.pid = b.pid AND hl.granted AND hl.relation IN (
        SELECT w.relation FROM pg_locks w WHERE w.pid = %(pid)s AND NOT w.granted)
    LIMIT 1) l ON true
"""
_PID_BY_APP_SQL = """SELECT pid FROM pg_stat_activity WHERE application_name = %s AND pid <> pg_backend_pid()
ORDER BY backend_start DESC LIMIT 1"""


@dataclass(frozen=True)
class Blocker:
    pid: int
    query: str  # redacted, truncated
    state: str  # e.g. "idle in transaction"
    age: float  # seconds since its transaction (or query) started
    mode: str | None  # the lock it holds on the relation we wait for, e.g. "AccessExclusiveLock"
    relation: str | None

    def describe(self) -> str:
        held = f" holds {self.mode} on {self.relation}" if self.mode else ""
        return f"pid {self.pid} ({self.state}, {self.age:.1f}s){held}: {self.query}"


class BlockerWatch:
    """Polls, from its own connection, which backends block ours; keeps the latest sighting
    of each. Use as a context manager around one attempt."""

    def __init__(
        self,
        dsn: str,
        interval: float,
        *,
        pid: Callable[[], int | None] | None = None,
        application_name: str | None = None,
        secrets: Sequence[str] = (),
        on_new: Callable[[Blocker], None] | None = None,
    ):
        """Watch the backend `pid()` returns, or the one named `application_name` (psql's);
        `on_new` hears of each blocking backend when it is first seen."""
        self._dsn, self._interval, self._secrets = dsn, max(0.02, interval), secrets
        self._on_new = on_new
        self._pid, self._app = pid, application_name
        self._app_pid: int | None = None
        self._stop = threading.Event()
        self._seen: dict[int, Blocker] = {}
        self._thread = threading.Thread(target=self._run, name="blocker-watch", daemon=True)

    def __enter__(self) -> BlockerWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @property
    def blockers(self) -> list[Blocker]:
        return list(self._seen.values())

    def _run(self) -> None:
        # Connects only once the first interval has passed: a quick file never pays for it.
        conn: psycopg.Connection | None = None
        try:
            while not self._stop.wait(self._interval):
                conn = conn or psycopg.connect(
                    self._dsn, autocommit=True, application_name="migrate-bot-watch"
                )
                self._look(conn)
        except psycopg.Error:
            pass  # the watch is evidence only: losing it must never fail the migration
        finally:
            if conn is not None:
                conn.close()

    def _target(self, conn: psycopg.Connection) -> int | None:
        if self._pid is not None:
            return self._pid()
        if self._app_pid is None:
            row = conn.execute(_PID_BY_APP_SQL, (self._app,)).fetchone()
            self._app_pid = row[0] if row else None
        return self._app_pid

    def _look(self, conn: psycopg.Connection) -> None:
        pid = self._target(conn)
        if pid is None:
            return
        for row in conn.execute(_BLOCKERS_SQL, {"pid": pid}).fetchall():
            new = row[0] not in self._seen
            self._seen[row[0]] = self._blocker(row)
            if new and self._on_new is not None:
                self._on_new(self._seen[row[0]])

    def _blocker(self, row: Sequence[Any]) -> Blocker:
        return to_blocker(row, self._secrets)


def without_constants(query: str) -> str:
    """Another session's query with every literal replaced by $n (PostgreSQL's own normalizer,
    via pglast): its text may hold secrets the bot does not know of. Unparsable text (a
    truncated pg_stat_activity query) keeps only its first word."""
    try:
        return normalize(query)
    except Exception:  # pglast raises its ParseError for anything it cannot read
        words = query.split()
        return f"{words[0]} … (not shown: unparsable)" if words else ""


def to_blocker(row: Sequence[Any], secrets: Sequence[str]) -> Blocker:
    """A Blocker from (pid, query, state, age, mode, relation); the query's literals removed,
    redacted, truncated."""
    pid, query, state, age, mode, relation = row
    query = redact(" ".join(without_constants(query).split()), secrets)
    if len(query) > QUERY_CHARS:
        query = query[: QUERY_CHARS - 1] + "…"
    return Blocker(pid, query, state, round(age, 3), mode, relation)


def holders(
    dsn: str, relation: str, level: str, exclude_pid: int | None, secrets: Sequence[str] = ()
) -> list[Blocker]:
    """Backends holding a lock on `relation` that conflicts with `level`, oldest first
    (looked up right after a NOWAIT lock failed, from a connection of our own)."""
    query, modes = holder_query(level)
    try:
        with psycopg.connect(dsn, autocommit=True, application_name="migrate-bot-watch") as conn:
            rows = conn.execute(
                query, {"relation": relation, "modes": list(modes), "me": exclude_pid or 0}
            ).fetchall()
    except psycopg.Error:
        return []  # evidence only: never fail the migration over it
    return [to_blocker(r, secrets) for r in rows]
