"""Advice that can be followed (issue 11 defect 8): a failure says what is known — never a
restore when the step's transaction rolled back — and the TPM's `approve` turns a scheduled
GO into GO now, which is what `run` tells people to ask for."""

from __future__ import annotations

import io
import re
import threading
from datetime import timedelta

import psycopg
import pytest

from bot.console import run_command
from commands import Core
from core import clock
from scheduling.scheduler import for_core
from state.machine import Status
from tests.support import pg
from tests.support import runbooks as rbs
from tests.support.flow import COORDINATOR, LIU, TPM, Console

STEP_1_2 = "006_register_railway_databases_production.sql"
UNRELATED_TABLE = "platform.usage_records"  # nothing of phase 1 touches it but the line the test adds to 1.2


def _field(out: str, name: str) -> str:
    match = re.search(rf"^\s*{name}: (.*)$", out, re.M)
    assert match, f"no {name} field in:\n{out}"
    return match.group(1)


@pytest.mark.parametrize("how", ["killed", "aborted"])
def test_a_step_stopped_while_waiting_on_a_lock_is_reported_rolled_back_not_restore(ready, tmp_path, how):
    """Fails without the fix: the state check queued behind the same lock, could not compare,
    and the failure said both "safe to retry" and "Restore from backup may be needed" (killed),
    or "Unknown — the database differs from its state before the step" (aborted)."""
    toml = rbs.append_to_file(
        rbs.copy_runbook(tmp_path), STEP_1_2, f"LOCK TABLE {UNRELATED_TABLE} IN SHARE MODE;"
    )
    rbs.set_step_option(toml, "1.2", 'lock_timeout = "10m"')
    settings = ready.with_(runbook_path=toml)
    core = Core.from_settings(settings)
    Console(core).approved()
    url = settings.database_url
    holder = psycopg.connect(url)  # holds what even a look at the table (pg_dump, count(*)) waits for
    holder.execute(f"LOCK TABLE {UNRELATED_TABLE} IN ACCESS EXCLUSIVE MODE")
    out, result = io.StringIO(), {}
    worker = threading.Thread(target=lambda: result.update(code=run_command(core, LIU, "run phase 1", out)))
    worker.start()
    try:
        pid = rbs.wait_until(
            lambda: (
                pg.scalar(url, "SELECT to_regclass('migrate_bot.applied_files') IS NOT NULL")
                and rbs.step_backend(core)
            ),
            timeout=120,
            what="step 1.2 waiting for the lock",
        )
        if how == "killed":
            assert pg.scalar(url, "SELECT pg_terminate_backend(%s)", (pid,))
        else:
            code, said = Console(core)(COORDINATOR, "abort")
            assert code == 0, said
        worker.join(timeout=120)
    finally:
        holder.rollback()
        holder.close()
        worker.join(timeout=120)
    text = out.getvalue()

    assert result["code"] == 1, text
    assert _field(text, "Database Status").startswith("Unchanged")
    assert "Restore from backup" not in text and "rollback restore" not in _field(text, "Action Required")
    if how == "killed":
        assert "terminating connection due to administrator command" in _field(text, "Error")
        assert "safe to retry" in _field(text, "Action Required")
    else:
        assert _field(text, "Rollback Status").startswith("Not needed — the transaction was rolled back")
    assert pg.scalar(url, "SELECT count(*) FROM platform.databases") == 0  # 1.2 left nothing
    code, again = Console(core)(LIU, "run phase 1")  # the advice can be followed
    assert code == 0, again


def test_approve_turns_a_scheduled_go_into_go_now(ready):
    """Fails without the fix: `run` said to ask the TPM for GO now, and `approve` refused
    (a scheduled run could not become approved)."""
    core = Core.from_settings(ready)
    console = Console(core)
    code, out = console(COORDINATOR, "preflight")
    assert code == 0, out
    at = (clock.now() + timedelta(hours=1)).replace(microsecond=0)
    code, out = console(TPM, f"approve at {at.isoformat()}")
    assert code == 0 and "GO scheduled" in out, out
    run_id = core.store.current().id
    assert [j for j in for_core(core).jobs() if j["run_id"] == run_id and j["kind"] == "start"]

    code, out = console(COORDINATOR, "run")
    assert code == 2 and "ask the TPM for GO now" in out, out
    code, out = console(TPM, "approve")

    assert code == 0, out
    assert f"The scheduled start ({at:%Y-%m-%d %H:%M} UTC) was cancelled: GO now replaces it." in out
    run = core.store.current()
    assert run.status is Status.APPROVED and run.approval["mode"] == "now"
    assert run.decision["replaces_scheduled"] == at.isoformat()
    assert not [j for j in for_core(core).jobs() if j["run_id"] == run_id and j["kind"] == "start"]
    events = core.events.events(run_id)
    assert any(e.get("action") == "approve" and "replaces_scheduled" in str(e) for e in events), events
    code, out = console(LIU, "run phase 1")
    assert code == 0 and "Phase 1 complete" in out, out
