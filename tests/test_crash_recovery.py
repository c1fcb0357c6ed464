"""Crash recovery for real: a PostgreSQL connection terminated mid-file, a console process
SIGKILLed mid-phase, a `serve` process SIGKILLed mid-phase, and Redis losing the run state.

After each, the database is what it was before the step (the open transaction died with
its connection: the test waits until PostgreSQL has noticed the dead client), nothing was
re-run, the run says what happened, and the phase can be run again to completion.
"""

from __future__ import annotations

import io
import json
import signal
import threading

import pytest

from bot.console import run_command
from commands import Core
from engine import ledger
from state.machine import PhaseStatus, Status
from tests.support import pg, processes
from tests.support import runbooks as rbs

COORDINATOR, TPM, LIU, SERGEI = "U0RAFAEL", "U0DYLAN", "U0LIU", "U0SERGEI"
# The run lock's TTL for the bot processes these tests kill (MIGRATE_LOCK_TTL_SECONDS): a dead
# owner's run becomes "interrupted" this long after its last heartbeat.
SHORT_TTL = 3.0


@pytest.fixture
def sleeping(ready, tmp_path):
    """Settings whose step 1.1 sleeps 240 s at the end of its transaction (only in the live db)."""
    dbname = ready.database_url.rsplit("/", 1)[1]
    return ready.with_(runbook_path=rbs.sleeping_runbook(tmp_path, dbname), lock_ttl_seconds=SHORT_TTL)


def _do(core: Core, user: str, text: str, expect: int = 0) -> str:
    out = io.StringIO()
    code = run_command(core, user, text, out)
    assert code == expect, out.getvalue()
    return out.getvalue()


def _approved(core: Core) -> None:
    _do(core, COORDINATOR, "preflight")
    _do(core, TPM, "approve")


def _kill(proc) -> None:
    """SIGKILL a bot process (no clean-up runs: the crash under test), and reap it."""
    try:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _sleeping_step(core: Core) -> int:
    """Wait until step 1.1's backend sleeps in its transaction; its pid."""
    pid = rbs.wait_until(lambda: rbs.step_backend(core), what="step 1.1 in progress")
    rbs.wait_until(
        lambda: (
            pg.scalar(
                core.settings.database_url, "SELECT wait_event FROM pg_stat_activity WHERE pid = %s", (pid,)
            )
            == "PgSleep"
        ),
        what="step 1.1 sleeping",
    )
    return pid


def _assert_unchanged(url: str, schema_before: str) -> None:
    assert pg.schema_dump(url) == schema_before
    assert pg.scalar(url, "SELECT to_regclass('platform.databases')") is None
    assert ledger.applied_files(url, "006") == []  # the ledger row died with the transaction


def test_connection_terminated_mid_file_rolls_back_and_reports_the_real_cause(sleeping):
    core = Core.from_settings(sleeping)
    _approved(core)
    schema_before = pg.schema_dump(sleeping.database_url)
    out, result = io.StringIO(), {}
    worker = threading.Thread(target=lambda: result.update(code=run_command(core, LIU, "run phase 1", out)))
    worker.start()
    pid = _sleeping_step(core)
    assert pg.scalar(sleeping.database_url, "SELECT pg_terminate_backend(%s)", (pid,))
    worker.join(timeout=120)
    assert not worker.is_alive()
    text = out.getvalue()
    assert result["code"] == 1, text
    assert "Migration 006 FAILED" in text and "Internal error" not in text
    error = next(line for line in text.splitlines() if line.strip().startswith("Error:"))
    assert "006_add_platform_databases_table.sql:" in error
    assert "terminating connection due to administrator command" in error  # the real cause
    # Step 1.1 is the phase's first, atomic file: its transaction died with the connection, so
    # nothing of the phase is in the database and its rollback file must not run (README,
    # failure policies); the bot compares the database with its state before the step.
    assert "Rollback Status: Not needed" in text, text
    assert "Database Status: Unchanged — schema and row counts" in text, text
    run = core.store.current()
    assert run.status is Status.FAILED and run.phases[1].status is PhaseStatus.FAILED
    _assert_unchanged(sleeping.database_url, schema_before)


@pytest.fixture
def blocking(ready, tmp_path):
    """Settings whose step 1.1 waits (10 min lock_timeout) for a lock the test holds."""
    return ready.with_(runbook_path=rbs.blocking_runbook(tmp_path), lock_ttl_seconds=SHORT_TTL)


