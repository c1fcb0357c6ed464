"""Preflight pieces that need no database: window arithmetic, placeholder detection, the
report's JSON round trip and matrix, and the network probes against real local sockets."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from core.config import Settings
from preflight import net
from preflight.inputs import inputs_probe, step_inputs, url_problem
from preflight.quick import deployment_line, reach_line
from preflight.report import FAIL, PASS, PENDING, CheckLine, PreflightReport
from preflight.window import window_check
from runbook.model import load_runbook
from sql import DEFAULT_RUNBOOK
from tests.conftest import PLANTED
from tests.support import fakes_net

UTC = UTC
RB = load_runbook(DEFAULT_RUNBOOK)


def network_line(settings: Settings, kind: str, timeout: float):
    """006's declared reach check of REGISTER_<KIND>_URL (sql/006/runbook.toml)."""
    reach = next(r for r in RB.preflight.reach if r.name == kind)
    return reach_line(settings, reach, timeout)


def at(hh: int, mm: int = 0) -> datetime:
    return datetime(2026, 11, 24, hh, mm, tzinfo=UTC)


# ------------------------------------------------------------------ window


def test_no_window_configured_passes_and_says_so():
    line = window_check(None, 2, at(12))
    assert line.status == PASS and line.observed == "no window configured"


@pytest.mark.parametrize(
    "window, moment, ok",
    [
        ("02:00-06:00", at(3), True),  # 3 h left
        ("02:00-06:00", at(4), True),  # exactly 2 h left
        ("02:00-06:00", at(5), False),  # 1 h left
        ("02:00-06:00", at(7), False),  # outside the window
        ("22:00-04:00", at(23), True),  # crosses midnight: 5 h left
        ("22:00-04:00", at(1), True),  # early-morning part of yesterday's window: 3 h left
        ("22:00-04:00", at(3), False),  # 1 h left
        ("22:00-04:00", at(12), False),  # outside
    ],
)
def test_window_needs_min_hours_left(window, moment, ok):
    line = window_check(window, 2, moment)
    assert line.ok is ok, line.observed


def test_window_reports_hours_left_and_rejects_malformed():
    assert window_check("02:00-06:00", 2, at(5)).observed == "1.00 h of the window left"
    bad = window_check("2am-6am", 2, at(3))
    assert bad.status == FAIL and "HH:MM-HH:MM" in bad.observed


# ------------------------------------------------------------------ inputs


@pytest.mark.parametrize(
    "url",
    [
        "mongodb://mongo:password@mongodb.railway.internal:27017/db",
        "mongodb://mongo:changeme@mongodb.railway.internal:27017/db",
        "mongodb://mongo:<password>@mongodb.railway.internal:27017/db",
        "mongodb://mongo:xxxxxx@mongodb.railway.internal:27017/db",
        "mongodb://mongo:Pw1@mongodb.example.com:27017/db",
        "mongodb://your-user:Pw1@mongodb.railway.internal:27017/db",
        "mongodb://mongo:TODO@mongodb.railway.internal:27017/db",
        "mongodb://mongo:Pw1@placeholder:27017/db",
        "redis://default:pw@redis.railway.internal:6379",  # wrong scheme for MongoDB
    ],
)
def test_placeholder_mongodb_urls_are_refused(url):
    assert url_problem("REGISTER_MONGODB_URL", url, RB.inputs["migrate.register_mongodb_url"].schemes)


def test_real_urls_pass_and_problem_never_quotes_the_password():
    assert url_problem("REGISTER_MONGODB_URL", PLANTED["mongodb"]) is None
    assert url_problem("REGISTER_REDIS_URL", PLANTED["redis"]) is None
    problem = url_problem("REGISTER_MONGODB_URL", "mongodb://mongo:changeme-now@h:27017/db")
    assert "changeme-now" not in problem and "password" in problem


def test_inputs_line_shows_key_length_never_value():
    settings = Settings(
        database_url=None,
        register_mongodb_url=PLANTED["mongodb"],
        register_redis_url=PLANTED["redis"],
        encryption_key=PLANTED["key"],
    )
    ok, observed = inputs_probe(settings, RB)
    assert ok and f"({len(PLANTED['key'])} characters)" in observed
    assert PLANTED["key"] not in observed and "S3cret" not in observed
    assert step_inputs(settings, RB) == {
        "migrate.register_mongodb_url": PLANTED["mongodb"],
        "migrate.register_redis_url": PLANTED["redis"],
        "app.encryption_key": PLANTED["key"],
    }


def test_missing_key_and_placeholder_key_fail():
    base = Settings(
        database_url=None, register_mongodb_url=PLANTED["mongodb"], register_redis_url=PLANTED["redis"]
    )
    assert inputs_probe(base, RB) == (False, "MIGRATE_ENCRYPTION_KEY is not set")
    assert inputs_probe(base.with_(encryption_key="changeme"), RB)[0] is False
    ok, observed = inputs_probe(base.with_(encryption_key="abc"), RB)
    assert ok is False and "too short (3 characters" in observed and "abc" not in observed.split("(")[0]


# ------------------------------------------------------------------ report


