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
from typing import Callable, Sequence

import psycopg
from psycopg import sql as pgsql

from core import clock
from runbook.sqlfile import LOCK_STRENGTH, ParsedFile, Statement

POLL = 0.05  # seconds between two NOWAIT tries

# Which held modes conflict with a requested level (PostgreSQL docs, table 13.2).
_CONFLICTS = {
    "ROW EXCLUSIVE": ("ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock"),
    "SHARE UPDATE EXCLUSIVE": ("ShareUpdateExclusiveLock", "ShareLock", "ShareRowExclusiveLock", "ExclusiveLock",
                               "AccessExclusiveLock"),
    "SHARE": ("RowExclusiveLock", "ShareUpdateExclusiveLock", "ShareRowExclusiveLock", "ExclusiveLock",
              "AccessExclusiveLock"),
    "SHARE ROW EXCLUSIVE": ("RowExclusiveLock", "ShareUpdateExclusiveLock", "ShareLock", "ShareRowExclusiveLock",
                            "ExclusiveLock", "AccessExclusiveLock"),
    "EXCLUSIVE": ("RowShareLock", "RowExclusiveLock", "ShareUpdateExclusiveLock", "ShareLock",
                  "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock"),
    "ACCESS EXCLUSIVE": ("AccessShareLock", "RowShareLock", "RowExclusiveLock", "ShareUpdateExclusiveLock",
                         "ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock"),
}


def lock_plan(parsed: ParsedFile) -> list[tuple[str, str, Statement]]:
    """(level, relation, statement needing that level): the strongest level per relation,
    relations in the order the file first touches them. Row-level DML locks are left out:
    they conflict only with DDL and share locks, and taking them early buys nothing."""
    plan: dict[str, tuple[str, Statement]] = {}
    for stmt in parsed.body:
        for level, relation in stmt.locks:
            if level == "ROW EXCLUSIVE" and relation not in plan:
                continue
            known = plan.get(relation)
            if known is None or LOCK_STRENGTH[level] > LOCK_STRENGTH[known[0]]:
                plan[relation] = (level, stmt)  # dict order stays the first touch
    return [(level, rel, stmt) for rel, (level, stmt) in plan.items()]


def existing(conn: psycopg.Connection, plan: list[tuple[str, str, Statement]]) -> list[tuple[str, str, Statement]]:
    """The plan without relations the file creates itself (they do not exist yet)."""
    if not plan:
        return []
    rows = conn.execute("SELECT r, to_regclass(r) IS NOT NULL FROM unnest(%s::text[]) AS r",
                        ([rel for _, rel, _ in plan],)).fetchall()
    present = {r for r, ok in rows if ok}
    return [p for p in plan if p[1] in present]


class LocksUnavailable(Exception):
    """The locks could not be taken within the time: `error` is the server's 55P03 and
    `statement` the first statement that needs the contested relation."""

    def __init__(self, error: psycopg.Error, statement: Statement, level: str, relation: str):
        super().__init__(str(error))
        self.error, self.statement, self.level, self.relation = error, statement, level, relation


def take(conn: psycopg.Connection, plan: list[tuple[str, str, Statement]], timeout: float,
         cancelled: Callable[[], bool]) -> None:
    """Take every lock of the plan NOWAIT, all or none, polling until `timeout` has passed.
    Raises LocksUnavailable (after the time) or returns with all locks held."""
    deadline = clock.monotonic() + timeout
    plan = list(plan)
    while True:
        conn.execute("SAVEPOINT migrate_bot_locks")
        try:
            for level, relation, stmt in plan:
                _lock(conn, level, relation, stmt)
            conn.execute("RELEASE SAVEPOINT migrate_bot_locks")
            return
        except LocksUnavailable as busy:
            conn.execute("ROLLBACK TO SAVEPOINT migrate_bot_locks")  # frees what this try took
            if clock.monotonic() + POLL >= deadline or cancelled():
                raise busy
            # The contested table first next time: a try that fails then holds nothing at all.
            plan.sort(key=lambda p: p[1] != busy.relation)
            time.sleep(POLL)


def _lock(conn: psycopg.Connection, level: str, relation: str, stmt: Statement) -> None:
    query = pgsql.SQL("LOCK TABLE {} IN {} MODE NOWAIT").format(
        pgsql.Identifier(*relation.split(".")), pgsql.SQL(level))
    try:
        conn.execute(query)
    except psycopg.errors.LockNotAvailable as exc:
        raise LocksUnavailable(exc, stmt, level, relation) from None


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
