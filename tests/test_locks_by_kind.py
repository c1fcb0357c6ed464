"""The lock planner, object kind by object kind, against the real PostgreSQL.

Each case is one statement in a file, run by the executor. The file ends by copying its own
backend's pg_locks into a table, so what the statement really took is observed: every lock
the parser predicts must be there, and the locks taken up front (LOCK TABLE … NOWAIT) are
only on tables, which is all LOCK TABLE accepts without side effects (PostgreSQL docs,
"Explicit Locking" and LOCK: it refuses indexes, sequences, materialized views and composite
types; on a view it also locks every table the view reads).
"""

from __future__ import annotations

import textwrap

import psycopg
import pytest

from engine import locks
from engine.executor import Executor
from runbook.sqlfile import parse_file

SETUP = """
CREATE SCHEMA platform;
CREATE TABLE platform.t (a int PRIMARY KEY, b int);
CREATE INDEX ti ON platform.t (b);
CREATE SEQUENCE platform.s;
CREATE VIEW platform.v AS SELECT a, b FROM platform.t;
CREATE MATERIALIZED VIEW platform.m AS SELECT a FROM platform.t;
CREATE FUNCTION platform.f() RETURNS int LANGUAGE sql AS 'SELECT 1';
CREATE FUNCTION platform.trg() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
CREATE TYPE platform.mood AS ENUM ('ok');
CREATE TYPE platform.ct AS (x int);
CREATE SCHEMA other;
CREATE POLICY p ON platform.t USING (true);
CREATE TRIGGER tr BEFORE UPDATE ON platform.t FOR EACH ROW EXECUTE FUNCTION platform.trg();
"""
PROBE = """
CREATE TABLE public.lock_probe AS
SELECT relation::oid AS rel, mode FROM pg_locks
WHERE pid = pg_backend_pid() AND locktype = 'relation' AND granted;
"""
AE, SHARE, SUE, SRE = "ACCESS EXCLUSIVE", "SHARE", "SHARE UPDATE EXCLUSIVE", "SHARE ROW EXCLUSIVE"

# statement, the locks taken up front [(level, table)]
CASES = {
    "drop index": ("DROP INDEX platform.ti;", [(AE, "platform.t")]),
    "rename index": ("ALTER INDEX platform.ti RENAME TO tj;", []),
    "reindex index": ("REINDEX INDEX platform.ti;", [(SHARE, "platform.t")]),
    "create index": ("CREATE INDEX tb ON platform.t (a, b);", [(SHARE, "platform.t")]),
    "alter sequence": ("ALTER SEQUENCE platform.s RESTART WITH 10;", []),
    "rename sequence": ("ALTER SEQUENCE platform.s RENAME TO s2;", []),
    "drop sequence": ("DROP SEQUENCE platform.s;", []),
    "drop view": ("DROP VIEW platform.v;", []),
    "rename view": ("ALTER VIEW platform.v RENAME TO v2;", []),
    "alter view": ("ALTER VIEW platform.v ALTER COLUMN b SET DEFAULT 1;", []),
    "replace view": ("CREATE OR REPLACE VIEW platform.v AS SELECT a, b, 1 AS c FROM platform.t;", []),
    "instead-of trigger on a view": (
        "CREATE TRIGGER vt INSTEAD OF INSERT ON platform.v FOR EACH ROW EXECUTE FUNCTION platform.trg();",
        [],
    ),
    "drop materialized view": ("DROP MATERIALIZED VIEW platform.m;", []),
    "refresh materialized view": ("REFRESH MATERIALIZED VIEW platform.m;", []),
    "index on a materialized view": ("CREATE INDEX mi ON platform.m (a);", []),
    "drop function": ("DROP FUNCTION platform.f();", []),
    "rename function": ("ALTER FUNCTION platform.f() RENAME TO g;", []),
    "enum value": ("ALTER TYPE platform.mood ADD VALUE 'meh';", []),
    "composite type attribute": ("ALTER TYPE platform.ct ADD ATTRIBUTE y int;", []),
    "rename schema": ("ALTER SCHEMA other RENAME TO other2;", []),
    "drop schema": ("DROP SCHEMA other;", []),
    "extension": ("CREATE EXTENSION IF NOT EXISTS pgcrypto SCHEMA platform;", []),
    "create policy": ("CREATE POLICY q ON platform.t FOR SELECT USING (a > 0);", [(AE, "platform.t")]),
    "drop policy": ("DROP POLICY p ON platform.t;", [(AE, "platform.t")]),
    "create trigger": (
        "CREATE TRIGGER tr2 AFTER INSERT ON platform.t FOR EACH ROW EXECUTE FUNCTION platform.trg();",
        [(SRE, "platform.t")],
    ),
    "drop trigger": ("DROP TRIGGER tr ON platform.t;", [(AE, "platform.t")]),
    "rename column": ("ALTER TABLE platform.t RENAME COLUMN b TO c;", [(AE, "platform.t")]),
    "rename table": ("ALTER TABLE platform.t RENAME TO t2;", [(AE, "platform.t")]),
}


