"""The SQL of Migration 006 against real PostgreSQL: baseline, both phases, both rollbacks,
both verification suites, the runbook's checks, and that every file parses.

Files are applied the way the bot runs them (one transaction each: `psql -1`), inputs passed
as session settings through PGOPTIONS, never on a command line or in a file.
"""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest
from pglast import parser

from runbook.model import load_runbook
from sql import BASELINE_DIR, DEFAULT_RUNBOOK, RUNBOOKS_DIR
from tests.conftest import PLANTED
from tests.support import pg
from tests.support.sqlfacts import (
    APPENDIX_B_FUNCTIONS,
    APPENDIX_B_TRIGGERS,
    APPENDIX_B_VIEWS,
    appendix_b_facts,
    decrypted_connection_strings,
)

SQL_006 = RUNBOOKS_DIR / "006"
PHASE_1 = ("006_add_platform_databases_table.sql", "006_register_railway_databases_production.sql")
OPTION = {"A": "006_enable_rls_IMPROVED.sql", "B": "006_enable_rls_with_permissive_policies.sql"}
PASSWORDS = ("S3cretMongoPw42", "S3cretRedisPw42")
SECRETS = (*PASSWORDS, PLANTED["key"], PLANTED["mongodb"], PLANTED["redis"])
INPUTS = {
    "migrate.register_mongodb_url": PLANTED["mongodb"],
    "migrate.register_redis_url": PLANTED["redis"],
    "app.encryption_key": PLANTED["key"],
}


def pgoptions(settings: dict[str, str]) -> dict[str, str]:
    """PGOPTIONS carrying session settings (the planted values hold no spaces to escape)."""
    return {"PGOPTIONS": " ".join(f"-c {name}={value}" for name, value in settings.items())}


def apply(url: str, name: str, settings: dict[str, str] | None = None):
    """Run one 006 file in one transaction, as the bot does; return psql's result."""
    return pg.psql_file(url, SQL_006 / name, "-1", env=pgoptions(settings or {}))


def apply_ok(url: str, name: str, settings: dict[str, str] | None = None):
    result = apply(url, name, settings)
    assert result.returncode == 0, f"{name}: {result.stderr}"
    return result


def migrate(url: str, option: str = "A") -> None:
    """Phase 1 and phase 2 of Migration 006 with the planted inputs."""
    for name in PHASE_1:
        apply_ok(url, name, INPUTS)
    apply_ok(url, OPTION[option])


def run_suite(url: str, name: str, key: str | None = PLANTED["key"]):
    settings = {"app.encryption_key": key} if key else {}
    return pg.psql_file(url, SQL_006 / name, env=pgoptions(settings))


def suite_verdict(name: str, output: str) -> bool:
    """Pass/fail exactly as the runbook's fail_pattern / expect_pattern read it."""
    suite = next(s for p in load_runbook(DEFAULT_RUNBOOK).phases for s in p.suites if s.file == name)
    failed = any(re.search(suite.fail_pattern, line) for line in output.splitlines())
    return not failed and re.search(suite.expect_pattern, output) is not None


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


# ------------------------------------------------------------------ baseline


def test_baseline_builds_version_005(db_005):
    facts = appendix_b_facts(db_005)
    assert facts["platform_tables"] == 23
    assert facts["migrations"] == ["001", "002", "003", "004", "005"]
    assert facts["pgcrypto"] is True
    assert facts["databases_table"] is False and facts["rls_tables"] == 0 and facts["policies"] == 0
    assert (
        pg.scalar(
            db_005,
            "SELECT count(*) FROM platform.projects p JOIN platform.organizations o "
            "ON o.id = p.organization_id WHERE o.slug = 'lancio'",
        )
        == 1
    )
    assert pg.scalar(db_005, "SELECT count(*) FROM platform.organization_members") > 0


def test_schema_migrations_is_public_and_queried_unqualified(db_005):
    assert pg.scalar(db_005, "SELECT MAX(version) FROM schema_migrations") == "005"
    assert pg.scalar(db_005, "SELECT to_regclass('public.schema_migrations') IS NOT NULL") is True


