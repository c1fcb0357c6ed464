"""`preflight`: every pre-flight check, a verified backup and a rehearsal; the go/no-go matrix."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from commands.parse import Command
from core import clock
from preflight import run_preflight
from runbook.model import RunbookError
from runbook.validate import plan
from state.machine import IllegalTransition, Status, applied_phases
from state.record import Run
from workflows import templates
from workflows.baseline import capture_baseline
from workflows.core import Core
from workflows.locked import guarded, lock_refusal
from workflows.reporting import FAILED, OK, Outcome, Reporter

log = logging.getLogger("migrate.preflight")


def preflight(core: Core, user: str, cmd: Command) -> Outcome:
    refusal = _why_not_replaceable(core.store.current())
    if refusal:
        return Outcome.refused(refusal)
    handle = core.lock.acquire(f"preflight by {user}")
    if handle is None:
        return lock_refusal(core)
    try:  # under the run lock: no run is using the plan being replaced
        rb = core.reload_runbook()  # what this pre-flight checks and the TPM approves: the file as it is now
    except RunbookError as exc:
        handle.release()
        return Outcome.refused(core.redact(str(exc)))
    try:
        run = core.store.create(
            user,
            rb.id,
            phases=[p.number for p in rb.migration_phases],
            verification=[p.number for p in rb.phases if p.is_verification],
        )
    except IllegalTransition as exc:
        handle.release()
        return Outcome.refused(exc.reason)

    def body(reporter: Reporter) -> int:
        report = run_preflight(core.settings, rb, incident=core.store.incident())
        data = report.to_dict()
        data["plan"] = plan(rb)
        data["outcome"] = "GO" if report.go else "NO-GO"
        data["expires_at"] = (clock.now() + timedelta(hours=core.settings.preflight_ttl_hours)).isoformat()
        if report.go:
            data["baseline"] = _baseline(core)
        core.store.transition(
            run.id,
            Status.GO if report.go else Status.NO_GO,
            actor=user,
            action="preflight",
            outcome=data["outcome"],
            fields={"preflight": data},
            evidence={"nogo": report.nogo_reasons, "checks": len(report.checks)},
        )
        for post in templates.preflight_result(core.runbook, run.id, report, core.roster):
            reporter.post(post)
        return OK if report.go else FAILED

    return Outcome(
        OK,
        reply=[f"Pre-flight started (run {run.id}); results will be posted in the channel."],
        posts=[templates.preflight_started(core.runbook, run.id, user)],
        work=guarded(core, handle, run.id, user, body),
        run_id=run.id,
    )


def _baseline(core: Core) -> dict[str, Any] | None:
    """Timings of representative queries before the migration, for the post-execution checks."""
    try:
        return capture_baseline(core.settings.required_database_url())
    except Exception as exc:  # the follow-ups capture one at the start of the run instead
        log.warning("could not capture the performance baseline: %s", core.redact(str(exc))[:200])
        return None


def _why_not_replaceable(current: Run | None) -> str | None:
    """A new pre-flight starts a new run; it must not orphan phases applied by the current one."""
    if current is None or current.status == Status.SUCCEEDED:
        return None
    applied = applied_phases(current)
    if applied:
        listed = ", ".join(str(n) for n in applied)
        return (
            f"run {current.id} has phase {listed} applied ({current.status.value}): finish it, or "
            f"`rollback phase {applied[-1]}` first — a new pre-flight would lose track of it"
        )
    return None
