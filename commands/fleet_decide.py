"""`approve` / `approve at` / `defer` with MIGRATE_TARGETS: ONE decision of the TPM covers
every target the pre-flight found GO; a target not GO is not covered and never runs.

The fleet's approval binds the set of GO targets and, for each, its own pre-flight (its run id,
when it ended, its backup or why none was taken), with the runbook's checksums; each covered
target's own run gets its single-database approval too (state.approval.bind_approval on its own
pre-flight), so the per-target run job finds what today's `run` checks. A GO scheduled starts
the canary at that time (the fleet's start job, workflows/fleet), then the waves follow.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from commands import fleet_templates
from commands.decide import _why_not_at
from commands.fleetcore import known_core, let_go, store, target_core, the_fleet
from commands.parse import Command
from commands.result import OK, Outcome, Post
from core import clock
from core.roster import COORDINATOR
from runbook.validate import checksums, plan
from state.approval import bind_approval, why_cannot_approve, why_files_changed, why_preflight_stale
from state.fleet import FleetRun, FleetStatus, TargetState, TargetStatus
from state.machine import IllegalTransition, Status
from workflows.checks import why_incident_blocks
from workflows.core import Core

DECIDABLE = (FleetStatus.GO, FleetStatus.SCHEDULED)


def fleet_approve(core: Core, user: str, cmd: Command) -> Outcome:
    now = clock.now()
    fstore = store(core)
    run = fstore.current()
    refusal = _why_not_decidable(run, cmd) or why_incident_blocks(core, "no GO")
    if refusal:
        return Outcome.refused(refusal)
    assert run is not None  # _why_not_decidable refused a missing one
    sums = checksums(core.runbook)
    stale = why_preflight_stale(run.preflight, now=now)
    changed = why_files_changed((run.preflight or {}).get("checksums") or {}, sums, since="preflight")
    if stale or changed:
        return Outcome.refused(f"{stale or changed}: run preflight again")
    if cmd.at is not None:
        refusal = _why_not_at(core, cmd.at, now)
        if refusal:
            return Outcome.refused(refusal)
    covered = [t for t in run.targets.values() if t.status is TargetStatus.GO]
    refusal = _why_no_canary(run, covered)
    if refusal:
        return Outcome.refused(refusal)
    mode = "scheduled" if cmd.at else "now"
    approvals, bound = {}, {}
    for t in covered:  # every covered target's own pre-flight must still back a GO: all or none
        target = the_fleet(core).get(t.name)
        if target is None:
            return Outcome.refused(_gone(t.name, "pre-flight"))
        tcore = target_core(core, target)
        own = tcore.store.current()
        if own is None or own.id != t.run_id:
            return Outcome.refused(
                f"target {t.name}: its pre-flight run {t.run_id} is no longer its current run: run preflight again"
            )
        reason = why_cannot_approve(own.preflight, checksums=sums, now=now)
        if reason:
            return Outcome.refused(f"target {t.name}: {reason}")
        assert own.preflight is not None  # why_cannot_approve refused a missing one
        approvals[t.name] = (
            tcore,
            own,
            bind_approval(
                by=user,
                at=now,
                ttl_hours=core.settings.approval_ttl_hours,
                preflight=own.preflight,
                checksums=sums,
                mode=mode,
                scheduled_for=cmd.at,
                plan=plan(core.runbook),
            ),
        )
        backup = (own.preflight or {}).get("backup") or {}
        bound[t.name] = {
            "run_id": own.id,
            "wave": t.wave,
            "preflight_at": (own.preflight or {}).get("finished_at"),
            "backup_sha256": backup.get("sha256"),
            "backup_skipped": backup.get("skipped"),
        }
    expires = (cmd.at or now) + timedelta(hours=core.settings.approval_ttl_hours)
    approval: dict[str, Any] = {
        "by": user,
        "at": now.isoformat(),
        "expires_at": expires.isoformat(),
        "mode": mode,
        "scheduled_for": cmd.at.isoformat() if cmd.at else None,
        "checksums": sums,
        "plan": plan(core.runbook),
        "targets": bound,
        "not_covered": {t.name: t.reason for t in run.targets.values() if t.status is not TargetStatus.GO},
    }
    decision = {
        "by": user,
        "at": now.isoformat(),
        "what": "scheduled" if cmd.at else "go",
        "scheduled_for": approval["scheduled_for"],
    }
    try:
        fstore.transition(
            run.id,
            FleetStatus.SCHEDULED if cmd.at else FleetStatus.APPROVED,
            actor=user,
            action="approve",
            fields={"approval": approval, "decision": decision},
            evidence={**decision, "targets": sorted(bound)},
        )
    except IllegalTransition as exc:
        return Outcome.refused(exc.reason)
    for tcore, own, own_approval in approvals.values():
        tcore.store.transition(
            own.id,
            Status.SCHEDULED if cmd.at else Status.APPROVED,
            actor=user,
            action="approve",
            fields={"approval": {**own_approval, "fleet": run.id}, "decision": decision},
            evidence={**decision, "fleet": run.id},
        )
        let_go(tcore)
    names = [t.name for t in covered]
    when = f" for {cmd.at:%Y-%m-%d %H:%M} UTC" if cmd.at else ""
    post = Post(
        "decision",
        f"{'GO scheduled' + when if cmd.at else 'GO'} by <@{user}> for {len(names)} databases",
        [
            f"Covers: {fleet_templates.names(names)}",
            *(
                [f"Not covered (will not run): {fleet_templates.names(sorted(approval['not_covered']))}"]
                if approval["not_covered"]
                else []
            ),
            f"{core.roster.mention(COORDINATOR)}: "
            + (
                f"the canary starts by itself at {cmd.at:%H:%M} UTC, then the waves"
                if cmd.at
                else "`/migrate run` when ready (canary first)"
            ),
        ],
        run_id=run.id,
    )
    return Outcome(
        OK,
        reply=[
            f"GO{' scheduled' + when if cmd.at else ''} recorded for {len(names)} databases. Approval valid until "
            f"{approval['expires_at'][:16].replace('T', ' ')} UTC, bound to the files' checksums and to each "
            "database's own pre-flight."
        ],
        posts=[post],
        run_id=run.id,
    )


def fleet_defer(core: Core, user: str, cmd: Command) -> Outcome:
    now = clock.now()
    fstore = store(core)
    run = fstore.current()
    if run is None or run.status not in (*DECIDABLE, FleetStatus.APPROVED, FleetStatus.NO_GO):
        state = run.status if run else "no fleet run"
        return Outcome.refused(
            f"nothing to defer ({state}): NO-GO applies to a pre-flight awaiting decision, an approval or a schedule"
        )
    decision = {"by": user, "at": now.isoformat(), "what": "no-go", "reason": cmd.text}
    try:
        fstore.transition(
            run.id,
            FleetStatus.DEFERRED,
            actor=user,
            action="defer",
            fields={"decision": decision},
            evidence=decision,
        )
    except IllegalTransition as exc:
        return Outcome.refused(exc.reason)
    for t in run.targets.values():  # the targets' own runs that were waiting for this decision
        if t.run_id is None:
            continue
        tcore = known_core(core, t.name)
        if tcore is None:  # its own run cannot start alone anyway (workflows.run: fleet-owned)
            continue
        own = tcore.store.get(t.run_id)
        if own is not None and own.status in (Status.GO, Status.APPROVED, Status.SCHEDULED):
            tcore.store.transition(
                own.id,
                Status.DEFERRED,
                actor=user,
                action="defer",
                outcome="no-go",
                fields={"decision": decision},
                evidence={**decision, "fleet": run.id},
            )
            let_go(tcore)
    return Outcome(
        OK,
        reply=["NO-GO recorded for the fleet run: nothing of it runs."],
        posts=[
            Post(
                "decision",
                f"NO-GO by <@{user}>: {cmd.text}",
                [f"Fleet run {run.id}: no database of it runs."],
                run_id=run.id,
                final=True,
            )
        ],
        run_id=run.id,
    )


def _gone(name: str, since: str) -> str:
    return (
        f"target {name} is no longer in MIGRATE_TARGETS (the targets file changed since the {since}): "
        "run preflight and approve again"
    )


def _why_no_canary(run: FleetRun, covered: list[TargetState]) -> str | None:
    """A fleet whose canary wave has no GO database would send the next wave first: refused."""
    first = min(run.waves())
    if any(t.wave == first for t in covered):
        return None
    names = ", ".join(t.name for t in run.in_wave(first))
    return (
        f"no database of the canary wave (wave {first}: {names}) is GO, so nothing would go first: "
        "make the canary GO and run preflight again"
    )


def _why_not_decidable(run: FleetRun | None, cmd: Command) -> str | None:
    if run is None:
        return "nothing to approve: run `/migrate preflight` first"
    if run.status is FleetStatus.APPROVED and cmd.at is not None:
        return None
    if run.status is FleetStatus.APPROVED:
        return "already approved (GO now): nothing to add; `approve at <time>` turns it into GO scheduled"
    if run.status not in DECIDABLE:
        return f"nothing to approve: the fleet run is {run.status}; approval needs a pre-flight with at least one database GO"
    return None


def why_fleet_approval_invalid(core: Core, run: FleetRun, now: datetime | None = None) -> str | None:
    """Why the fleet run's approval cannot start its targets now (None: it can): missing,
    expired, a runbook file changed since, or a covered target whose own run is no longer the
    one approved (a new pre-flight of it). For the fleet's `run` and its start job."""
    now = now or clock.now()
    approval = (run.approval or {}) if run else {}
    if not approval:
        return "not approved"
    if now >= datetime.fromisoformat(approval["expires_at"]):
        return f"approval expired at {clock.hhmm(datetime.fromisoformat(approval['expires_at']))}"
    changed = why_files_changed(approval.get("checksums") or {}, checksums(core.runbook), since="approval")
    if changed:
        return changed
    for name, bound in (approval.get("targets") or {}).items():
        target = the_fleet(core).get(name)
        if target is None:
            return _gone(name, "approval")
        own = target_core(core, target).store.current()
        if own is None or own.id != bound.get("run_id"):
            return f"target {name} was pre-flighted again after the approval: run preflight and approve again"
    return None