# ------------------------------------------------------------------ phases 1 and 2


def test_phases_1_and_2_give_every_appendix_b_fact(db_005):
    migrate(db_005)
    facts = appendix_b_facts(db_005)
    assert facts["columns"] == 15
    assert facts["indexes"] == 8
    assert facts["triggers"] == sorted(APPENDIX_B_TRIGGERS)
    assert facts["functions"] == sorted(APPENDIX_B_FUNCTIONS)
    assert facts["views"] == sorted(APPENDIX_B_VIEWS)
    assert facts["platform_tables"] == 24 and facts["rls_tables"] == 24
    assert facts["policies"] == 48 and facts["permissive_policies"] == 48
    assert facts["select_insert_tables"] == 24
    assert facts["registered"] == ["mongodb:active", "redis:active"]
    assert facts["encrypted"] == 2
    assert facts["pgcrypto"] is True


def test_registration_parses_host_port_and_user_from_the_urls(db_005):
    migrate(db_005)
    with psycopg.connect(db_005) as conn:
        rows = conn.execute(
            "SELECT type, host, port, database_name, username FROM platform.databases ORDER BY type"
        ).fetchall()
    assert rows == [
        ("mongodb", "127.0.0.1", 27017, "lancio", "mongo"),
        ("redis", "127.0.0.1", 6379, None, "default"),
    ]


def test_no_plaintext_secret_is_stored_and_decrypt_round_trips(db_005):
    migrate(db_005)
    with psycopg.connect(db_005) as conn:
        rows = [r[0] for r in conn.execute("SELECT d::text FROM platform.databases d")]
        stored = [
            bytes(r[0]) for r in conn.execute("SELECT connection_string_encrypted FROM platform.databases")
        ]
    for secret in SECRETS:
        hex_form = secret.encode().hex()
        assert not any(secret in row or hex_form in row for row in rows)
        assert not any(secret.encode() in blob for blob in stored)
    assert decrypted_connection_strings(db_005, PLANTED["key"]) == {
        "mongodb": PLANTED["mongodb"],
        "redis": PLANTED["redis"],
    }


def test_decrypt_with_a_wrong_key_fails(db_005):
    migrate(db_005)
    with pytest.raises(psycopg.Error):
        decrypted_connection_strings(db_005, "not-the-key")


def test_registration_prints_the_reports_notices_and_no_secret(db_005):
    apply_ok(db_005, PHASE_1[0])
    result = apply_ok(db_005, PHASE_1[1], INPUTS)
    output = result.stdout + result.stderr
    for notice in (
        "Step 1: Locating Lancio project...",
        "✅ Found Lancio organization: ",
        "✅ Found/Created project: ",
        "Step 2: Registering MongoDB...",
        "✅ MongoDB registered: ",
        "Step 3: Registering Redis...",
        "✅ Redis registered: ",
    ):
        assert notice in output
    assert_no_secret(output)


def test_registration_rerun_updates_and_never_duplicates(db_005):
    apply_ok(db_005, PHASE_1[0])
    apply_ok(db_005, PHASE_1[1], INPUTS)
    ids = pg.scalar(db_005, "SELECT array_agg(id ORDER BY type) FROM platform.databases")
    moved = "redis://default:An0therRedisPw@10.0.0.7:6380"
    apply_ok(db_005, PHASE_1[1], {**INPUTS, "migrate.register_redis_url": moved})
    assert pg.scalar(db_005, "SELECT array_agg(id ORDER BY type) FROM platform.databases") == ids
    assert (
        pg.scalar(db_005, "SELECT host || ':' || port FROM platform.databases WHERE type = 'redis'")
        == "10.0.0.7:6380"
    )
    assert decrypted_connection_strings(db_005, PLANTED["key"])["redis"] == moved
    assert appendix_b_facts(db_005)["encrypted"] == 2


