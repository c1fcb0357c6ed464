"""Runbooks nobody here wrote (issue 13): what the runbook names runs, whatever its shape."""
from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from commands import Core
from engine import ledger
from runbook.model import load_runbook
from tests.support import pg
from tests.support.flow import COORDINATOR, Console
from tests.support.folders import Folder, Migration


@pytest.fixture
def bare(settings, scratch_db):
    """An empty database and none of 006's settings (no deployment, no inputs)."""
    return settings.with_(database_url=scratch_db(), deployment_url=None, register_mongodb_url=None,
                          register_redis_url=None, encryption_key=None)


def with_ledger_table(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE schema_migrations (version text PRIMARY KEY)")


TWO = [Migration("001_items", "CREATE TABLE items (id int PRIMARY KEY);\n", "DROP TABLE items;\n"),
       Migration("002_label", "ALTER TABLE items ADD COLUMN label text;\n", "ALTER TABLE items DROP COLUMN label;\n")]


def test_a_runbook_without_a_verification_phase_runs_to_success_and_records_its_version(bare, tmp_path):
    """Fails on the old code: StopIteration in run_all after every phase succeeded, and the
    version never reached the ledger."""
    with_ledger_table(bare.database_url)
    runbook = Folder(tmp_path / "two", TWO).write()
    core = Core.from_settings(bare.with_(runbook_path=runbook))
    console = Console(core)
    console.approved()
    code, out = console(COORDINATOR, "run")
    assert code == 0, out
    assert "SUCCESSFUL" in out
    assert str(core.store.current().status) == "succeeded"
    assert pg.scalar(bare.database_url, "SELECT count(*) FROM schema_migrations WHERE version = '20260102'") == 1

    code, out = console(COORDINATOR, "verify")
    assert code == 0, out
    assert "no verification phase" in out and "SUCCESSFUL" in out
