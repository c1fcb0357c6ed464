"""Schema snapshots of the target database (pg_dump --schema-only) and their comparison.

One definition for everyone who asks "is the schema what it was?": pre-migration snapshots
at preflight, the rehearsal's rollback check, rollback verification, the failure template's
"database status". The bot's own schema `migrate_bot` and the ledgers' tables are never part of it.

The snapshots taken after each phase (`snapshot`) are the catalog snapshot of
engine/catalog_snapshot.py when it describes everything the database holds (it differs exactly
when pg_dump --schema-only does, at a fraction of the cost), else pg_dump's. A stored snapshot
is always compared with the schema now taken the same way (`current_like`).
"""

from __future__ import annotations

import difflib
import subprocess
from pathlib import Path

import psycopg

from core import children
from engine import catalog_snapshot
from engine.psql import child_env

BOT_SCHEMA = "migrate_bot"
# The ledgers' own objects (engine/ledgers): created by the first migration a tool records and
# kept when it is undone, as the tools themselves do, so never part of "is the schema what it was?".
LEDGER_EXCLUDES = (
    "--exclude-schema=sqitch",
    "--exclude-table=*.flyway_schema_history",
    "--exclude-table=*.schema_migrations",
)


def dump_command(
    dsn: str,
    *,
    pg_dump: str = "pg_dump",
    snapshot: str | None = None,
    file: Path | None = None,
    lock_wait: float | None = None,
) -> list[str]:
    """The pg_dump invocation every snapshot uses (an exported `snapshot` makes it consistent with a
    backup; `lock_wait` seconds bounds its wait for another session's lock)."""
    cmd = [pg_dump, "--schema-only", f"--exclude-schema={BOT_SCHEMA}", *LEDGER_EXCLUDES]
    if lock_wait is not None:
        cmd.append(f"--lock-wait-timeout={int(lock_wait * 1000)}")
    if snapshot:
        cmd.append(f"--snapshot={snapshot}")
    if file:
        cmd += ["--file", str(file)]
    return cmd + ["--dbname", dsn]


def schema_dump(dsn: str, *, pg_dump: str = "pg_dump", lock_wait: float = 5.0, timeout: float = 120.0) -> str:
    """The schema as pg_dump prints it (raises CalledProcessError with pg_dump's message, or
    TimeoutExpired). It waits at most `lock_wait` s for another session's lock: the bot never
    queues behind production traffic just to look. The password travels in PGPASSWORD, never
    on the command line (visible in `ps`)."""
    conninfo, env = child_env(dsn, {}, "migrate-bot-schema")
    return subprocess.run(
        children.dying_with_parent(dump_command(conninfo, pg_dump=pg_dump, lock_wait=lock_wait)),
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=timeout,
    ).stdout


def snapshot(dsn: str, *, lock_wait: float = 5.0, conn: psycopg.Connection | None = None) -> str:
    """The schema for later comparisons: the catalog snapshot (one query, on `conn` when given)
    when it describes everything the database holds, else pg_dump's (`schema_dump`)."""
    text, complete = _catalog(dsn, conn, lock_wait)
    return text if complete else schema_dump(dsn, lock_wait=lock_wait)


def current_like(expected: str, dsn: str, *, conn: psycopg.Connection | None = None) -> str:
    """The schema now, taken the way the stored snapshot `expected` was: a catalog snapshot for a
    catalog snapshot (one that is incomplete now differs from it by its UNCOVERED lines, as
    pg_dump would by those objects), pg_dump for pg_dump."""
    if catalog_snapshot.is_catalog(expected):
        return _catalog(dsn, conn, 5.0)[0]
    return schema_dump(dsn)


def method(text: str) -> str:
    """How a stored snapshot was taken, for the evidence line that compares with it."""
    if catalog_snapshot.is_catalog(text):
        return "catalog snapshot compared, as strict as pg_dump --schema-only"
    return "pg_dump --schema-only compared"


def _catalog(dsn: str, conn: psycopg.Connection | None, lock_wait: float) -> tuple[str, bool]:
    if conn is not None:
        return catalog_snapshot.take(conn, lock_wait)
    with psycopg.connect(dsn, autocommit=True, application_name="migrate-bot-schema") as own:
        return catalog_snapshot.take(own, lock_wait)


def write_snapshot(dsn: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(schema_dump(dsn), encoding="utf-8")
    return path


def normalize(text: str) -> list[str]:
    """The lines that make up the schema: without comments, blank lines, pg_dump's per-run
    `\\restrict` key, and ownership (a copy restored with --no-owner has the same schema)."""
    return [
        line
        for line in text.splitlines()
        if line.strip()
        and not line.startswith(("--", "\\restrict", "\\unrestrict"))
        and " OWNER TO " not in line
    ]


def difference(expected: str, actual: str, limit: int = 40) -> list[str]:
    """Lines that differ between two dumps (unified diff without headers); empty when equal."""
    a, b = normalize(expected), normalize(actual)
    if a == b:
        return []
    diff = difflib.unified_diff(a, b, "expected", "actual", lineterm="", n=0)
    return [line for line in diff if not line.startswith(("---", "+++", "@@"))][:limit]
