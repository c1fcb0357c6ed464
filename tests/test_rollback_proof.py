"""The rollback proof against wrong rollbacks: a rollback file that forgets an object, one
that deletes a row. The proof must fail, say what differs, and never call the run rolled back.

The shipped rollbacks are correct, so these tests write their own runbook (a copy of 006 in
tmp_path) whose phase 1 rollback is wrong. For `rollback phase n` the mistake is made to
happen only in the live database (the condition reads `current_database()`): the pre-flight
rehearsal on the restored copy runs the correct file, passes, and the run can be approved —
as when a rollback depends on something the copy does not show. The rehearsal's own proof is
tested with a rollback that is wrong everywhere.
"""

from __future__ import annotations

from pathlib import Path

from commands import Core
from state.machine import PhaseStatus, Status
from tests.support import pg
from tests.support.flow import COORDINATOR, LIU, Console
from tests.support.runbooks import copy_runbook

ROLLBACK_1 = "rollback-006.sql"
FORGOTTEN = "DROP FUNCTION IF EXISTS platform.update_database_health(uuid, text, text);"


def _live_name(settings) -> str:
    return settings.database_url.rsplit("/", 1)[-1]


def _edit(runbook: Path, file: str, old: str, new: str) -> Path:
    path = runbook.parent / file
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {file}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return runbook


def _only_elsewhere(live: str, statement: str) -> str:
    """`statement` wrapped so that it runs everywhere except in database `live`."""
    return f"DO $$ BEGIN IF current_database() <> '{live}' THEN EXECUTE {_quote(statement)}; END IF; END $$;"


def _only_in(live: str, statement: str) -> str:
    return f"DO $$ BEGIN IF current_database() = '{live}' THEN EXECUTE {_quote(statement)}; END IF; END $$;"


def _quote(statement: str) -> str:
    return "'" + statement.rstrip(";").replace("'", "''") + "'"


def _phase_1_applied(ready, runbook: Path) -> tuple[Console, str]:
    settings = ready.with_(runbook_path=runbook)
    console = Console(Core.from_settings(settings))
    console.approved()
    code, out = console(LIU, "run phase 1")
    assert code == 0, out
    return console, settings.database_url


def _assert_not_rolled_back(console: Console) -> None:
    run = console.core.store.current()
    assert run.status is Status.FAILED, run.status
    assert run.phases[1].status is PhaseStatus.FAILED, run.phases[1].status
    code, status = console(COORDINATOR, "status")
    assert code == 0 and "rolled back" not in status.lower(), status


def test_a_rollback_that_forgets_a_function_fails_its_proof_and_names_the_function(ready, tmp_path):
    runbook = _edit(
        copy_runbook(tmp_path), ROLLBACK_1, FORGOTTEN, _only_elsewhere(_live_name(ready), FORGOTTEN)
    )
    console, url = _phase_1_applied(ready, runbook)

    code, out = console(LIU, "rollback phase 1")

    assert code == 1, out
    assert "❌ Schema equals the pre-migration schema" in out and "lines differ" in out
    assert "+CREATE FUNCTION platform.update_database_health(" in out  # the diff names what is left over
    shown = [line for line in out.splitlines() if line.startswith(("        +", "        -"))]
    assert len(shown) == 10, shown  # the first 10 of the 14 differing lines; the count says the rest
    assert "Dropped with the rollback (created by this migration): platform.databases (2 rows)" in out
    assert "Rollback of phase 1 complete" not in out
    assert (
        "✅ schema_migrations: latest 005 (006 absent; it was not recorded)" in out
    )  # the other checks still shown
    assert "Migration 006 FAILED ❌" in out
    # The rollback did run: the table is gone, the forgotten function is still there.
    assert pg.scalar(url, "SELECT to_regclass('platform.databases')") is None
    assert pg.scalar(url, "SELECT to_regproc('platform.update_database_health')") is not None
    _assert_not_rolled_back(console)


def test_a_rollback_that_deletes_a_row_fails_its_proof_and_names_the_table(ready, tmp_path):
    delete = "DELETE FROM platform.notifications WHERE id = (SELECT min(id::text)::uuid FROM platform.notifications);"
    runbook = copy_runbook(tmp_path)
    path = runbook.parent / ROLLBACK_1
    path.write_text(
        path.read_text(encoding="utf-8") + "\n" + _only_in(_live_name(ready), delete) + "\n", encoding="utf-8"
    )
    console, url = _phase_1_applied(ready, runbook)
    rows = pg.scalar(url, "SELECT count(*) FROM platform.notifications")

    code, out = console(LIU, "rollback phase 1")

    assert code == 1, out
    assert "❌ Data loss: row counts changed in platform.notifications" in out
    assert "Data loss: none" not in out
    assert "✅ schema_migrations: latest 005 (006 absent; it was not recorded)" in out
    lines = out.splitlines()  # 006 keeps its versions in schema_migrations: no other ledger line in the proof
    after = lines[next(k for k, line in enumerate(lines) if "schema_migrations: latest" in line) + 1]
    assert "Data loss" in after, after
    # the schema part of the proof holds, and says so without an "accepted" qualifier
    assert "✅ Schema equals the pre-migration schema (pg_dump --schema-only compared)\n" in out
    assert pg.scalar(url, "SELECT count(*) FROM platform.notifications") == rows - 1
    _assert_not_rolled_back(console)


def test_the_rehearsal_shows_the_tpm_a_rollback_that_does_not_return_the_schema(ready, tmp_path):
    """A rollback that is wrong on the copy too: the rehearsal line says the rollback is not
    clean and names the object left behind, and the go/no-go request warns the TPM with the
    diff before the decision (issue 13.7: a known difference is the TPM's call, not a NO-GO)."""
    runbook = _edit(copy_runbook(tmp_path), ROLLBACK_1, FORGOTTEN, "-- forgotten: " + FORGOTTEN)
    console = Console(Core.from_settings(ready.with_(runbook_path=runbook)))

    code, out = console(COORDINATOR, "preflight")

    assert code == 0, out
    rehearsal = next(l for l in out.splitlines() if "Rehearsal on a copy" in l)
    assert "rollback NOT clean: phase 1 rollback-006.sql leaves" in rehearsal, rehearsal
    assert "update_database_health" in rehearsal, rehearsal
    request = out[out.index("ready for execution") :]
    assert "⚠ Rollback of phase 1 (rollback-006.sql) does not return the schema exactly" in request
    assert "+CREATE FUNCTION platform.update_database_health(" in request
    assert "Rollback of phase 2" not in request  # phase 2's rollback returned its schema exactly


def test_a_rollback_whose_snapshot_is_missing_is_not_proven(ready, tmp_path):
    """Without the snapshot taken before the phase there is nothing to compare with: the proof
    says so and fails, however right the rollback file is."""
    console, url = _phase_1_applied(ready, copy_runbook(tmp_path))
    Path(console.core.store.current().preflight["backup"]["schema_snapshot"]).unlink()

    code, out = console(LIU, "rollback phase 1")

    assert code == 1, out
    assert "❌ Schema not compared: no snapshot at" in out
    _assert_not_rolled_back(console)
