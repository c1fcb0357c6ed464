"""Take a file's table locks up front without ever queueing for them.

A DDL statement waiting in PostgreSQL's lock queue blocks every later query on that table,
even plain SELECTs: production traffic stalls for as long as the migration waits. So,
before an atomic file's first statement, the executor takes every lock the parse tree says
the file needs (strongest level per relation, in file order) with `LOCK TABLE … NOWAIT`,
inside a savepoint, polling until lock_timeout. NOWAIT never enters the queue, so traffic
is never stalled by the waiting; when the time is up the holders are looked up and the
attempt fails with 55P03 like any lock timeout.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import NamedTuple, TypeVar

import psycopg
from psycopg import sql as pgsql

from core import clock
from runbook.sqlfile import LOCK_STRENGTH, ParsedFile, Statement

POLL = 0.05  # seconds between two NOWAIT tries

# Which held modes conflict with a requested level (PostgreSQL docs, table 13.2).
_CONFLICTS = {
    "ROW EXCLUSIVE": ("ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock"),
    "SHARE UPDATE EXCLUSIVE": (
        "ShareUpdateExclusiveLock",
        "ShareLock",
        "ShareRowExclusiveLock",
        "ExclusiveLock",
        "AccessExclusiveLock",
    ),
    "SHARE": (
        "RowExclusiveLock",
        "ShareUpdateExclusiveLock",
        "ShareRowExclusiveLock",
        "ExclusiveLock",
        "AccessExclusiveLock",
    ),
    "SHARE ROW EXCLUSIVE": (
        "RowExclusiveLock",
        "ShareUpdateExclusiveLock",
        "ShareLock",
        "ShareRowExclusiveLock",
        "ExclusiveLock",
        "AccessExclusiveLock",
    ),
    "EXCLUSIVE": (
        "RowShareLock",
        "RowExclusiveLock",
        "ShareUpdateExclusiveLock",
        "ShareLock",
        "ShareRowExclusiveLock",
        "ExclusiveLock",
        "AccessExclusiveLock",
    ),
    "ACCESS EXCLUSIVE": (
        "AccessShareLock",
        "RowShareLock",
        "RowExclusiveLock",
        "ShareUpdateExclusiveLock",
        "ShareLock",
        "ShareRowExclusiveLock",
        "ExclusiveLock",
        "AccessExclusiveLock",
    ),
}


class Lock(NamedTuple):
    """One lock of a file's plan: `relation` at `level`, first needed by `statement`. With
    `via_index`, `relation` names an index and the lock is on that index's table."""

    level: str
    relation: str
    statement: Statement
    via_index: bool = False


def lock_plan(parsed: ParsedFile) -> list[Lock]:
    """The strongest level per relation, relations in the order the file first touches them.
    Row-level DML locks are left out: they conflict only with DDL and share locks, and taking
    them early buys nothing. Pure: which relations `LOCK TABLE` may take is decided by
    `existing`, which asks the database."""
    plan: dict[tuple[str, bool], Lock] = {}
    for stmt in parsed.body:
        wanted = [(level, rel, False) for level, rel in stmt.locks]
        wanted += [(level, index, True) for level, index in stmt.index_table_locks]
        for level, relation, via_index in wanted:
            _stronger(plan, (relation, via_index), Lock(level, relation, stmt, via_index))
    return list(plan.values())


_Key = TypeVar("_Key")  # (relation, via_index) while planning, the resolved table after


def _stronger(plan: dict[_Key, Lock], key: _Key, lock: Lock) -> None:
    """Keep the stronger of `lock` and what `plan` holds for `key` (dict order: the first touch)."""
    known = plan.get(key)
    if known is None and lock.level == "ROW EXCLUSIVE":
        return
    if known is None or LOCK_STRENGTH[lock.level] > LOCK_STRENGTH[known.level]:
        plan[key] = lock


# Only tables are locked up front. LOCK TABLE refuses indexes, sequences, materialized views,
# composite types and foreign tables (42809); it accepts views, but then also locks every
# table the view reads, in the same mode — far more than DROP/ALTER VIEW takes (the view
# alone). Those statements take their own lock when they run, under lock_timeout.
LOCKABLE_KINDS = ("r", "p")  # ordinary and partitioned tables

