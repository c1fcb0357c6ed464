"""The README's first command, `scripts/demo`, from nothing: no demo database, no local state
directory. It must create the 005 demo database, start its local stand-ins and run the
console — here one command, `preflight`, which must end GO on the fresh database."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support import pg

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def demo_db():
    name = pg.new_name("demo")
    yield name
    pg.drop_database(name)


def test_scripts_demo_creates_the_005_database_and_preflight_is_go(demo_db, redis_prefix, tmp_path):
    state = tmp_path / "not-yet-there"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            ("MIGRATE_", "REGISTER_", "SLACK_", "DATABASE_URL", "BACKUP_DIR", "REDIS_URL", "DEPLOYMENT_URL")
        )
    }
    env.update(DEMO_DB=demo_db, MIGRATE_DEMO_DIR=str(state), MIGRATE_REDIS_PREFIX=redis_prefix)
    done = subprocess.run(
        ["scripts/demo", "preflight"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert f"creating demo database {demo_db} at version 005" in out
    assert "Requesting go/no-go decision" in out and "backup verified by restore" in out
    assert pg.scalar(pg.url_for(demo_db), "SELECT max(version::text) FROM schema_migrations") == "005"
    assert list((state / "backups").glob("backup_pre_migration_006_*.dump"))
