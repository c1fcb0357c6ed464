"""The catalog snapshot (engine/catalog_snapshot.py) is as strong as `pg_dump --schema-only`:
over many schema states of one database, two states' catalog snapshots differ exactly when
their pg_dumps (normalized as the rollback proof compares them) differ.

The states: the 005 baseline, then every migration of the generated folders
(tests/support/migration_folders.py) and a list of changes of every kind the snapshot
describes (comments, privileges, defaults, constraints, row security, types, storage, options,
partitions, inheritance, identity, owners…), each applied, undone, and applied again; some
undo files do not return the schema exactly (a column re-added at the end), some changes are
invisible to pg_dump (a sequence's position, the ledger's table, the bot's schema), some are of
kinds only pg_dump describes (an aggregate: the snapshot says it is incomplete). Every pair of
states is compared both ways.
"""

from __future__ import annotations

import difflib
import itertools

import psycopg
import pytest

from engine import catalog_snapshot, schema
from tests.support.migration_folders import generated

# (up, down): down returns the schema exactly unless the name says otherwise.
CHANGES = [
    (
        "CREATE TABLE cs_t (id int PRIMARY KEY, a text, b int, r int4range)",
        "DROP TABLE cs_t",
    ),
    ("ALTER TABLE cs_t ALTER COLUMN b TYPE bigint", "ALTER TABLE cs_t ALTER COLUMN b TYPE int"),
    (
        'ALTER TABLE cs_t ALTER COLUMN a TYPE text COLLATE "C"',
        'ALTER TABLE cs_t ALTER COLUMN a TYPE text COLLATE "default"',
    ),
    ("COMMENT ON TABLE cs_t IS 'table'", "COMMENT ON TABLE cs_t IS NULL"),
    ("COMMENT ON COLUMN cs_t.a IS 'column a'", "COMMENT ON COLUMN cs_t.a IS NULL"),
    ("GRANT SELECT ON cs_t TO pg_monitor", "REVOKE SELECT ON cs_t FROM pg_monitor"),
    ("GRANT UPDATE (a) ON cs_t TO pg_monitor", "REVOKE UPDATE (a) ON cs_t FROM pg_monitor"),
    ("REVOKE TRUNCATE ON cs_t FROM postgres", "GRANT TRUNCATE ON cs_t TO postgres"),
    ("ALTER TABLE cs_t ALTER COLUMN a SET DEFAULT 'x'", "ALTER TABLE cs_t ALTER COLUMN a DROP DEFAULT"),
    ("ALTER TABLE cs_t ALTER COLUMN b SET NOT NULL", "ALTER TABLE cs_t ALTER COLUMN b DROP NOT NULL"),
    (
        "ALTER TABLE cs_t ADD CONSTRAINT cs_b_pos CHECK (b > 0) NOT VALID",
        "ALTER TABLE cs_t DROP CONSTRAINT cs_b_pos",
    ),
    (
        "ALTER TABLE cs_t ADD CONSTRAINT cs_b_pos2 CHECK (b > 0)",
        "ALTER TABLE cs_t DROP CONSTRAINT cs_b_pos2",
    ),
    (
        "ALTER TABLE cs_t ADD CONSTRAINT cs_a_key UNIQUE (a) DEFERRABLE INITIALLY DEFERRED",
        "ALTER TABLE cs_t DROP CONSTRAINT cs_a_key",
    ),
    (
        "ALTER TABLE cs_t ADD CONSTRAINT cs_self FOREIGN KEY (b) REFERENCES cs_t (id) ON DELETE CASCADE",
        "ALTER TABLE cs_t DROP CONSTRAINT cs_self",
    ),
    (
        "ALTER TABLE cs_t ADD CONSTRAINT cs_no_overlap EXCLUDE USING gist (r WITH &&)",
        "ALTER TABLE cs_t DROP CONSTRAINT cs_no_overlap",
    ),
    (
        "ALTER TABLE cs_t RENAME CONSTRAINT cs_a_key TO cs_a_uq",
        "ALTER TABLE cs_t RENAME CONSTRAINT cs_a_uq TO cs_a_key",
    ),
    ("ALTER TABLE cs_t ENABLE ROW LEVEL SECURITY", "ALTER TABLE cs_t DISABLE ROW LEVEL SECURITY"),
    ("ALTER TABLE cs_t FORCE ROW LEVEL SECURITY", "ALTER TABLE cs_t NO FORCE ROW LEVEL SECURITY"),
    (
        "CREATE POLICY cs_p ON cs_t FOR SELECT TO pg_monitor USING (b > 1)",
        "DROP POLICY cs_p ON cs_t",
    ),
    (
        "CREATE POLICY cs_p2 ON cs_t AS RESTRICTIVE FOR UPDATE USING (true) WITH CHECK (b < 5)",
        "DROP POLICY cs_p2 ON cs_t",
    ),
    ("COMMENT ON CONSTRAINT cs_t_pkey ON cs_t IS 'pk'", "COMMENT ON CONSTRAINT cs_t_pkey ON cs_t IS NULL"),
    (
        "CREATE RULE cs_r AS ON DELETE TO cs_t WHERE old.b = 0 DO INSTEAD NOTHING",
        "DROP RULE cs_r ON cs_t",
    ),
    ("CREATE TYPE cs_mood AS ENUM ('sad', 'ok')", "DROP TYPE cs_mood"),
    (
        "ALTER TYPE cs_mood ADD VALUE 'happy' BEFORE 'ok'",
        "DROP TYPE cs_mood; CREATE TYPE cs_mood AS ENUM ('sad', 'ok')",
    ),
    ("CREATE TYPE cs_pair AS (x int, y text)", "DROP TYPE cs_pair"),
    ("COMMENT ON TYPE cs_pair IS 'pair'", "COMMENT ON TYPE cs_pair IS NULL"),
    ("CREATE DOMAIN cs_pos AS int DEFAULT 1 NOT NULL CHECK (VALUE > 0)", "DROP DOMAIN cs_pos"),
    (
        "ALTER DOMAIN cs_pos ADD CONSTRAINT cs_small CHECK (VALUE < 100)",
        "ALTER DOMAIN cs_pos DROP CONSTRAINT cs_small",
    ),
    (
        "ALTER TABLE cs_t ALTER COLUMN a SET STORAGE EXTERNAL",
        "ALTER TABLE cs_t ALTER COLUMN a SET STORAGE EXTENDED",
    ),
    (
        "ALTER TABLE cs_t ALTER COLUMN a SET COMPRESSION pglz",
        "ALTER TABLE cs_t ALTER COLUMN a SET COMPRESSION DEFAULT",
    ),
    (
        "ALTER TABLE cs_t ALTER COLUMN b SET STATISTICS 500",
        "ALTER TABLE cs_t ALTER COLUMN b SET STATISTICS -1",
    ),
    (
        "ALTER TABLE cs_t ALTER COLUMN b SET (n_distinct = 5)",
        "ALTER TABLE cs_t ALTER COLUMN b RESET (n_distinct)",
    ),
    ("ALTER TABLE cs_t SET (fillfactor = 70)", "ALTER TABLE cs_t RESET (fillfactor)"),
    (
        "ALTER TABLE cs_t SET (toast.autovacuum_enabled = false)",
        "ALTER TABLE cs_t RESET (toast.autovacuum_enabled)",
    ),
    ("ALTER TABLE cs_t SET UNLOGGED", "ALTER TABLE cs_t SET LOGGED"),
    ("ALTER TABLE cs_t REPLICA IDENTITY FULL", "ALTER TABLE cs_t REPLICA IDENTITY DEFAULT"),
    ("ALTER TABLE cs_t REPLICA IDENTITY USING INDEX cs_t_pkey", "ALTER TABLE cs_t REPLICA IDENTITY DEFAULT"),
    ("ALTER TABLE cs_t CLUSTER ON cs_t_pkey", "ALTER TABLE cs_t SET WITHOUT CLUSTER"),
    (
        "ALTER TABLE cs_t ADD COLUMN n bigint GENERATED BY DEFAULT AS IDENTITY (START WITH 7)",
        "ALTER TABLE cs_t DROP COLUMN n",
    ),
    (
        "ALTER TABLE cs_t ADD COLUMN g int GENERATED ALWAYS AS (b * 2) STORED",
        "ALTER TABLE cs_t DROP COLUMN g",
    ),
    ("CREATE TABLE cs_ne (p int, q int, s int)", "DROP TABLE cs_ne"),
    ("ALTER TABLE cs_ne RENAME COLUMN p TO pp", "ALTER TABLE cs_ne RENAME COLUMN pp TO p"),
    # not exact: the column comes back at the end of the table
    ("ALTER TABLE cs_ne DROP COLUMN q", "ALTER TABLE cs_ne ADD COLUMN q int"),
    # not exact: the column's default is left behind
    (
        "ALTER TABLE cs_ne ADD COLUMN IF NOT EXISTS d int DEFAULT 3",
        "ALTER TABLE cs_ne DROP COLUMN d; ALTER TABLE cs_ne ADD COLUMN d int",
    ),
    ("CREATE INDEX cs_expr ON cs_t ((lower(a)))", "DROP INDEX cs_expr"),
    (
        "ALTER INDEX cs_expr ALTER COLUMN 1 SET STATISTICS 300",
        "ALTER INDEX cs_expr ALTER COLUMN 1 SET STATISTICS -1",
    ),
    ("COMMENT ON INDEX cs_expr IS 'expr'", "COMMENT ON INDEX cs_expr IS NULL"),
    ("ALTER INDEX cs_expr RENAME TO cs_expr2", "ALTER INDEX cs_expr2 RENAME TO cs_expr"),
    ("CREATE INDEX cs_part ON cs_t (id) WHERE b > 0", "DROP INDEX cs_part"),
    ("CREATE STATISTICS cs_st (dependencies) ON a, b FROM cs_t", "DROP STATISTICS cs_st"),
    (
        "CREATE FUNCTION cs_f(x int) RETURNS int LANGUAGE sql STABLE AS $$ SELECT x + 1 $$",
        "DROP FUNCTION cs_f(int)",
    ),
    (
        "CREATE OR REPLACE FUNCTION cs_f(x int) RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT x + 1 $$",
        "CREATE OR REPLACE FUNCTION cs_f(x int) RETURNS int LANGUAGE sql STABLE AS $$ SELECT x + 1 $$",
    ),
    (
        "CREATE OR REPLACE FUNCTION cs_f(x int) RETURNS int LANGUAGE sql STABLE AS $$ SELECT x + 2 $$",
        "CREATE OR REPLACE FUNCTION cs_f(x int) RETURNS int LANGUAGE sql STABLE AS $$ SELECT x + 1 $$",
    ),
    (
        "ALTER FUNCTION cs_f(int) SECURITY DEFINER SET search_path = pg_catalog",
        "ALTER FUNCTION cs_f(int) SECURITY INVOKER RESET ALL",
    ),
    ("REVOKE EXECUTE ON FUNCTION cs_f(int) FROM PUBLIC", "GRANT EXECUTE ON FUNCTION cs_f(int) TO PUBLIC"),
    (
        "GRANT EXECUTE ON FUNCTION cs_f(int) TO pg_monitor",
        "REVOKE EXECUTE ON FUNCTION cs_f(int) FROM pg_monitor",
    ),
    ("COMMENT ON FUNCTION cs_f(int) IS 'f'", "COMMENT ON FUNCTION cs_f(int) IS NULL"),
    ("CREATE PROCEDURE cs_proc() LANGUAGE sql AS $$ SELECT 1 $$", "DROP PROCEDURE cs_proc()"),
    (
        "CREATE FUNCTION cs_trg() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;"
        "CREATE TRIGGER cs_trg BEFORE INSERT OR UPDATE OF a ON cs_t FOR EACH ROW WHEN (NEW.b > 0) EXECUTE FUNCTION cs_trg()",
        "DROP FUNCTION cs_trg() CASCADE",
    ),
    ("ALTER TABLE cs_t DISABLE TRIGGER cs_trg", "ALTER TABLE cs_t ENABLE TRIGGER cs_trg"),
    ("COMMENT ON TRIGGER cs_trg ON cs_t IS 'trg'", "COMMENT ON TRIGGER cs_trg ON cs_t IS NULL"),
    (
        "CREATE CONSTRAINT TRIGGER cs_ctrg AFTER INSERT ON cs_t DEFERRABLE FOR EACH ROW EXECUTE FUNCTION cs_trg()",
        "DROP TRIGGER cs_ctrg ON cs_t",
    ),
    (
        "CREATE VIEW cs_v WITH (security_barrier) AS SELECT id, a FROM cs_t WHERE id > 0 WITH CHECK OPTION",
        "DROP VIEW cs_v",
    ),
    ("ALTER VIEW cs_v ALTER COLUMN a SET DEFAULT 'v'", "ALTER VIEW cs_v ALTER COLUMN a DROP DEFAULT"),
    ("ALTER VIEW cs_v RENAME COLUMN a TO label", "ALTER VIEW cs_v RENAME COLUMN label TO a"),
    ("ALTER VIEW cs_v RESET (security_barrier)", "ALTER VIEW cs_v SET (security_barrier)"),
    (
        "CREATE MATERIALIZED VIEW cs_mv AS SELECT count(*) AS n FROM cs_t WITH NO DATA",
        "DROP MATERIALIZED VIEW cs_mv",
    ),
    ("CREATE SEQUENCE cs_seq AS int START 5 INCREMENT 2 MAXVALUE 1000 CACHE 3 CYCLE", "DROP SEQUENCE cs_seq"),
    ("ALTER SEQUENCE cs_seq OWNED BY cs_t.id", "ALTER SEQUENCE cs_seq OWNED BY NONE"),
    ("ALTER SEQUENCE cs_seq INCREMENT 3", "ALTER SEQUENCE cs_seq INCREMENT 2"),
    ("GRANT USAGE ON SEQUENCE cs_seq TO pg_monitor", "REVOKE USAGE ON SEQUENCE cs_seq FROM pg_monitor"),
    # invisible to pg_dump --schema-only: a sequence's position
    ("SELECT setval('cs_seq', 50)", "SELECT setval('cs_seq', 5, false)"),
    (
        "CREATE TABLE cs_parted (k int, v text) PARTITION BY RANGE (k);"
        "CREATE TABLE cs_parted_1 PARTITION OF cs_parted FOR VALUES FROM (0) TO (10);"
        "CREATE INDEX cs_parted_k ON cs_parted (k)",
        "DROP TABLE cs_parted",
    ),
    (
        "CREATE TABLE cs_parted_2 PARTITION OF cs_parted FOR VALUES FROM (10) TO (20)",
        "DROP TABLE cs_parted_2",
    ),
    (
        "CREATE TRIGGER cs_ptrg AFTER INSERT ON cs_parted FOR EACH ROW EXECUTE FUNCTION cs_trg()",
        "DROP TRIGGER cs_ptrg ON cs_parted",
    ),
    (
        "ALTER TABLE cs_parted ADD CONSTRAINT cs_parted_k_pos CHECK (k >= 0)",
        "ALTER TABLE cs_parted DROP CONSTRAINT cs_parted_k_pos",
    ),
    (
        "ALTER TABLE cs_parted_1 ALTER COLUMN v SET DEFAULT 'p1'",
        "ALTER TABLE cs_parted_1 ALTER COLUMN v DROP DEFAULT",
    ),
    (
        "ALTER TABLE cs_parted DETACH PARTITION cs_parted_2",
        "ALTER TABLE cs_parted ATTACH PARTITION cs_parted_2 FOR VALUES FROM (10) TO (20)",
    ),
    ("COMMENT ON POLICY cs_p ON cs_t IS 'p'", "COMMENT ON POLICY cs_p ON cs_t IS NULL"),
    ("COMMENT ON RULE cs_r ON cs_t IS 'r'", "COMMENT ON RULE cs_r ON cs_t IS NULL"),
    ("ALTER TABLE cs_t ADD COLUMN tags text[] DEFAULT '{}'", "ALTER TABLE cs_t DROP COLUMN tags"),
    ("ALTER TABLE cs_t ADD COLUMN p cs_pos", "ALTER TABLE cs_t DROP COLUMN p"),
    (
        "ALTER TABLE cs_t ALTER COLUMN n SET INCREMENT BY 5",
        "ALTER TABLE cs_t ALTER COLUMN n SET INCREMENT BY 1",
    ),
    (
        "ALTER TABLE cs_t ALTER COLUMN n SET GENERATED ALWAYS",
        "ALTER TABLE cs_t ALTER COLUMN n SET GENERATED BY DEFAULT",
    ),
    ("ALTER SEQUENCE cs_seq RENAME TO cs_seq2", "ALTER SEQUENCE cs_seq2 RENAME TO cs_seq"),
    ("ALTER TYPE cs_mood RENAME VALUE 'sad' TO 'blue'", "ALTER TYPE cs_mood RENAME VALUE 'blue' TO 'sad'"),
    ("CREATE VIEW cs_fv AS SELECT cs_f(id) AS f FROM cs_t", "DROP VIEW cs_fv"),
    ("CREATE TABLE cs_child (extra int) INHERITS (cs_t)", "DROP TABLE cs_child"),
    ("ALTER TABLE cs_child NO INHERIT cs_t", "ALTER TABLE cs_child INHERIT cs_t"),
    ("CREATE SCHEMA cs_s; CREATE TABLE cs_s.t2 (x int)", "DROP SCHEMA cs_s CASCADE"),
    ("GRANT USAGE ON SCHEMA cs_s TO pg_monitor", "REVOKE USAGE ON SCHEMA cs_s FROM pg_monitor"),
    ("COMMENT ON SCHEMA cs_s IS 's'", "COMMENT ON SCHEMA cs_s IS NULL"),
    ("ALTER TABLE cs_ne SET SCHEMA cs_s", "ALTER TABLE cs_s.cs_ne SET SCHEMA public"),
    # ownership is not compared (normalize drops OWNER TO); privileges follow the owner
    ("ALTER TABLE cs_t OWNER TO pg_monitor", "ALTER TABLE cs_t OWNER TO postgres"),
    ("ALTER FUNCTION cs_f(int) OWNER TO pg_monitor", "ALTER FUNCTION cs_f(int) OWNER TO postgres"),
    ("CREATE EXTENSION IF NOT EXISTS citext", "DROP EXTENSION citext"),
    (
        "COMMENT ON EXTENSION citext IS 'ci'",
        "COMMENT ON EXTENSION citext IS 'data type for case-insensitive character strings'",
    ),
    # invisible to pg_dump: the ledger's table, the bot's schema
    ("CREATE TABLE IF NOT EXISTS schema_migrations (version text)", "SELECT 1"),
    (
        "ALTER TABLE schema_migrations ADD COLUMN cs_extra int",
        "ALTER TABLE schema_migrations DROP COLUMN cs_extra",
    ),
    (
        "CREATE SCHEMA IF NOT EXISTS migrate_bot; CREATE TABLE migrate_bot.cs_x (i int)",
        "DROP TABLE migrate_bot.cs_x",
    ),
    # only pg_dump describes these: the snapshot is incomplete, and still differs
    ("CREATE AGGREGATE cs_sum (int) (SFUNC = int4pl, STYPE = int)", "DROP AGGREGATE cs_sum (int)"),
    ("CREATE TYPE cs_range AS RANGE (subtype = float8)", "DROP TYPE cs_range"),
    (
        "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO pg_monitor",
        "ALTER DEFAULT PRIVILEGES REVOKE SELECT ON TABLES FROM pg_monitor",
    ),
]