def _after_the_crash(core: Core, pid: int, schema_before: str) -> None:
    """What every crash test checks once the bot process is dead: PostgreSQL noticed (the
    backend is gone), the next command reports the run interrupted, nothing was applied or
    re-run, and `run phase 1` then completes."""
    url = core.settings.database_url
    rbs.wait_until(
        lambda: not rbs.backend_alive(url, pid), timeout=60, what="PostgreSQL to notice the dead client"
    )
    # The dead process's lock expires by its TTL (SHORT_TTL, given to it as MIGRATE_LOCK_TTL_SECONDS).
    rbs.wait_until(lambda: not core.lock.held(), timeout=60, what="the dead process's run lock to expire")
    out = _do(core, COORDINATOR, "status")
    assert "was interrupted" in out and "Nothing was re-run" in out, out
    assert "No backend of the bot is left in a transaction" in out
    assert (
        "Database: matches the pre-migration schema" in out
        and "Ledger: committed in this run: nothing" in out
    )
    run = core.store.current()
    assert run.status is Status.INTERRUPTED and run.phases[1].status is PhaseStatus.FAILED
    assert "interrupted" in out.split("Run ", 1)[1]
    _assert_unchanged(url, schema_before)
    assert "was interrupted" not in _do(core, COORDINATOR, "status")  # reported once
    out = _do(core, LIU, "run phase 1")
    assert "Phase 1 complete" in out
    assert pg.scalar(url, "SELECT count(*) FROM platform.databases") == 2


def test_console_killed_mid_phase_leaves_an_interrupted_run_and_an_unchanged_database(blocking):
    core = Core.from_settings(blocking)
    _approved(core)
    schema_before = pg.schema_dump(blocking.database_url)
    held = rbs.TableLock(blocking.database_url)
    proc = rbs.start_console(blocking, LIU, "run phase 1")
    try:
        pid = rbs.wait_until(lambda: rbs.step_backend(core), what="step 1.1 in progress")
        assert core.store.current().status is Status.RUNNING
    finally:
        _kill(proc)
        held.release()  # a backend queued for the lock notices its dead client once it gets the lock
    assert proc.returncode == -signal.SIGKILL
    _after_the_crash(core, pid, schema_before)


def _lose_redis(redis_client, prefix: str) -> None:
    """Redis restarted without persistence: every key of the bot is gone."""
    keys = list(redis_client.scan_iter(match=f"{prefix}*", count=500))
    assert keys
    redis_client.delete(*keys)


def test_redis_flushed_between_phases_rebuilds_from_postgresql_and_refuses_to_run(ready, redis_client):
    core = Core.from_settings(ready)
    schema_005 = pg.schema_dump(ready.database_url)
    _approved(core)
    _do(core, LIU, "run phase 1")
    run_id = core.store.current().id
    _lose_redis(redis_client, ready.redis_prefix)
    assert core.store.current() is None

    out = _do(core, "U0NOBODY", "status")  # anyone looking triggers the rebuild, and is told
    assert f"run {run_id} rebuilt from the PostgreSQL history" in out
    assert "status phase done; phase 1 succeeded" in out and "Could not rebuild:" in out
    assert "Phase 1 Database infrastructure: succeeded" in out
    assert "Rebuilt from the PostgreSQL history after Redis lost the state" in out
    run = core.store.current()
    assert run.id == run_id and run.meta.get("rebuilt")

    assert "run `/migrate preflight` again" in _do(core, SERGEI, "run phase 2", expect=2)
    out = _do(core, TPM, "approve", expect=2)  # a rebuilt run's approval is revoked, not renewable
    assert "rebuilt from history" in out and "cannot be renewed" in out and "new pre-flight" in out
    assert "was lost from Redis" not in _do(core, COORDINATOR, "status")  # reported once
    # The way back stays open: phase 1 rolls back, proven against the 005 snapshot.
    out = _do(core, LIU, "rollback phase 1")
    assert "Schema equals the pre-migration schema" in out
    assert pg.schema_dump(ready.database_url) == schema_005


def test_redis_flushed_while_approved_refuses_run_until_a_fresh_preflight(ready, redis_client):
    core = Core.from_settings(ready)
    _approved(core)
    _lose_redis(redis_client, ready.redis_prefix)

    out = _do(core, COORDINATOR, "run", expect=2)  # the rebuild happens first, then `run` refuses
    assert "rebuilt from the PostgreSQL history" in out and "run `/migrate preflight` again" in out
    assert pg.scalar(ready.database_url, "SELECT to_regclass('platform.databases')") is None
    _do(core, COORDINATOR, "preflight")  # a fresh preflight replaces the rebuilt run
    _do(core, TPM, "approve")
    assert "Phase 1 complete" in _do(core, LIU, "run phase 1")


def test_serve_killed_mid_phase_leaves_an_interrupted_run_and_an_unchanged_database(blocking):
    from tests.support.slack_standin import SlackSender, SlackStandIn

    core = Core.from_settings(blocking)
    _approved(core)
    schema_before = pg.schema_dump(blocking.database_url)
    held = rbs.TableLock(blocking.database_url)
    with SlackStandIn() as standin:
        proc, url = rbs.start_serve(blocking, standin.base_url)
        try:
            slack = SlackSender(url, blocking.slack_signing_secret, standin)
            assert slack.slash(LIU, "run phase 1").status == 200
            pid = rbs.wait_until(lambda: rbs.step_backend(core), what="step 1.1 in progress")
            standin.wait_method("chat.postMessage", where=lambda b: "Phase 1 started" in json.dumps(b))
        finally:
            _kill(proc)
            held.release()
    assert proc.returncode == -signal.SIGKILL
    _after_the_crash(core, pid, schema_before)


