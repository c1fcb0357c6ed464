"""Representative query timings: a baseline before the migration, compared after it.

The report's budget: "Query performance within 10% of baseline" (and RLS overhead under
5%). A fixed set of read-only queries the application runs is timed on the server with
`EXPLAIN (ANALYZE)` (its Execution Time, so network latency does not count), the median
of several runs after warm-up. Timings of a few hundredths of a millisecond move by more
than 10% from run to run, so a change smaller than `NOISE_FLOOR_MS` in absolute terms is
reported as within budget, and the evidence says so.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass

import psycopg

from core import clock
from core.redact import first_line

BUDGET = 0.10  # the report: within 10% of baseline
NOISE_FLOOR_MS = 0.25
RUNS, WARMUP = 15, 3

# Read-only queries on the tables of version 005 (so they can be timed before 006 runs).
QUERIES: tuple[tuple[str, str], ...] = (
    ("organization by slug", "SELECT * FROM platform.organizations WHERE slug = 'lancio'"),
    (
        "projects of an organization",
        "SELECT p.* FROM platform.projects p JOIN platform.organizations o ON o.id = p.organization_id "
        "WHERE o.slug = 'lancio' ORDER BY p.created_at",
    ),
    (
        "members with their users",
        "SELECT u.email, m.role FROM platform.organization_members m JOIN platform.users u ON u.id = m.user_id "
        "JOIN platform.organizations o ON o.id = m.organization_id WHERE o.slug = 'lancio'",
    ),
    (
        "recent audit log of an organization",
        "SELECT a.* FROM platform.audit_logs a JOIN platform.organizations o ON o.id = a.organization_id "
        "WHERE o.slug = 'lancio' ORDER BY a.occurred_at DESC LIMIT 50",
    ),
    (
        "active sessions per user",
        "SELECT user_id, count(*) FROM platform.user_sessions WHERE expires_at > now() GROUP BY user_id",
    ),
)


@dataclass(frozen=True)
class Comparison:
    name: str
    before_ms: float | None
    after_ms: float | None
    error: str | None = None

    @property
    def change(self) -> float | None:
        if self.before_ms is None or self.after_ms is None or self.before_ms <= 0:
            return None
        return (self.after_ms - self.before_ms) / self.before_ms

    @property
    def ok(self) -> bool:
        change = self.change
        if self.error or change is None or self.after_ms is None or self.before_ms is None:
            return False  # (change is None whenever a timing is)
        return change <= BUDGET or (self.after_ms - self.before_ms) < NOISE_FLOOR_MS

    def text(self) -> str:
        if self.error:
            return f"{self.name}: {self.error}"
        if self.change is None:
            return f"{self.name}: no baseline timing to compare with (now {self.after_ms:.3f} ms)"
        within = (
            "within the 10% budget"
            if self.change <= BUDGET
            else f"over 10% but under the {NOISE_FLOOR_MS} ms noise floor"
            if self.ok
            else "OVER the 10% budget"
        )
        return f"{self.name}: {self.change:+.1%} ({self.before_ms:.3f} → {self.after_ms:.3f} ms), {within}"


def capture_baseline(dsn: str, *, runs: int = RUNS) -> dict:
    """Time the representative queries now: {captured_at, method, queries: {name: {sql, ms | error}}}.

    Call it at preflight (or at the start of the run when the preflight has none) and store
    the result with the run (`store_baseline`); the follow-ups compare against it."""
    return {
        "captured_at": clock.now().isoformat(),
        "method": method(runs),
        "role": role_note(dsn),
        "queries": measure(dsn, runs=runs),
    }


def role_note(dsn: str) -> str:
    """Who the timings are measured as, and whether RLS applies to them (a superuser, a role
    with BYPASSRLS or the tables' owner does not see the policies' cost)."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        row = conn.execute(
            "SELECT current_user, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
    assert row is not None  # the current user is a role
    user, superuser, bypass = row
    if superuser or bypass:
        return f"measured as {user}, which bypasses RLS ({'superuser' if superuser else 'BYPASSRLS'}): RLS overhead not included"
    return f"measured as {user} (RLS applies unless {user} owns the tables)"


def method(runs: int = RUNS) -> str:
    return f"median server Execution Time of {runs} EXPLAIN (ANALYZE) runs after {WARMUP} warm-up runs"


def measure(dsn: str, *, runs: int = RUNS) -> dict[str, dict]:
    """{name: {"sql", "ms"}} or {name: {"sql", "error"}} for each representative query."""
    out: dict[str, dict] = {}
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        for name, sql in QUERIES:
            try:
                out[name] = {"sql": sql, "ms": round(_median_ms(conn, sql, runs), 4)}
            except psycopg.Error as exc:
                out[name] = {"sql": sql, "error": _error(exc)}
    return out


def _median_ms(conn: psycopg.Connection, sql: str, runs: int) -> float:
    timings = []
    with conn.transaction(force_rollback=True):
        conn.execute("SET TRANSACTION READ ONLY")
        for i in range(WARMUP + runs):
            row = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}").fetchone()
            assert row is not None  # EXPLAIN (FORMAT JSON) is one row
            plan = json.loads(row[0]) if isinstance(row[0], str) else row[0]
            if i >= WARMUP:
                timings.append(float(plan[0]["Execution Time"]))
    return statistics.median(timings)


def _error(exc: psycopg.Error) -> str:
    diag = exc.diag
    message = diag.message_primary or first_line(exc)
    return f"error: {message}" + (f" (SQLSTATE {diag.sqlstate})" if diag.sqlstate else "")


def compare(baseline: dict, current: dict[str, dict]) -> list[Comparison]:
    """Each representative query: its baseline timing against its timing now."""
    before = (baseline or {}).get("queries", {})
    rows = []
    for name, _sql in QUERIES:
        now, then = current.get(name, {}), before.get(name, {})
        error = now.get("error") or (f"baseline: {then['error']}" if then.get("error") else None)
        rows.append(Comparison(name, then.get("ms"), now.get("ms"), error))
    return rows


def store_baseline(core, run_id: str, baseline: dict) -> None:
    """Keep the baseline with the run (its meta), for the follow-ups of that run."""
    core.store.update_meta(run_id, baseline=json.dumps(baseline))


def baseline_of(run) -> dict | None:
    """The run's baseline: the preflight's when it captured one, else the one stored at the start."""
    if run is None:
        return None
    found = (run.preflight or {}).get("baseline")
    if found:
        return found
    raw = (run.meta or {}).get("baseline")
    return json.loads(raw) if raw else None
