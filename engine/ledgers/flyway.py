"""Flyway's `flyway_schema_history`, written as Flyway writes it on PostgreSQL: one `SQL` row
per applied versioned migration (installed_rank, version, description, type, script,
checksum, installed_by, installed_on, execution_time, success), committed with the
migration; a failed migration leaves no row (its transaction rolled back, as with Flyway on a
transactional database); an undo (`U<version>__…`) adds an `UNDO_SQL` row, after which Flyway
shows the version as Undone."""

from __future__ import annotations

import re
import zlib

import psycopg
from psycopg import sql

from engine.ledgers.base import Entry, Ledger, Statement, _exists, duration_sql
from engine.ledgers.table import identifier
from runbook.flywaynames import parse_name
from runbook.model import Runbook

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def checksum(data: bytes) -> int:
    """Flyway's checksum (ChecksumCalculator): CRC-32 over the UTF-8 bytes of each line as
    Java's BufferedReader.readLine returns it (no line terminators), the first line without a
    byte-order mark, as a signed 32-bit int."""
    lines = _LINE_BREAK.split(data.decode("utf-8"))
    if lines and lines[0].startswith("\ufeff"):
        lines[0] = lines[0][1:]
    crc = 0
    for line in lines:
        crc = zlib.crc32(line.encode("utf-8"), crc)
    return crc - (1 << 32) if crc >= 1 << 31 else crc


def ddl(table: str) -> list[Statement]:
    """The history table as Flyway creates it on PostgreSQL (primary key + index on success)."""
    t, pk, idx = (
        identifier(table),
        sql.Identifier(f"{table.split('.')[-1]}_pk"),
        sql.Identifier(f"{table.split('.')[-1]}_s_idx"),
    )
    return [
        sql.SQL("SET LOCAL client_min_messages = warning"),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (installed_rank integer NOT NULL, version varchar(50), "
            "description varchar(200) NOT NULL, type varchar(20) NOT NULL, script varchar(1000) NOT NULL, "
            "checksum integer, installed_by varchar(100) NOT NULL, installed_on timestamp NOT NULL DEFAULT now(), "
            "execution_time integer NOT NULL, success boolean NOT NULL, CONSTRAINT {} PRIMARY KEY (installed_rank))"
        ).format(t, pk),
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (success)").format(idx, t),
    ]


class FlywayLedger(Ledger):
    kind = "flyway"

    def __init__(self, rb: Runbook):
        super().__init__(rb)
        self.table = rb.ledger.table or "flyway_schema_history"
        self.label = self.table
        self.tables = (self.table if "." in self.table else f"public.{self.table}",)

    def applied(self, conn: psycopg.Connection) -> set[str]:
        """Versions whose latest successful row is not an undo."""
        if not _exists(conn, self.table):
            return set()
        rows = conn.execute(
            sql.SQL(
                "SELECT DISTINCT ON (version) version, type FROM {} WHERE success AND version IS NOT NULL "
                "ORDER BY version, installed_rank DESC"
            ).format(identifier(self.table))
        )
        return {version for version, kind in rows if kind != "UNDO_SQL"}

    def problem(self, conn: psycopg.Connection) -> str | None:
        if not _exists(conn, self.table):
            return None
        failed = conn.execute(
            sql.SQL("SELECT version, script FROM {} WHERE NOT success ORDER BY installed_rank").format(
                identifier(self.table)
            )
        ).fetchall()
        if failed:
            return (
                f"{self.table} holds a failed migration ({', '.join(s for _, s in failed)}): Flyway refuses to "
                "migrate until it is resolved — check the database, then `flyway repair`"
            )
        return None

    def record(self, entry: Entry, duration_ms: int | None) -> list[Statement]:
        return [*ddl(self.table), self._row(entry, entry.migration, "SQL", duration_ms)]

    def remove(self, entry: Entry, revert: str, duration_ms: int | None) -> list[Statement]:
        undo = Entry(entry.migration, self.rb.file_path(revert), revert, entry.description, entry.actor)
        return [*ddl(self.table), self._row(undo, entry.migration, "UNDO_SQL", duration_ms)]

    def _row(self, entry: Entry, version: str, kind: str, duration_ms: int | None) -> Statement:
        parsed = parse_name(entry.script)
        description = parsed[2] if parsed else entry.description
        t = identifier(self.table)
        return sql.SQL(
            "INSERT INTO {} (installed_rank, version, description, type, script, checksum, installed_by, "
            "execution_time, success) SELECT coalesce(max(installed_rank), 0) + 1, {}, {}, {}, {}, {}, "
            "current_user, {}, true FROM {}"
        ).format(
            t,
            sql.Literal(version),
            sql.Literal(description[:200]),
            sql.Literal(kind),
            sql.Literal(entry.script),
            sql.Literal(checksum(entry.file.read_bytes())),
            duration_sql(duration_ms),
            t,
        )

    def failure_help(self, entry: Entry) -> str:
        return (
            f"{self.table}: no row for {entry.script} — on PostgreSQL Flyway records nothing for a failed "
            f"migration (its transaction rolled back); fix the script, then run it again (no `flyway repair` needed)"
        )
