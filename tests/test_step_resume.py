"""Resuming after a crash between steps (issue 11 defect 5): the ledger row written in each
step's own transaction says what committed; `run phase n` resumes after it, never re-runs it,
and a full BACKUP_DIR after the files committed leaves an honest state."""

from __future__ import annotations

import io
import signal

import pytest

from bot.console import run_command
from commands import Core
from engine import ledger
from state.machine import PhaseStatus, Status
from tests.support import pg
from tests.support import runbooks as rbs
from tests.support.flow import COORDINATOR, LIU, Console

STEP_1_2 = "006_register_railway_databases_production.sql"
# Not idempotent: run twice, it leaves two rows.
COUNT_RUNS = "CREATE TABLE public.step_1_1_runs (at timestamptz DEFAULT now()); INSERT INTO public.step_1_1_runs DEFAULT VALUES;"


def _kill(proc) -> None:
    try:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("outcome", ["saved", "lost"])
def test_console_killed_between_step_1_1_and_1_2_resumes_after_the_committed_step(ready, tmp_path, outcome):
    """Fails without the fix: step 1.1's outcome was saved only when the phase closed and the
    ledger was not consulted, so the second `run phase 1` ran 1.1 again (CREATE TABLE …
    already exists / a duplicate row). `lost`: the process died after 1.1 committed but
    before the run state learnt it — the ledger row (same transaction as 1.1) is the truth."""
    toml = rbs.append_to_file(rbs.copy_runbook(tmp_path), rbs.STEP_1_1, COUNT_RUNS)
    rbs.append_to_file(toml, STEP_1_2, rbs.BLOCKING_STATEMENT)  # 1.2 waits for the test's lock
    rbs.set_step_option(toml, "1.2", 'lock_timeout = "10m"')
    settings = ready.with_(runbook_path=toml, lock_ttl_seconds=3.0)
    core = Core.from_settings(settings)
    Console(core).approved()
    url = settings.database_url
    held = rbs.TableLock(url)
    proc = rbs.start_console(settings, LIU, "run phase 1")
    try:
        rbs.wait_until(
            lambda: (
                [r["step"] for r in ledger.applied_files(url, "006")] == ["1.1"] and rbs.step_backend(core)
            ),
            timeout=120,
            what="step 1.1 committed and step 1.2 in its transaction",
        )
    finally:
        _kill(proc)
        held.release()
    rbs.wait_until(lambda: not core.lock.held(), timeout=60, what="the dead process's run lock to expire")
    rbs.wait_until(
        lambda: (
            pg.scalar(
                url,
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE "
                "'migrate-bot%%' AND xact_start IS NOT NULL AND datname = current_database()",
            )
            == 0
        ),
        timeout=60,
        what="PostgreSQL to notice the dead client",
    )
    assert (
        pg.scalar(url, "SELECT count(*) FROM platform.databases") == 0
    )  # 1.2 rolled back with its connection
    run = core.store.current()
    assert run.result["steps"]["1.1"]["ok"]  # recorded as it committed
    if outcome == "lost":
        core.store.update_record(
            run.id,
            fields={"result": {**run.result, "steps": {}}},
            actor="test",
            action="simulated crash before the save",
            expect=(run.status,),
        )

    out = io.StringIO()
    code = run_command(core, LIU, "run phase 1", out)
    text = out.getvalue()

    assert code == 0, text
    skipped = {
        "saved": "already applied in this run, skipped",
        "lost": "committed earlier in this run (migrate_bot.applied_files, approved sha256), skipped",
    }[outcome]
    assert f"Step 1.1 006_add_platform_databases_table.sql: {skipped}" in text
    assert "objects this run did not create" not in text
    assert "Phase 1 complete" in text
    assert pg.scalar(url, "SELECT count(*) FROM public.step_1_1_runs") == 1  # 1.1 ran once
    assert pg.scalar(url, "SELECT count(*) FROM platform.databases WHERE status = 'active'") == 2  # 1.2 ran
    assert [r["step"] for r in ledger.applied_files(url, "006")] == ["1.1", "1.2"]


def test_each_step_is_in_the_run_state_as_soon_as_it_commits(ready, tmp_path):
    """While step 1.2 waits, the run state already shows step 1.1 done (was: only at phase end)."""
    import threading

    toml = rbs.append_to_file(rbs.copy_runbook(tmp_path), STEP_1_2, rbs.BLOCKING_STATEMENT)
    rbs.set_step_option(toml, "1.2", 'lock_timeout = "10m"')
    settings = ready.with_(runbook_path=toml)
    core = Core.from_settings(settings)
    Console(core).approved()
    held = rbs.TableLock(settings.database_url)
    out = io.StringIO()
    worker = threading.Thread(target=run_command, args=(core, LIU, "run phase 1", out))
    worker.start()
    try:
        rbs.wait_until(
            lambda: ((core.store.current().result or {}).get("steps") or {}).get("1.1", {}).get("ok"),
            timeout=120,
            what="step 1.1 recorded in the run state",
        )
    finally:
        held.release()
        worker.join(timeout=120)
    assert "Phase 1 complete" in out.getvalue()


