"""What an approval binds (CONTRACT.md): exactly the bytes and the plan the TPM approved run.

A file changed while a run is under way is refused before it executes and nothing of it is
reported ✅; `runbook.toml` (the chosen option, failure policies, inputs, checks) is bound
like the SQL files it names.
"""
from __future__ import annotations

import hashlib
import io
import threading

import pytest

from bot.console import run_command
from commands import Core
from engine import ledger
from tests.support import pg
from tests.support import runbooks as rbs
from tests.support.flow import COORDINATOR, Console

PHASE_2_FILE = "006_enable_rls_IMPROVED.sql"
UNAPPROVED = "CREATE TABLE public.unapproved_by_the_tpm (id int);"


def test_a_phase_2_file_changed_while_phase_1_runs_is_refused_before_it_executes(ready, tmp_path):
    """Fails without the fix: the executor re-read the file after `run` had compared the
    checksums, executed the appended statement and reported the migration SUCCESSFUL ✅."""
    dbname = ready.database_url.rsplit("/", 1)[1]
    settings = ready.with_(runbook_path=rbs.sleeping_runbook(tmp_path, dbname, seconds=4))
    core = Core.from_settings(settings)
    Console(core).approved()
    approved = core.store.current().approval["checksums"][PHASE_2_FILE]
    out, result = io.StringIO(), {}
    worker = threading.Thread(target=lambda: result.update(code=run_command(core, COORDINATOR, "run", out)))
    worker.start()
    rbs.wait_until(lambda: rbs.step_backend(core), what="step 1.1 in progress")
    rbs.append_to_file(settings.runbook_path, PHASE_2_FILE, UNAPPROVED)  # while phase 1 runs
    worker.join(timeout=300)
    assert not worker.is_alive()
    text = out.getvalue()

    assert result["code"] == 1, text
    assert "Phase 1 complete" in text
    assert f"{PHASE_2_FILE}:0: changed since approval" in text and "nothing of it ran" in text
    assert "SUCCESSFUL" not in text and "✅ Step 2.1" not in text
    url = settings.database_url
    assert pg.scalar(url, "SELECT to_regclass('public.unapproved_by_the_tpm') IS NULL")
    assert pg.scalar(url, "SELECT count(*) FROM pg_policies WHERE schemaname = 'platform'") == 0  # 2.1 did not run
    rows = ledger.applied_files(url, "006")
    assert [r["step"] for r in rows] == ["1.1", "1.2"]
    assert all(r["sha256"] == core.store.current().approval["checksums"][r["file"]] for r in rows)
    assert approved != hashlib.sha256((settings.runbook_path.parent / PHASE_2_FILE).read_bytes()).hexdigest()


@pytest.mark.parametrize("body", ["CREATE TABLE public.t1 (id int);\n",
                                  "\\echo through psql\nCREATE TABLE public.t1 (id int);\n"])
def test_the_executor_runs_only_the_approved_bytes(db_005, tmp_path, body):
    """Directly and through psql: bytes other than the approved ones never reach the database."""
    from engine.executor import Executor, FileChanged

    path = tmp_path / "step.sql"
    path.write_text(body)
    approved = hashlib.sha256(path.read_bytes()).hexdigest()
    path.write_text(body + "CREATE TABLE public.t2 (id int);\n")
    with pytest.raises(FileChanged, match="step.sql:0: changed since approval"):
        Executor(db_005).run_file(path, approved_sha256=approved)
    assert pg.scalar(db_005, "SELECT to_regclass('public.t2') IS NULL AND to_regclass('public.t1') IS NULL")
    path.write_text(body)
    result = Executor(db_005).run_file(path, approved_sha256=approved)
    assert result.ok and result.sha256 == approved, result.error
    assert pg.scalar(db_005, "SELECT to_regclass('public.t1') IS NOT NULL AND to_regclass('public.t2') IS NULL")