def test_a_backend_the_dead_process_left_running_ends_by_itself(sleeping):
    """pg_sleep does not read the socket; the executor's client_connection_check_interval makes
    PostgreSQL notice the dead client anyway and roll back within a second or so."""
    core = Core.from_settings(sleeping)
    _approved(core)
    schema_before = pg.schema_dump(sleeping.database_url)
    proc = rbs.start_console(sleeping, LIU, "run phase 1")
    try:
        pid = _sleeping_step(core)
    finally:
        _kill(proc)
    rbs.wait_until(
        lambda: not rbs.backend_alive(sleeping.database_url, pid),
        what="PostgreSQL to end the dead client's backend",
    )
    rbs.wait_until(lambda: not core.lock.held(), timeout=60, what="the dead process's run lock to expire")
    out = _do(core, COORDINATOR, "status")
    assert "was interrupted" in out and "No backend of the bot is left in a transaction" in out, out
    _assert_unchanged(sleeping.database_url, schema_before)
    assert core.store.current().status is Status.INTERRUPTED


def test_a_backend_still_in_its_transaction_is_reported_and_blocks_run(sleeping):
    """When PostgreSQL cannot tell the client is gone (a network cut before keepalives fire),
    a bot backend stays inside its transaction: the notice says so and run is refused."""
    import psycopg

    core = Core.from_settings(sleeping)
    _approved(core)
    proc = rbs.start_console(sleeping, LIU, "run phase 1")
    try:
        _sleeping_step(core)
    finally:
        _kill(proc)
    # Stands in for the unreachable client: a bot-named backend holding a transaction open.
    with psycopg.connect(sleeping.database_url, application_name="migrate-bot") as orphan:
        orphan.execute("SELECT 1")
        pid = orphan.info.backend_pid
        rbs.wait_until(lambda: not core.lock.held(), timeout=60, what="the dead process's run lock to expire")
        out = _do(core, COORDINATOR, "status")
        assert (
            "was interrupted" in out and f"A backend of the bot is still in a transaction (pid {pid}" in out
        ), out
        out = _do(core, LIU, "run phase 1", expect=2)
        assert f"still inside its transaction (pid {pid}" in out, out
    assert core.store.current().status is Status.INTERRUPTED


def test_a_copy_left_by_an_interrupted_restore_is_named(settings):
    """A restore killed before its swap leaves its new database behind (the live one is
    untouched: the swap is one transaction); the interrupted notice names it."""
    from commands.abort import interruption_facts

    core = Core.from_settings(settings)
    run = core.store.create(COORDINATOR, core.runbook.id)
    live = settings.database_url.rsplit("/", 1)[1]
    leftover = f"{live}_restore_20991231_235959"
    pg.create_database(leftover)
    try:
        lines = interruption_facts(core, run)
    finally:
        pg.drop_database(leftover)
    assert any(f"database `{leftover}`" in line and f"DROP DATABASE {leftover};" in line for line in lines), (
        lines
    )
    assert "Ledger: committed in this run: nothing" in lines


def _bot_psql_sleeping(url: str) -> int | None:
    """The backend of a psql the executor started, once it sleeps inside step 1.1."""
    return pg.scalar(
        url,
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name LIKE 'migrate-bot/%%' AND wait_event = 'PgSleep'",
    )


def test_a_step_run_through_psql_dies_with_the_killed_bot_and_rolls_back(ready, tmp_path):
    """A file with psql meta-commands runs in a psql child. When the bot is SIGKILLed, that
    child must not go on applying the migration unwatched: it gets the parent-death signal, its
    backend notices the closed connection within a second, and the transaction rolls back."""
    url = ready.database_url
    runbook = rbs.sleeping_runbook(tmp_path, url.rsplit("/", 1)[1])
    rbs.append_to_file(runbook, rbs.STEP_1_1, "\\echo step 1.1 done")  # a meta-command: the file needs psql
    # psql runs the executor's private copy of the verified bytes (tmp …/source/<file>), in this database
    step_file = (f"/source/{rbs.STEP_1_1}", f"dbname={url.rsplit('/', 1)[1]}")
    settings = ready.with_(runbook_path=runbook, lock_ttl_seconds=SHORT_TTL)
    core = Core.from_settings(settings)
    _approved(core)
    schema_before = pg.schema_dump(url)
    proc = rbs.start_console(settings, LIU, "run phase 1")
    try:
        pid = rbs.wait_until(lambda: _bot_psql_sleeping(url), what="step 1.1 sleeping in its psql")
        assert processes.running_with(*step_file), "step 1.1 does not run in a psql child"
    finally:
        _kill(proc)
    rbs.wait_until(
        lambda: not processes.running_with(*step_file), timeout=10, what="the psql child to die with the bot"
    )
    rbs.wait_until(lambda: not rbs.backend_alive(url, pid), timeout=10, what="its backend to end")
    _assert_unchanged(url, schema_before)
    rbs.wait_until(lambda: not core.lock.held(), timeout=60, what="the dead process's run lock to expire")
    out = _do(core, COORDINATOR, "status")
    assert "was interrupted" in out and "No backend of the bot is left in a transaction" in out, out
    assert core.store.current().status is Status.INTERRUPTED
