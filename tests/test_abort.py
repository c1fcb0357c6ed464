"""`abort` during a phase blocked on a lock held by another session: the phase stops without
waiting for the lock, its transaction rolls back, the database is unchanged (checked by the
bot and by the test), the failure template says so; from the same process and from another.
"""

from __future__ import annotations

import io
import threading

import pytest

from bot.console import run_command
from commands import Core
from state.machine import Status
from tests.support import pg
from tests.support import runbooks as rbs

COORDINATOR, TPM, LIU = "U0RAFAEL", "U0DYLAN", "U0LIU"
NOT_NEEDED = "Rollback Status: Not needed — the transaction was rolled back"
UNCHANGED = "Database Status: Unchanged — schema and row counts of"


@pytest.fixture
def blocking(ready, tmp_path):
    """Settings whose runbook's step 1.1 waits (10 min lock_timeout) for a lock the test holds."""
    return ready.with_(runbook_path=rbs.blocking_runbook(tmp_path))


def _approved(core: Core) -> None:
    for user, text in ((COORDINATOR, "preflight"), (TPM, "approve")):
        out = io.StringIO()
        assert run_command(core, user, text, out) == 0, out.getvalue()


def _assert_unchanged(url: str, schema_before: str) -> None:
    assert pg.schema_dump(url) == schema_before
    assert pg.scalar(url, "SELECT to_regclass('platform.databases')") is None


def _abort_while_blocked(
    core: Core, user: str, text: str, table: str = rbs.BLOCKING_TABLE
) -> tuple[int, str]:
    """Run `text` in a thread while the test holds a lock it needs; abort it from this process;
    it must stop while the lock is still held (the abort stopped it, not the lock's release)."""
    out, result = io.StringIO(), {}
    with rbs.TableLock(core.settings.database_url, table=table) as held:
        worker = threading.Thread(target=lambda: result.update(code=run_command(core, user, text, out)))
        worker.start()
        rbs.wait_until(lambda: rbs.step_backend(core), what=f"`{text}` in progress")
        abort_out = io.StringIO()
        assert run_command(core, COORDINATOR, "abort", abort_out) == 0, abort_out.getvalue()
        worker.join(timeout=60)
        assert not worker.is_alive() and not held.conn.closed
    return result["code"], out.getvalue()


def test_abort_in_the_same_process_stops_a_phase_waiting_on_a_lock(blocking):
    core = Core.from_settings(blocking)
    _approved(core)
    schema_before = pg.schema_dump(blocking.database_url)
    code, text = _abort_while_blocked(core, LIU, "run phase 1")
    assert code == 1, text
    assert "Migration 006 FAILED" in text and "aborted by request" in text
    assert NOT_NEEDED in text and UNCHANGED in text and "(checked)" in text
    assert core.store.current().status is Status.ABORTED
    _assert_unchanged(blocking.database_url, schema_before)

    # Nothing further ran, and the abort does not stick: the phase runs again and completes.
    again = io.StringIO()
    assert run_command(core, LIU, "run phase 1", again) == 0, again.getvalue()
    assert "Phase 1 complete" in again.getvalue()


def test_abort_from_another_process_cancels_the_recorded_backend(blocking):
    """The phase runs in one console process, `abort` comes from another, which has no executor:
    it cancels the backend pid the runner published and flags the run, which the runner's
    abort watch acts on (with lock polling, the backend may be between two NOWAIT tries)."""
    core = Core.from_settings(blocking)
    _approved(core)
    schema_before = pg.schema_dump(blocking.database_url)
    with rbs.TableLock(blocking.database_url) as held:
        proc = rbs.start_console(blocking, LIU, "run phase 1")
        try:
            # The runner publishes its backend pid although no statement has finished yet.
            pid = rbs.wait_until(lambda: rbs.step_backend(core), what="step 1.1 in progress")
            aborter = rbs.start_console(blocking, COORDINATOR, "abort")  # a second console
            abort_out, _ = aborter.communicate(timeout=60)
            assert aborter.returncode == 0, abort_out
            assert f"backend {pid}" in abort_out
            output, _ = proc.communicate(timeout=60)
            assert not held.conn.closed  # the lock was still held when the phase stopped
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 1, output
    assert "aborted by request" in output and NOT_NEEDED in output and UNCHANGED in output
    assert core.store.current().status is Status.ABORTED
    _assert_unchanged(blocking.database_url, schema_before)


