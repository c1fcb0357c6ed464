"""`approve` (GO now / GO scheduled) and `defer` (NO-GO): the TPM's decisions."""

from __future__ import annotations

from datetime import datetime

from commands import renew
from commands.parse import Command
from core import clock
from core.roster import COORDINATOR
from preflight import window_check
from runbook.validate import checksums, plan
from state.approval import bind_approval, why_cannot_approve
from state.machine import IllegalTransition, Status
from state.record import Run
from workflows import templates
from workflows.checks import why_incident_blocks
from workflows.core import Core
from workflows.reporting import OK, Outcome

DECIDABLE = (Status.GO, Status.SCHEDULED)
RESCHEDULABLE = (Status.APPROVED,)  # GO now may still become GO scheduled before anything ran


def approve(core: Core, user: str, cmd: Command) -> Outcome:
    now = clock.now()
    run = core.store.current()
    # a run under way: its expired approval is renewed on fresh checks
    if run is not None and renew.applies(run):
        return renew.renew(core, user, run, cmd)
    refusal = _why_not_decidable(run, now, cmd) or why_incident_blocks(core, "no GO")
    if refusal:
        return Outcome.refused(refusal)
    assert run is not None  # _why_not_decidable refused a missing one
    sums = checksums(core.runbook)
    reason = why_cannot_approve(run.preflight, checksums=sums, now=now)
    if reason:
        return Outcome.refused(reason)
    assert run.preflight is not None  # why_cannot_approve refused a missing one
    if cmd.at is not None:
        refusal = _why_not_at(core, cmd.at, now)
        if refusal:
            return Outcome.refused(refusal)
    approval = bind_approval(
        by=user,
        at=now,
        ttl_hours=core.settings.approval_ttl_hours,
        preflight=run.preflight,
        checksums=sums,
        mode="scheduled" if cmd.at else "now",
        scheduled_for=cmd.at,
        plan=plan(core.runbook),
    )
    what = "scheduled" if cmd.at else "go"
    decision = {
        "by": user,
        "at": now.isoformat(),
        "what": what,
        "scheduled_for": cmd.at.isoformat() if cmd.at else None,
        **(
            {"replaces_scheduled": (run.approval or {}).get("scheduled_for")}
            if run.status is Status.SCHEDULED and cmd.at is None
            else {}
        ),
    }
    try:
        core.store.transition(
            run.id,
            Status.SCHEDULED if cmd.at else Status.APPROVED,
            actor=user,
            action="approve",
            fields={"approval": approval, "decision": decision},
            evidence=decision,
        )
    except IllegalTransition as exc:
        return Outcome.refused(exc.reason)
    note = None  # what the TPM must know about the start: a schedule not stored, a schedule replaced
    if cmd.at is not None:
        note = core.schedule.scheduled(run.id, cmd.at)
    elif run.status is Status.SCHEDULED:  # GO now replaces the scheduled GO: its start job goes
        removed = core.schedule.cancelled(run.id)
        note = (
            f"The scheduled start ({_scheduled_for(run)} UTC) was cancelled: GO now replaces it."
            if removed
            else f"GO now replaces the GO scheduled for {_scheduled_for(run)} UTC."
        )
    post = templates.decision(core.runbook, run.id, user, what, now, scheduled_for=cmd.at)
    post.lines.append(
        f"{core.roster.mention(COORDINATOR)}: "
        + (
            f"it starts by itself at {cmd.at:%H:%M} UTC"
            if cmd.at
            else "`/migrate run` when ready (or phase owners: `run phase <n>`)"
        )
    )
    if cmd.at is None and run.status is Status.SCHEDULED and note:  # (set above in that case)
        post.lines.append(note)
    when = f" for {cmd.at:%Y-%m-%d %H:%M} UTC" if cmd.at else ""
    return Outcome(
        OK,
        reply=[
            f"GO{' scheduled' + when if cmd.at else ''} recorded. Approval valid until "
            f"{approval['expires_at'][:16].replace('T', ' ')} UTC and bound to the files' checksums.",
            *([note] if note else []),
        ],
        posts=[post],
        run_id=run.id,
    )


def defer(core: Core, user: str, cmd: Command) -> Outcome:
    now = clock.now()
    run = core.store.current()
    if run is None or run.status not in (*DECIDABLE, Status.APPROVED):
        state = run.status.value if run else "no run"
        return Outcome.refused(
            f"nothing to defer ({state}): NO-GO applies to a pre-flight awaiting decision, "
            "an approval or a schedule"
        )
    decision = {"by": user, "at": now.isoformat(), "what": "no-go", "reason": cmd.text}
    try:
        core.store.transition(
            run.id,
            Status.DEFERRED,
            actor=user,
            action="defer",
            outcome="no-go",
            fields={"decision": decision},
            evidence=decision,
        )
    except IllegalTransition as exc:
        return Outcome.refused(exc.reason)
    removed = core.schedule.cancelled(run.id)
    return Outcome(
        OK,
        reply=["NO-GO recorded." + (" The scheduled start was cancelled." if removed else "")],
        posts=[templates.decision(core.runbook, run.id, user, "no-go", now, reason=cmd.text)],
        run_id=run.id,
    )


def _why_not_decidable(run: Run | None, now: datetime, cmd: Command) -> str | None:
    if run is None:
        return "nothing to approve: run `/migrate preflight` first"
    if run.status in RESCHEDULABLE and cmd.at is not None:
        return None
    if run.status in RESCHEDULABLE:
        return "already approved (GO now): nothing to add; `approve at <time>` turns it into GO scheduled"
    if run.status not in DECIDABLE:
        return f"nothing to approve: the run is {run.status.value}; approval needs a GO pre-flight (`/migrate preflight`)"
    return None


def _scheduled_for(run: Run) -> str:
    return str((run.approval or {}).get("scheduled_for") or "?")[:16].replace("T", " ")


def _why_not_at(core: Core, at: datetime, now: datetime) -> str | None:
    if at <= now:
        return f"{at:%Y-%m-%d %H:%M} UTC is in the past: give a future time, e.g. `approve at 02:00`"
    line = window_check(core.settings.window, core.settings.min_window_hours, at)
    if line.status == "fail":
        return f"{at:%H:%M} UTC is outside the execution window: {line.observed} (required: {line.required})"
    return None
