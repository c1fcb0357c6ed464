"""Crash recovery for real: a PostgreSQL connection terminated mid-file, a console process
SIGKILLed mid-phase, a `serve` process SIGKILLed mid-phase, and Redis losing the run state.

After each, the database is what it was before the step (the open transaction died with
its connection: the test waits until PostgreSQL has noticed the dead client), nothing was
re-run, the run says what happened, and the phase can be run again to completion.
"""
from __future__ import annotations

import io
import signal
import threading

import pytest

from bot.console import run_command
from commands import Core
from engine import ledger
from state.machine import PhaseStatus, Status
from tests.support import pg
from tests.support import runbooks as rbs
from tests.support.deployment import Deployment, TcpListener

COORDINATOR, TPM, LIU, SERGEI = "U0RAFAEL", "U0DYLAN", "U0LIU", "U0SERGEI"


@pytest.fixture
def services():
    deployment, mongo = Deployment(), TcpListener()
    yield deployment, mongo
    deployment.close()
    mongo.close()


@pytest.fixture
def sleeping(settings, services, tmp_path):
    """Settings whose step 1.1 sleeps 240 s at the end of its transaction (only in the live db)."""
    deployment, mongo = services
    dbname = settings.database_url.rsplit("/", 1)[1]
    return settings.with_(deployment_url=deployment.url, runbook_path=rbs.sleeping_runbook(tmp_path, dbname),
                          register_mongodb_url=f"mongodb://lancio:S3cretMongoPw42@127.0.0.1:{mongo.port}/lancio")


@pytest.fixture
def ready(settings, services):
    deployment, mongo = services
    return settings.with_(deployment_url=deployment.url,
                          register_mongodb_url=f"mongodb://lancio:S3cretMongoPw42@127.0.0.1:{mongo.port}/lancio")


def _do(core: Core, user: str, text: str, expect: int = 0) -> str:
    out = io.StringIO()
    code = run_command(core, user, text, out)
    assert code == expect, out.getvalue()
    return out.getvalue()


def _sleeping_step(core: Core) -> int:
    """Wait until step 1.1's backend sleeps in its transaction; its pid."""
    pid = rbs.wait_until(lambda: rbs.step_backend(core), what="step 1.1 in progress")
    rbs.wait_until(lambda: pg.scalar(core.settings.database_url, "SELECT wait_event FROM pg_stat_activity WHERE pid = %s",
                                     (pid,)) == "PgSleep", what="step 1.1 sleeping")
    return pid


def _assert_unchanged(url: str, schema_before: str) -> None:
    assert pg.schema_dump(url) == schema_before
    assert pg.scalar(url, "SELECT to_regclass('platform.databases')") is None
    assert ledger.applied_files(url, "006") == []  # the ledger row died with the transaction


def test_connection_terminated_mid_file_rolls_back_and_reports_the_real_cause(sleeping):
    core = Core.from_settings(sleeping)
    _do(core, COORDINATOR, "preflight")
    _do(core, TPM, "approve")
    schema_before = pg.schema_dump(sleeping.database_url)
    out, result = io.StringIO(), {}
    worker = threading.Thread(target=lambda: result.update(code=run_command(core, LIU, "run phase 1", out)))
    worker.start()
    pid = _sleeping_step(core)
    assert pg.scalar(sleeping.database_url, "SELECT pg_terminate_backend(%s)", (pid,))
    worker.join(timeout=120)
    assert not worker.is_alive()
    text = out.getvalue()
    assert result["code"] == 1, text
    assert "Migration 006 FAILED" in text and "Internal error" not in text
    assert "Error: 006_add_platform_databases_table.sql:0: terminating connection due to administrator command" in text
    assert "Database Status: Unchanged" in text or "Database Status: Healthy — matches the pre-migration" in text
    run = core.store.current()
    assert run.status is Status.FAILED and run.phases[1].status is PhaseStatus.FAILED
    _assert_unchanged(sleeping.database_url, schema_before)