def test_a_full_backup_dir_after_the_files_committed_is_not_a_failed_phase(ready):
    """Fails without the fix: the schema snapshot's write error after the files committed
    became an internal error and a run marked failed, with the applied steps unreported."""
    core = Core.from_settings(ready)
    console = Console(core)
    console.approved()
    run_id = core.store.current().id
    runs = ready.backup_dir / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    (runs / run_id).write_text("not a directory: the snapshot cannot be written under it")

    code, out = console(LIU, "run phase 1")

    assert "Internal error" not in out and "FAILED" not in out, out
    assert "Phase 1 complete" in out
    assert "schema snapshot could not be written" in out and str(runs / run_id) in out
    run = core.store.current()
    assert run.status is Status.PHASE_DONE and run.phases[1].status is PhaseStatus.SUCCEEDED
    assert set(run.result["steps"]) == {"1.1", "1.2"}
    assert code == 0
    code, out = console(COORDINATOR, "status")
    assert "Phase 1 Database infrastructure: succeeded" in out


def test_a_psql_file_with_its_own_begin_commit_records_its_ledger_row_in_its_transaction(db_005, tmp_path):
    """Fails without the fix: the row was written after psql exited, in a transaction of its
    own — a crash in between left the file committed and unrecorded, so a resumed run applied it
    again. Same transaction: same xmin."""
    from engine.executor import Executor, LedgerRecord

    path = tmp_path / "own_transaction.sql"
    path.write_text(
        "BEGIN;\n\\echo through psql\nCREATE TABLE public.t1 (id int PRIMARY KEY);\n"
        "INSERT INTO public.t1 VALUES (1); -- COMMIT in a comment is not the end\nCOMMIT;\n"
    )
    record = LedgerRecord(runbook="T", run_id="r1", phase=1, step="1.1", actor="U")
    result = Executor(db_005).run_file(path, record=record)
    assert result.ok, result.error
    assert pg.scalar(
        db_005,
        "SELECT (SELECT xmin::text FROM public.t1) = (SELECT xmin::text FROM "
        "migrate_bot.applied_files WHERE step = '1.1')",
    )

    failing = (
        tmp_path / "fails_at_commit.sql"
    )  # a deferred constraint fails at COMMIT: no row, the right line
    failing.write_text(
        "BEGIN;\n\\echo through psql\nCREATE TABLE public.t2 (id int REFERENCES public.t1 (id) "
        "DEFERRABLE INITIALLY DEFERRED);\nINSERT INTO public.t2 VALUES (42);\nCOMMIT;\n"
    )
    result = Executor(db_005).run_file(failing, record=LedgerRecord("T", "r1", 1, "1.2", "U"))
    assert not result.ok and result.error.line == 5 and "foreign key" in result.error.message
    assert pg.scalar(db_005, "SELECT count(*) FROM migrate_bot.applied_files") == 1
    assert pg.scalar(db_005, "SELECT to_regclass('public.t2') IS NULL")


TRIGGER_CHECK = "tgrelid = 'platform.databases'::regclass AND NOT tgisinternal\""


def test_console_killed_during_the_phase_checks_resumes_with_the_checks_not_the_steps(ready, tmp_path):
    """A variant of the crash between steps: the process dies after the phase's last step
    committed, while its checks run. `run phase 1` again runs no step a second time, runs the
    checks and closes the phase."""
    import psycopg

    toml = rbs.copy_runbook(tmp_path)
    text = toml.read_text()
    assert text.count(TRIGGER_CHECK) == 1
    toml.write_text(
        text.replace(TRIGGER_CHECK, TRIGGER_CHECK[:-1] + ' AND (SELECT count(*) FROM public.check_gate) = 0"')
    )
    url = ready.database_url
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.check_gate (id int)")
    settings = ready.with_(runbook_path=toml, lock_ttl_seconds=3.0)
    core = Core.from_settings(settings)
    Console(core).approved()
    gate = psycopg.connect(url)
    gate.execute("LOCK TABLE public.check_gate IN ACCESS EXCLUSIVE MODE")  # the check waits here
    proc = rbs.start_console(settings, LIU, "run phase 1")
    try:
        rbs.wait_until(
            lambda: (
                [r["step"] for r in ledger.applied_files(url, "006")] == ["1.1", "1.2"]
                and pg.scalar(
                    url,
                    "SELECT count(*) FROM pg_locks WHERE relation = 'public.check_gate'::regclass AND NOT granted "
                    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                )
                > 0
            ),
            timeout=120,
            what="both steps committed and a check waiting on check_gate",
        )
    finally:
        _kill(proc)
        gate.rollback()
        gate.close()
    rbs.wait_until(lambda: not core.lock.held(), timeout=60, what="the dead process's run lock to expire")

    out = io.StringIO()
    code = run_command(core, LIU, "run phase 1", out)
    text = out.getvalue()

    assert code == 0, text
    assert "Phase 1 complete" in text
    assert "objects this run did not create" not in text
    assert [r["step"] for r in ledger.applied_files(url, "006")] == ["1.1", "1.2"]  # no step ran twice
    assert pg.scalar(url, "SELECT count(*) FROM platform.databases WHERE status = 'active'") == 2
    assert core.store.current().phases[1].status == PhaseStatus.SUCCEEDED
