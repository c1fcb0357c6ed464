"""Pre-flight checks are declared by the runbook (issue 13.5): a runbook that asks for nothing
gets nothing asked of it, and what it declares (deployment, hosts, inputs, SQL
preconditions, HTTP smoke tests) is checked for real: real databases, real sockets."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from preflight import Timeouts, fast_checks, run_preflight
from preflight.report import FAIL, PASS, PENDING
from runbook.model import RunbookError, load_runbook
from tests.support import fakes_net, pg
from tests.support.deployment import Deployment

FAST = Timeouts(network=0.5, database=5)

MINIMAL = """\
[runbook]
id = "demo"
version = "20260101"

[[phases]]
number = 1
name = "Add a table"
owner = "coordinator"
rollback = "down.sql"

[[phases.steps]]
id = "1.1"
file = "up.sql"
"""


def minimal_runbook(tmp_path: Path, extra: str = "") -> Path:
    folder = tmp_path / "minimal"
    folder.mkdir(exist_ok=True)
    (folder / "up.sql").write_text("CREATE TABLE demo_items (id int PRIMARY KEY, name text NOT NULL);\n")
    (folder / "down.sql").write_text("DROP TABLE demo_items;\n")
    (folder / "runbook.toml").write_text(MINIMAL + extra)
    return folder / "runbook.toml"


@pytest.fixture
def bare(settings, scratch_db):
    """An empty database (no schema_migrations, no pgcrypto) and none of 006's settings."""
    return settings.with_(
        database_url=scratch_db(),
        deployment_url=None,
        register_mongodb_url=None,
        register_redis_url=None,
        encryption_key=None,
    )


def failed(report) -> dict[str, str]:
    return {c.key: c.observed for c in report.checks if c.status == FAIL}


def test_a_runbook_that_asks_for_nothing_is_go_without_any_006_setting(bare, tmp_path):
    report = run_preflight(bare, load_runbook(minimal_runbook(tmp_path)), incident=None, timeouts=FAST)
    assert report.go is True, report.nogo_reasons
    keys = {c.key for c in report.checks}
    assert keys == {
        "database",
        "server_version",
        "runbook_files",
        "lock_safety",
        "incident",
        "window",
        "backup",
        "rehearsal",
        "approval",
    }
    assert report.rehearsal.ok and report.line("approval").status == PENDING
    assert (
        pg.scalar(bare.database_url, "SELECT to_regclass('demo_items')") is None
    )  # rehearsed on a copy only


def test_required_versions_and_extensions_are_checked_only_when_required(bare, tmp_path):
    nothing = fast_checks(bare, load_runbook(minimal_runbook(tmp_path)), incident=None, timeouts=FAST)
    assert nothing.line("migrations") is None and nothing.line("extensions") is None
    required = load_runbook(
        minimal_runbook(tmp_path, '\n[prerequisites]\napplied = ["001"]\nextensions = ["pgcrypto"]\n')
    )
    report = fast_checks(bare, required, incident=None, timeouts=FAST)
    assert failed(report) == {
        "migrations": "applied: (none) (missing 001)",  # the bot's own ledger: empty
        "extensions": "none of them; missing pgcrypto",
    }


PRECONDITION = """
[[preflight.sql]]
name = "the application created its settings table"
sql = "SELECT count(*) FROM pg_tables WHERE tablename = 'demo_settings'"
expect = 1
"""


