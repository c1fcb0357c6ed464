"""Database checks: reachable, server version, prerequisite migrations, extensions.

One connection answers the four lines (the report's psql commands 1, 4 and 5); when it
cannot be opened, the other three say they were not checked rather than guessing.
"""
from __future__ import annotations

from typing import Iterable

import psycopg

from core.redact import redact_url
from preflight.lines import Spec, line, run_probe
from preflight.report import CheckLine
from runbook.model import Runbook


def connect(url: str, timeout: float) -> psycopg.Connection:
    """A read-only autocommit connection that gives up after `timeout` seconds."""
    ms = int(timeout * 1000)
    return psycopg.connect(url, autocommit=True, connect_timeout=max(1, int(timeout)),
                           options=f"-c statement_timeout={ms} -c default_transaction_read_only=on")


def specs(url: str | None, runbook: Runbook) -> dict[str, Spec]:
    pre = runbook.prerequisites
    applied = ", ".join(pre.applied) or "(none)"
    not_applied = ", ".join(pre.not_applied)
    wanted = f"{applied} applied" + (f", {not_applied} not applied" if not_applied else "")
    return {
        "database": Spec("database", "DATABASE_URL reachable", f"connect {redact_url(url) or '(unset)'}; SELECT version()",
                         "a connection"),
        "server_version": Spec("server_version", f"PostgreSQL {pre.server_version_num // 10000}+",
                               "SHOW server_version_num", f"≥ {pre.server_version_num}"),
        "migrations": Spec("migrations", f"Migrations {wanted}", "SELECT version FROM schema_migrations", wanted),
        "extensions": Spec("extensions", f"Extensions installed: {', '.join(pre.extensions) or '(none)'}",
                           "SELECT extname, extversion FROM pg_extension", ", ".join(pre.extensions) or "(none)"),
    }


def database_lines(url: str | None, runbook: Runbook, timeout: float, secrets: Iterable[str] = ()) -> list[CheckLine]:
    """The database, server_version, migrations and extensions lines."""
    s = specs(url, runbook)
    if not url:
        return [line(spec, False, "DATABASE_URL is not set") for spec in s.values()]
    facts: dict[str, object] = {}

    def reach() -> tuple[bool, str]:
        with connect(url, timeout) as conn:
            facts["version"] = conn.execute("SHOW server_version_num").fetchone()[0]
            facts["extensions"] = dict(conn.execute("SELECT extname, extversion FROM pg_extension").fetchall())
            facts["migrations"] = _migrations(conn)
            return True, conn.execute("SELECT version()").fetchone()[0]

    first = run_probe(s["database"], reach, secrets)
    if not first.ok:
        return [first] + [line(s[k], False, "not checked: database unreachable") for k in ("server_version", "migrations", "extensions")]
    return [first, _version_line(s["server_version"], runbook, facts["version"]),
            _migrations_line(s["migrations"], runbook, facts["migrations"]),
            _extensions_line(s["extensions"], runbook, facts["extensions"])]


def _migrations(conn: psycopg.Connection) -> list[str] | str:
    try:
        return [r[0] for r in conn.execute("SELECT version::text FROM schema_migrations ORDER BY 1")]
    except psycopg.errors.UndefinedTable:
        return "no schema_migrations table"


def _version_line(spec: Spec, runbook: Runbook, version: object) -> CheckLine:
    num = int(str(version))
    return line(spec, num >= runbook.prerequisites.server_version_num, f"server_version_num {num}")


def _migrations_line(spec: Spec, runbook: Runbook, found: list[str] | str) -> CheckLine:
    if isinstance(found, str):
        return line(spec, False, found)
    pre = runbook.prerequisites
    missing = [v for v in pre.applied if v not in found]
    present = [v for v in pre.not_applied if v in found]
    problems = ([f"missing {', '.join(missing)}"] if missing else []) + ([f"already applied {', '.join(present)}"] if present else [])
    observed = f"applied: {', '.join(found) or '(none)'}"
    return line(spec, not problems, observed + (f" ({'; '.join(problems)})" if problems else ""))


def _extensions_line(spec: Spec, runbook: Runbook, installed: dict) -> CheckLine:
    missing = [e for e in runbook.prerequisites.extensions if e not in installed]
    shown = ", ".join(f"{e} {installed[e]}" for e in runbook.prerequisites.extensions if e in installed)
    observed = (shown or "none of them") + (f"; missing {', '.join(missing)}" if missing else "")
    return line(spec, not missing, observed)
