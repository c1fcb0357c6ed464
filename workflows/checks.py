"""Checks a verb and a workflow start make before anything runs: an incident declared, a
backend of a dead bot process still inside its transaction. Read-only; a reason or None.
"""

from __future__ import annotations

import psycopg


def why_incident_blocks(core, blocked: str) -> str | None:
    """The refusal while a critical incident is declared (it blocks GO and run), or None."""
    declared = core.store.incident()
    if declared is None:
        return None
    return (
        f"a critical incident is declared by <@{declared.get('by')}> ({declared.get('text')}): {blocked} until "
        "`/migrate incident clear`"
    )


LEFTOVER_SQL = """SELECT pid, extract(epoch FROM now() - xact_start)::int FROM pg_stat_activity
WHERE datname = current_database() AND application_name LIKE 'migrate-bot%%' AND xact_start IS NOT NULL
  AND pid <> pg_backend_pid()"""


def leftover_backends(dsn: str) -> list[tuple[int, int]]:
    """(pid, seconds in transaction) of the bot's backends still inside a transaction."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        return [(pid, age) for pid, age in conn.execute(LEFTOVER_SQL).fetchall()]


def listed(leftover: list[tuple[int, int]]) -> str:
    return ", ".join(f"pid {pid} ({age} s)" for pid, age in leftover)


def why_orphans_block(core) -> str | None:
    """With nobody holding the run lock, a bot backend inside a transaction belongs to a dead
    process: its locks and half-done work are still there until PostgreSQL notices."""
    if core.lock.held():
        return None
    leftover = leftover_backends(core.settings.database_url)
    if not leftover:
        return None
    return (
        f"a backend of a stopped bot process is still inside its transaction ({listed(leftover)}): wait until PostgreSQL "
        "ends it, or end it with pg_terminate_backend, then try again"
    )
