"""Verification as evidence: each check's query, the value observed, the value expected and
the verdict, never a bare boolean.

Suites are SQL test files run through psql; a suite fails on a non-zero exit, on any output
line matching its fail pattern, or when its expected pattern is missing: a script that
prints FAIL and exits 0 is a failed verification.
"""

from __future__ import annotations

import json
import re
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from core.redact import redact
from engine.executor import read_verified
from engine.psql import PsqlProcess, child_env, command
from runbook.model import Check, Smoke, Suite
from runbook.queries import called_functions
from runbook.sqlfile import SqlFileError

_COMPARE = {"eq": "=", "ge": "≥", "le": "≤"}


@dataclass(frozen=True)
class Evidence:
    name: str
    how: str  # the query (or request) that produced the observation
    observed: str
    expected: str  # e.g. "= 15", "≥ 1"
    ok: bool


@dataclass
class SuiteResult:
    name: str
    file: str
    ok: bool
    exit_code: int
    output: str  # stdout and stderr, redacted
    notices: list[str]
    evidence: list[Evidence] = field(default_factory=list)
    reason: str = ""  # why it failed, or "passed"


# ------------------------------------------------------------------ checks


def run_checks(dsn: str, checks: Sequence[Check]) -> list[Evidence]:
    """Run each check's query in a read-only transaction and compare its single value."""
    evidence: list[Evidence] = []
    if not checks:  # no connection for nothing (a folder of small migrations has many phases without checks)
        return evidence
    with psycopg.connect(dsn, autocommit=True) as conn:
        for check in checks:
            evidence.append(_one_check(conn, check))
    return evidence


def _one_check(conn: psycopg.Connection, check: Check) -> Evidence:
    expected = f"{_COMPARE.get(check.compare, check.compare)} {check.expect}"
    try:
        with conn.transaction():
            conn.execute("SET TRANSACTION READ ONLY")
            row = one_statement(conn, check.sql).fetchone()
    except psycopg.Error as exc:
        message = exc.diag.message_primary if exc.diag.message_primary else str(exc)
        return Evidence(check.name, check.sql, f"error: {message}", expected, False)
    value = row[0] if row else None
    return Evidence(
        check.name, check.sql, _show(value), expected, compare(value, check.expect, check.compare)
    )


def one_statement(conn: psycopg.Connection, sql: str) -> psycopg.Cursor:
    """Execute `sql` as a prepared statement (extended protocol), never as a simple query:
    PostgreSQL refuses to prepare more than one command ("cannot insert multiple commands
    into a prepared statement"), so `SELECT …; COMMIT; DROP …` cannot leave the caller's
    READ ONLY transaction, whatever got past the runbook's load-time check. A query calling a
    volatile function other than the read-only ones below is refused (SideEffects) before it
    runs: READ ONLY does not stop `lo_import()` writing a large object, `dblink_exec()` writing
    through another connection, `pg_terminate_backend()` or `pg_advisory_lock()`."""
    volatile = volatile_calls(conn, sql)
    if volatile:
        raise SideEffects(
            f"the query calls the volatile function {', '.join(volatile)}(), which can act outside its "
            "read-only transaction: a check may call only stable or immutable functions"
        )
    return conn.execute(sql, prepare=True)


class SideEffects(psycopg.ProgrammingError):
    """A check's query calls a function that may act outside its READ ONLY transaction."""


# Volatile because their value changes between calls, not because they act: a check may call them.
_READ_ONLY_VOLATILE = frozenset(
    {
        "pg_relation_size",
        "pg_total_relation_size",
        "pg_table_size",
        "pg_indexes_size",
        "pg_database_size",
        "pg_tablespace_size",
        "clock_timestamp",
        "timeofday",
        "random",
        "gen_random_uuid",
        "statement_timestamp",
        "pg_sleep",
    }
)


def volatile_calls(conn: psycopg.Connection, sql: str) -> list[str]:
    """The functions `sql` calls by name that PostgreSQL marks volatile (any overload of that
    name, in the named schema or visible on the search path), except the read-only ones."""
    calls = called_functions(sql)
    qualified = [f"{schema}.{name}" for schema, name in calls if schema]
    bare = [name for schema, name in calls if not schema and name not in _READ_ONLY_VOLATILE]
    if not qualified and not bare:
        return []
    rows = conn.execute(
        "SELECT DISTINCT CASE WHEN n.nspname || '.' || p.proname = ANY(%s) THEN n.nspname || '.' ELSE '' END"
        " || p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE p.provolatile = 'v'"
        " AND (n.nspname || '.' || p.proname = ANY(%s) OR (p.proname = ANY(%s) AND pg_function_is_visible(p.oid)))"
        " ORDER BY 1",
        (qualified, qualified, bare),
    ).fetchall()
    return [name for (name,) in rows if name not in {f"pg_catalog.{f}" for f in _READ_ONLY_VOLATILE}]


