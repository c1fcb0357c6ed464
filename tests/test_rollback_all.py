"""`rollback all` (coordinator) and `rollback accept` (tpm), issue 13: every applied phase's
rollback newest first in one command, stopping at the first failure with the diff shown; a
known difference accepted by the TPM, recorded in the audit with the diff and who accepted it.

The wrong rollbacks are wrong only in the live database (the condition reads
current_database()), so the pre-flight rehearsal on the copy passes and the run is approved.
"""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

import pytest

from commands import Core
from state.machine import PhaseStatus, Status
from tests.support import pg
from tests.support.flow import COORDINATOR, LIU, TPM, Console
from tests.support.runbooks import copy_runbook

ROLLBACK_1 = "rollback-006.sql"
FORGOTTEN = "DROP FUNCTION IF EXISTS platform.update_database_health(uuid, text, text);"


def _live(settings) -> str:
    return settings.database_url.rsplit("/", 1)[-1]


def _quote(statement: str) -> str:
    return "'" + statement.rstrip(";").replace("'", "''") + "'"


def _where(live: str, op: str, statement: str) -> str:
    return (
        f"DO $$ BEGIN IF current_database() {op} '{live}' THEN EXECUTE {_quote(statement)}; END IF; END $$;"
    )


def _edit(runbook: Path, file: str, old: str, new: str) -> Path:
    path = runbook.parent / file
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {file}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return runbook


def _migrated(ready, runbook: Path | None = None) -> Console:
    console = Console(Core.from_settings(ready.with_(runbook_path=runbook) if runbook else ready))
    console.approved()
    code, out = console(COORDINATOR, "run")
    assert code == 0, out
    return console


def _phases(console: Console) -> dict[int, PhaseStatus]:
    return {n: p.status for n, p in console.core.store.current().phases.items()}


def test_rollback_all_undoes_every_applied_phase_newest_first(ready):
    before = pg.schema_dump(ready.database_url)
    console = _migrated(ready)

    code, out = console(COORDINATOR, "rollback all")

    assert code == 0, out
    assert out.index("Rollback of phase 2 complete") < out.index("Rollback of phase 1 complete")
    assert "Rollback of every applied phase complete" in out and "phase 2, phase 1" in out
    assert (
        "✅ schema_migrations: latest 005 (006 absent; removed by 006_rollback.sql)" in out
    )  # who removed 006
    assert (
        "✅ Schema equals the schema after phase 1 (catalog snapshot compared, as strict as pg_dump --schema-only)"
        in out
    )
    run = console.core.store.current()
    assert run.status is Status.ROLLED_BACK
    assert _phases(console)[1] is PhaseStatus.ROLLED_BACK and _phases(console)[2] is PhaseStatus.ROLLED_BACK
    assert pg.schema_dump(ready.database_url) == before
    code, out = console(COORDINATOR, "rollback all")  # nothing left: refused, nothing run
    assert code == 2 and "nothing to roll back" in out


def test_rollback_all_stops_at_a_rollback_that_forgets_a_function_and_the_tpm_accepts_it(ready, tmp_path):
    runbook = _edit(copy_runbook(tmp_path), ROLLBACK_1, FORGOTTEN, _where(_live(ready), "<>", FORGOTTEN))
    console = _migrated(ready, runbook)

    code, out = console(COORDINATOR, "rollback all")

    assert code == 1, out
    assert "Rollback of phase 2 complete" in out and "Rollback of phase 1 complete" not in out
    assert "+CREATE FUNCTION platform.update_database_health(" in out  # what differs, shown
    assert "Rollback all stopped at phase 1" in out and "The run is not rolled back." in out
    assert "`rollback accept`" in out
    assert "the rehearsal did NOT show this difference" in out  # wrong only in the live database
    run = console.core.store.current()
    assert run.status is Status.FAILED and _phases(console)[1] is PhaseStatus.FAILED
    assert pg.scalar(ready.database_url, "SELECT to_regproc('platform.update_database_health')") is not None

    code, status = console(COORDINATOR, "status")
    assert "left a difference" in status and "`rollback accept`" in status, status
    # only the TPM may accept; anyone else is refused and nothing changes
    for user in (COORDINATOR, LIU):
        code, out = console(user, "rollback accept")
        assert code == 2 and "only the TPM" in out, out
    assert console.core.store.current().status is Status.FAILED

    code, out = console(TPM, "rollback accept")

    assert code == 0, out
    assert (
        "Rollback of phase 1 accepted with a known difference" in out
        and "no phase is applied any more" in out
    )
    run = console.core.store.current()
    assert run.status is Status.ROLLED_BACK and _phases(console)[1] is PhaseStatus.ROLLED_BACK
    accepted = [
        e for e in console.core.events.events(run.id, limit=500) if e["action"] == "rollback accept phase 1"
    ]
    assert len(accepted) == 1 and accepted[0]["actor"] == TPM
    assert accepted[0]["evidence"]["accepted_by"] == TPM and accepted[0]["evidence"]["file"] == ROLLBACK_1
    assert any(
        "+CREATE FUNCTION platform.update_database_health(" in line
        for line in accepted[0]["evidence"]["difference"]
    )
    code, out = console(COORDINATOR, "report")
    assert "## Rollback Differences Accepted" in out and f"accepted by <@{TPM}>" in out, out
    assert (
        "+CREATE FUNCTION platform.update_database_health(" in out.split("Rollback Differences Accepted")[1]
    )
    code, out = console(TPM, "rollback accept")  # accepted once: nothing pending any more
    assert code == 2 and "nothing to accept" in out


