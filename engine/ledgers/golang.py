"""golang-migrate's `schema_migrations (version bigint, dirty boolean)`: one row, the current
version. As golang-migrate does it: before a migration runs the row says (version, dirty=true)
in its own committed transaction; the migration's transaction clears it (dirty=false). A
failure leaves it dirty at that version, and golang-migrate (and the bot) refuse to run until
someone checks the database and forces the version. A rollback (down) sets the previous
version dirty first, then clean with the down file; below the first version the table is empty."""

from __future__ import annotations

import psycopg
from psycopg import sql

from engine.ledgers.base import PARTIAL, Entry, Ledger, Statement, _exists
from engine.ledgers.table import identifier
from runbook.model import Runbook, Step

NIL_VERSION = -1  # golang-migrate's "no version" (written only as a dirty marker)


class GolangLedger(Ledger):
    kind = "golang-migrate"

    def __init__(self, rb: Runbook):
        super().__init__(rb)
        self.table = rb.ledger.table or "schema_migrations"
        self.label = f"{self.table} (golang-migrate)"
        self.tables = (self.table if "." in self.table else f"public.{self.table}",)

    def current(self, conn: psycopg.Connection) -> tuple[int, bool] | None:
        if not _exists(conn, self.table):
            return None
        return conn.execute(
            sql.SQL("SELECT version, dirty FROM {} LIMIT 1").format(identifier(self.table))
        ).fetchone()

    def applied(self, conn: psycopg.Connection) -> set[str]:
        state = self.current(conn)
        if not state or state[1]:
            return set() if not state else {m for m in self.migrations() if int(m) < state[0]}
        return {m for m in self.migrations() if int(m) <= state[0]}

    def tracked(self) -> list[Step]:
        """Steps whose migration is a golang-migrate version (an integer); see `problem` for the others."""
        return [s for s in super().tracked() if s.migration and s.migration.isdigit()]

    def problem(self, conn: psycopg.Connection) -> str | None:
        wrong = [s.migration for s in super().tracked() if s.migration and not s.migration.isdigit()]
        if wrong:
            return f"golang-migrate versions are integers: the runbook names {', '.join(wrong)}"
        state = self.current(conn)
        if state and state[1]:
            previous = self._previous(str(state[0]))
            return (
                f"{self.table} is dirty at version {state[0]}: a migration failed part-way. Check what it left, "
                f"then `migrate force {previous if previous is not None else NIL_VERSION}` (or force {state[0]} "
                "if it did apply) and run preflight again"
            )
        return None

    def _set(self, version: int | None, dirty: bool) -> list[Statement]:
        t = identifier(self.table)
        out: list[Statement] = [
            sql.SQL("SET LOCAL client_min_messages = warning"),
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL)"
            ).format(t),
            sql.SQL("TRUNCATE {}").format(t),
        ]
        if version is not None or dirty:
            out.append(
                sql.SQL("INSERT INTO {} (version, dirty) VALUES ({}, {})").format(
                    t, sql.Literal(NIL_VERSION if version is None else version), sql.Literal(dirty)
                )
            )
        return out

    def _commit(self, conn: psycopg.Connection, statements: list[Statement]) -> None:
        with conn.transaction():
            for statement in statements:
                conn.execute(statement)

    def before(self, conn: psycopg.Connection, entry: Entry) -> None:
        self._commit(conn, self._set(int(entry.migration), True))

    def record(self, entry: Entry, duration_ms: int | None) -> list[Statement]:
        return self._set(int(entry.migration), False)

    def before_remove(self, conn: psycopg.Connection, entry: Entry) -> None:
        self._commit(conn, self._set(self._previous(entry.migration), True))

    def remove(self, entry: Entry, revert: str, duration_ms: int | None) -> list[Statement]:
        return self._set(self._previous(entry.migration), False)

    def _previous(self, migration: str) -> int | None:
        earlier = [int(m) for m in self.migrations() if int(m) < int(migration)]
        return max(earlier) if earlier else None

    def partial_failure_help(self, entry: Entry) -> str:
        previous = self._previous(entry.migration)
        return (
            f"{self.table} is dirty at version {int(entry.migration)} (as golang-migrate leaves it), and "
            f"{entry.script} ran non-atomically: {PARTIAL}; then `migrate force "
            f"{previous if previous is not None else NIL_VERSION}`, fix the file, preflight and run again"
        )

    def failure_help(self, entry: Entry) -> str:
        previous = self._previous(entry.migration)
        return (
            f"{self.table} is dirty at version {int(entry.migration)} (as golang-migrate leaves it). The file's "
            f"transaction was rolled back: once you have checked the database, `migrate force "
            f"{previous if previous is not None else NIL_VERSION}`, fix the file, then preflight and run again"
        )
