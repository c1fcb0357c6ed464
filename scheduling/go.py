"""GO scheduled: the reminder before the start, and the start itself.

At the scheduled time the fast pre-flight checks run again (not the backup). Any NO-GO line
(an incident declared, a closed port, the window...) cancels the start: the run is deferred
with the reason, and the reason is posted. Otherwise the runbook runs exactly as `run`
would: the same checks and start (workflows.run.start_phases, scheduled=True) and its work,
with the same posts.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from core import clock
from core.config import Settings
from core.roster import COORDINATOR
from preflight import fast_checks
from scheduling import posts
from state.machine import IllegalTransition, Status
from state.record import Run
from workflows import baseline
from workflows.core import Core
from workflows.reporting import FAILED, REFUSED, Post, Progress, RedactingReporter, Reporter
from workflows.run import start_phases

log = logging.getLogger("migrate.scheduling")

ACTOR = "bot"  # the audit actor of what the scheduler decides by itself
LATE_AFTER = timedelta(minutes=10)  # a start found later than this (the bot was down) is cancelled


def late_tolerance(settings: Settings) -> timedelta:
    """How late a start may still run (setting `schedule_late_minutes` once core.config has it)."""
    return timedelta(
        minutes=float(getattr(settings, "schedule_late_minutes", None) or LATE_AFTER.total_seconds() / 60)
    )


def why_stale(core: Core, run: Run | None, at: datetime) -> str | None:
    """Why a job for the start of `run` at `at` no longer applies: cancelled, moved, replaced."""
    if run is None:
        return "the run no longer exists"
    current = core.store.current()
    if current is None or current.id != run.id:
        return f"run {run.id} is no longer the current run"
    if run.status != Status.SCHEDULED:
        return f"the run is {run.status.value}, not scheduled"
    planned = (run.approval or {}).get("scheduled_for")
    if not planned or datetime.fromisoformat(planned) != at:
        return f"the start was moved to {planned}" if planned else "the approval has no scheduled time"
    return None


def remind(core: Core, reporter: Reporter, run_id: str, at: datetime) -> bool:
    """Post the reminder naming the TPM, the coordinator and the phase owners; False if the start no longer applies."""
    stale = why_stale(core, core.store.get(run_id), at)
    if stale:
        log.info("reminder for run %s skipped: %s", run_id, stale)
        return False
    RedactingReporter(reporter, core.redact).post(
        posts.reminder(core.runbook, run_id, at, clock.now(), core.roster)
    )
    return True


class InThread:
    """Posts that name no run (step results...) go into this run's thread, as the adapters do for `run`."""

    def __init__(self, inner: Reporter, run_id: str):
        self.inner = inner
        self.run_id = run_id

    def post(self, post: Post) -> None:
        post.run_id = post.run_id or self.run_id
        self.inner.post(post)

    def progress(self, progress: Progress) -> None:
        self.inner.progress(progress)


def start(
    core: Core, reporter: Reporter, run_id: str, at: datetime, *, late_after: timedelta | None = None
) -> int:
    """The scheduled start: fast checks, then the run with its posts; the exit code of the work.

    An unexpected error before the run leaves SCHEDULED (a bug, a check that raised) cancels
    the start with that error as the reason, posted: a start that silently did not happen
    would leave the team waiting on a run that never comes."""
    reporter = InThread(RedactingReporter(reporter, core.redact), run_id)
    try:
        return _start(core, reporter, run_id, at, late_after or late_tolerance(core.settings))
    except Exception as exc:
        run = core.store.get(run_id)
        if run is None or run.status is not Status.SCHEDULED:
            raise  # it ran (its own failure handling reported) or was decided otherwise
        error = core.redact(f"{type(exc).__name__}: {exc}")[:300]
        log.error("scheduled start of run %s failed before it began: %s", run_id, error)
        return _cancel(
            core, reporter, run_id, at, [f"the scheduled start failed before the run began ({error})"], []
        )


def _start(core: Core, reporter: Reporter, run_id: str, at: datetime, late_after: timedelta) -> int:
    run = core.store.get(run_id)
    stale = why_stale(core, run, at)
    if stale:
        log.info("scheduled start of run %s skipped: %s", run_id, stale)
        core.store.record(
            "scheduled start skipped",
            actor=ACTOR,
            outcome="skipped",
            run_id=run_id,
            evidence={"reason": stale, "scheduled_for": at.isoformat()},
        )
        return REFUSED
    now = clock.now()
    if now - at > late_after:
        late = f"the bot was not running at {at:%Y-%m-%d %H:%M} UTC: found {int((now - at).total_seconds() // 60)} min late"
        return _cancel(
            core,
            reporter,
            run_id,
            at,
            [late + f" (tolerance {int(late_after.total_seconds() // 60)} min)"],
            [],
        )
    report = fast_checks(core.settings, core.runbook, incident=core.store.incident(), at=now)
    lines = [c.text() for c in report.checks]
    core.store.record(
        "scheduled start checks",
        actor=ACTOR,
        outcome="GO" if report.go else "NO-GO",
        run_id=run_id,
        evidence={"nogo": report.nogo_reasons, "checks": len(report.checks)},
    )
    if not report.go:
        return _cancel(
            core,
            reporter,
            run_id,
            at,
            report.nogo_reasons,
            [c.text() for c in report.checks if c.status == "fail"],
        )
    coordinator = next(iter(core.roster.members(COORDINATOR)), None)
    if coordinator is None:
        return _cancel(core, reporter, run_id, at, ["no coordinator in the roster to run it as"], [])
    assert run is not None  # why_stale answered for a missing run
    _ensure_baseline(core, run)
    outcome = start_phases(core, coordinator, scheduled=True)
    if outcome.work is None:  # refused: approval expired, lock held, incident declared meanwhile...
        return _cancel(
            core, reporter, run_id, at, [core.redact(" ".join(outcome.reply)) or "`run` refused"], []
        )
    reporter.post(posts.start_go(core.runbook, run_id, at, lines))
    for post in outcome.posts:
        reporter.post(post)
    return outcome.work(reporter)  # (None answered above)


def _ensure_baseline(core: Core, run: Run) -> None:
    """The performance baseline, captured now when the preflight did not capture one."""
    if baseline.baseline_of(run):
        return
    try:
        baseline.store_baseline(
            core, run.id, baseline.capture_baseline(core.settings.required_database_url())
        )
    except Exception as exc:  # noqa: BLE001 - the follow-up reports the missing baseline; the run goes on
        log.warning("performance baseline of run %s not captured: %s", run.id, core.redact(str(exc))[:200])


def _cancel(
    core: Core, reporter: Reporter, run_id: str, at: datetime, reasons: list[str], lines: list[str]
) -> int:
    decision = {
        "by": ACTOR,
        "at": clock.now().isoformat(),
        "what": "no-go",
        "reason": "scheduled start cancelled: " + "; ".join(reasons),
    }
    deferred = True
    try:
        core.store.transition(
            run_id,
            Status.DEFERRED,
            actor=ACTOR,
            action="scheduled start cancelled",
            outcome="no-go",
            fields={"decision": decision},
            evidence=decision,
        )
    except IllegalTransition as exc:
        deferred = False
        log.warning("run %s could not be deferred after a cancelled start: %s", run_id, exc.reason)
    reporter.post(posts.start_cancelled(core.runbook, run_id, at, reasons, lines, core.roster, deferred))
    return FAILED
