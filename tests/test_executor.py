"""engine.executor against real scratch PostgreSQL databases: atomicity, lock time-outs and
retries with the blocker named, notices, inputs kept secret, cancel, psql files, ledger."""

from __future__ import annotations

import textwrap
import threading

import psycopg
import pytest

from engine import ledger
from engine.executor import Executor, LedgerRecord
from runbook.sqlfile import SqlFileError
from tests.support import pg
from tests.support.waiting import wait_until

SECRET = "S3cretInputValue-9f8e7d"
SETUP = """
CREATE SCHEMA platform;
CREATE TABLE platform.users (id int PRIMARY KEY, email text NOT NULL);
INSERT INTO platform.users SELECT g, 'u' || g || '@example.com' FROM generate_series(1, 5) g;
"""
RECORD = LedgerRecord(runbook="T", run_id="run-1", phase=1, step="1.1", actor="U0LIU")
FAST = dict(lock_timeout=0.2, retry_backoff=0.01)


@pytest.fixture
def db(scratch_db):
    url = scratch_db()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SETUP)
    return url


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def rows(url: str) -> list:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT * FROM platform.users ORDER BY id").fetchall()


def snapshot(url: str) -> tuple[str, list]:
    return pg.schema_dump(url), rows(url)


def test_success_reports_progress_notices_and_ledger(db, tmp_path):
    path = write(
        tmp_path,
        "ok.sql",
        """
        CREATE TABLE platform.databases (id int PRIMARY KEY, name text);
        DO $$ BEGIN RAISE NOTICE 'first'; END $$;
        INSERT INTO platform.databases VALUES (1, 'mongo');
        DO $$ BEGIN RAISE NOTICE 'second: % rows', (SELECT count(*) FROM platform.databases); END $$;
    """,
    )
    seen = []
    result = Executor(db).run_file(
        path, record=RECORD, on_progress=lambda k, n, s: seen.append((k, n, s.line)), **FAST
    )
    assert result.ok and result.atomic and result.attempts == 1 and result.error is None
    assert (result.statements, result.executed) == (4, 4)
    assert seen == [(1, 4, 1), (2, 4, 2), (3, 4, 3), (4, 4, 4)]
    assert result.notices == ["NOTICE: first", "NOTICE: second: 1 rows"]
    [row] = ledger.applied_files(db, "T")
    assert (row["file"], row["sha256"], row["actor"], row["statements"]) == (
        "ok.sql",
        result.sha256,
        "U0LIU",
        4,
    )


def test_failing_statement_leaves_database_exactly_as_before(db, tmp_path):
    path = write(
        tmp_path,
        "bad.sql",
        """
        CREATE TABLE platform.databases (id int PRIMARY KEY);
        INSERT INTO platform.users VALUES (6, 'six@example.com');
        ALTER TABLE platform.users ADD COLUMN status text;
        UPDATE platform.users
           SET email = NULL
         WHERE id = 1;
        CREATE INDEX users_email ON platform.users (email);
    """,
    )
    before = snapshot(db)
    result = Executor(db).run_file(path, record=RECORD, **FAST)
    assert not result.ok and not result.cancelled
    assert snapshot(db) == before
    assert result.error.file == "bad.sql"
    assert result.error.line == 4
    assert result.error.statement == "UPDATE platform.users SET email = NULL WHERE id = 1"
    assert result.error.sqlstate == "23502"
    assert 'null value in column "email"' in result.error.message
    assert result.executed == 3  # statements 1–3 ran, then were rolled back with the file
    assert ledger.applied_files(db, "T") == []


def test_file_that_does_not_parse_is_refused_before_touching_the_database(db, tmp_path):
    path = write(
        tmp_path,
        "stray.sql",
        """
        ALTER TABLE platform.users ENABLE ROW LEVEL SECURITY;
        DO $$ BEGIN RAISE NOTICE 'ok'; END $$;
        RAISE NOTICE 'stray';
        CREATE POLICY p ON platform.users FOR SELECT USING (true);
    """,
    )
    before = snapshot(db)
    with pytest.raises(SqlFileError) as err:
        Executor(db).run_file(path)
    assert err.value.line == 3
    assert snapshot(db) == before
    assert (
        pg.scalar(db, "SELECT relrowsecurity FROM pg_class WHERE oid = 'platform.users'::regclass") is False
    )