@pytest.fixture
def db(scratch_db):
    url = scratch_db()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SETUP)
    return url


def _mode(level: str) -> str:
    """ "SHARE ROW EXCLUSIVE" -> "ShareRowExclusiveLock" (pg_locks' spelling)."""
    return "".join(w.capitalize() for w in level.split()) + "Lock"


@pytest.mark.parametrize("case", list(CASES))
def test_each_object_kind_runs_and_its_predicted_locks_are_the_ones_taken(db, tmp_path, case):
    statement, up_front = CASES[case]
    path = tmp_path / "m.sql"
    path.write_text(statement + "\n" + textwrap.dedent(PROBE))
    parsed = parse_file(path)
    stmt = parsed.body[0]
    predicted = [(level, rel) for level, rel in stmt.locks]
    with psycopg.connect(db) as conn:
        oids = {
            rel: conn.execute("SELECT to_regclass(%s)::oid", (rel,)).fetchone()[0]
            for _, rel in predicted + list(stmt.index_table_locks)
        }
        planned = [(lock.level, lock.relation) for lock in locks.existing(conn, locks.lock_plan(parsed))]
        table_of_index = conn.execute("SELECT 'platform.t'::regclass::oid").fetchone()[0]
    assert planned == up_front

    result = Executor(db).run_file(path, lock_timeout=1.0, lock_retries=0)
    assert result.ok, result.error and result.error.describe()

    with psycopg.connect(db) as conn:
        seen = set(conn.execute("SELECT rel, mode FROM public.lock_probe").fetchall())
    for level, rel in predicted:
        assert (oids[rel], _mode(level)) in seen, f"{case}: predicted {level} on {rel}, pg_locks: {seen}"
    for level, _index in stmt.index_table_locks:
        assert (table_of_index, _mode(level)) in seen, f"{case}: predicted {level} on the index's table"


def test_a_lock_table_the_server_refuses_names_the_statement_and_its_line(db, tmp_path):
    """Not 55P03: LOCK TABLE itself is refused (here: no privilege). The error names the
    file's line and the statement that needed the lock (it was `file:0` with no statement)."""
    role = f"ea_reader_{db.rsplit('/', 1)[1][-8:]}"
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"GRANT USAGE ON SCHEMA platform TO {role}")
        conn.execute(f"GRANT SELECT ON platform.t TO {role}")
    try:
        path = tmp_path / "alter.sql"
        path.write_text("SELECT 1;\n\nALTER TABLE platform.t\n  ADD COLUMN c int;\n")
        reader_url = db.replace("postgres@", f"{role}@", 1)
        result = Executor(reader_url).run_file(path, lock_timeout=0.5, lock_retries=0)
        assert not result.ok
        assert (result.error.file, result.error.line, result.error.sqlstate) == ("alter.sql", 3, "42501")
        assert result.error.statement == "ALTER TABLE platform.t ADD COLUMN c int"
    finally:
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")
