"""Renewing an approval that expired while a run was under way (phases run hours apart).

Before, `run phase 2` said "approval expired: ask the TPM to approve", `approve` refused (the
run was not awaiting a decision) and a new pre-flight was refused (phase 1 applied): a dead end
whose only exit was rolling back. Now the TPM renews on checks run at that moment; the run goes
on with the same files and the same restore point.
"""
from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest

from commands import Core
from core import clock
from state.machine import PhaseStatus, Status
from tests.support import pg
from tests.support.flow import COORDINATOR, LIU, SERGEI, TPM, Console


@pytest.fixture
def after_expiry(ready, monkeypatch):
    """Phase 1 applied, then 13 h pass (the approval lasts 12 h): (console, core)."""
    core = Core.from_settings(ready)
    console = Console(core)
    console.approved()
    code, out = console(LIU, "run phase 1")
    assert code == 0, out
    later = clock.now() + timedelta(hours=13)
    monkeypatch.setattr(clock, "now", lambda: later)
    return console, core


def test_an_expired_approval_mid_run_is_renewed_by_the_tpm_on_fresh_checks_and_the_run_goes_on(after_expiry, ready):
    console, core = after_expiry
    code, out = console(SERGEI, "run phase 2")
    assert code == 2 and "approval expired" in out and "ask the TPM" in out
    code, out = console(COORDINATOR, "preflight")
    assert code == 2 and "phase 1 applied" in out
    code, out = console(SERGEI, "status")
    assert "the TPM renews it with `approve`" in out, out
    code, out = console(COORDINATOR, "approve")
    assert code == 2 and "TPM" in out  # renewing is the TPM's decision too
    code, out = console(TPM, "approve at 23:00")
    assert code == 2 and "renewed for now only" in out

    code, out = console(TPM, "approve")
    assert code == 0, out
    assert "Approval renewed until" in out and "approval renewed mid-run" in out
    assert "Database: matches the schema after phase 1 (schema compared)" in out
    assert "✅ Deployment live and healthy" in out and "the restore point stays the pre-flight backup" in out
    run = core.store.current()
    assert run.status is Status.APPROVED and run.phases[1].status is PhaseStatus.SUCCEEDED
    assert run.approval["renewed_from"] and run.approval["backup_sha256"] == run.preflight["backup"]["sha256"]

    code, out = console(TPM, "approve")
    assert code == 2 and "already approved" in out  # valid again: nothing to add
    assert "Next: the next phase's owner: `run phase n`" in console(SERGEI, "status")[1]
    code, out = console(TPM, "approve at 23:00")
    assert code == 2 and "phase 1 is already applied" in out  # a run under way is not scheduled
    code, out = console(SERGEI, "run phase 2")
    assert code == 0, out
    code, out = console(COORDINATOR, "run phase 3")
    assert code == 0, out
    assert "Migration 006 SUCCESSFUL ✅" in out
    assert pg.scalar(ready.database_url, "SELECT count(*) FROM schema_migrations WHERE version = '006'") == 1


def test_renewal_is_refused_when_the_database_was_changed_meanwhile(after_expiry, ready):
    console, core = after_expiry
    with psycopg.connect(ready.database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE platform.hotfix_meanwhile (id int)")
    code, out = console(TPM, "approve")
    assert code == 2 and "matches no state this run left" in out, out
    assert core.store.current().status is Status.PHASE_DONE


def test_renewal_is_refused_when_a_check_fails_now(after_expiry, ready):
    console, core = after_expiry
    down = Console(Core.from_settings(ready.with_(deployment_url="http://127.0.0.1:9/health")))
    code, out = down(TPM, "approve")
    assert code == 2 and "checked now" in out and "Deployment live and healthy" in out, out
    code, out = console(LIU, "incident start replication lag 40 s")
    assert code == 0, out
    code, out = console(TPM, "approve")
    assert code == 2 and "incident" in out
    assert core.store.current().status is Status.PHASE_DONE