def test_registration_creates_the_lancio_project_when_missing(db_005):
    with psycopg.connect(db_005, autocommit=True) as conn:
        conn.execute("DELETE FROM platform.projects")
    apply_ok(db_005, PHASE_1[0])
    apply_ok(db_005, PHASE_1[1], INPUTS)
    assert (
        pg.scalar(
            db_005,
            "SELECT count(DISTINCT project_id) FROM platform.databases d JOIN platform.projects p "
            "ON p.id = d.project_id JOIN platform.organizations o ON o.id = p.organization_id "
            "WHERE o.slug = 'lancio'",
        )
        == 1
    )


@pytest.mark.parametrize("missing", sorted(INPUTS))
def test_registration_without_a_setting_fails_naming_it_and_no_secret(db_005, missing):
    apply_ok(db_005, PHASE_1[0])
    result = apply(db_005, PHASE_1[1], {k: v for k, v in INPUTS.items() if k != missing})
    assert result.returncode != 0
    assert f"setting {missing} is not set or empty" in result.stderr
    assert_no_secret(result.stdout + result.stderr)
    assert pg.scalar(db_005, "SELECT count(*) FROM platform.databases") == 0


def test_trigger_refuses_plaintext_without_key(db_005):
    apply_ok(db_005, PHASE_1[0])
    with psycopg.connect(db_005) as conn, pytest.raises(psycopg.errors.RaiseException) as caught:
        conn.execute(
            "INSERT INTO platform.databases (project_id, name, type, host, port, connection_string_encrypted) "
            "SELECT id, 'x', 'redis', 'h', 6379, convert_to(%s, 'UTF8') FROM platform.projects LIMIT 1",
            (PLANTED["redis"],),
        )
    assert "app.encryption_key is not set" in str(caught.value)
    assert_no_secret(str(caught.value))


def test_trigger_keeps_an_empty_connection_string_as_null_without_needing_the_key(db_005):
    apply_ok(db_005, PHASE_1[0])
    with psycopg.connect(db_005, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO platform.databases (project_id, name, type, host, port, connection_string_encrypted) "
            "SELECT id, 'x', 'redis', 'h', 6379, ''::bytea FROM platform.projects LIMIT 1"
        )
    assert pg.scalar(db_005, "SELECT connection_string_encrypted IS NULL FROM platform.databases") is True


def test_helper_functions_work(db_005):
    migrate(db_005)
    with psycopg.connect(db_005, autocommit=True) as conn:
        project = conn.execute("SELECT project_id FROM platform.databases LIMIT 1").fetchone()[0]
        listed = conn.execute(
            "SELECT type FROM platform.get_project_databases(%s, NULL)", (project,)
        ).fetchall()
        only = conn.execute(
            "SELECT name FROM platform.get_project_databases(%s, 'redis')", (project,)
        ).fetchall()
        redis_id = conn.execute("SELECT id FROM platform.databases WHERE type = 'redis'").fetchone()[0]
        assert conn.execute(
            "SELECT platform.update_database_health(%s, 'unhealthy', 'timeout')", (redis_id,)
        ).fetchone()[0]
        health = conn.execute(
            "SELECT health_check_status, last_health_check_at IS NOT NULL, "
            "metadata->>'last_health_check_error', updated_at > created_at "
            "FROM platform.databases WHERE id = %s",
            (redis_id,),
        ).fetchone()
        safe_columns = [
            c.name for c in conn.execute("SELECT * FROM platform.databases_safe LIMIT 0").description
        ]
    assert listed == [("mongodb",), ("redis",)] and only == [("railway-redis",)]
    assert health == ("unhealthy", True, "timeout", True)
    assert "connection_string_encrypted" not in safe_columns and "connection_string" not in safe_columns


def test_options_a_and_b_give_the_same_end_state(db_005, scratch_db, baseline_template):
    other = scratch_db(baseline_template)
    migrate(db_005, "A")
    migrate(other, "B")
    assert pg.schema_dump(db_005) == pg.schema_dump(other)
    assert appendix_b_facts(db_005) == appendix_b_facts(other)


