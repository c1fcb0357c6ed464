"""Preflight end to end on real databases, real sockets and real files: a healthy 005
database is GO with evidence on every line, and each NO-GO condition of the report, caused
for real, is NO-GO naming the failed condition."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from preflight import Timeouts, fast_checks, run_preflight
from preflight.report import FAIL, PASS, PENDING, PreflightReport
from runbook.model import load_runbook
from sql import DEFAULT_RUNBOOK
from tests.conftest import PLANTED
from tests.support import fakes_net, pg

FAST = Timeouts(network=0.5, database=5)
RB = load_runbook(DEFAULT_RUNBOOK)


@pytest.fixture
def healthy(settings):
    """Settings whose every outside dependency answers: a 200 deployment, a TCP listener for
    MongoDB, the real local Redis (REGISTER_REDIS_URL as planted, with a password)."""
    with fakes_net.http_server(200) as deployment, fakes_net.silent_listener() as (host, port):
        yield settings.with_(
            deployment_url=deployment,
            register_mongodb_url=f"mongodb://mongo:S3cretMongoPw42@{host}:{port}/lancio",
        )


def execute(url: str, statement: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


def failed_keys(report) -> set[str]:
    return {c.key for c in report.checks if c.status == FAIL}


def assert_nogo(report, key: str, *words: str) -> None:
    assert report.go is False
    assert failed_keys(report) == {key}, [c.text() for c in report.checks if c.status == FAIL]
    line = report.line(key)
    assert any(line.title in reason for reason in report.nogo_reasons)
    for word in words:
        assert word in line.observed, line.observed


def copy_runbook(tmp_path: Path) -> Path:
    target = tmp_path / "runbook"
    shutil.copytree(DEFAULT_RUNBOOK.parent, target)
    return target


# ------------------------------------------------------------------ GO


def test_healthy_005_database_is_go_with_evidence_on_every_line(healthy):
    seen = []
    report = run_preflight(healthy, RB, incident=None, on_check=seen.append, timeouts=FAST)
    assert report.go is True, report.nogo_reasons
    keys = [c.key for c in report.checks]
    for key in (
        "database",
        "server_version",
        "deployment",
        "network:mongodb",
        "network:redis",
        "migrations",
        "extensions",
        "runbook_files",
        "inputs",
        "incident",
        "window",
        "backup",
        "rehearsal",
        "approval",
    ):
        assert key in keys
    for line in report.checks:
        assert line.how and line.observed and line.required
        assert line.status == (PENDING if line.key == "approval" else PASS), line.text()
    assert sorted(c.key for c in seen) == sorted(keys)  # on_check saw every line
    assert report.line("deployment").observed.startswith("HTTP 200")
    assert "PONG" in report.line("network:redis").observed
    # the backup: a real file, hashed, proven by a restore equal to the source
    backup = report.backup
    assert backup.verified and Path(backup.path).stat().st_size == backup.size
    assert Path(backup.path).name.startswith("backup_pre_migration_006_")
    assert backup.restore_command.startswith("bash ") and backup.path in backup.restore_command
    assert {c.key for c in backup.comparisons} >= {
        "backup:tables",
        "backup:row_counts",
        "backup:functions",
        "backup:views",
        "backup:policies",
        "backup:extensions",
        "backup:schema_migrations",
        "backup:file",
        "backup:restore",
    }
    assert backup.row_counts["public.schema_migrations"] == 5
    assert Path(backup.schema_snapshot).read_text().count("CREATE TABLE") >= 23
    # the rehearsal: every phase ran on the copy and rolled back clean
    rehearsal = report.rehearsal
    assert rehearsal.ok and rehearsal.rollback_clean and rehearsal.verification_ok
    assert [p["number"] for p in rehearsal.phases] == [p.number for p in RB.phases]
    assert "ACCESS EXCLUSIVE on 24 tables" in rehearsal.summary and "seen in pg_locks" in rehearsal.summary
    assert all(set(l) == {"level", "relation", "statement_line", "file", "observed"} for l in rehearsal.locks)
    # the real database was not migrated by the rehearsal
    assert pg.scalar(healthy.database_url, "SELECT to_regclass('platform.databases')") is None
    # secrets appear nowhere in the report
    text = json.dumps(report.to_dict(), ensure_ascii=False)
    for secret in (PLANTED["key"], "S3cretMongoPw42", "S3cretRedisPw42"):
        assert secret not in text
    assert dict(report.matrix())["GO: TPM approval obtained"] == "⏳"
    # stored by the caller as JSON and read back unchanged
    assert PreflightReport.from_dict(json.loads(json.dumps(report.to_dict()))) == report


# ------------------------------------------------------------------ NO-GO: outside world


def test_deployment_answering_503_is_nogo(healthy):
    with fakes_net.http_server(503) as url:
        report = fast_checks(healthy.with_(deployment_url=url), RB, incident=None, timeouts=FAST)
    assert_nogo(report, "deployment", "HTTP 503")


def test_deployment_that_never_answers_is_nogo(healthy):
    with fakes_net.silent_listener() as (host, port):
        report = fast_checks(
            healthy.with_(deployment_url=f"http://{host}:{port}/"), RB, incident=None, timeouts=FAST
        )
    assert_nogo(report, "deployment", "no answer within 0.5 s")


def test_deployment_not_configured_is_nogo(healthy):
    assert_nogo(
        fast_checks(healthy.with_(deployment_url=None), RB, incident=None, timeouts=FAST),
        "deployment",
        "not configured",
    )


def test_closed_private_port_is_nogo(healthy):
    url = f"mongodb://mongo:S3cretMongoPw42@127.0.0.1:{fakes_net.closed_port()}/lancio"
    assert_nogo(
        fast_checks(healthy.with_(register_mongodb_url=url), RB, incident=None, timeouts=FAST),
        "network:mongodb",
        "refused",
    )


# ------------------------------------------------------------------ NO-GO: the database


def test_database_at_004_is_nogo(healthy):
    execute(healthy.database_url, "DELETE FROM schema_migrations WHERE version = '005'")
    assert_nogo(fast_checks(healthy, RB, incident=None, timeouts=FAST), "migrations", "missing 005")


def test_database_already_at_006_is_nogo(healthy):
    execute(healthy.database_url, "INSERT INTO schema_migrations (version, description) VALUES ('006', 'x')")
    assert_nogo(fast_checks(healthy, RB, incident=None, timeouts=FAST), "migrations", "already applied 006")


def test_missing_pgcrypto_is_nogo(healthy):
    execute(healthy.database_url, "DROP EXTENSION pgcrypto CASCADE")
    assert_nogo(fast_checks(healthy, RB, incident=None, timeouts=FAST), "extensions", "missing pgcrypto")


def test_unreachable_database_is_nogo_and_says_so(healthy):
    url = f"postgresql://postgres:DbPw123@127.0.0.1:{fakes_net.closed_port()}/nope"
    report = fast_checks(healthy.with_(database_url=url), RB, incident=None, timeouts=FAST)
    assert report.go is False and report.line("database").status == FAIL
    assert report.line("migrations").observed == "not checked: database unreachable"
    assert "DbPw123" not in json.dumps(report.to_dict())


# ------------------------------------------------------------------ NO-GO: inputs, incident, window


def test_placeholder_password_is_nogo(healthy):
    url = "mongodb://mongo:changeme@127.0.0.1:27017/lancio"
    report = fast_checks(healthy.with_(register_mongodb_url=url), RB, incident=None, timeouts=FAST)
    assert report.go is False
    assert "REGISTER_MONGODB_URL password is a placeholder" in report.line("inputs").observed


def test_missing_encryption_key_is_nogo(healthy):
    assert_nogo(
        fast_checks(healthy.with_(encryption_key=None), RB, incident=None, timeouts=FAST),
        "inputs",
        "MIGRATE_ENCRYPTION_KEY is not set",
    )


def test_declared_incident_is_nogo_naming_who_and_what(healthy):
    incident = {"by": "U0RAFAEL", "at": "2026-11-24T05:00:00+00:00", "text": "checkout API returning 500s"}
    assert_nogo(
        fast_checks(healthy, RB, incident=incident, timeouts=FAST),
        "incident",
        "U0RAFAEL",
        "checkout API returning 500s",
    )


def test_window_with_less_than_two_hours_left_is_nogo(healthy):
    now = datetime(2026, 11, 24, 5, 0, tzinfo=UTC)
    report = fast_checks(healthy.with_(window="02:00-06:00"), RB, incident=None, now=now, timeouts=FAST)
    assert_nogo(report, "window", "1.00 h of the window left")
    later_ok = fast_checks(
        healthy.with_(window="02:00-06:00"),
        RB,
        incident=None,
        now=now,
        at=datetime(2026, 11, 25, 2, 30, tzinfo=UTC),
        timeouts=FAST,
    )
    assert later_ok.line("window").ok  # a GO scheduled at 02:30 has 3.5 h


# ------------------------------------------------------------------ NO-GO: runbook files


def test_file_that_does_not_parse_is_nogo(healthy, tmp_path):
    folder = copy_runbook(tmp_path)
    target = folder / "006_add_platform_databases_table.sql"
    lines = target.read_text().splitlines()
    target.write_text("\n".join(lines + ["SELEC broken FROM;"]) + "\n")
    report = fast_checks(healthy, load_runbook(folder / "runbook.toml"), incident=None, timeouts=FAST)
    assert_nogo(report, "runbook_files", f"006_add_platform_databases_table.sql:{len(lines) + 1}:")


def test_do_not_run_file_as_a_step_is_nogo(healthy, tmp_path):
    folder = copy_runbook(tmp_path)
    (folder / "007_session_helpers.sql").write_text("SELECT 1;\n")
    toml = folder / "runbook.toml"
    toml.write_text(
        toml.read_text().replace(
            'file = "006_add_platform_databases_table.sql"', 'file = "007_session_helpers.sql"', 1
        )
    )
    report = fast_checks(healthy, load_runbook(toml), incident=None, timeouts=FAST)
    assert_nogo(report, "runbook_files", "007_session_helpers.sql is marked DO NOT RUN")


def test_malformed_register_url_is_nogo_not_a_crash(healthy):
    report = fast_checks(
        healthy.with_(register_mongodb_url="mongodb://mongo:Pw91x@mongo.internal:port/db"),
        RB,
        incident=None,
        timeouts=FAST,
    )
    assert report.go is False and report.line("network:mongodb").status == FAIL
    assert (
        "REGISTER_MONGODB_URL: a port is not a number" in report.line("inputs").observed
    )  # no URL part quoted
    assert "Pw91x" not in json.dumps(report.to_dict())