def test_sql_precondition_is_nogo_until_it_holds(bare, tmp_path):
    rb = load_runbook(minimal_runbook(tmp_path, PRECONDITION))
    report = fast_checks(bare, rb, incident=None, timeouts=FAST)
    line = report.line("sql:the application created its settings table")
    assert report.go is False and line.status == FAIL and line.observed == "0" and line.required == "= 1"
    assert "Declared preconditions" in " ".join(label for label, icon in report.matrix() if icon == "❌")
    with psycopg.connect(bare.database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE demo_settings (k text)")
    report = fast_checks(bare, rb, incident=None, timeouts=FAST)
    assert report.line("sql:the application created its settings table").status == PASS and not failed(report)


@pytest.mark.parametrize(
    "sql, reason",
    [
        ("SELECT 1; SELECT 2", "exactly one statement (found 2)"),
        ("DELETE FROM demo_items", "read-only SELECT (found DELETE)"),
        ("SELECT * INTO copy FROM demo_items", "SELECT … INTO creates a table"),
        (
            "WITH gone AS (DELETE FROM demo_items RETURNING 1) SELECT count(*) FROM gone",
            "its WITH runs DELETE",
        ),
        ("SELECT id FROM demo_items FOR UPDATE", "FOR UPDATE/SHARE"),
        # in a subquery: accepted at load, then failed the run ("cannot execute SELECT FOR UPDATE in a read-only transaction")
        ("SELECT count(*) FROM (SELECT id FROM demo_items FOR UPDATE) AS locked", "FOR UPDATE/SHARE"),
        ("SELECT 1 WHERE EXISTS (SELECT 1 FROM demo_items FOR KEY SHARE)", "FOR UPDATE/SHARE"),
    ],
)
def test_a_precondition_that_is_not_one_read_only_query_is_refused_at_load(tmp_path, sql, reason):
    extra = f'\n[[preflight.sql]]\nname = "bad"\nsql = """{sql}"""\nexpect = 1\n'
    with pytest.raises(RunbookError) as err:
        load_runbook(minimal_runbook(tmp_path, extra))
    assert reason in str(err.value) and "preflight" in str(err.value) and "bad" in str(err.value)


def test_declared_deployment_reach_inputs_and_smoke_test(bare, tmp_path, monkeypatch):
    deployment = Deployment()
    extra = """
[inputs."demo.queue_url"]
env = "DEMO_QUEUE_URL"
schemes = ["redis"]

[preflight.deployment]
url_env = "DEMO_APP_URL"

[[preflight.reach]]
name = "queue"
url_env = "DEMO_QUEUE_URL"

[[preflight.http]]
name = "profile requires auth"
url_env = "DEMO_APP_URL"
path = "api/platform/profile"
expect_status = 401
expect_body = '{"error":"Unauthorized"}'
"""
    rb = load_runbook(minimal_runbook(tmp_path, extra))
    try:
        monkeypatch.setenv("DEMO_APP_URL", deployment.url)
        monkeypatch.setenv("DEMO_QUEUE_URL", "redis://127.0.0.1:6379/0")
        report = fast_checks(bare, rb, incident=None, timeouts=FAST)
        assert not failed(report), failed(report)
        assert report.line("deployment").observed.startswith("HTTP 200")
        assert "PONG" in report.line("network:queue").observed
        assert report.line("http:profile requires auth").observed.startswith("401")
        assert report.line("inputs").observed == "DEMO_QUEUE_URL → redis 127.0.0.1:6379"
        deployment.status = 503
        monkeypatch.setenv("DEMO_QUEUE_URL", f"redis://127.0.0.1:{fakes_net.closed_port()}/0")
        report = fast_checks(bare, rb, incident=None, timeouts=FAST)
    finally:
        deployment.close()
    assert set(failed(report)) == {"deployment", "network:queue"}
    assert "HTTP 503" in failed(report)["deployment"]
    monkeypatch.delenv("DEMO_APP_URL")
    monkeypatch.setenv("DEMO_QUEUE_URL", "mongodb://h:27017")
    report = fast_checks(bare, rb, incident=None, timeouts=FAST)
    assert failed(report)["deployment"] == "not configured (DEMO_APP_URL unset)"
    assert failed(report)["http:profile requires auth"] == "not configured (DEMO_APP_URL unset)"
    assert failed(report)["inputs"] == "DEMO_QUEUE_URL scheme is mongodb, expected redis"


def test_an_unknown_preflight_kind_is_refused(tmp_path):
    with pytest.raises(RunbookError) as err:
        load_runbook(minimal_runbook(tmp_path, '\n[[preflight.ping]]\nname = "x"\n'))
    assert "unknown check kind(s) ['ping']" in str(err.value)


def test_the_minimal_runbook_of_sql_readme_goes_from_preflight_to_rollback_all(bare, tmp_path):
    """The README's dozen-line example, as printed, on an empty database with none of 006's
    settings: GO, SUCCESSFUL, and `rollback all` back to the empty schema."""
    from commands import Core
    from sql import RUNBOOKS_DIR
    from state.machine import Status
    from tests.support.flow import COORDINATOR, Console

    readme = (RUNBOOKS_DIR / "README.md").read_text(encoding="utf-8")
    example = readme.split("**A minimal runbook**", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    assert len(example.strip().splitlines()) <= 14
    folder = tmp_path / "042"
    folder.mkdir()
    (folder / "runbook.toml").write_text(example)
    (folder / "042_up.sql").write_text(
        "CREATE TABLE invoices (id int PRIMARY KEY, due date);\n"
        "CREATE INDEX invoices_due ON invoices (due);\n"
    )
    (folder / "042_down.sql").write_text("DROP TABLE invoices;\n")
    before = pg.schema_dump(bare.database_url)
    console = Console(Core.from_settings(bare.with_(runbook_path=folder / "runbook.toml")))
    console.approved()
    code, out = console(COORDINATOR, "run")
    assert code == 0 and "SUCCESSFUL" in out, out
    code, out = console(COORDINATOR, "rollback all")
    assert code == 0, out
    assert console.core.store.current().status is Status.ROLLED_BACK
    assert pg.schema_dump(bare.database_url) == before
