"""Concurrent index builds (CREATE INDEX CONCURRENTLY, REINDEX … CONCURRENTLY) and what follows an
index build.

A concurrent build waits for every transaction in the whole database older than its own
snapshot, not only for those on its table: a short lock_timeout cancels it half-way and leaves
an INVALID index behind. So the executor gives such a statement the runbook's `concurrent`
timeouts (`[lock_timeouts.concurrent]`: a long wait, no blind retry) for the time it runs,
watches whom it waits for, and drops what a failed build left before anything runs again.
After a file that built indexes succeeds, `[lock_safety] auto_analyze` ANALYZEs their tables.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from pglast.parser import parse_sql_json
from psycopg import sql as pgsql

from runbook.safety import CONCURRENT, LevelTimeouts, LockTimeouts
from runbook.sqlfile import ParsedFile, Statement

_CREATE_INDEX = re.compile(r"^\s*CREATE\s+(UNIQUE\s+)?INDEX\b", re.IGNORECASE)
_INDEX_TABLE = "SELECT indrelid::regclass::text FROM pg_index WHERE indexrelid = to_regclass(%s)"


def _reindex_concurrently(stmt: Statement) -> dict[str, Any] | None:
    """The ReindexStmt of `REINDEX (…) INDEX|TABLE … CONCURRENTLY`, else None."""
    if stmt.transactional or not re.match(r"\s*REINDEX\b", stmt.sql, re.IGNORECASE):
        return None
    ((kind, body),) = json.loads(parse_sql_json(stmt.sql))["stmts"][0]["stmt"].items()
    params = [p.get("DefElem", {}).get("defname") for p in body.get("params", ())]
    return body if kind == "ReindexStmt" and "concurrently" in params and body.get("relation") else None


def is_concurrent_build(stmt: Statement) -> bool:
    return stmt.concurrent_index is not None or _reindex_concurrently(stmt) is not None


def build_table(conn: psycopg.Connection, stmt: Statement) -> str | None:
    """The table whose indexes a concurrent build may leave INVALID (None: not such a build)."""
    if stmt.concurrent_index is not None:
        return stmt.concurrent_index[0]
    body = _reindex_concurrently(stmt)
    if body is None:
        return None
    rv = body["relation"]
    name = f"{rv['schemaname']}.{rv['relname']}" if rv.get("schemaname") else rv["relname"]
    if body.get("kind") == "REINDEX_OBJECT_TABLE":
        return name
    row = conn.execute(_INDEX_TABLE, (name,)).fetchone()
    return row[0] if row else None


def file_level(by_level: LockTimeouts, parsed: ParsedFile) -> LevelTimeouts | None:
    """The timeouts a whole file runs under: its strongest listed lock level's, except for a file
    psql runs in one session, which waits as long as its concurrent build may (psql cannot
    change the setting between its statements)."""
    if parsed.needs_psql and any(is_concurrent_build(s) for s in parsed.body):
        return by_level.for_level(CONCURRENT)
    return by_level.for_file(parsed)


@contextmanager
def timeouts(
    conn: psycopg.Connection, level: LevelTimeouts | None, restore: dict[str, str]
) -> Iterator[None]:
    """The level's lock_timeout (and statement_timeout) on the session for one statement, the
    file's settings (`restore`) again afterwards."""
    if level is None:
        yield
        return
    conn.execute("SELECT set_config('lock_timeout', %s, false)", (f"{int(level.lock_timeout * 1000)}ms",))
    if level.statement_timeout is not None:
        conn.execute(
            "SELECT set_config('statement_timeout', %s, false)", (f"{int(level.statement_timeout * 1000)}ms",)
        )
    try:
        yield
    finally:
        try:
            for name in ("lock_timeout", "statement_timeout"):
                conn.execute("SELECT set_config(%s, %s, false)", (name, restore[name]))
        except psycopg.Error:
            pass  # the statement's own error (or a dead connection) is what gets reported


def indexed_tables(parsed: ParsedFile) -> list[str]:
    """Tables the file builds an index on (CREATE [UNIQUE] INDEX [CONCURRENTLY]), in order."""
    tables = [rel for s in parsed.body if _CREATE_INDEX.match(s.sql) for _, rel in s.locks]
    return list(dict.fromkeys(tables))


def analyze(dsn: str, tables: list[str], statement_timeout: float) -> list[str]:
    """ANALYZE each table (its new index gets statistics before the planner needs them); one
    line per table saying what was done."""
    notes = []
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        conn.execute(
            "SELECT set_config('statement_timeout', %s, false)", (f"{int(statement_timeout * 1000)}ms",)
        )
        for table in tables:
            missing = conn.execute("SELECT to_regclass(%s) IS NULL", (table,)).fetchone()
            assert missing is not None  # a SELECT without FROM is one row
            if missing[0]:
                continue  # dropped later in the same file
            conn.execute(pgsql.SQL("ANALYZE {}").format(pgsql.Identifier(*table.split("."))))
            notes.append(f"ANALYZE {table} after its index was built (auto_analyze)")
    return notes