def test_lock_held_by_another_session_times_out_retries_and_names_the_blocker(db, tmp_path):
    path = write(
        tmp_path,
        "rls.sql",
        """
        DO $$ BEGIN RAISE NOTICE 'lock_timeout=%', current_setting('lock_timeout'); END $$;
        ALTER TABLE platform.users ENABLE ROW LEVEL SECURITY;
        CREATE POLICY users_select ON platform.users FOR SELECT USING (true);
    """,
    )
    with psycopg.connect(db) as holder:
        holder.execute("LOCK TABLE platform.users IN ACCESS EXCLUSIVE MODE")
        holder_pid = holder.info.backend_pid
        result = Executor(db).run_file(path, lock_retries=2, **FAST)
        holder.rollback()
    assert not result.ok and result.lock_timed_out
    assert result.attempts == 3  # the first attempt and two retries
    assert result.notices == []  # the locks are taken before the first statement runs
    assert (result.error.line, result.error.sqlstate) == (2, "55P03")
    assert 'could not obtain lock on relation "platform.users"' in result.error.message
    [blocker] = result.blockers
    assert blocker.pid == holder_pid
    assert "LOCK TABLE platform.users IN ACCESS EXCLUSIVE MODE" in blocker.query
    assert blocker.state == "idle in transaction"
    assert (blocker.mode, blocker.relation) == ("AccessExclusiveLock", "platform.users")
    assert (
        pg.scalar(db, "SELECT relrowsecurity FROM pg_class WHERE oid = 'platform.users'::regclass") is False
    )


def test_readers_never_queue_behind_a_migration_waiting_for_its_lock(db, tmp_path):
    """A report holds ACCESS SHARE; the migration needs ACCESS EXCLUSIVE. Plain DDL would sit
    in the lock queue and block every later SELECT; the executor's NOWAIT polling does not."""
    path = write(tmp_path, "rls.sql", "ALTER TABLE platform.users ENABLE ROW LEVEL SECURITY;\n")
    holder = psycopg.connect(db)
    holder.execute("SELECT count(*) FROM platform.users")  # a long report, still open
    holder_pid = holder.info.backend_pid
    executor = Executor(db)
    box = {}
    worker = threading.Thread(
        target=lambda: box.setdefault("r", executor.run_file(path, lock_timeout=1.0, lock_retries=0))
    )
    worker.start()
    reads = 0
    with psycopg.connect(db, autocommit=True) as reader:
        reader.execute("SET lock_timeout = '100ms'")  # a queued reader would fail with 55P03
        wait_until(lambda: executor.backend_pid is not None)
        while executor.backend_pid is not None:
            assert reader.execute("SELECT count(*) FROM platform.users").fetchone()[0] == 5
            reads += 1
    worker.join()
    holder.close()
    result = box["r"]
    assert reads > 0 and not result.ok and result.lock_timed_out
    assert result.blockers[0].pid == holder_pid
    assert result.blockers[0].mode == "AccessShareLock"


def test_retry_succeeds_once_the_blocker_is_gone(db, tmp_path):
    path = write(tmp_path, "alter.sql", "ALTER TABLE platform.users ADD COLUMN status text;\n")
    holder = psycopg.connect(db)
    holder.execute("LOCK TABLE platform.users IN ACCESS SHARE MODE")
    executor = Executor(db)
    box = {}
    worker = threading.Thread(
        target=lambda: box.setdefault(
            "r", executor.run_file(path, lock_timeout=0.2, retry_backoff=0.5, lock_retries=3)
        )
    )
    worker.start()
    # First attempt started, could not take its lock, gave up (connection closed, backing off):
    wait_until(lambda: executor.backend_pid is not None)
    wait_until(lambda: executor.backend_pid is None)
    holder.rollback()
    holder.close()
    worker.join()
    result = box["r"]
    assert result.ok and result.attempts >= 2
    assert result.blockers and "ACCESS SHARE" in result.blockers[0].query
    assert (
        pg.scalar(
            db,
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' "
            "AND column_name = 'status'",
        )
        == 1
    )


def test_inputs_reach_sql_and_never_appear_in_results(db, tmp_path):
    path = write(
        tmp_path,
        "secret.sql",
        """
        DO $$ BEGIN RAISE NOTICE 'got %', current_setting('migrate.register_url'); END $$;
        INSERT INTO platform.users VALUES (7, current_setting('migrate.register_url'));
        SELECT current_setting('migrate.register_url')::int;
    """,
    )
    result = Executor(db).run_file(path, inputs={"migrate.register_url": SECRET}, record=RECORD, **FAST)
    assert not result.ok and result.error.sqlstate == "22P02"
    assert result.notices == ["NOTICE: got ***"]
    assert "***" in result.error.message
    assert SECRET not in repr(result)
    assert [r[0] for r in rows(db)] == [1, 2, 3, 4, 5]
    # the setting was transaction-local: a new session does not see it
    assert pg.scalar(db, "SELECT current_setting('migrate.register_url', true)") in (None, "")


