"""engine.verify: checks return evidence; suites are judged by their output; smoke tests
make a real HTTP request."""

from __future__ import annotations

import http.server
import textwrap
import threading

import psycopg
import pytest

from engine.verify import compare, run_checks, run_smoke, run_suite
from runbook.model import Check, Smoke, Suite

SECRET = "S3cretSuiteKey-77aa"


@pytest.fixture
def db(scratch_db):
    url = scratch_db()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE t (kind text, active bool); INSERT INTO t VALUES ('mongodb', true), ('redis', true)"
        )
    return url


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def test_checks_return_query_observation_expectation_and_verdict(db):
    checks = [
        Check("two rows", "SELECT count(*) FROM t", 2),
        Check("at least three", "SELECT count(*) FROM t", 3, "ge"),
        Check("kinds", "SELECT string_agg(kind, ',' ORDER BY kind) FROM t", "mongodb,redis"),
        Check("all active", "SELECT bool_and(active) FROM t", True),
        Check("broken", "SELECT count(*) FROM missing_table", 0),
    ]
    evidence = run_checks(db, checks)
    assert [(e.observed, e.expected, e.ok) for e in evidence] == [
        ("2", "= 2", True),
        ("2", "≥ 3", False),
        ("mongodb,redis", "= mongodb,redis", True),
        ("True", "= True", True),
        ('error: relation "missing_table" does not exist', "= 0", False),
    ]
    assert evidence[0].how == "SELECT count(*) FROM t" and evidence[0].name == "two rows"


def test_checks_are_read_only(db):
    [evidence] = run_checks(
        db, [Check("sneaky", "WITH d AS (DELETE FROM t RETURNING 1) SELECT count(*) FROM d", 0)]
    )
    assert not evidence.ok and "read-only" in evidence.observed
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 2


@pytest.mark.parametrize(
    "value, expect, how, ok",
    [
        (15, 15, "eq", True),
        ("15", 15, "eq", True),
        (14, 15, "ge", False),
        (16, 15, "ge", True),
        (3, 2, "le", False),
        ("t", True, "eq", True),
        (False, True, "eq", False),
        (None, 1, "eq", False),
        ("abc", 1, "eq", False),
    ],
)
def test_compare(value, expect, how, ok):
    assert compare(value, expect, how) is ok


SUITE = Suite(name="health", file="suite.sql", fail_pattern="FAIL", expect_pattern=r"\d+/\d+ checks passed")


def test_suite_printing_fail_and_exiting_zero_fails(db, tmp_path):
    path = write(
        tmp_path,
        "suite.sql",
        """
        \\set ON_ERROR_STOP off
        \\pset tuples_only on
        \\pset format unaligned
        SELECT CASE WHEN count(*) = 2 THEN 'PASS: two rows' ELSE 'FAIL: two rows' END FROM t;
        SELECT CASE WHEN count(*) = 3 THEN 'PASS: x' ELSE 'FAIL: x' END FROM t;
        \\echo 1/2 checks passed
    """,
    )
    result = run_suite(db, path, SUITE)
    assert result.exit_code == 0 and not result.ok
    assert result.reason == "no failure reported: FAIL: x"
    assert "PASS: two rows" in result.output


def test_passing_suite_with_inputs_through_pgoptions(db, tmp_path):
    path = write(
        tmp_path,
        "suite.sql",
        """
        \\pset tuples_only on
        \\pset format unaligned
        SELECT CASE WHEN current_setting('app.encryption_key') = 'S3cretSuite' || 'Key-77aa'
               THEN 'PASS: key' ELSE 'FAIL: key' END;
        DO $$ BEGIN RAISE NOTICE 'key %', current_setting('app.encryption_key'); END $$;
        \\echo 1/1 checks passed
    """,
    )
    result = run_suite(db, path, SUITE, inputs={"app.encryption_key": SECRET})
    assert result.ok, result.reason
    assert [e.ok for e in result.evidence] == [True, True, True]
    assert result.notices == ["NOTICE: key ***"]
    assert SECRET not in repr(result)


def test_suite_without_its_success_line_fails(db, tmp_path):
    path = write(tmp_path, "suite.sql", "\\echo PASS: only one\n")
    result = run_suite(db, path, SUITE)
    assert not result.ok and result.reason == "success reported: absent"


def test_suite_that_errors_fails_on_exit_code(db, tmp_path):
    path = write(tmp_path, "suite.sql", "SELECT * FROM missing;\n\\echo 1/1 checks passed\n")
    result = run_suite(db, path, Suite(name="s", file="suite.sql"))
    assert not result.ok and result.exit_code != 0 and result.reason.startswith("exit code")


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        status, body = (
            (401, b'{"error": "Unauthorized"}') if self.path == "/api/platform/profile" else (200, b"ok")
        )
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def web():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_smoke_status_and_json_body(web):
    profile = Smoke("profile", "api/platform/profile", (401,), '{"error":"Unauthorized"}')
    assert run_smoke(web, profile).ok
    wrong = Smoke("projects", "api/platform/projects", (401,), '{"error":"Unauthorized"}')
    evidence = run_smoke(web, wrong)
    assert not evidence.ok and evidence.observed == "200 ok"


def test_smoke_not_configured_and_unreachable():
    smoke = Smoke("profile", "api/platform/profile", (401,))
    assert run_smoke(None, smoke).observed.startswith("not configured")
    evidence = run_smoke("http://127.0.0.1:9/", smoke, timeout=1.0)
    assert not evidence.ok and evidence.observed.startswith("no answer")


def test_a_suite_header_mentioning_fail_trips_a_bare_pattern_but_not_an_anchored_one(db, tmp_path):
    """The trap sql/README.md warns about: `fail_pattern = "FAIL"` matched the suite's own
    header; `^FAIL:` (what the shipped 006 suites use) reads only the check lines."""
    path = write(
        tmp_path,
        "suite.sql",
        """
        \\pset tuples_only on
        \\pset format unaligned
        \\echo '=== each check prints PASS: or FAIL: ==='
        SELECT CASE WHEN count(*) = 2 THEN 'PASS: two rows' ELSE 'FAIL: two rows' END FROM t;
        \\echo 1/1 checks passed
    """,
    )
    bare = run_suite(db, path, SUITE)
    assert not bare.ok and bare.reason == "no failure reported: === each check prints PASS: or FAIL: ==="
    anchored = run_suite(
        db,
        path,
        Suite(name="health", file="suite.sql", fail_pattern="^FAIL:", expect_pattern=SUITE.expect_pattern),
    )
    assert anchored.ok, anchored.reason


def test_the_shipped_006_suites_use_anchored_fail_patterns():
    from runbook.model import load_runbook
    from sql import DEFAULT_RUNBOOK

    patterns = [s.fail_pattern for p in load_runbook(DEFAULT_RUNBOOK).phases for s in p.suites]
    assert patterns and all(p.startswith("^") for p in patterns)