def compare(value: Any, expect: Any, how: str = "eq") -> bool:
    """`value` (from the database) against `expect` (from TOML: int, str, bool, float)."""
    if value is None:
        return expect is None
    try:
        if isinstance(expect, bool):
            observed: Any = value if isinstance(value, bool) else str(value).lower() in ("t", "true", "1")
        elif isinstance(expect, (int, float)):
            observed = type(expect)(value)
        else:
            observed = str(value)
    except (TypeError, ValueError):
        return False
    if how == "ge":
        return bool(observed >= expect)
    if how == "le":
        return bool(observed <= expect)
    return bool(observed == expect)


def _show(value: Any) -> str:
    return "NULL" if value is None else str(value)


# ------------------------------------------------------------------ suites


def run_suite(
    dsn: str,
    path: Path,
    suite: Suite,
    *,
    inputs: Mapping[str, str] = {},
    secrets: Sequence[str] = (),
    approved_sha256: str | None = None,
) -> SuiteResult:
    """Run a suite file through psql (inputs via PGOPTIONS) and judge it by its output.

    With `approved_sha256`, the file is read once and psql runs a private copy of exactly
    those bytes; other bytes are not run (a failed suite naming the change)."""
    secrets = (*secrets, *inputs.values(), *(str(v) for v in [conninfo_to_dict(dsn).get("password")] if v))
    try:
        source = read_verified(Path(path), approved_sha256)
    except SqlFileError as exc:  # changed since approval, or unreadable: nothing ran
        return SuiteResult(
            name=suite.name,
            file=suite.file,
            ok=False,
            exit_code=-1,
            output="",
            notices=[],
            evidence=[
                Evidence("file approved", "sha256 of the file", exc.message, "the approved bytes", False)
            ],
            reason=f"not run: {exc}",
        )
    conninfo, env = child_env(dsn, dict(inputs), "migrate-bot-verify")
    with tempfile.TemporaryDirectory(prefix="migrate-bot-suite-") as tmp:
        copy = Path(tmp) / Path(path).name
        copy.write_bytes(source)
        out = PsqlProcess(command(conninfo, [copy], single_transaction=False), env).run()
    text = redact(out.stdout + ("\n" + out.stderr if out.stderr else ""), secrets)
    evidence = _suite_evidence(suite, out.returncode, text)
    failed = next((e for e in evidence if not e.ok), None)
    return SuiteResult(
        name=suite.name,
        file=suite.file,
        ok=failed is None,
        exit_code=out.returncode,
        output=text,
        notices=[redact(n, secrets) for n in out.notices],
        evidence=evidence,
        reason="passed" if failed is None else f"{failed.name}: {failed.observed}",
    )


def _suite_evidence(suite: Suite, code: int, text: str) -> list[Evidence]:
    evidence = [Evidence("exit code", "psql -X -v ON_ERROR_STOP=1 -f", str(code), "= 0", code == 0)]
    if suite.fail_pattern:
        bad = [line for line in text.splitlines() if re.search(suite.fail_pattern, line)]
        evidence.append(
            Evidence(
                "no failure reported",
                f"lines matching /{suite.fail_pattern}/",
                bad[0].strip() if bad else "none",
                "none",
                not bad,
            )
        )
    if suite.expect_pattern:
        found = re.search(suite.expect_pattern, text)
        evidence.append(
            Evidence(
                "success reported",
                f"output contains /{suite.expect_pattern}/",
                found.group(0) if found else "absent",
                "present",
                bool(found),
            )
        )
    return evidence


# ------------------------------------------------------------------ smoke tests


def run_smoke(base_url: str | None, smoke: Smoke, timeout: float = 5.0) -> Evidence:
    """One HTTP request under DEPLOYMENT_URL; status (and body, when given) must match."""
    expected = " or ".join(str(s) for s in smoke.expect_status) + (
        f" {smoke.expect_body}" if smoke.expect_body else ""
    )
    if not base_url:
        return Evidence(
            smoke.name,
            f"{smoke.method} {smoke.path}",
            "not configured (DEPLOYMENT_URL unset)",
            expected,
            False,
        )
    url = base_url.rstrip("/") + "/" + smoke.path.lstrip("/")
    how = f"{smoke.method} {redact(url)}"
    status, body = _request(url, smoke.method, timeout)
    if status is None:
        return Evidence(smoke.name, how, f"no answer: {redact(body)}", expected, False)
    ok = status in smoke.expect_status and (smoke.expect_body is None or _same_body(body, smoke.expect_body))
    return Evidence(smoke.name, how, f"{status} {body[:200]}".strip(), expected, ok)


def _request(url: str, method: str, timeout: float) -> tuple[int | None, str]:
    request = urllib.request.Request(url, method=method, headers={"User-Agent": "migrate-bot"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, resp.read(4096).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:  # 4xx/5xx still answer: that is the observation
        return exc.code, exc.read(4096).decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as exc:
        return None, str(getattr(exc, "reason", exc))


def _same_body(body: str, expected: str) -> bool:
    """JSON bodies compare as data (whitespace and key order aside), others as trimmed text."""
    try:
        return bool(json.loads(body) == json.loads(expected))
    except ValueError:
        return body.strip() == expected.strip()