def test_option_a_preflight_refuses_before_phase_1_and_when_already_applied(db_005):
    before = apply(db_005, OPTION["A"])
    assert before.returncode != 0 and "run phase 1 first" in before.stderr
    migrate(db_005)
    again = apply(db_005, OPTION["A"])
    assert again.returncode != 0 and "RLS already enabled" in again.stderr
    assert appendix_b_facts(db_005)["policies"] == 48


def test_phase_2_reports_counts_from_the_catalog(db_005):
    for name in PHASE_1:
        apply_ok(db_005, name, INPUTS)
    output = apply_ok(db_005, OPTION["A"]).stderr
    assert "✅ RLS enabled on 24 tables" in output and "✅ 48 permissive policies created" in output


# ------------------------------------------------------------------ rollbacks


def test_both_rollbacks_return_the_schema_exactly_to_005_and_are_idempotent(db_005):
    at_005 = pg.schema_dump(db_005)
    migrate(db_005)
    assert "✅ Rollback complete" in apply_ok(db_005, "006_rollback.sql").stderr
    facts = appendix_b_facts(db_005)
    assert facts["policies"] == 0 and facts["rls_tables"] == 0
    apply_ok(db_005, "rollback-006.sql")
    assert pg.schema_dump(db_005) == at_005
    apply_ok(db_005, "006_rollback.sql")
    apply_ok(db_005, "rollback-006.sql")
    assert pg.schema_dump(db_005) == at_005
    assert appendix_b_facts(db_005)["pgcrypto"] is True


def test_phase_1_rollback_after_a_failed_step_1_1_leaves_005(db_005):
    at_005 = pg.schema_dump(db_005)
    apply_ok(db_005, PHASE_1[0])
    apply_ok(db_005, "rollback-006.sql")
    assert pg.schema_dump(db_005) == at_005


# ------------------------------------------------------------------ verification suites


def test_health_suite_passes_on_a_migrated_database(db_005):
    migrate(db_005)
    result = run_suite(db_005, "test_database_health.sql")
    assert result.returncode == 0
    assert result.stdout.count("PASS: ") == 10 and "10/10 checks passed" in result.stdout
    assert suite_verdict("test_database_health.sql", result.stdout)
    assert_no_secret(result.stdout + result.stderr)


@pytest.mark.parametrize(
    "breakage, failing",
    [
        ("DROP INDEX platform.idx_databases_status", "FAIL: 3."),
        ("UPDATE platform.databases SET status = 'inactive' WHERE type = 'redis'", "FAIL: 7."),
    ],
)
def test_health_suite_prints_fail_and_still_exits_0_when_a_fact_is_broken(db_005, breakage, failing):
    migrate(db_005)
    with psycopg.connect(db_005, autocommit=True) as conn:
        conn.execute(breakage)
    result = run_suite(db_005, "test_database_health.sql")
    assert result.returncode == 0
    assert failing in result.stdout and "9/10 checks passed" in result.stdout
    assert not suite_verdict("test_database_health.sql", result.stdout)


def test_health_suite_fails_the_decrypt_checks_without_the_key(db_005):
    migrate(db_005)
    result = run_suite(db_005, "test_database_health.sql", key=None)
    assert (
        "FAIL: 9." in result.stdout and "FAIL: 10." in result.stdout and "8/10 checks passed" in result.stdout
    )


def test_rls_suite_passes_on_a_migrated_database_and_reports_overhead(db_005):
    migrate(db_005)
    result = run_suite(db_005, "test_006_permissive_policies.sql")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("PASS: ") == 7 and "ALL TESTS PASSED" in result.stdout
    assert re.search(r"INFO: RLS overhead .*: [+-]\d+\.\d%", result.stdout)
    assert suite_verdict("test_006_permissive_policies.sql", result.stdout)


