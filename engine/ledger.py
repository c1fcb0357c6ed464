"""The executor's bookkeeping in the target database (schema `migrate_bot`), and the
application's own `schema_migrations` versions.

Each applied file gets a row in `migrate_bot.applied_files` written in the same transaction
as the file itself, so "applied but not recorded" cannot happen (the alembic way).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

# Run at the end of the file's transaction; SET LOCAL keeps the "already exists, skipping"
# notices of the IF NOT EXISTS out of the file's captured output.
SCHEMA_SQL = """
SET LOCAL client_min_messages = warning;
CREATE SCHEMA IF NOT EXISTS migrate_bot;
CREATE TABLE IF NOT EXISTS migrate_bot.applied_files (
    id bigserial PRIMARY KEY,
    runbook text NOT NULL,
    run_id text NOT NULL,
    phase integer NOT NULL,
    step text NOT NULL,
    file text NOT NULL,
    sha256 text NOT NULL,
    actor text NOT NULL,
    started_at timestamptz NOT NULL,
    duration_ms integer NOT NULL,
    statements integer NOT NULL
)"""

# Parameters: runbook, run_id, phase, step, file, sha256, actor, started_at, duration_ms, statements.
INSERT_SQL = """INSERT INTO migrate_bot.applied_files
    (runbook, run_id, phase, step, file, sha256, actor, started_at, duration_ms, statements)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"""


def ensure_schema(conn: psycopg.Connection) -> None:
    """Create the ledger schema and table if missing, in the caller's transaction (its
    statements sent at once: no parameters)."""
    conn.execute(SCHEMA_SQL)


def insert_sql_literal(values: tuple[Any, ...]) -> str:
    """The ledger INSERT with its values inlined, for a psql run (-1 -f file -f ledger).
    A duration of None is measured by the server: now() is the transaction's start."""
    literals = [sql.Literal(v).as_string(None) for v in values]
    if values[8] is None:
        literals[8] = "(extract(epoch FROM clock_timestamp() - now()) * 1000)::int"
    return INSERT_SQL.replace("%s", "{}").format(*literals)


def applied_files(dsn: str, runbook: str) -> list[dict[str, Any]]:
    """Ledger rows of one runbook, oldest first (empty when the ledger does not exist yet)."""
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        if not _exists(conn, "migrate_bot.applied_files"):
            return []
        return conn.execute(
            "SELECT * FROM migrate_bot.applied_files WHERE runbook = %s ORDER BY id", (runbook,)
        ).fetchall()


def step_committed(
    dsn: str, *, run_id: str, step: str, sha256: str, since: datetime, timeout: float = 5.0
) -> bool:
    """Whether the ledger holds a row of `step` of this run with these bytes, started at or
    after `since`: the row is written in the step's own transaction, so its absence proves the
    transaction did not commit. Reads only the ledger table, under lock and statement
    timeouts: never queued behind the lock that stalled the step."""
    ms = int(timeout * 1000)
    with psycopg.connect(
        dsn,
        autocommit=True,
        connect_timeout=max(1, int(timeout)),
        options=f"-c lock_timeout={ms} -c statement_timeout={ms}",
    ) as conn:
        if not _exists(conn, "migrate_bot.applied_files"):
            return False
        row = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM migrate_bot.applied_files WHERE run_id = %s "
            "AND step = %s AND sha256 = %s AND started_at >= %s)",
            (run_id, step, sha256, since),
        ).fetchone()
        assert row is not None  # SELECT EXISTS is one row
        return bool(row[0])


def record_version(
    dsn: str,
    version: str,
    description: str = "",
    *,
    table: str = "schema_migrations",
    column: str = "version",
) -> None:
    """Add `version` to the runbook's `table` ledger (idempotent: an existing row is left as is)."""
    with psycopg.connect(dsn) as conn:
        columns = _columns(conn, table)
        names, values = [sql.Identifier(column)], [version]
        for col in ("description", "name"):  # schema_migrations' label column, often NOT NULL
            if col in columns:
                names.append(sql.Identifier(col))
                values.append(description or f"migration {version}")
                break
        placeholders = sql.SQL(", ").join([sql.Placeholder()] * len(values))
        conn.execute(
            sql.SQL(
                "INSERT INTO {t} ({names}) SELECT {values} WHERE NOT EXISTS (SELECT 1 FROM {t} WHERE {c}::text = %s)"
            ).format(
                t=_table(table),
                names=sql.SQL(", ").join(names),
                values=placeholders,
                c=sql.Identifier(column),
            ),
            (*values, version),
        )


def remove_version(
    dsn: str, version: str, *, table: str = "schema_migrations", column: str = "version"
) -> None:
    """Remove `version` from the `table` ledger (a rolled-back migration is not applied)."""
    with psycopg.connect(dsn) as conn:
        conn.execute(
            sql.SQL("DELETE FROM {} WHERE {}::text = %s").format(_table(table), sql.Identifier(column)),
            (version,),
        )


def applied_versions(dsn: str, *, table: str = "schema_migrations", column: str = "version") -> list[str]:
    """Versions in the `table` ledger, in order."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return [
            r[0]
            for r in conn.execute(
                sql.SQL("SELECT {c}::text FROM {t} ORDER BY 1").format(
                    c=sql.Identifier(column), t=_table(table)
                )
            )
        ]


def _table(name: str) -> sql.Identifier:
    return sql.Identifier(*name.split("."))


def _exists(conn: psycopg.Connection[Any], relation: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL AS present", (relation,)).fetchone()
    assert row is not None  # a SELECT without FROM is one row
    return bool(row["present"] if isinstance(row, dict) else row[0])


def _columns(conn: psycopg.Connection[Any], table: str) -> set[str]:
    rows = conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 "
        "AND NOT attisdropped",
        (table,),
    )
    return {r[0] for r in rows}
