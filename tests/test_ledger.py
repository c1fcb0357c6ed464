"""engine.ledger: the applied-files ledger and schema_migrations versions, on a real
version-005 database."""

from __future__ import annotations

import psycopg

from engine import ledger


def test_versions_recorded_idempotently_and_removed(db_005):
    assert ledger.applied_versions(db_005) == ["001", "002", "003", "004", "005"]
    ledger.record_version(db_005, "006", "platform.databases + RLS foundation")
    ledger.record_version(db_005, "006", "again")
    assert ledger.applied_versions(db_005) == ["001", "002", "003", "004", "005", "006"]
    with psycopg.connect(db_005) as conn:
        assert (
            conn.execute("SELECT description FROM schema_migrations WHERE version = '006'").fetchone()[0]
            == "platform.databases + RLS foundation"
        )
    ledger.remove_version(db_005, "006")
    assert ledger.applied_versions(db_005) == ["001", "002", "003", "004", "005"]


def test_ledger_schema_is_created_in_the_callers_transaction(db_005):
    assert ledger.applied_files(db_005, "006") == []
    with psycopg.connect(db_005) as conn:
        ledger.ensure_schema(conn)
        conn.rollback()
    assert ledger.applied_files(db_005, "006") == []  # still absent: the rollback took it away
    with psycopg.connect(db_005) as conn:
        ledger.ensure_schema(conn)
        ledger.ensure_schema(conn)  # idempotent
        conn.execute(
            ledger.INSERT_SQL,
            ("006", "r1", 1, "1.1", "a.sql", "ab" * 32, "U0LIU", "2026-01-01T00:00:00Z", 12, 3),
        )
    [row] = ledger.applied_files(db_005, "006")
    assert (row["run_id"], row["phase"], row["step"], row["file"], row["duration_ms"]) == (
        "r1",
        1,
        "1.1",
        "a.sql",
        12,
    )
    assert ledger.applied_files(db_005, "007") == []


def test_insert_literal_for_psql_matches_the_parameterised_insert(db_005):
    values = ("006", "r'1", 2, "2.1", "b.sql", "cd" * 32, "U0SERGEI", "2026-01-01T00:00:00Z", 5, 48)
    with psycopg.connect(db_005) as conn:
        ledger.ensure_schema(conn)
        conn.execute(ledger.insert_sql_literal(values))
    [row] = ledger.applied_files(db_005, "006")
    assert (row["run_id"], row["statements"]) == ("r'1", 48)
