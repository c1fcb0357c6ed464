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
    assert (
        pg.scalar(url, "SELECT count(*) FROM pg_policies WHERE schemaname = 'platform'") == 0
    )  # 2.1 did not run
    rows = ledger.applied_files(url, "006")
    assert [r["step"] for r in rows] == ["1.1", "1.2"]
    assert all(r["sha256"] == core.store.current().approval["checksums"][r["file"]] for r in rows)
    assert approved != hashlib.sha256((settings.runbook_path.parent / PHASE_2_FILE).read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "body", ["CREATE TABLE public.t1 (id int);\n", "\\echo through psql\nCREATE TABLE public.t1 (id int);\n"]
)
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
    assert pg.scalar(
        db_005, "SELECT to_regclass('public.t1') IS NOT NULL AND to_regclass('public.t2') IS NULL"
    )


# ------------------------------------------------------------------ runbook.toml is bound too


def _edit(toml, old: str, new: str) -> None:
    text = toml.read_text(encoding="utf-8")
    assert old in text, old
    toml.write_text(text.replace(old, new, 1), encoding="utf-8")


CHANGES = {
    "choose": ('choose = "A"', 'choose = "B"', 'step 2.1 choose "A" → "B"'),
    "on_failure": ('on_failure = "retry"', 'on_failure = "stop" ', 'step 1.2 on_failure "retry" → "stop"'),
    "inputs": (
        'inputs = ["migrate.register_mongodb_url", "migrate.register_redis_url", "app.encryption_key"]',
        'inputs = ["app.encryption_key", "migrate.register_mongodb_url", "migrate.register_redis_url"]',
        "step 1.2 inputs changed",
    ),
    "check sql": (
        "tgrelid = 'platform.databases'::regclass AND NOT tgisinternal",
        "tgrelid = 'platform.databases'::regclass AND NOT tgisinternal AND true",
        "phase 1 check '2 triggers on platform.databases' changed",
    ),
}


@pytest.mark.parametrize("kind", sorted(CHANGES))
def test_runbook_toml_changed_after_go_makes_run_refuse_naming_the_change(ready, tmp_path, kind):
    """Fails without the fix: the approval bound only the SQL files; the changed plan ran."""
    toml = rbs.copy_runbook(tmp_path)
    settings = ready.with_(runbook_path=toml)
    console = Console(Core.from_settings(settings))
    console.approved()
    old, new, named = CHANGES[kind]
    _edit(toml, old, new)

    for process in ("same", "fresh"):  # a serve process holding the old plan, a new console process
        code, out = (
            Console(Core.from_settings(settings))(COORDINATOR, "run")
            if process == "fresh"
            else console(COORDINATOR, "run")
        )
        assert code == 2, out
        assert "runbook.toml changed since approval" in out and named in out, out
    assert pg.scalar(settings.database_url, "SELECT to_regclass('platform.databases') IS NULL")

    code, out = console(COORDINATOR, "preflight")  # a new pre-flight reloads the plan; a new GO binds it
    assert code == 0, out
    code, out = console("U0DYLAN", "approve")
    assert code == 0, out
    assert console.core.runbook.sha256 == console.core.store.current().approval["checksums"]["runbook.toml"]


def test_a_serve_process_holding_an_outdated_plan_does_not_run_it(ready, tmp_path):
    """The file changed and was changed back on disk: the bytes match, but the in-memory plan
    the approval bound is the one this process holds only when it loaded those bytes."""
    from dataclasses import replace

    toml = rbs.copy_runbook(tmp_path)
    settings = ready.with_(runbook_path=toml)
    console = Console(Core.from_settings(settings))
    console.approved()
    console.core.runbook = replace(console.core.runbook, sha256="0" * 64)  # loaded from other bytes
    code, out = console(COORDINATOR, "run")
    assert code == 2, out
    assert "holds runbook.toml as loaded before the approval" in out


def test_report_gate_compares_checksums_not_names(ready):
    """A ledger row with the step's file name but other bytes is not the approved file."""
    from workflows import gates

    core = Core.from_settings(ready)
    console = Console(core)
    console.approved()
    code, out = console(COORDINATOR, "run")
    assert code == 0, out
    run = core.store.current()
    assert gates._files_executed(core, run).ok
    pg.scalar(
        ready.database_url,
        "UPDATE migrate_bot.applied_files SET sha256 = repeat('0', 64) WHERE step = '2.1' RETURNING 1",
    )
    evidence = gates._files_executed(core, run)
    assert not evidence.ok and "missing: 006_enable_rls_IMPROVED.sql" in evidence.observed