def _line(key: str, status: str) -> CheckLine:
    return CheckLine(key, f"title {key}", "how", "observed", "required", status, 0.1)


def test_go_only_when_every_line_holds_approval_pending_excepted():
    now = datetime.now(UTC)
    lines = [_line("database", PASS), _line("backup", PASS), _line("approval", PENDING)]
    assert PreflightReport.build("006", now, now, lines).go is True
    lines.append(_line("window", FAIL))
    report = PreflightReport.build("006", now, now, lines)
    assert report.go is False and report.nogo_reasons == ["title window: observed"]


def test_only_the_approval_may_be_pending_and_an_empty_report_is_not_go():
    now = datetime.now(UTC)
    assert PreflightReport.build("006", now, now, [_line("backup", PENDING)]).go is False
    assert PreflightReport.build("006", now, now, []).go is False


def test_matrix_marks_go_and_nogo_conditions():
    now = datetime.now(UTC)
    report = PreflightReport.build(
        "006", now, now, [_line("backup", FAIL), _line("approval", PENDING), _line("incident", PASS)]
    )
    rows = dict(report.matrix())
    assert rows["GO: title backup"] == "❌"
    assert rows["NO-GO check: backup failed or unverified"] == "❌"
    assert (
        rows["GO: title approval"] == "⏳"
        and rows["NO-GO check: TPM approval not obtained? not known yet"] == "⏳"
    )
    assert rows["NO-GO check: no incident"] == "✅"  # was "✅ NO-GO: Critical production incident ongoing"
    incident = dict(PreflightReport.build("006", now, now, [_line("incident", FAIL)]).matrix())
    assert incident["NO-GO check: incident declared"] == "❌"


def test_report_round_trips_through_json():
    now = datetime.now(UTC)
    report = PreflightReport.build(
        "006", now, now + timedelta(seconds=2), [_line("database", PASS)], checksums={"a.sql": "ab" * 32}
    )
    again = PreflightReport.from_dict(json.loads(json.dumps(report.to_dict())))
    assert again == report


# ------------------------------------------------------------------ network probes (real sockets)


def test_http_probe_200_503_silent_and_closed():
    with fakes_net.http_server(200) as url:
        ok, observed = net.http_probe(url, 2)
        assert ok and observed.startswith("HTTP 200 in ")
    with fakes_net.http_server(503) as url:
        ok, observed = net.http_probe(url, 2)
        assert not ok and observed.startswith("HTTP 503 in ")
    with fakes_net.silent_listener() as (host, port):
        assert net.http_probe(f"http://{host}:{port}/", 0.3) == (False, "no answer within 0.3 s")
    ok, observed = net.http_probe(f"http://127.0.0.1:{fakes_net.closed_port()}/", 1)
    assert not ok and "refused" in observed


def test_deployment_unset_is_not_configured():
    line = deployment_line(Settings(database_url=None), 1)
    assert line.status == FAIL and "not configured" in line.observed


def test_tcp_to_listener_passes_closed_port_fails():
    with fakes_net.silent_listener() as (host, port):
        settings = Settings(database_url=None, register_mongodb_url=f"mongodb://m:Pw9@{host}:{port}/db")
        assert network_line(settings, "mongodb", 1).ok
    closed = Settings(
        database_url=None, register_mongodb_url=f"mongodb://m:Pw9@127.0.0.1:{fakes_net.closed_port()}/db"
    )
    line = network_line(closed, "mongodb", 1)
    assert line.status == FAIL and "refused" in line.observed.lower()


def test_redis_ping_against_the_real_server_with_a_password():
    # The local Redis has no password: its `default` user is nopass, so AUTH default <any>
    # is accepted and PING answers PONG. The line says AUTH was accepted, nothing more.
    settings = Settings(database_url=None, register_redis_url=PLANTED["redis"], encryption_key=PLANTED["key"])
    line = network_line(settings, "redis", 2)
    assert line.ok, line.observed
    assert (
        "PONG (AUTH accepted; the server also answers without a password, so it was not checked)"
        in line.observed
    )
    assert "S3cret" not in line.text()


def test_redis_user_with_a_wrong_password_fails(redis_client):
    # A real ACL user (removed afterwards): AUTH with the wrong password is WRONGPASS.
    user = f"mt_{uuid.uuid4().hex[:8]}"
    redis_client.acl_setuser(user, enabled=True, passwords=["+RightPw123"], commands=["+ping"])
    try:
        good = Settings(database_url=None, register_redis_url=f"redis://{user}:RightPw123@127.0.0.1:6379")
        bad = Settings(database_url=None, register_redis_url=f"redis://{user}:WrongPw123@127.0.0.1:6379")
        assert network_line(good, "redis", 2).ok
        line = network_line(bad, "redis", 2)
    finally:
        redis_client.acl_deluser(user)
    assert line.status == FAIL and "PING failed" in line.observed and "WrongPw123" not in line.text()


def test_redis_ping_to_a_listener_that_is_not_redis_fails():
    with fakes_net.silent_listener() as (host, port):
        settings = Settings(database_url=None, register_redis_url=f"redis://{host}:{port}")
        line = network_line(settings, "redis", 0.3)
    assert line.status == FAIL and "PING failed" in line.observed
