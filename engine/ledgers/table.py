"""A `schema_migrations`-style table the team already keeps: one row per applied version in
`column` (006's runbook: table "schema_migrations", column "version"). The runbook's own
`version` is recorded when the run succeeds (engine.ledger.record_version); a step that names
a `migration` is recorded in its own transaction."""

from __future__ import annotations

import psycopg
from psycopg import sql

from engine.ledgers.base import Entry, Ledger, Statement, _exists
from runbook.model import Runbook

LABEL_COLUMNS = ("description", "name")  # such tables' label column, often NOT NULL


def identifier(name: str) -> sql.Identifier:
    """`schema.table` or `table` as an identifier (each part quoted)."""
    return sql.Identifier(*name.split("."))


class TableLedger(Ledger):
    kind = "table"

    def __init__(self, rb: Runbook):
        super().__init__(rb)
        self.table = rb.ledger.table or "schema_migrations"
        self.column = rb.ledger.column
        self.label = f"{self.table}.{self.column}"
        self.tables = (self.table if "." in self.table else f"public.{self.table}",)
        self._labels: dict[str, str | None] = {}

    def applied(self, conn: psycopg.Connection) -> set[str]:
        if not _exists(conn, self.table):
            return set()
        query = sql.SQL("SELECT {}::text FROM {}").format(sql.Identifier(self.column), identifier(self.table))
        return {r[0] for r in conn.execute(query)}

    def problem(self, conn: psycopg.Connection) -> str | None:
        return (
            None if _exists(conn, self.table) else f"no {self.table} table (the runbook's [ledger] names it)"
        )

    def before(self, conn: psycopg.Connection, entry: Entry) -> None:
        self._labels[entry.migration] = label_column(conn, self.table)

    def record(self, entry: Entry, duration_ms: int | None) -> list[Statement]:
        names, values = [sql.Identifier(self.column)], [sql.Literal(entry.migration)]
        label = self._labels.get(entry.migration)
        if label:
            names.append(sql.Identifier(label))
            values.append(sql.Literal(entry.description or f"migration {entry.migration}"))
        return [
            sql.SQL(
                "INSERT INTO {} ({}) SELECT {} WHERE NOT EXISTS (SELECT 1 FROM {} WHERE {}::text = {})"
            ).format(
                identifier(self.table),
                sql.SQL(", ").join(names),
                sql.SQL(", ").join(values),
                identifier(self.table),
                sql.Identifier(self.column),
                sql.Literal(entry.migration),
            )
        ]

    def remove(self, entry: Entry, revert: str, duration_ms: int | None) -> list[Statement]:
        return [
            sql.SQL("DELETE FROM {} WHERE {}::text = {}").format(
                identifier(self.table), sql.Identifier(self.column), sql.Literal(entry.migration)
            )
        ]

    def failure_help(self, entry: Entry) -> str:
        return f"{self.label}: {entry.migration} not recorded (the failed file's transaction was rolled back)"


def label_column(conn: psycopg.Connection, table: str) -> str | None:
    rows = conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 "
        "AND NOT attisdropped",
        (table,),
    )
    columns = {r[0] for r in rows}
    return next((c for c in LABEL_COLUMNS if c in columns), None)