def test_abort_with_nothing_running_is_refused(blocking):
    core = Core.from_settings(blocking)
    _approved(core)
    out = io.StringIO()
    assert run_command(core, COORDINATOR, "abort", out) == 2
    assert "nothing is running" in out.getvalue()
    out = io.StringIO()
    assert run_command(core, LIU, "abort", out) == 2  # only the coordinator or the TPM


@pytest.fixture
def sleeping(ready, tmp_path):
    """Settings whose runbook's step 1.1 sleeps 240 s in its transaction (a statement running)."""
    dbname = ready.database_url.rsplit("/", 1)[1]
    return ready.with_(runbook_path=rbs.sleeping_runbook(tmp_path, dbname))


def test_abort_from_another_process_cancels_a_running_statement(sleeping):
    core = Core.from_settings(sleeping)
    _approved(core)
    schema_before = pg.schema_dump(sleeping.database_url)
    proc = rbs.start_console(sleeping, LIU, "run phase 1")
    try:
        pid = rbs.wait_until(lambda: rbs.step_backend(core), what="step 1.1 in progress")
        rbs.wait_until(
            lambda: (
                pg.scalar(
                    sleeping.database_url, "SELECT wait_event FROM pg_stat_activity WHERE pid = %s", (pid,)
                )
                == "PgSleep"
            ),
            what="the step sleeping",
        )
        abort_out = io.StringIO()
        assert run_command(core, COORDINATOR, "abort", abort_out) == 0, abort_out.getvalue()
        output, _ = proc.communicate(timeout=60)  # long before the 240 s sleep would end
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, output
    assert "canceling statement due to user request" in output
    assert NOT_NEEDED in output and UNCHANGED in output
    assert core.store.current().status is Status.ABORTED
    _assert_unchanged(sleeping.database_url, schema_before)


def test_abort_reaches_a_rollback_waiting_on_a_lock(ready):
    """`rollback phase n` runs under the same abort watch as a phase: abort stops it while the
    lock is still held, its transaction rolls back (nothing dropped), and it can run again."""
    core = Core.from_settings(ready)
    _approved(core)
    out = io.StringIO()
    assert run_command(core, LIU, "run phase 1", out) == 0, out.getvalue()
    code, text = _abort_while_blocked(core, LIU, "rollback phase 1", table="platform.databases")
    assert code == 1, text
    assert pg.scalar(ready.database_url, "SELECT to_regclass('platform.databases') IS NOT NULL")
    again = io.StringIO()
    assert run_command(core, LIU, "rollback phase 1", again) == 0, again.getvalue()
    assert pg.scalar(ready.database_url, "SELECT to_regclass('platform.databases') IS NULL")


def test_work_that_loses_its_run_lock_stops_at_once(blocking, redis_client):
    """If the heartbeat finds the lock taken over (Redis away longer than the TTL, a stalled
    process), another process may act on the run: this one cancels its statement and stops."""
    settings = blocking.with_(lock_ttl_seconds=1.5)
    core = Core.from_settings(settings)
    _approved(core)
    schema_before = pg.schema_dump(settings.database_url)
    out, result = io.StringIO(), {}
    with rbs.TableLock(settings.database_url):
        worker = threading.Thread(
            target=lambda: result.update(code=run_command(core, LIU, "run phase 1", out))
        )
        worker.start()
        rbs.wait_until(lambda: rbs.step_backend(core), what="step 1.1 in progress")
        redis_client.set(core.keys.lock(), '{"token": "someone-else", "owner": "another bot"}', px=60_000)
        worker.join(timeout=60)
        assert not worker.is_alive()
    text = out.getvalue()
    assert result["code"] == 1, text
    assert "this process lost the run lock" in text
    _assert_unchanged(settings.database_url, schema_before)