# ------------------------------------------------------------------ a check is one read-only statement

ATTACK = "SELECT 1; COMMIT; DROP TABLE platform.organizations CASCADE"


def test_a_check_that_writes_is_refused_when_the_runbook_loads(tmp_path):
    from runbook.model import RunbookError, load_runbook

    toml = rbs.copy_runbook(tmp_path)
    _edit(
        toml,
        "sql = \"SELECT count(*) FROM pg_trigger WHERE tgrelid = 'platform.databases'::regclass AND NOT tgisinternal\"",
        f'sql = "{ATTACK}"',
    )
    with pytest.raises(
        RunbookError, match=r"phase 1 .*2 triggers on platform.databases.*exactly one statement"
    ):
        load_runbook(toml)


@pytest.mark.parametrize(
    "sql",
    [ATTACK, "SELECT 1; SET default_transaction_read_only = off; DROP TABLE platform.organizations CASCADE"],
)
def test_even_past_the_load_check_the_engine_cannot_run_a_second_statement(db_005, sql):
    """Fails without the fix: the check ran as a simple query, whose COMMIT ended the READ ONLY
    transaction and whose DROP TABLE then dropped a production table."""
    from engine.verify import run_checks
    from preflight.database import precondition_line
    from runbook.model import Check

    check = Check(name="attack", sql=sql, expect=1)
    (evidence,) = run_checks(db_005, [check])
    assert (
        not evidence.ok and "cannot insert multiple commands into a prepared statement" in evidence.observed
    )
    line = precondition_line(db_005, check, timeout=10)
    assert line.status == "fail"
    assert pg.scalar(db_005, "SELECT to_regclass('platform.organizations') IS NOT NULL")


def test_renewal_of_an_expired_approval_compares_runbook_toml_too(ready, tmp_path, monkeypatch):
    """Fails without the fix: renewal compared only the SQL files, so a `choose` flipped while
    the approval had expired was renewed and phase 2 would have run option B."""
    from datetime import timedelta

    from core import clock

    toml = rbs.copy_runbook(tmp_path)
    core = Core.from_settings(ready.with_(runbook_path=toml))
    console = Console(core)
    console.approved()
    code, out = console("U0LIU", "run phase 1")
    assert code == 0, out
    later = clock.now() + timedelta(hours=13)  # the approval (12 h) expired meanwhile
    monkeypatch.setattr(clock, "now", lambda: later)
    _edit(toml, 'choose = "A"', 'choose = "B"')

    code, out = console("U0DYLAN", "approve")

    assert code == 2, out
    assert "runbook.toml changed since approval" in out and 'step 2.1 choose "A" → "B"' in out
    assert "not renewed over changed files" in out


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT lo_import('/etc/hostname') > 0",
        "SELECT pg_catalog.lo_from_bytea(0, 'written') > 0 FROM (SELECT 1) AS one",
        "WITH x AS (SELECT pg_advisory_lock(4711)) SELECT count(*) FROM x",
    ],
)
def test_a_check_calling_a_volatile_function_that_acts_outside_the_transaction_is_refused(db_005, sql):
    """Fails without the fix: READ ONLY does not stop lo_import()/lo_from_bytea() — each check
    left a large object in the database and passed — nor an advisory lock, dblink_exec() or
    pg_terminate_backend(). A check may call only stable or immutable functions (and the
    read-only volatile ones such as pg_relation_size)."""
    from engine.verify import run_checks
    from preflight.database import precondition_line
    from runbook.model import Check

    check = Check(name="side effect", sql=sql, expect=True if "count" not in sql else 1)
    (evidence,) = run_checks(db_005, [check])
    assert not evidence.ok and "volatile function" in evidence.observed, evidence.observed
    line = precondition_line(db_005, check, timeout=10)
    assert line.status == "fail" and "volatile function" in line.observed
    assert pg.scalar(db_005, "SELECT count(*) FROM pg_largeobject_metadata") == 0


def test_a_check_may_call_stable_functions_and_read_only_volatile_ones(db_005):
    from engine.verify import run_checks
    from runbook.model import Check

    sql = (
        "SELECT count(*) FROM pg_class WHERE pg_relation_size(oid) >= 0 AND to_regclass('platform.organizations')"
        " IS NOT NULL AND clock_timestamp() > now() - interval '1 day' AND relname = 'organizations'"
    )
    (evidence,) = run_checks(db_005, [Check(name="reads", sql=sql, expect=1)])
    assert evidence.ok, evidence.observed