def test_rollback_all_stops_at_a_rollback_that_deletes_a_row(ready, tmp_path):
    delete = "DELETE FROM platform.notifications WHERE id = (SELECT min(id::text)::uuid FROM platform.notifications);"
    runbook = copy_runbook(tmp_path)
    path = runbook.parent / ROLLBACK_1
    path.write_text(
        path.read_text(encoding="utf-8") + "\n" + _where(_live(ready), "=", delete) + "\n", encoding="utf-8"
    )
    console = _migrated(ready, runbook)

    code, out = console(COORDINATOR, "rollback all")

    assert code == 1, out
    assert "❌ Data loss: row counts changed in platform.notifications" in out
    assert "Rollback all stopped at phase 1" in out
    assert console.core.store.current().status is Status.FAILED
    assert _phases(console)[1] is PhaseStatus.FAILED and _phases(console)[2] is PhaseStatus.ROLLED_BACK


def test_rollback_all_is_the_coordinators_and_accept_needs_a_pending_difference(ready):
    console = _migrated(ready)
    code, out = console(LIU, "rollback all")
    assert code == 2 and "only the coordinator can `rollback all`" in out, out
    code, out = console(TPM, "rollback accept")
    assert code == 2 and "nothing to accept" in out, out
    assert console.core.store.current().status is Status.SUCCEEDED


@pytest.mark.parametrize("command", ["rollback all", "rollback phase 1"])
def test_a_phase_whose_atomic_step_left_nothing_is_rolled_back_without_running_its_file(
    ready, tmp_path, command
):
    """Step 1.1 fails inside its transaction in production (nothing of phase 1 committed). Its
    rollback file, run now, would drop what this run did not create — here it would fail: the
    table it drops does not exist. `rollback all` marks the phase rolled back without running it.
    (Both faults happen only in the live database: the rehearsal on the copy passes.)"""
    live = _live(ready)
    runbook = copy_runbook(tmp_path)
    step = runbook.parent / "006_add_platform_databases_table.sql"
    step.write_text(
        step.read_text(encoding="utf-8")
        + "\n"
        + f"DO $$ BEGIN IF current_database() = '{live}' THEN RAISE EXCEPTION 'boom'; END IF; END $$;\n",
        encoding="utf-8",
    )
    rollback = runbook.parent / ROLLBACK_1
    rollback.write_text(
        _where(live, "=", "DROP TABLE platform.databases;") + "\n" + rollback.read_text(encoding="utf-8"),
        encoding="utf-8",
    )
    console = Console(Core.from_settings(ready.with_(runbook_path=runbook)))
    console.approved()
    code, out = console(COORDINATOR, "run phase 1")
    assert code == 1 and "boom" in out, out
    assert _phases(console)[1] is PhaseStatus.FAILED

    code, out = console(COORDINATOR, command)

    assert code == 0, out
    assert "Phase 1: nothing to undo, rollback file not run" in out and "does not exist" not in out
    assert console.core.store.current().status is Status.ROLLED_BACK
    assert _phases(console)[1] is PhaseStatus.ROLLED_BACK


def test_rollback_all_and_accept_parse_exactly_and_say_what_to_type_otherwise():
    from datetime import datetime

    from commands.parse import ParseError, parse
    from commands.policy import allowed_roles, describe

    now = datetime(2026, 12, 7, tzinfo=UTC)
    for text, role in (("rollback all", "coordinator"), ("ROLLBACK Accept", "tpm")):
        cmd = parse(text, now)
        assert describe(cmd) == text.lower() and allowed_roles(cmd, None) == (role,)
    for text in ("rollback all now", "rollback accept 2", "rollback everything"):
        try:
            parse(text, now)
        except ParseError as exc:
            assert "rollback all" in str(exc) and "rollback accept" in str(exc)
        else:
            raise AssertionError(f"{text!r} parsed")


def test_a_difference_the_rehearsal_showed_is_named_as_known_and_accepted(ready, tmp_path):
    """The whole story: the rehearsal shows the TPM that phase 1's rollback forgets a function,
    the TPM approves anyway, the run succeeds; `rollback all` stops at phase 1 saying the
    difference was shown before the approval, and the TPM accepts it."""
    runbook = _edit(copy_runbook(tmp_path), ROLLBACK_1, FORGOTTEN, "-- forgotten: " + FORGOTTEN)
    console = Console(Core.from_settings(ready.with_(runbook_path=runbook)))
    code, out = console(COORDINATOR, "preflight")
    assert (
        code == 0 and "⚠ Rollback of phase 1 (rollback-006.sql) does not return the schema exactly" in out
    ), out
    code, out = console(TPM, "approve")
    assert code == 0, out
    code, out = console(COORDINATOR, "run")
    assert code == 0, out

    code, out = console(COORDINATOR, "rollback all")

    assert code == 1 and "Rollback all stopped at phase 1" in out, out
    assert "the rehearsal showed a difference for this rollback before the approval" in out
    code, out = console(TPM, "rollback accept")
    assert code == 0 and "Pre-flight: the rehearsal showed a difference" in out, out
    assert console.core.store.current().status is Status.ROLLED_BACK