def test_input_reaches_sql_on_success(db, tmp_path):
    path = write(
        tmp_path, "in.sql", "INSERT INTO platform.users VALUES (8, current_setting('migrate.email'));\n"
    )
    result = Executor(db).run_file(path, inputs={"migrate.email": "it's me@example.com"}, **FAST)
    assert result.ok
    assert pg.scalar(db, "SELECT email FROM platform.users WHERE id = 8") == "it's me@example.com"


def test_cancel_during_a_long_statement_rolls_back(db, tmp_path):
    path = write(
        tmp_path,
        "slow.sql",
        """
        CREATE TABLE platform.databases (id int);
        SELECT pg_sleep(30);
        INSERT INTO platform.databases VALUES (1);
    """,
    )
    executor = Executor(db)
    box = {}
    worker = threading.Thread(target=lambda: box.setdefault("r", executor.run_file(path, **FAST)))
    worker.start()
    wait_until(lambda: executor.backend_pid is not None and _sleeping(db, executor.backend_pid))
    assert executor.cancel() is True
    worker.join(timeout=10)
    result = box["r"]
    assert result.cancelled and not result.ok
    assert result.error.sqlstate == "57014" and result.error.line == 2
    assert pg.scalar(db, "SELECT to_regclass('platform.databases')") is None
    # once cancelled, nothing further runs until reset
    again = executor.run_file(write(tmp_path, "next.sql", "CREATE TABLE platform.x (a int);\n"))
    assert again.cancelled and again.attempts == 0
    assert pg.scalar(db, "SELECT to_regclass('platform.x')") is None
    executor.reset_cancel()
    assert executor.run_file(tmp_path / "next.sql").ok


def test_own_begin_commit_runs_in_one_transaction_without_warnings(db, tmp_path):
    good = write(tmp_path, "tx.sql", "BEGIN;\nCREATE TABLE platform.a (x int);\nCOMMIT;\n")
    result = Executor(db).run_file(good, **FAST)
    assert result.ok and result.statements == 1 and result.notices == []
    bad = write(tmp_path, "txbad.sql", "BEGIN;\nCREATE TABLE platform.b (x int);\nSELECT 1/0;\nCOMMIT;\n")
    result = Executor(db).run_file(bad, **FAST)
    assert not result.ok and result.error.line == 3
    assert pg.scalar(db, "SELECT to_regclass('platform.b')") is None


def test_non_transactional_file_runs_in_autocommit(db, tmp_path):
    path = write(
        tmp_path,
        "conc.sql",
        """
        CREATE INDEX CONCURRENTLY users_email ON platform.users (email);
        DO $$ BEGIN RAISE NOTICE 'lock_timeout=%', current_setting('lock_timeout'); END $$;
    """,
    )
    result = Executor(db).run_file(path, record=RECORD, **FAST)
    assert result.ok and not result.atomic
    assert result.notices == ["NOTICE: lock_timeout=200ms"]
    assert pg.scalar(db, "SELECT count(*) FROM pg_indexes WHERE indexname = 'users_email'") == 1
    assert [r["file"] for r in ledger.applied_files(db, "T")] == ["conc.sql"]


def test_file_with_meta_commands_runs_through_psql(db, tmp_path):
    path = write(
        tmp_path,
        "meta.sql",
        """
        \\echo starting
        SELECT count(*) AS n FROM platform.users \\gset
        \\echo users: :n
        INSERT INTO platform.users VALUES (9, current_setting('migrate.email'));
        DO $$ BEGIN RAISE NOTICE 'inserted %', current_setting('migrate.email'); END $$;
    """,
    )
    result = Executor(db).run_file(path, inputs={"migrate.email": SECRET}, record=RECORD, **FAST)
    assert result.ok, result.error
    assert result.output == "starting\nusers: 5\n"
    assert result.notices == ["NOTICE: inserted ***"]
    assert pg.scalar(db, "SELECT email FROM platform.users WHERE id = 9") == SECRET
    assert [r["file"] for r in ledger.applied_files(db, "T")] == ["meta.sql"]


