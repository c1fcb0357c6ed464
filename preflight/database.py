"""Database checks: reachable, server version, prerequisite migrations, extensions, and the
runbook's declared SQL preconditions.

One connection answers the first lines (the report's psql commands 1, 4 and 5); when it
cannot be opened, the others say they were not checked rather than guessing. The migrations
and extensions lines exist only when the runbook's [prerequisites] ask for something, or (the
migrations line) when its steps name ledger migrations, whose ledger can forbid running (a dirty
golang-migrate version): a runbook that requires nothing never has a ledger table looked for.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, LiteralString

import psycopg

from core.redact import redact_url
from engine import ledgers
from engine.verify import compare, one_statement
from preflight.lines import Spec, line, run_probe
from preflight.report import CheckLine
from runbook.model import Check, Runbook


def connect(url: str, timeout: float) -> psycopg.Connection:
    """A read-only autocommit connection that gives up after `timeout` seconds."""
    ms = int(timeout * 1000)
    return psycopg.connect(
        url,
        autocommit=True,
        connect_timeout=max(1, int(timeout)),
        options=f"-c statement_timeout={ms} -c default_transaction_read_only=on",
    )


def specs(url: str | None, runbook: Runbook) -> dict[str, Spec]:
    pre = runbook.prerequisites
    applied = ", ".join(pre.applied) or "(none)"
    not_applied = ", ".join(pre.not_applied)
    wanted = f"{applied} applied" + (f", {not_applied} not applied" if not_applied else "")
    label = ledgers.for_runbook(runbook).label
    title = f"Migrations {wanted}" if pre.applied or pre.not_applied else f"Ledger {label} consistent"
    return {
        "database": Spec(
            "database",
            "DATABASE_URL reachable",
            f"connect {redact_url(url) or '(unset)'}; SHOW server_version",
            "a connection",
        ),
        "server_version": Spec(
            "server_version",
            f"PostgreSQL {pre.server_version_num // 10000}+",
            "SHOW server_version_num",
            f"≥ {pre.server_version_num}",
        ),
        "migrations": Spec(
            "migrations",
            title,
            f"read {label}",
            wanted if pre.applied or pre.not_applied else "readable, not dirty, no failed migration",
        ),
        "extensions": Spec(
            "extensions",
            f"Extensions installed: {', '.join(pre.extensions) or '(none)'}",
            "SELECT extname, extversion FROM pg_extension",
            ", ".join(pre.extensions) or "(none)",
        ),
    }


def keys(runbook: Runbook) -> tuple[str, ...]:
    """The keys of the lines `database_lines` returns for this runbook, in order."""
    pre = runbook.prerequisites
    tracked = any(
        s.migration for p in runbook.phases for s in p.steps
    )  # the ledger can forbid running (dirty)
    return (
        ("database", "server_version")
        + (("migrations",) if pre.applied or pre.not_applied or tracked else ())
        + (("extensions",) if pre.extensions else ())
    )


def database_lines(
    url: str | None, runbook: Runbook, timeout: float, secrets: Iterable[str] = ()
) -> list[CheckLine]:
    """The database and server_version lines, plus migrations and extensions when required."""
    wanted = keys(runbook)
    s = {k: spec for k, spec in specs(url, runbook).items() if k in wanted}
    if not url:
        return [line(spec, False, "DATABASE_URL is not set") for spec in s.values()]
    facts: dict[str, Any] = {}

    def reach() -> tuple[bool, str]:
        with connect(url, timeout) as conn:
            facts["version"] = _one(conn, "SHOW server_version_num")
            facts["extensions"] = dict(
                conn.execute("SELECT extname, extversion FROM pg_extension").fetchall()
            )
            if "migrations" in s:
                facts["migrations"] = applied_versions(conn, runbook)
            # the version alone: version()'s compiler banner is not evidence of anything
            return True, "PostgreSQL " + str(_one(conn, "SHOW server_version")).split()[0]

    first = run_probe(s["database"], reach, secrets)
    if not first.ok:
        return [first] + [
            line(spec, False, "not checked: database unreachable") for k, spec in s.items() if k != "database"
        ]
    found = [first, _version_line(s["server_version"], runbook, facts["version"])]
    if "migrations" in s:
        found.append(_migrations_line(s["migrations"], runbook, facts["migrations"]))
    if "extensions" in s:
        found.append(_extensions_line(s["extensions"], runbook, facts["extensions"]))
    return found


def applied_versions(conn: psycopg.Connection, runbook: Runbook) -> list[str] | str:
    """The versions the ledger shows as applied, or why they cannot be read.

    The one place pre-flight reads "what is applied": the ledger's table and column are the
    runbook's business ([ledger], engine/ledgers)."""
    ledger = ledgers.for_runbook(runbook)
    problem = ledger.problem(conn)  # a dirty golang-migrate ledger, a failed Flyway row, a missing table
    if problem:
        return problem
    return sorted(ledger.applied(conn))


def precondition_line(
    url: str | None, check: Check, timeout: float, secrets: Iterable[str] = ()
) -> CheckLine:
    """A declared SQL precondition: its single value, read in a read-only transaction,
    compared with what the runbook expects."""
    expected = f"{_COMPARE.get(check.compare, check.compare)} {check.expect}"
    spec = Spec(
        f"sql:{check.name}", check.name, f"SQL (read-only): {' '.join(check.sql.split())[:200]}", expected
    )
    if not url:
        return line(spec, False, "not checked: DATABASE_URL is not set")

    def probe() -> tuple[bool, str]:
        with connect(url, timeout) as conn:
            row = one_statement(conn, check.sql).fetchone()  # one statement, whatever the text holds
        value = row[0] if row else None
        return compare(value, check.expect, check.compare), "NULL" if value is None else str(value)

    return run_probe(spec, probe, secrets)


_COMPARE = {"eq": "=", "ge": "≥", "le": "≤"}


def _version_line(spec: Spec, runbook: Runbook, version: object) -> CheckLine:
    num = int(str(version))
    return line(spec, num >= runbook.prerequisites.server_version_num, f"server_version_num {num}")


def _migrations_line(spec: Spec, runbook: Runbook, found: list[str] | str) -> CheckLine:
    if isinstance(found, str):
        return line(spec, False, found)
    pre = runbook.prerequisites
    missing = [v for v in pre.applied if v not in found]
    present = [v for v in pre.not_applied if v in found]
    problems = ([f"missing {', '.join(missing)}"] if missing else []) + (
        [f"already applied {', '.join(present)}"] if present else []
    )
    observed = f"applied: {', '.join(found) or '(none)'}"
    return line(spec, not problems, observed + (f" ({'; '.join(problems)})" if problems else ""))


def _extensions_line(spec: Spec, runbook: Runbook, installed: dict[str, Any]) -> CheckLine:
    missing = [e for e in runbook.prerequisites.extensions if e not in installed]
    shown = ", ".join(f"{e} {installed[e]}" for e in runbook.prerequisites.extensions if e in installed)
    observed = (shown or "none of them") + (f"; missing {', '.join(missing)}" if missing else "")
    return line(spec, not missing, observed)


def _one(conn: psycopg.Connection[Any], query: LiteralString) -> Any:
    """The value of a query that answers one row (SHOW)."""
    row = conn.execute(query).fetchone()
    assert row is not None  # SHOW answers one row
    return row[0]
