"""The report's post-execution checklist as checks posted into the run's thread.

At +1 h and +24 h (configurable): the verification queries of every migration phase again,
the schema against the snapshot taken after the last phase (so a dropped policy is named),
representative query timings against the baseline (budget: within 10%), every registered
database reachable over TCP, and any permission-denied error these checks ran into. Each
check posts ✅/❌ with its evidence; a ❌ mentions the coordinator. At +1 week: a reminder
of the medium-term items with their owners. A check with no evidence at all is ❌, not
"0/0 ✅". Every follow-up first checks the run: unless it is still SUCCEEDED (rolled back,
restored...) nothing is posted (scheduling.hooks.run_undone also removes the jobs).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from core.redact import first_line
from engine import schema
from engine.verify import run_checks
from preflight import net
from scheduling import posts
from state.machine import Status
from state.record import Run
from workflows import baseline
from workflows.core import Core
from workflows.reporting import RedactingReporter, Reporter
from workflows.templates import evidence_lines

log = logging.getLogger("migrate.scheduling")

ACTOR = "bot"
PROBE_TIMEOUT = 5.0
_DENIED = re.compile(r"permission denied|insufficient privilege|42501", re.IGNORECASE)


@dataclass
class CheckResult:
    name: str
    ok: bool
    summary: str
    evidence: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # every error text seen, for the permission check


def post_followup(core: Core, reporter: Reporter, run_id: str, label: str) -> list[CheckResult]:
    """Run the follow-up checks of a succeeded run and post each, then a summary."""
    reporter = RedactingReporter(reporter, core.redact)
    run = core.store.get(run_id)
    if _undone(run, run_id, f"{label} follow-up") or run is None:  # (_undone: True for a missing run)
        return []
    results = run_followup(core, run)
    for r in results:
        reporter.post(posts.followup_check(label, run_id, r.name, r.ok, r.summary, r.evidence, core.roster))
    reporter.post(
        posts.followup_summary(core.runbook, label, run_id, [(r.name, r.ok) for r in results], core.roster)
    )
    core.store.record(
        f"follow-up {label}",
        actor=ACTOR,
        outcome="ok" if all(r.ok for r in results) else "failed",
        run_id=run_id,
        evidence={r.name: {"ok": r.ok, "summary": r.summary} for r in results},
    )
    return results


def post_week_reminder(core: Core, reporter: Reporter, run_id: str, label: str) -> bool:
    """The medium-term checklist of a run still SUCCEEDED; False (nothing posted) otherwise."""
    if _undone(core.store.get(run_id), run_id, f"{label} reminder"):
        return False
    RedactingReporter(reporter, core.redact).post(
        posts.week_reminder(core.runbook, label, run_id, core.roster)
    )
    return True


def _undone(run: Run | None, run_id: str, what: str) -> bool:
    """True (logged, nothing to post) when the run is gone or no longer SUCCEEDED."""
    if run is not None and run.status == Status.SUCCEEDED:
        return False
    log.info("%s of run %s not posted: the run is %s", what, run_id, run.status.value if run else "gone")
    return True


def run_followup(core: Core, run: Run) -> list[CheckResult]:
    results = [verification(core), schema_drift(core, run.id), performance(core, run), reachability(core)]
    return results + [permission_denied(results)]


def verification(core: Core) -> CheckResult:
    """Every migration phase's verification queries (engine.verify.run_checks), again."""
    name = "verification queries"
    try:
        evidence = [
            e
            for phase in core.runbook.migration_phases
            for e in run_checks(core.settings.required_database_url(), phase.checks)
        ]
    except psycopg.Error as exc:
        return _unreachable(core, name, exc)
    if not evidence:
        return CheckResult(
            name, False, "no verification query in the runbook's migration phases: nothing was checked"
        )
    failing = [e for e in evidence if not e.ok]
    summary = f"{len(evidence) - len(failing)}/{len(evidence)} hold"
    if failing:
        summary += " — " + "; ".join(
            f"{e.name}: observed {e.observed}, expected {e.expected}" for e in failing
        )
    errors = [e.observed for e in evidence if e.observed.startswith("error:")]
    return CheckResult(name, not failing, summary, evidence_lines(evidence), errors)


def snapshot_after_run(core: Core, run_id: str) -> Path:
    """The schema snapshot PhaseRunner wrote after the last migration phase of this run."""
    last = max(p.number for p in core.runbook.migration_phases)
    return Path(core.settings.backup_dir) / "runs" / run_id / f"after_phase_{last}.sql"


