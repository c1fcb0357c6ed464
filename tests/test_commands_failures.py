"""A phase that fails at run time: the runbook's failure policy, and a failure template of facts.

Files cannot change after approval (the approval binds to their checksums), and the
rehearsal would catch a file that fails on a copy; what fails at run time is the live
database changing under the plan. These tests change it, for real, after approval.
"""

from __future__ import annotations

import re

import psycopg

from commands import Core
from tests.support import pg
from tests.support.flow import COORDINATOR, LIU, Console


def _field(out: str, name: str) -> str:
    match = re.search(rf"^\s*{name}: (.*)$", out, re.M)
    assert match, f"no {name} field in:\n{out}"
    return match.group(1)


def test_step_1_2_failure_is_safe_to_retry_and_the_database_is_unchanged(ready):
    console = Console(Core.from_settings(ready))
    console.approved()
    url = ready.database_url
    pg.scalar(url, "UPDATE platform.organizations SET slug = 'lancio-old' WHERE slug = 'lancio' RETURNING 1")

    code, out = console(LIU, "run phase 1")

    assert code == 1, out
    assert "Migration 006 FAILED ❌" in out
    assert "step 1.2 006_register_railway_databases_production.sql" in _field(out, "Failed Phase")
    error = _field(out, "Error")
    assert "006_register_railway_databases_production.sql:" in error and "lancio" in error
    assert _field(out, "Rollback Status").startswith(
        "Not needed — the file's transaction was rolled back; step 1.2 is safe to retry"
    )
    assert _field(out, "Database Status").startswith("Unchanged — schema and row counts")
    assert "run phase 1" in _field(out, "Action Required")
    assert "backup_pre_migration_006_" in _field(out, "Backup Available")
    assert pg.scalar(url, "SELECT count(*) FROM platform.databases") == 0  # 1.1 applied, 1.2 left nothing

    pg.scalar(url, "UPDATE platform.organizations SET slug = 'lancio' WHERE slug = 'lancio-old' RETURNING 1")
    code, out = console(LIU, "run phase 1")
    assert code == 0, out
    assert "Step 1.1 006_add_platform_databases_table.sql: already applied in this run, skipped" in out
    assert "Phase 1 complete" in out
    assert pg.scalar(url, "SELECT count(*) FROM platform.databases WHERE status = 'active'") == 2


def test_step_1_1_failing_on_a_conflict_leaves_the_conflicting_object_alone(ready):
    """Step 1.1's policy is "rollback", but its transaction rolled back and nothing of the phase
    was applied: running rollback-006.sql would drop the table someone else created."""
    console = Console(Core.from_settings(ready))
    console.approved()
    url = ready.database_url
    with psycopg.connect(
        url, autocommit=True
    ) as conn:  # someone created a conflicting table after the approval
        conn.execute("CREATE TABLE platform.databases (id int)")
        conn.execute("INSERT INTO platform.databases VALUES (42)")
    schema_with_conflict = pg.schema_dump(url)

    code, out = console(LIU, "run phase 1")

    assert code == 1, out
    assert "step 1.1 006_add_platform_databases_table.sql" in _field(out, "Failed Phase")
    assert "already exists" in _field(out, "Error")
    assert _field(out, "Rollback Status").startswith(
        "Not needed — the file's transaction was rolled back and no earlier step of the phase was applied"
    )
    assert _field(out, "Database Status").startswith("Unchanged — schema and row counts")
    assert pg.schema_dump(url) == schema_with_conflict
    assert pg.scalar(url, "SELECT id FROM platform.databases") == 42  # nothing of theirs was dropped
    code, out = console(COORDINATOR, "status")
    assert "Phase 1 Database infrastructure: failed" in out


def test_a_rollback_policy_undoes_the_steps_of_the_phase_already_applied(ready, tmp_path):
    """With step 1.2's policy set to "rollback", a 1.2 failure after 1.1 committed runs
    rollback-006.sql, and the bot checks the database is back to the pre-migration schema."""
    import shutil

    folder = tmp_path / "runbook"
    shutil.copytree(ready.runbook_path.parent, folder)
    toml = folder / "runbook.toml"
    text = toml.read_text()
    retry = 'on_failure = "retry"               # report: "just re-run registration (safe to retry)"'
    assert retry in text
    toml.write_text(text.replace(retry, 'on_failure = "rollback"\nrollback = "rollback-006.sql"'))
    settings = ready.with_(runbook_path=toml)
    console = Console(Core.from_settings(settings))
    console.approved()
    url = settings.database_url
    schema_005 = pg.schema_dump(url)
    pg.scalar(url, "UPDATE platform.organizations SET slug = 'lancio-old' WHERE slug = 'lancio' RETURNING 1")

    code, out = console(LIU, "run phase 1")

    assert code == 1, out
    assert "step 1.2" in _field(out, "Failed Phase")
    assert _field(out, "Rollback Status").startswith("Complete — rollback-006.sql ran")
    assert (
        _field(out, "Database Status")
        == "Healthy — matches the pre-migration schema (version 005) (schema compared)"
    )
    assert pg.schema_dump(url) == schema_005
    code, out = console(COORDINATOR, "status")
    assert "Phase 1 Database infrastructure: rolled back" in out


def test_a_runbook_file_edited_after_approval_refuses_run(ready, tmp_path):
    import shutil

    folder = tmp_path / "runbook"
    shutil.copytree(ready.runbook_path.parent, folder)
    settings = ready.with_(runbook_path=folder / "runbook.toml")
    console = Console(Core.from_settings(settings))
    console.approved()
    target = folder / "006_enable_rls_IMPROVED.sql"
    target.write_text(target.read_text() + "\n-- edited after approval\n")

    code, out = console(COORDINATOR, "run")

    assert code == 2
    assert "006_enable_rls_IMPROVED.sql changed since approval" in out
    assert "ask the TPM" in out and "<@U0DYLAN>" in out
    assert pg.scalar(ready.database_url, "SELECT to_regclass('platform.databases') IS NULL")


def test_a_declared_incident_blocks_run(ready):
    console = Console(Core.from_settings(ready))
    console.approved()
    assert console(LIU, "incident start API error rate 40%")[0] == 0
    code, out = console(COORDINATOR, "run")
    assert code == 2 and "critical incident" in out and "incident clear" in out
    assert console(LIU, "incident clear")[0] == 0
    code, out = console(COORDINATOR, "run")
    assert code == 0, out
    assert "Migration 006 SUCCESSFUL ✅" in out


def test_no_go_while_an_incident_is_declared(ready):
    console = Console(Core.from_settings(ready))
    code, out = console(COORDINATOR, "preflight")
    assert code == 0, out
    assert console(LIU, "incident start payments outage")[0] == 0
    code, out = console("U0DYLAN", "approve")
    assert code == 2 and "critical incident" in out and "payments outage" in out
    assert console(LIU, "incident clear")[0] == 0
    assert console("U0DYLAN", "approve")[0] == 0
    code, out = console("U0DYLAN", "approve")
    assert code == 2 and "already approved" in out