def test_psql_file_failure_is_atomic_and_names_the_line(db, tmp_path):
    path = write(
        tmp_path,
        "metabad.sql",
        """
        \\echo starting
        CREATE TABLE platform.c (x int);
        SELECT current_setting('migrate.v')::int;
    """,
    )
    before = snapshot(db)
    result = Executor(db).run_file(path, inputs={"migrate.v": SECRET}, record=RECORD, **FAST)
    assert not result.ok
    assert (result.error.line, result.error.sqlstate) == (3, "22P02")
    assert result.error.statement == "SELECT current_setting('migrate.v')::int"
    assert SECRET not in repr(result)
    assert snapshot(db) == before
    assert ledger.applied_files(db, "T") == []


# ------------------------------------------------------------------ helpers


def _sleeping(url: str, pid: int) -> bool:
    return bool(
        pg.scalar(
            url, "SELECT count(*) FROM pg_stat_activity WHERE pid = %s AND query LIKE %s", (pid, "%pg_sleep%")
        )
    )


def test_error_position_inside_a_multiline_statement_gives_the_exact_line(db, tmp_path):
    path = write(
        tmp_path,
        "pos.sql",
        """
        CREATE TABLE platform.a (x int);
        INSERT INTO platform.a VALUES (1);
        SELECT x,
               x + 1,
               no_such_column
          FROM platform.a;
    """,
    )
    result = Executor(db).run_file(path, **FAST)
    assert (result.error.line, result.error.sqlstate) == (5, "42703")
    assert result.error.statement == "SELECT x, x + 1, no_such_column FROM platform.a"


# ------------------------------------------------------------------ the real 006 runbook


def test_runbook_006_phases_1_and_2_reach_appendix_b(settings):
    """Phase 1 and 2 of the shipped runbook through the executor on a version-005 database;
    the runbook's own checks (Appendix B) hold, no plaintext secret lands in the table."""
    from engine.verify import run_checks, run_suite
    from runbook.model import load_runbook
    from sql import DEFAULT_RUNBOOK

    rb = load_runbook(DEFAULT_RUNBOOK)
    inputs = {
        "migrate.register_mongodb_url": settings.register_mongodb_url,
        "migrate.register_redis_url": settings.register_redis_url,
        "app.encryption_key": settings.encryption_key,
    }
    executor = Executor(settings.database_url, secrets=settings.secrets())
    for number in (1, 2):
        phase = rb.phase(number)
        for step in phase.steps:
            record = LedgerRecord(rb.id, "run-006", number, step.id, "U0RAFAEL")
            result = executor.run_step(rb, step, inputs=inputs, record=record)
            assert result.ok, (step.file, result.error)
            text = repr(result)
            assert not any(secret in text for secret in settings.secrets())
        evidence = run_checks(settings.database_url, phase.checks)
        assert [(e.name, e.ok) for e in evidence] == [(c.name, True) for c in phase.checks], evidence
    assert [r["file"] for r in ledger.applied_files(settings.database_url, "006")] == [
        s.file for p in (1, 2) for s in rb.phase(p).steps
    ]
    dump = pg.schema_dump(settings.database_url)
    with psycopg.connect(settings.database_url) as conn:
        stored = " ".join(str(v) for row in conn.execute("SELECT * FROM platform.databases") for v in row)
    for secret in settings.secrets():
        assert secret not in stored and secret not in dump
    # Phase 3's suites, through psql, judged by their output.
    for suite in rb.phase(3).suites:
        outcome = run_suite(
            settings.database_url,
            rb.file_path(suite.file),
            suite,
            inputs={"app.encryption_key": settings.encryption_key},
            secrets=settings.secrets(),
        )
        assert outcome.ok, (suite.file, outcome.reason, outcome.output[-2000:])
        assert not any(secret in repr(outcome) for secret in settings.secrets())


def test_cancel_stops_a_psql_run_and_rolls_back(db, tmp_path):
    path = write(
        tmp_path,
        "slowmeta.sql",
        """
        \\echo creating
        CREATE TABLE platform.databases (id int);
        SELECT pg_sleep(30);
    """,
    )
    executor = Executor(db, application_name="migrate-bot-test")
    box = {}
    worker = threading.Thread(target=lambda: box.setdefault("r", executor.run_file(path, **FAST)))
    worker.start()
    wait_until(
        lambda: pg.scalar(
            db,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND query LIKE 'SELECT pg_sleep(30)%'",
        )
    )
    assert executor.cancel() is True
    worker.join(timeout=10)
    result = box["r"]
    assert result.cancelled and not result.ok and result.error.sqlstate == "57014"
    assert pg.scalar(db, "SELECT to_regclass('platform.databases')") is None