def schema_drift(core: Core, run_id: str) -> CheckResult:
    """The schema now against the snapshot taken when the run finished: names what changed."""
    name = "schema unchanged since the run"
    snapshot = snapshot_after_run(core, run_id)
    if not snapshot.exists():
        return CheckResult(name, False, f"no snapshot to compare with ({snapshot} is missing)")
    stored = snapshot.read_text(encoding="utf-8")
    try:
        now = schema.current_like(stored, core.settings.required_database_url())
    except Exception as exc:  # noqa: BLE001 - CalledProcessError from pg_dump: the evidence is its message
        text = core.redact(str(getattr(exc, "stderr", "") or exc)).strip()[:300]
        return CheckResult(name, False, f"pg_dump failed: {text}", errors=[text])
    diff = schema.difference(stored, now)
    if not diff:
        return CheckResult(
            name,
            True,
            f"equal to the snapshot after phase {snapshot.stem.rsplit('_', 1)[-1]}",
            [f"{schema.method(stored)}: {snapshot.name}"],
        )
    missing = [line[1:].strip() for line in diff if line.startswith("-")]
    added = [line[1:].strip() for line in diff if line.startswith("+")]
    evidence = [f"missing now: {line}" for line in missing] + [f"new since the run: {line}" for line in added]
    summary = f"{len(missing)} line(s) gone, {len(added)} new since the run" + (
        f" — first gone: {missing[0][:160]}" if missing else ""
    )
    return CheckResult(name, False, summary, evidence)


def performance(core: Core, run: Run) -> CheckResult:
    """Representative queries against their baseline timings: within 10%."""
    name = "query performance vs baseline"
    base = baseline.baseline_of(run)
    if not base:
        return CheckResult(
            name, False, "no baseline was captured (neither at preflight nor at the start of the run)"
        )
    try:
        rows = baseline.compare(base, baseline.measure(core.settings.required_database_url()))
        measured_as = baseline.role_note(core.settings.required_database_url())
    except psycopg.Error as exc:
        return _unreachable(core, name, exc)
    good = [r for r in rows if r.ok]
    known = [r.change for r in rows if r.change is not None]
    worst = f", worst {max(known):+.1%}" if known else ""
    summary = f"{len(good)}/{len(rows)} representative queries within budget (10% of baseline){worst}"
    evidence = [f"{'✅' if r.ok else '❌'} {r.text()}" for r in rows]
    evidence.append(f"baseline {str(base.get('captured_at', '?'))[:19]} UTC; {baseline.method()}")
    evidence.append(measured_as)
    return CheckResult(name, len(good) == len(rows), summary, evidence, [r.error for r in rows if r.error])


def registered_databases(dsn: str) -> list[dict[str, Any]] | None:
    """Rows of platform.databases (no credentials), or None when the table does not exist."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        exists = conn.execute("SELECT to_regclass('platform.databases')").fetchone()
        assert exists is not None  # a SELECT without FROM is one row
        if exists[0] is None:
            return None
        cur = conn.execute("SELECT id::text, name, type, host, port FROM platform.databases ORDER BY name")
        return [dict(zip(("id", "name", "type", "host", "port"), row)) for row in cur.fetchall()]


def reachability(core: Core) -> CheckResult:
    """A TCP connect to host:port of every registered database."""
    name = "registered databases reachable"
    try:
        rows = registered_databases(core.settings.required_database_url())
    except psycopg.Error as exc:
        return _unreachable(core, name, exc)
    if rows is None:
        return CheckResult(name, False, "platform.databases does not exist")
    probes = [(r, *net.tcp_probe(r["host"], int(r["port"]), PROBE_TIMEOUT)) for r in rows]
    down = [r["name"] for r, ok, _ in probes if not ok]
    evidence = [f"{'✅' if ok else '❌'} {r['name']} ({r['type']}): {observed}" for r, ok, observed in probes]
    summary = f"{len(rows) - len(down)}/{len(rows)} reachable" + (
        f" — down: {', '.join(down)}" if down else ""
    )
    return CheckResult(name, bool(rows) and not down, summary if rows else "no database registered", evidence)


def permission_denied(results: list[CheckResult]) -> CheckResult:
    """Permission-denied errors met by the checks above (RLS or grants biting the bot itself)."""
    name = "no permission-denied errors"
    seen = [f"{r.name}: {text}" for r in results for text in (*r.errors, *r.evidence) if _DENIED.search(text)]
    if seen:
        return CheckResult(name, False, f"{len(seen)} permission-denied error(s)", seen)
    return CheckResult(name, True, f"none in the {len(results)} checks above", [])


def _unreachable(core: Core, name: str, exc: Exception) -> CheckResult:
    text = core.redact(first_line(exc))
    return CheckResult(name, False, f"the database did not answer: {text}", errors=[text])
