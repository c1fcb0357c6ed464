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


def _approval_lifetime_passes(monkeypatch) -> None:
    """13 h pass on the bot's clock (an approval lasts 12 h)."""
    later = clock.now() + timedelta(hours=13)
    monkeypatch.setattr(clock, "now", lambda: later)


@pytest.fixture
def after_expiry(ready, monkeypatch):
    """Phase 1 applied, then 13 h pass (the approval lasts 12 h): (console, core)."""
    core = Core.from_settings(ready)
    console = Console(core)
    console.approved()
    code, out = console(LIU, "run phase 1")
    assert code == 0, out
    _approval_lifetime_passes(monkeypatch)
    return console, core


def test_an_expired_approval_mid_run_is_renewed_by_the_tpm_on_fresh_checks_and_the_run_goes_on(
    after_expiry, ready
):
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
    # The run stays where it was: only the approval is new (rollback and restore stay open).
    assert run.status is Status.PHASE_DONE and run.phases[1].status is PhaseStatus.SUCCEEDED
    assert run.approval["renewed_from"] and run.approval["backup_sha256"] == run.preflight["backup"]["sha256"]
    assert "approval renewed" in [e["action"] for e in core.events.events(run.id, limit=100)]

    code, out = console(TPM, "approve")
    assert code == 2 and "nothing to renew" in out  # valid again
    code, out = console(TPM, "defer changed our minds")
    assert code == 2  # a NO-GO cannot close a run with phase 1 applied
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
    assert code == 2 and "does not match the schema after phase 1, where this run left it" in out, out
    assert core.store.current().status is Status.PHASE_DONE


def test_renewal_is_refused_when_phase_1_was_undone_by_hand(after_expiry, ready):
    """The database matching *a* known state is not enough: phase 1 is recorded as applied, so
    it must be the state after phase 1 (else phase 2 would run on a database without it)."""
    console, core = after_expiry
    pg.psql_file(ready.database_url, ready.runbook_path.parent / "rollback-006.sql")
    assert pg.scalar(ready.database_url, "SELECT to_regclass('platform.databases')") is None
    code, out = console(TPM, "approve")
    assert code == 2 and "does not match the schema after phase 1" in out, out


def test_an_approval_renewed_once_can_be_renewed_again_after_it_expires(after_expiry, monkeypatch):
    console, core = after_expiry
    assert console(TPM, "approve")[0] == 0
    _approval_lifetime_passes(monkeypatch)
    code, out = console(SERGEI, "run phase 2")
    assert code == 2 and "approval expired" in out
    code, out = console(TPM, "approve")
    assert code == 0 and "Approval renewed until" in out, out
    code, out = console(LIU, "rollback phase 1")  # the run under way can still be rolled back
    assert code == 0, out


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


def test_a_phase_stopped_part_way_is_renewed_on_the_ledger_and_can_then_be_finished(ready, monkeypatch):
    """Step 1.1 committed, step 1.2 failed (retry policy): no snapshot shows "after step 1.1", so
    the renewal says what the ledger shows instead of blaming someone, and phase 1 can finish."""
    core = Core.from_settings(ready)
    console = Console(core)
    console.approved()
    url = ready.database_url
    pg.scalar(url, "UPDATE platform.organizations SET slug = 'lancio-old' WHERE slug = 'lancio' RETURNING 1")
    code, out = console(LIU, "run phase 1")
    assert code == 1 and core.store.current().phases[1].status is PhaseStatus.FAILED, out
    pg.scalar(url, "UPDATE platform.organizations SET slug = 'lancio' WHERE slug = 'lancio-old' RETURNING 1")
    _approval_lifetime_passes(monkeypatch)

    code, out = console(TPM, "approve")
    assert code == 0, out
    assert "phase 1 partially applied (step 1.1 committed by this run), per the ledger" in out
    assert "its schema differs from the pre-migration schema (version 005) by" in out
    assert "CREATE TABLE platform.databases" in out  # what step 1.1 committed, for the TPM to see
    code, out = console(LIU, "run phase 1")
    assert code == 0 and "Phase 1 complete" in out, out


def test_a_succeeded_run_can_be_verified_again_after_its_approval_is_renewed(ready, monkeypatch):
    core = Core.from_settings(ready)
    console = Console(core)
    console.approved()
    code, out = console(COORDINATOR, "run")
    assert code == 0 and "Migration 006 SUCCESSFUL ✅" in out, out
    _approval_lifetime_passes(monkeypatch)
    code, out = console(COORDINATOR, "verify")
    assert code == 2 and "approval expired" in out
    code, out = console(TPM, "approve")
    assert code == 0 and "Database: matches the schema after phase 2" in out, out
    assert "`verify` when wanted" in out
    code, out = console(COORDINATOR, "verify")
    assert code == 0, out