_RESOLVE_SQL = """
SELECT w.ord, coalesce(i.indrelid, c.oid)::regclass::text, coalesce(t.relkind, c.relkind)::text,
       NOT w.via_index OR i.indrelid IS NOT NULL
FROM unnest(%s::text[], %s::bool[]) WITH ORDINALITY AS w(name, via_index, ord)
JOIN pg_class c ON c.oid = to_regclass(w.name)
LEFT JOIN pg_index i ON w.via_index AND i.indexrelid = c.oid
LEFT JOIN pg_class t ON t.oid = i.indrelid
ORDER BY w.ord
"""


def existing(conn: psycopg.Connection, plan: list[Lock]) -> list[Lock]:
    """The plan as `LOCK TABLE` can take it: each name resolved to the table it locks (an
    index to its table), relations the file creates itself left out (they do not exist yet),
    and so are relations that are not tables (LOCKABLE_KINDS). Relations come back as the
    server names them (quoted where needed), merged again by strongest level."""
    if not plan:
        return []
    names = [pgsql.Identifier(*lock.relation.split(".")).as_string(conn) for lock in plan]
    rows = conn.execute(_RESOLVE_SQL, (names, [lock.via_index for lock in plan])).fetchall()
    resolved: dict[str, Lock] = {}
    for ordinal, table, relkind, found in rows:
        if found and relkind in LOCKABLE_KINDS:
            lock = plan[ordinal - 1]
            _stronger(resolved, table, Lock(lock.level, table, lock.statement))
    return list(resolved.values())


class LocksUnavailable(Exception):
    """The locks could not be taken within the time: `error` is the server's 55P03 and
    `statement` the first statement that needs the contested relation."""

    def __init__(self, error: psycopg.Error, statement: Statement, level: str, relation: str):
        super().__init__(str(error))
        self.error, self.statement, self.level, self.relation = error, statement, level, relation


class LockRefused(Exception):
    """`LOCK TABLE` failed otherwise (no privilege, …): `statement` needs that lock, and is
    what the operator is shown, with its line."""

    def __init__(self, error: psycopg.Error, statement: Statement):
        super().__init__(str(error))
        self.error, self.statement = error, statement


def take(conn: psycopg.Connection, plan: list[Lock], timeout: float, cancelled: Callable[[], bool]) -> None:
    """Take every lock of the plan NOWAIT, all or none, polling until `timeout` has passed.
    Raises LocksUnavailable (after the time) or LockRefused, or returns with all locks held."""
    deadline = clock.monotonic() + timeout
    plan = list(plan)
    while True:
        conn.execute("SAVEPOINT migrate_bot_locks")
        try:
            for lock in plan:
                _lock(conn, lock)
            conn.execute("RELEASE SAVEPOINT migrate_bot_locks")
            return
        except LocksUnavailable as busy:
            conn.execute("ROLLBACK TO SAVEPOINT migrate_bot_locks")  # frees what this try took
            if clock.monotonic() + POLL >= deadline or cancelled():
                raise busy
            # The contested table first next time: a try that fails then holds nothing at all.
            contested = busy.relation
            plan.sort(key=lambda p: p.relation != contested)
            time.sleep(POLL)


def _lock(conn: psycopg.Connection, lock: Lock) -> None:
    # `relation` is the server's own regclass text (existing), already quoted where needed.
    query = pgsql.SQL("LOCK TABLE {} IN {} MODE NOWAIT").format(
        pgsql.SQL(lock.relation), pgsql.SQL(lock.level)
    )
    try:
        conn.execute(query)
    except psycopg.errors.LockNotAvailable as exc:
        raise LocksUnavailable(exc, lock.statement, lock.level, lock.relation) from None
    except psycopg.Error as exc:
        raise LockRefused(exc, lock.statement) from None


HOLDERS_SQL = """
SELECT a.pid, coalesce(a.query, ''), coalesce(a.state, ''),
       extract(epoch FROM now() - coalesce(a.xact_start, a.query_start, now()))::float8,
       l.mode, l.relation::regclass::text
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.granted AND l.relation = to_regclass(%(relation)s) AND l.mode = ANY(%(modes)s) AND l.pid <> %(me)s
ORDER BY 4 DESC
"""


def holder_query(level: str) -> tuple[str, Sequence[str]]:
    """The query listing who holds a lock on a relation conflicting with `level`."""
    return HOLDERS_SQL, _CONFLICTS.get(level, _CONFLICTS["ACCESS EXCLUSIVE"])