def test_run_step_refuses_do_not_run_files_and_missing_inputs(db, tmp_path):
    from runbook.model import Step, load_runbook
    from sql import DEFAULT_RUNBOOK

    rb = load_runbook(DEFAULT_RUNBOOK)
    with pytest.raises(SqlFileError) as err:
        Executor(db).run_step(rb, Step(id="x", name="x", file="007_restrictive_rls_policies.sql"), inputs={})
    assert "DO NOT RUN" in str(err.value)
    register = rb.phase(1).steps[1]
    with pytest.raises(ValueError) as err:
        Executor(db).run_step(rb, register, inputs={"app.encryption_key": SECRET})
    assert "REGISTER_MONGODB_URL" in str(err.value) and SECRET not in str(err.value)


def test_a_connection_killed_mid_file_is_a_failed_result_not_a_crash(db, tmp_path):
    path = write(tmp_path, "killed.sql", "CREATE TABLE platform.k (a int);\nSELECT pg_sleep(30);\n")
    executor = Executor(db)
    box = {}
    worker = threading.Thread(target=lambda: box.setdefault("r", executor.run_file(path, **FAST)))
    worker.start()
    wait_until(lambda: executor.backend_pid is not None and _sleeping(db, executor.backend_pid))
    pg.scalar(db, "SELECT pg_terminate_backend(%s)", (executor.backend_pid,))
    worker.join(timeout=10)
    result = box["r"]
    assert not result.ok and not result.cancelled and result.error.line == 2
    assert pg.scalar(db, "SELECT to_regclass('platform.k')") is None


def test_psql_run_times_out_on_a_lock_retries_and_names_the_blocker(db, tmp_path):
    path = write(
        tmp_path, "metalock.sql", "\\echo altering\nALTER TABLE platform.users ADD COLUMN status text;\n"
    )
    with psycopg.connect(db) as holder:
        holder.execute("LOCK TABLE platform.users IN ACCESS SHARE MODE")
        holder_pid = holder.info.backend_pid
        result = Executor(db).run_file(path, lock_retries=1, **FAST)
        holder.rollback()
    assert not result.ok and result.lock_timed_out and result.attempts == 2
    assert (result.error.line, result.error.statement) == (
        2,
        "ALTER TABLE platform.users ADD COLUMN status text",
    )
    assert result.blockers[0].pid == holder_pid
    assert "LOCK TABLE platform.users IN ACCESS SHARE MODE" in result.blockers[0].query


def test_psql_file_that_turns_on_error_stop_off_still_fails_on_an_error(db, tmp_path):
    path = write(
        tmp_path,
        "nostop.sql",
        """
        \\set ON_ERROR_STOP off
        CREATE TABLE platform.d (x int);
        SELECT 1/0;
        \\echo still going
    """,
    )
    result = Executor(db).run_file(path, record=RECORD, **FAST)
    assert not result.ok and (result.error.line, result.error.sqlstate) == (3, "22012")
    assert pg.scalar(db, "SELECT to_regclass('platform.d')") is None  # -1: the whole file rolled back
    assert ledger.applied_files(db, "T") == []


def test_unreachable_database_is_a_failed_result_without_the_password(tmp_path):
    path = write(tmp_path, "any.sql", "SELECT 1;\n")
    dsn = "postgresql://postgres:Pw-Never-Shown-123@127.0.0.1:1/nowhere?connect_timeout=2"
    result = Executor(dsn).run_file(path, lock_retries=0)
    assert not result.ok and result.error is not None and result.attempts == 1
    assert "Pw-Never-Shown-123" not in repr(result)


def test_psql_inputs_with_spaces_and_backslashes_arrive_intact(db, tmp_path):
    value = "a key with  spaces\\and\\\\backslashes 'quoted'"
    path = write(
        tmp_path,
        "echo.sql",
        "\\pset tuples_only on\n\\pset format unaligned\nSELECT current_setting('app.v');\n",
    )
    result = Executor(db).run_file(path, inputs={"app.v": value}, **FAST)
    assert result.ok and result.output == "***\n"  # psql printed it; the result redacts it
    path2 = write(
        tmp_path,
        "check.sql",
        "\\echo checking\nDO $$ BEGIN IF current_setting('app.v') <> "
        + "$v$"
        + value
        + "$v$ THEN RAISE EXCEPTION 'mangled'; END IF; END $$;\n",
    )
    assert Executor(db).run_file(path2, inputs={"app.v": value}, **FAST).ok