def test_rls_suite_prints_fail_and_still_exits_0_when_a_policy_is_missing(db_005):
    migrate(db_005)
    with psycopg.connect(db_005, autocommit=True) as conn:
        conn.execute("DROP POLICY users_select_permissive ON platform.users")
    result = run_suite(db_005, "test_006_permissive_policies.sql")
    assert result.returncode == 0
    assert "FAIL: 2." in result.stdout and "FAIL: 6." in result.stdout  # users now reads 0 rows under RLS
    assert "SOME TESTS FAILED" in result.stdout and "ALL TESTS PASSED" not in result.stdout
    assert not suite_verdict("test_006_permissive_policies.sql", result.stdout)


def test_suites_leave_no_trace(db_005):
    migrate(db_005)
    schema, facts = pg.schema_dump(db_005), appendix_b_facts(db_005)
    run_suite(db_005, "test_database_health.sql")
    run_suite(db_005, "test_006_permissive_policies.sql")
    assert pg.schema_dump(db_005) == schema and appendix_b_facts(db_005) == facts
    assert pg.scalar(db_005, "SELECT count(*) FROM platform.billing_plans WHERE id = 'rls-probe'") == 0
    assert pg.scalar(db_005, "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'rls\\_probe\\_%'") == 0


def test_suites_on_an_unmigrated_database_fail_without_crashing(db_005):
    health = run_suite(db_005, "test_database_health.sql")
    rls = run_suite(db_005, "test_006_permissive_policies.sql")
    assert health.returncode == 0 and "0/10 checks passed" in health.stdout
    assert rls.returncode == 0 and "SOME TESTS FAILED" in rls.stdout


# ------------------------------------------------------------------ runbook and files


def test_runbook_checks_hold_on_the_migrated_database(db_005):
    migrate(db_005)
    compare = {"eq": lambda a, b: a == b, "ge": lambda a, b: a >= b, "le": lambda a, b: a <= b}
    checks = [c for p in load_runbook(DEFAULT_RUNBOOK).phases for c in p.checks]
    assert len(checks) >= 10
    for check in checks:
        got = pg.scalar(db_005, check.sql)
        assert compare[check.compare](got, check.expect), f"{check.name}: got {got!r}"


def test_every_runbook_file_exists():
    runbook = load_runbook(DEFAULT_RUNBOOK)
    for name in runbook.files():
        assert (SQL_006 / name).is_file(), name


ALL_SQL = sorted([*BASELINE_DIR.glob("*.sql"), *SQL_006.glob("*.sql")])
_PSQL_VAR = re.compile(r"(?<![:\w]):(['\"]?)([A-Za-z_]\w*)\1")


def as_plain_sql(text: str) -> str:
    """What psql sends to the server, roughly: meta-command lines blanked, `\\gset` ends a
    statement like `;`, and psql variables (:name, :'name', :"name") replaced by values."""
    lines = []
    for line in text.splitlines():
        if line.lstrip().startswith("\\"):
            lines.append("")
            continue
        line = re.sub(r"\\g\w*\s*$", ";", line)
        lines.append(_PSQL_VAR.sub(lambda m: {"'": "'v'", '"': '"v"'}.get(m.group(1), "1"), line))
    return "\n".join(lines)


@pytest.mark.parametrize("path", ALL_SQL, ids=lambda p: p.name)
def test_every_sql_file_parses_and_has_a_header(path: Path):
    text = path.read_text(encoding="utf-8")
    assert parser.parse_sql(as_plain_sql(text))
    head = text.split("\n\n", 1)[0]
    assert head.startswith("--") and "Revert" in head and "Verify" in head, "sqitch-style header missing"


@pytest.mark.parametrize("name", sorted(load_runbook(DEFAULT_RUNBOOK).do_not_run))
def test_what_006_must_not_run_is_migration_007_own_runbook(name):
    """The 007 files moved to their own runbook (sql/007/): 006 still refuses them by name,
    and each one it refuses is a file that 007's runbook runs, its reason pointing there."""
    runbook_007 = load_runbook(RUNBOOKS_DIR / "007" / "runbook.toml")
    assert name in runbook_007.files()
    assert "sql/007/runbook.toml" in load_runbook(DEFAULT_RUNBOOK).do_not_run[name]
