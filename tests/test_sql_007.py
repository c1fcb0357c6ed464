"""Migration 007 as a second runbook (sql/007/): NO-GO until the application's session
middleware is deployed (the runbook's declared HTTP precondition), then it runs on a
database after 006 and rolls back to exactly the 006 schema."""

from __future__ import annotations

import pytest

from commands import Core
from preflight import Timeouts, fast_checks
from preflight.report import FAIL, PASS
from runbook.model import load_runbook
from sql import RUNBOOKS_DIR
from state.machine import Status
from tests.support import pg
from tests.support.flow import COORDINATOR, SERGEI, Console

RUNBOOK_007 = RUNBOOKS_DIR / "007" / "runbook.toml"
RB_006 = load_runbook(RUNBOOKS_DIR / "006" / "runbook.toml")
PRECONDITION = "http:session middleware sets app.current_user_id and app.current_org_id"
FAST = Timeouts(network=0.5, database=5)


@pytest.fixture
def after_006(ready):
    """The `ready` database with 006's schema files applied and 006 recorded (as after a
    successful 006 run; registration is left out: 007 does not read the registered rows)."""
    url = ready.database_url
    for name in ("006_add_platform_databases_table.sql", RB_006.phase(2).steps[0].file):
        result = pg.psql_file(url, RB_006.file_path(name), "-1")
        assert result.returncode == 0, result.stderr
    with __import__("psycopg").connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO schema_migrations (version, description) VALUES ('006', 'platform.databases, RLS')"
        )
    return ready.with_(
        runbook_path=RUNBOOK_007, register_mongodb_url=None, register_redis_url=None, encryption_key=None
    )


def test_007_preflight_is_nogo_until_the_session_middleware_is_deployed(after_006, services):
    deployment, _mongo = services
    rb = load_runbook(RUNBOOK_007)
    report = fast_checks(after_006, rb, incident=None, timeouts=FAST)
    line = report.line(PRECONDITION)
    assert report.go is False and [c.key for c in report.checks if c.status == FAIL] == [PRECONDITION]
    assert line.observed.startswith("401") and "session-context" in line.how
    deployment.session_context = True  # the middleware release
    report = fast_checks(after_006, rb, incident=None, timeouts=FAST)
    assert report.line(PRECONDITION).status == PASS
    assert not [c for c in report.checks if c.status == FAIL]
    assert {"inputs", "network:mongodb", "network:redis"}.isdisjoint(c.key for c in report.checks)


def test_007_runs_after_006_and_rolls_back_to_the_006_schema(after_006, services):
    deployment, _mongo = services
    deployment.session_context = True
    url = after_006.database_url
    schema_006 = pg.schema_dump(url)
    console = Console(Core.from_settings(after_006))
    console.approved()

    code, out = console(SERGEI, "run phase 1")
    assert code == 0, out
    code, out = console(COORDINATOR, "run")  # phase 2, then the final checks: 007 recorded
    assert code == 0, out
    assert "Migration 007 SUCCESSFUL" in out, out
    assert (
        pg.scalar(
            url,
            "SELECT count(*) FROM pg_policies WHERE schemaname = 'platform' AND permissive = 'RESTRICTIVE'",
        )
        == 23
    )
    assert pg.scalar(url, "SELECT count(*) FROM schema_migrations WHERE version = '007'") == 1

    code, out = console(COORDINATOR, "rollback all")

    assert code == 0, out
    assert console.core.store.current().status is Status.ROLLED_BACK
    assert pg.schema_dump(url) == schema_006
    assert pg.scalar(url, "SELECT count(*) FROM pg_policies WHERE schemaname = 'platform'") == 48
    assert pg.scalar(url, "SELECT count(*) FROM schema_migrations WHERE version = '007'") == 0
