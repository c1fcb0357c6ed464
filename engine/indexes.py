"""INVALID indexes left by a CREATE INDEX CONCURRENTLY that failed part-way.

A concurrent build commits the index's catalog entry before it fills it: when the build then
fails (a duplicate in a UNIQUE index, a timeout, a cancel) the index stays, marked INVALID —
never used by queries, yet maintained on every write, and in the way of a retry ("already
exists"), or silently accepted by `IF NOT EXISTS`. PostgreSQL's advice is to drop it and build
again; the executor does exactly that for the indexes the failed statement itself left (those
that did not exist before it ran), and refuses an `IF NOT EXISTS` that kept an INVALID one.
"""

from __future__ import annotations

from collections.abc import Mapping

import psycopg
from psycopg import sql as pgsql

from core.redact import first_line

_ON_TABLE = "SELECT i.indexrelid::bigint FROM pg_index i WHERE i.indrelid = to_regclass(%s)"
_NEW_INVALID = """SELECT n.nspname, c.relname FROM pg_index i
                  JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE i.indrelid = to_regclass(%s) AND NOT i.indisvalid AND i.indexrelid::bigint <> ALL(%s)"""


def before_build(conn: psycopg.Connection, table: str) -> tuple[list[int], str]:
    """OIDs of the indexes `table` has now (none when it does not exist yet), and the session's
    search_path (the file may have set it; `table` may be unqualified)."""
    row = conn.execute("SELECT current_setting('search_path')").fetchone()
    assert row is not None  # current_setting() is one row
    path: str = row[0]
    return [r[0] for r in conn.execute(_ON_TABLE, (table,))], path


def is_invalid(conn: psycopg.Connection, index: str) -> bool:
    row = conn.execute(
        "SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)", (index,)
    ).fetchone()
    return bool(row and row[0])


def drop_left_invalid(
    dsn: str, table: str, before: tuple[list[int], str], settings: Mapping[str, str]
) -> list[str]:
    """Drop (concurrently) the INVALID indexes on `table` that are not in `before`; one line per
    index saying what was done or what the operator must do. A fresh connection: the failed
    statement's own may have been cancelled or terminated."""
    notes: list[str] = []
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
            for name, value in settings.items():
                conn.execute("SELECT set_config(%s, %s, false)", (name, value))
            oids, search_path = before
            conn.execute("SELECT set_config('search_path', %s, false)", (search_path,))
            for schema, index in conn.execute(_NEW_INVALID, (table, oids)).fetchall():
                qualified = f"{schema}.{index}"
                try:
                    conn.execute(
                        pgsql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(
                            pgsql.Identifier(schema, index)
                        )
                    )
                    notes.append(f"the INVALID index {qualified} the failed build left was dropped")
                except psycopg.Error as exc:
                    notes.append(
                        f"the INVALID index {qualified} the failed build left could not be dropped "
                        f"({first_line(exc)}): run `DROP INDEX CONCURRENTLY {qualified};` "
                        "before running the file again"
                    )
    except psycopg.Error as exc:
        notes.append(
            f"INVALID indexes the failed build may have left on {table} were not checked "
            f"({first_line(exc)}): look for them with "
            f"`SELECT indexrelid::regclass FROM pg_index WHERE NOT indisvalid`"
        )
    return notes
