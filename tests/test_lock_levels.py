"""Timeouts per lock level (issue 16): a concurrent index build waits for older snapshots as long
as the runbook allows, says whom it waits for, is not retried blindly and never leaves an INVALID
index; ACCESS EXCLUSIVE files use their level's short timeout and retries; auto_analyze."""

from __future__ import annotations

import textwrap
import threading
import time
from pathlib import Path

import psycopg
import pytest

from commands import Core
from engine.executor import Executor
from runbook.model import load_runbook
from tests.support import pg
from tests.support.flow import LIU, Console
from tests.support.runbooks import TableLock


def execute(url: str, statement: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


def busy_table(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.busy (id bigint PRIMARY KEY, payload text NOT NULL)")
        conn.execute("INSERT INTO public.busy SELECT g, md5(g::text) FROM generate_series(1, 20000) g")


class OldSnapshot:
    """A session holding a snapshot older than any build that starts after it (a long report,
    an idle-in-transaction client): every concurrent build in the database must wait for it."""

    def __init__(self, url: str):
        self.conn = psycopg.connect(url)
        self.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        self.conn.execute("SELECT count(*) FROM platform.organizations")  # not the table being indexed
        self.pid = self.conn.info.backend_pid

    def end(self) -> None:
        if not self.conn.closed:
            self.conn.rollback()
            self.conn.close()


def runbook(tmp_path: Path, sql: str, extra: str = "") -> Path:
    folder = tmp_path / "rb"
    folder.mkdir(exist_ok=True)
    (folder / "step.sql").write_text(textwrap.dedent(sql).strip() + "\n")
    (folder / "runbook.toml").write_text(
        textwrap.dedent("""
        [runbook]
        id = "901"
        version = "901"

        [defaults]
        lock_timeout = "500ms"
        lock_retries = 3
        retry_backoff = "100ms"

        [[phases]]
        number = 1
        name = "Indexes"
        owner = "database-engineer"

        [[phases.steps]]
        id = "1.1"
        file = "step.sql"
        """)
        + textwrap.dedent(extra)
    )
    return folder / "runbook.toml"


def run(url: str, path: Path, waits: list | None = None):
    rb = load_runbook(path)
    started = time.monotonic()
    result = Executor(url).run_step(
        rb, rb.phases[0].steps[0], inputs={}, on_wait=(waits.append if waits is not None else None)
    )
    return result, time.monotonic() - started


def invalid_indexes(url: str) -> int:
    return pg.scalar(url, "SELECT count(*) FROM pg_index WHERE NOT indisvalid")


CONCURRENT_3S = """
[lock_timeouts.concurrent]
lock_timeout = "3s"
"""


@pytest.mark.alone  # an upper bound on elapsed time: tests/support/alone.py
def test_concurrent_build_waits_for_an_old_snapshot_up_to_its_level_names_it_and_leaves_nothing(
    db_005, tmp_path
):
    busy_table(db_005)
    path = runbook(
        tmp_path,
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS busy_payload_idx ON public.busy (payload);",
        CONCURRENT_3S,
    )
    old, waits = OldSnapshot(db_005), []
    try:
        result, elapsed = run(db_005, path, waits)
    finally:
        old.end()
    assert not result.ok and result.error.sqlstate == "55P03", result.error
    assert result.attempts == 1  # no blind retry of a concurrent build
    assert 3.0 <= elapsed < 6.0  # the runbook's concurrent lock_timeout, not the default 500 ms × 4 attempts
    assert old.pid in [b.pid for b in waits]  # said whom it waited for, while it waited
    assert old.pid in [b.pid for b in result.blockers]
    assert "INVALID index public.busy_payload_idx the failed build left was dropped" in result.error.message
    assert invalid_indexes(db_005) == 0
    assert pg.scalar(db_005, "SELECT to_regclass('public.busy_payload_idx') IS NULL")


def test_concurrent_build_outlives_a_snapshot_that_ends_within_its_wait(db_005, tmp_path):
    busy_table(db_005)
    path = runbook(
        tmp_path,
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS busy_payload_idx ON public.busy (payload);",
        CONCURRENT_3S.replace("3s", "20s"),
    )
    old, waits = OldSnapshot(db_005), []
    threading.Timer(1.5, old.end).start()
    result, elapsed = run(db_005, path, waits)
    assert result.ok, result.error
    assert elapsed >= 1.5 and result.attempts == 1  # waited (the default 500 ms would have cancelled it)
    assert old.pid in [b.pid for b in waits]
    assert pg.scalar(
        db_005, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'public.busy_payload_idx'::regclass"
    )


def test_a_failed_reindex_concurrently_leaves_no_invalid_index(db_005, tmp_path):
    busy_table(db_005)
    execute(db_005, "CREATE INDEX busy_payload_idx ON public.busy (payload)")
    path = runbook(
        tmp_path, "REINDEX INDEX CONCURRENTLY public.busy_payload_idx;", CONCURRENT_3S.replace("3s", "1s")
    )
    old = OldSnapshot(db_005)
    try:
        result, _ = run(db_005, path)
    finally:
        old.end()
    assert not result.ok and result.error.sqlstate == "55P03"
    assert "busy_payload_idx_ccnew" in result.error.message and "dropped" in result.error.message
    assert invalid_indexes(db_005) == 0
    assert pg.scalar(
        db_005, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'public.busy_payload_idx'::regclass"
    )


@pytest.mark.alone  # an upper bound on elapsed time: tests/support/alone.py
def test_access_exclusive_files_use_their_level_timeout_and_retries_and_a_step_can_override(db_005, tmp_path):
    busy_table(db_005)
    level = """
    [lock_timeouts."ACCESS EXCLUSIVE"]
    lock_timeout = "300ms"
    lock_retries = 1
    """
    path = runbook(tmp_path, "ALTER TABLE public.busy ADD COLUMN note text;", level)
    with TableLock(db_005, "public.busy") as holder:
        result, elapsed = run(db_005, path)
        assert not result.ok and result.attempts == 2  # the level's retries, not the default 3
        assert elapsed < 1.5 and holder.pid in [b.pid for b in result.blockers]
        path.write_text(
            path.read_text().replace('file = "step.sql"', 'file = "step.sql"\nlock_timeout = "200ms"')
        )
        result, _ = run(db_005, path)
        assert not result.ok and result.attempts == 4  # the step's own lock_timeout: the defaults' retries


def test_auto_analyze_runs_analyze_on_the_indexed_table_only_when_asked(db_005, tmp_path):
    busy_table(db_005)
    sql = "CREATE INDEX busy_payload_idx ON public.busy (payload);"
    last_analyze = (
        "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relid = 'public.busy'::regclass"
    )
    result, _ = run(db_005, runbook(tmp_path, sql))
    assert result.ok and not pg.scalar(db_005, last_analyze)
    execute(db_005, "DROP INDEX public.busy_payload_idx")
    result, _ = run(db_005, runbook(tmp_path, sql, "[lock_safety]\nauto_analyze = true\n"))
    assert result.ok and "ANALYZE public.busy after its index was built (auto_analyze)" in result.notices
    assert pg.scalar(db_005, last_analyze)


def test_run_posts_whom_a_concurrent_build_waits_for_while_it_waits(settings, tmp_path):
    busy_table(settings.database_url)
    path = runbook(
        tmp_path,
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS busy_payload_idx ON public.busy (payload);",
        CONCURRENT_3S.replace("3s", "30s"),
    )
    (path.parent / "down.sql").write_text("DROP INDEX CONCURRENTLY IF EXISTS public.busy_payload_idx;\n")
    path.write_text(
        path.read_text().replace(
            'owner = "database-engineer"\n', 'owner = "database-engineer"\nrollback = "down.sql"\n'
        )
    )
    console = Console(Core.from_settings(settings.with_(runbook_path=path)))
    console.approved()
    old = OldSnapshot(settings.database_url)
    threading.Timer(2.0, old.end).start()
    code, out = console(LIU, "run phase 1")
    assert code == 0, out
    assert f"Step 1.1 step.sql is waiting for pid {old.pid}" in out and "idle in transaction" in out
    assert pg.scalar(
        settings.database_url,
        "SELECT indisvalid FROM pg_index WHERE indexrelid = 'public.busy_payload_idx'::regclass",
    )


def test_a_psql_run_file_gets_the_concurrent_wait_and_its_failed_reindex_leaves_no_invalid_index(
    db_005, tmp_path
):
    busy_table(db_005)
    execute(db_005, "CREATE INDEX busy_payload_idx ON public.busy (payload)")
    path = runbook(
        tmp_path,
        """
        \\echo rebuilding busy_payload_idx
        REINDEX INDEX CONCURRENTLY public.busy_payload_idx;
    """,
        CONCURRENT_3S.replace("3s", "2s"),
    )
    old, waits = OldSnapshot(db_005), []
    try:
        result, elapsed = run(db_005, path, waits)
    finally:
        old.end()
    assert not result.ok and result.attempts == 1 and elapsed >= 2.0  # the concurrent wait, not 500 ms × 4
    assert old.pid in [b.pid for b in waits]
    assert "busy_payload_idx_ccnew" in result.error.message and "dropped" in result.error.message
    assert invalid_indexes(db_005) == 0


def test_the_rehearsal_times_each_statement_lock_in_autocommit_and_the_transaction_otherwise(
    db_005, tmp_path
):
    from preflight.held import TimedExecutor

    busy_table(db_005)
    path = runbook(
        tmp_path,
        """
        CREATE INDEX CONCURRENTLY IF NOT EXISTS busy_payload_idx ON public.busy (payload);
        SELECT pg_sleep(0.3);
        CREATE INDEX CONCURRENTLY IF NOT EXISTS busy_id_payload_idx ON public.busy (id, payload);
    """,
    )
    rb = load_runbook(path)
    timed = TimedExecutor(Executor(db_005), rb)
    assert timed.run_step(rb, rb.phases[0].steps[0], inputs={}).ok
    assert set(timed.held) == {"step.sql:1", "step.sql:3"}  # the statements that lock a table
    assert all("(the statement, autocommit)" in text for text in timed.held.values())
    (path.parent / "step.sql").write_text("ALTER TABLE public.busy ADD COLUMN note text;\n")
    rb = load_runbook(path)
    assert timed.run_step(rb, rb.phases[0].steps[0], inputs={}).ok
    assert "locks are held until commit" in timed.held["step.sql:1"]