def test_a_blockers_query_is_shown_without_its_literals():
    """Another session's query may carry secrets the bot does not know: its constants are removed."""
    from engine.blockers import to_blocker

    row = (
        4242,
        "UPDATE platform.api_keys SET key_hash = 'sk_live_9f8e7d6c5b4a' WHERE id = 7",
        "active",
        3.2,
        "RowExclusiveLock",
        "platform.api_keys",
    )
    blocker = to_blocker(row, secrets=())
    assert "sk_live_9f8e7d6c5b4a" not in blocker.query
    assert blocker.query.startswith("UPDATE platform.api_keys SET key_hash = $1")
    truncated = to_blocker((1, "SELECT 'secret-text' FROM (SELECT", "active", 1.0, None, None), secrets=())
    assert "secret-text" not in truncated.query


def _indexes(db: str, table: str) -> dict[str, bool]:
    """index name -> valid, for `table`."""
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT indexrelid::regclass::text, indisvalid FROM pg_index WHERE indrelid = %s::regclass",
            (table,),
        ).fetchall()
    return dict(rows)


def test_a_failed_concurrent_index_build_leaves_no_invalid_index_and_runs_again_once_fixed(db, tmp_path):
    """CREATE INDEX CONCURRENTLY commits its index before filling it: a build that fails (here a
    duplicate under UNIQUE) would leave an INVALID index, maintained on every write and in the
    way of the next attempt. The executor drops the one the failed statement left, says so, and
    the same file runs once the data is fixed."""
    path = write(
        tmp_path,
        "unique_email.sql",
        """
        ANALYZE platform.users;
        CREATE UNIQUE INDEX CONCURRENTLY users_email_key ON platform.users (email);
    """,
    )
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("UPDATE platform.users SET email = 'same@example.com' WHERE id IN (2, 3)")
    result = Executor(db).run_file(path, record=RECORD, **FAST)
    assert not result.ok and result.error.sqlstate == "23505" and result.error.line == 2
    assert (
        "the INVALID index platform.users_email_key the failed build left was dropped" in result.error.message
    )
    assert ledger.applied_files(db, "T") == []
    assert _indexes(db, "platform.users") == {"platform.users_pkey": True}

    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("UPDATE platform.users SET email = 'u3@example.com' WHERE id = 3")
    again = Executor(db).run_file(path, record=RECORD, **FAST)
    assert again.ok, again.error
    assert _indexes(db, "platform.users") == {"platform.users_pkey": True, "platform.users_email_key": True}


def test_if_not_exists_keeping_an_invalid_index_fails_the_file_with_what_to_do(db, tmp_path):
    """An INVALID index someone else's failed build left is not "already there": IF NOT EXISTS
    would skip it silently and the migration would report success without a usable index."""
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("UPDATE platform.users SET email = 'same@example.com' WHERE id IN (2, 3)")
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("CREATE UNIQUE INDEX CONCURRENTLY users_email_key ON platform.users (email)")
    assert _indexes(db, "platform.users")["platform.users_email_key"] is False
    path = write(
        tmp_path,
        "unique_email.sql",
        """
        CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS users_email_key ON platform.users (email);
    """,
    )
    result = Executor(db).run_file(path, record=RECORD, **FAST)
    assert not result.ok and result.error.line == 1
    assert "index platform.users_email_key exists but is INVALID" in result.error.message
    assert "DROP INDEX CONCURRENTLY platform.users_email_key;" in result.error.message
    assert _indexes(db, "platform.users")["platform.users_email_key"] is False  # not someone else's to drop
    assert ledger.applied_files(db, "T") == []


def test_a_failed_concurrent_index_build_in_a_psql_run_file_leaves_no_invalid_index(db, tmp_path):
    path = write(
        tmp_path,
        "unique_email_psql.sql",
        """
        \\echo building the unique index
        CREATE UNIQUE INDEX CONCURRENTLY users_email_key ON platform.users (email);
    """,
    )
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("UPDATE platform.users SET email = 'same@example.com' WHERE id IN (2, 3)")
    result = Executor(db).run_file(path, record=RECORD, **FAST)
    assert not result.ok and result.error.sqlstate == "23505"
    assert (
        "the INVALID index platform.users_email_key the failed build left was dropped" in result.error.message
    )
    assert _indexes(db, "platform.users") == {"platform.users_pkey": True}
