"""What every ledger kind shares (Entry, the interface) and the bot's own ledger."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from runbook.model import Runbook, Step

PARTIAL = (
    "the statements before the failure stayed committed — check the database and undo or finish them "
    "by hand (the file run again may fail on what it already created)"
)


@dataclass(frozen=True)
class Entry:
    """One migration as a ledger sees it."""

    migration: str  # the step's `migration`: a version, a sqitch change (name or name@tag), a file
    file: Path  # the script that applies it
    script: str  # its name relative to the runbook folder
    description: str
    actor: str  # who ran it (Slack user id)


# What a ledger's statements are: what Connection.execute takes (psycopg's Query), values
# inlined as literals so that the statements can also be appended to a psql run.
Statement = sql.SQL | sql.Composed

# A server-side duration: the transaction started with the migration (now() is its start).
SERVER_DURATION = sql.SQL("(extract(epoch FROM clock_timestamp() - now()) * 1000)::int")


def duration_sql(duration_ms: int | None) -> sql.Composable:
    return SERVER_DURATION if duration_ms is None else sql.Literal(int(duration_ms))


class Ledger:
    """The bot's own ledger (migrate_bot.applied_files): the executor writes its row for every
    file it runs; a rolled-back step's rows are removed with the rollback."""

    kind = "bot"
    label = "migrate_bot.applied_files"
    tables: tuple[str, ...] = ("migrate_bot.applied_files",)

    def __init__(self, rb: Runbook):
        self.rb = rb

    def applied(self, conn: psycopg.Connection) -> set[str]:
        if not _exists(conn, "migrate_bot.applied_files"):
            return set()
        rows = conn.execute("SELECT file FROM migrate_bot.applied_files WHERE runbook = %s", (self.rb.id,))
        files = {r[0] for r in rows}
        return {
            s.migration
            for s in self.tracked()
            if s.migration and (s.file in files or Path(s.file).name in files)
        }  # (tracked steps all name a migration)

    def problem(self, conn: psycopg.Connection) -> str | None:
        return None

    def before(self, conn: psycopg.Connection, entry: Entry) -> None:
        """Committed before the migration's transaction opens (nothing for most tools)."""

    def record(self, entry: Entry, duration_ms: int | None) -> list[Statement]:
        return []  # the executor's own applied_files row is this ledger's record

    def before_remove(self, conn: psycopg.Connection, entry: Entry) -> None:
        """Committed before the rollback's transaction opens (nothing for most tools)."""

    def remove(self, entry: Entry, revert: str, duration_ms: int | None) -> list[Statement]:
        step = self.step(entry.migration)
        names = {step.file, Path(step.file).name} if step else {entry.script}
        return [
            sql.SQL("DELETE FROM migrate_bot.applied_files WHERE runbook = {} AND file = ANY({})").format(
                sql.Literal(self.rb.id), sql.Literal(sorted(names))
            )
        ]

    def mark_failed(self, conn: psycopg.Connection, entry: Entry) -> None:
        """What the tool commits after a migration failed (sqitch: a `fail` event; most: nothing)."""

    def failure_help(self, entry: Entry) -> str:
        return f"{self.label}: no row for {entry.script} (the failed file's transaction was rolled back)"

    def partial_failure_help(self, entry: Entry) -> str:
        """A file that ran non-atomically failed: what it did before the failure stayed committed,
        and the ledger does not show it applied — no tool's "its transaction rolled back" holds."""
        return (
            f"{self.label}: {entry.migration} not recorded as applied, but {entry.script} ran non-atomically: "
            f"{PARTIAL}; then preflight and run again"
        )

    # ------------------------------------------------------------ the runbook's migrations

    def tracked(self) -> list[Step]:
        """The runbook's steps that name a migration, in runbook order."""
        return [s for p in self.rb.phases for s in p.steps if s.migration]

    def migrations(self) -> list[str]:
        """The migrations `tracked` steps name, in runbook order."""
        return [s.migration for s in self.tracked() if s.migration]

    def step(self, migration: str) -> Step | None:
        return next((s for s in self.tracked() if s.migration == migration), None)

    def entry(self, step: Step, actor: str) -> Entry:
        return Entry(step.migration or step.file, self.rb.file_path(step.file), step.file, step.name, actor)


def _exists(conn: psycopg.Connection, relation: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (relation,)).fetchone()
    assert row is not None  # a SELECT without FROM is one row
    return bool(row[0])
