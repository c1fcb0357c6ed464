"""Facts about the target database that the workflows and verbs report: read-only, checked on demand.

Schema snapshots (engine.schema) let the bot say which known state the database is in ("matches the pre-migration schema", "matches the state after phase 1", or "unknown"):
the failure template and rollback verification state what was checked, never what was hoped.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
from psycopg import sql as pgsql

from engine import schema
from preflight import catalog


def snapshot_dir(core, run_id: str) -> Path:
    """Where a run's schema snapshots are written: BACKUP_DIR/runs/<run>/."""
    return Path(core.settings.backup_dir) / "runs" / run_id


def snapshot_path(core, run_id: str, phase_number: int) -> Path:
    """Schema after phase n of the run (phase 0: the pre-migration snapshot taken at preflight)."""
    if phase_number == 0:
        run = core.store.get(run_id)
        snap = ((run.preflight or {}).get("backup") or {}).get("schema_snapshot")
        return Path(snap) if snap else snapshot_dir(core, run_id) / "pre_migration.sql"
    return snapshot_dir(core, run_id) / f"after_phase_{phase_number}.sql"


def known_states(core, run_id: str) -> dict[str, Path]:
    """Every state the run's database may rightly be in, by label: before it, after each phase."""
    known = {"the pre-migration schema (version 005)": snapshot_path(core, run_id, 0)}
    for p in core.runbook.migration_phases:
        known[f"the schema after phase {p.number}"] = snapshot_path(core, run_id, p.number)
    return known


def matching_state(dsn: str, known: dict[str, Path]) -> str | None:
    """The label of the known snapshot the database's schema equals, or None (each compared
    with the schema now taken the same way: engine.schema.current_like)."""
    current: dict[str, str] = {}  # the schema now, once per way of taking it
    for label, path in known.items():
        if path and Path(path).exists():
            stored = Path(path).read_text(encoding="utf-8")
            how = schema.method(stored)
            if how not in current:
                current[how] = schema.current_like(stored, dsn)
            if not schema.difference(stored, current[how]):
                return label
    return None


def row_counts(
    dsn: str,
    schemas: tuple[str, ...] | None = None,
    lock_timeout: float = 5.0,
    conn: psycopg.Connection | None = None,
) -> dict[str, int]:
    """Exact row count of every table in `schemas` — by default every schema of the database but
    the system's and the bot's own: a team's tables live wherever its migrations put them (all
    must be readable: a health fact too). Never queues behind another session's lock longer than
    `lock_timeout` (raises instead). On `conn` (autocommit) when given."""
    if conn is not None:
        return _row_counts(conn, schemas, lock_timeout)
    with psycopg.connect(dsn, autocommit=True) as own:
        return _row_counts(own, schemas, lock_timeout)


def _row_counts(
    conn: psycopg.Connection, schemas: tuple[str, ...] | None, lock_timeout: float
) -> dict[str, int]:
    conn.execute(pgsql.SQL("SET lock_timeout = {}").format(pgsql.Literal(f"{int(lock_timeout * 1000)}ms")))
    if schemas is None:
        tables = conn.execute(
            "SELECT schemaname || '.' || tablename FROM pg_tables WHERE schemaname <> ALL(%s) "
            "AND schemaname NOT LIKE 'pg\\_%%'",
            (["information_schema", schema.BOT_SCHEMA],),
        ).fetchall()
    else:
        tables = conn.execute(
            "SELECT schemaname || '.' || tablename FROM pg_tables WHERE schemaname = ANY(%s)",
            (list(schemas),),
        ).fetchall()
    return catalog.row_counts(conn, [t for (t,) in tables])