def _generated_changes() -> list[tuple[str, str]]:
    return [(m.up, m.down) for m in generated(24) if m.up.strip() and not m.up.lstrip().startswith("--")]


def _state(conn: psycopg.Connection, url: str) -> tuple[list[str], str, bool]:
    text, complete = catalog_snapshot.take(conn)  # a connection of its own, as the bot's
    return schema.normalize(schema.schema_dump(url)), text, complete


@pytest.mark.slow
def test_the_catalog_snapshot_differs_exactly_when_pg_dump_does(db_005):
    states: list[tuple[str, list[str], str, bool]] = []
    with psycopg.connect(db_005, autocommit=True) as conn, psycopg.connect(db_005, autocommit=True) as look:
        states.append(("005", *_state(look, db_005)))
        for k, (up, down) in enumerate(_generated_changes() + CHANGES):
            for label, sql in (("up", up), ("down", down), ("up again", up)):
                conn.execute(sql)
                states.append((f"#{k} {label}: {sql[:70]}", *_state(look, db_005)))
    assert any(not complete for *_x, complete in states) and sum(c for *_x, c in states) > 150
    mismatches = []
    for (la, dump_a, cat_a, full_a), (lb, dump_b, cat_b, full_b) in itertools.combinations(states, 2):
        if not (full_a or full_b):
            continue  # both incomplete: pg_dump is what gets compared (engine.schema.snapshot)
        if (dump_a == dump_b) != (cat_a == cat_b):
            diff = difflib.unified_diff(cat_a.splitlines(), cat_b.splitlines(), lineterm="", n=0)
            dump_diff = difflib.unified_diff(dump_a, dump_b, lineterm="", n=0)
            mismatches.append(
                f"{la}  vs  {lb}: pg_dump {'equal' if dump_a == dump_b else 'differs'}, catalog "
                f"{'equal' if cat_a == cat_b else 'differs'}\n  catalog: {list(diff)[2:8]}\n  pg_dump: {list(dump_diff)[2:8]}"
            )
    assert not mismatches, f"{len(mismatches)} pairs disagree:\n" + "\n".join(mismatches[:15])
    equal_pairs = sum(a[1] == b[1] for a, b in itertools.combinations(states, 2))
    assert equal_pairs > 100  # both directions were exercised: many equal pairs, the rest differ


def test_the_exclusions_are_pg_dumps():
    """The snapshot leaves out what engine/schema.py's pg_dump flags leave out."""
    assert catalog_snapshot.EXCLUDED_SCHEMAS == (schema.BOT_SCHEMA, "sqitch")
    assert schema.LEDGER_EXCLUDES == (
        "--exclude-schema=sqitch",
        *(f"--exclude-table=*.{t}" for t in catalog_snapshot.EXCLUDED_TABLES),
    )
