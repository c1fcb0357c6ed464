"""`approve` on a run already under way whose approval expired: the TPM renews it.

Phases are often run hours apart by their owners; the approval expires (MIGRATE_APPROVAL_TTL_HOURS)
while phase 1 is applied and phase 2 not yet run. A new pre-flight is refused then (it would
lose track of the applied phase, and its backup would hold a half-migrated database), so
without this the only way on would be rolling back. Renewal is a decision on facts checked
now, not a rubber stamp:

- only an approval that *expired*: one revoked, or given for files that changed since, is not
  renewable (the way out is rolling back, then a new pre-flight);
- the restore point stays the pre-flight backup, which must still be there;
- the quick pre-flight checks run again (database, deployment, private network, files,
  inputs, incident, window), except the "migrations before 006" line, which a run under way
  no longer meets; instead the database's schema must equal the snapshot of the state the
  run's record says it left (after its last succeeded phase), so nobody changed it since — or,
  for a phase that stopped part-way (no snapshot exists between steps), the ledger must show
  steps of it committed by this run, and the renewal lists the objects the schema gained or
  lost since the snapshot before that phase, for the TPM to recognise those steps in them;
- the run must not change while this is checked.

The run keeps its status (phase done, failed, …): only the approval is replaced, so rollback
and restore stay available, and a NO-GO cannot close a run with phases applied.
"""

from __future__ import annotations

from datetime import datetime

from commands.parse import Command
from core import clock
from core.roster import COORDINATOR
from runbook.validate import checksums, plan, plan_on_disk
from state.approval import REVOKED, bind_approval, why_files_changed, why_plan_changed, why_plan_not_approved
from state.machine import IllegalTransition, Status
from state.record import Run
from workflows import templates
from workflows.checks import why_incident_blocks
from workflows.core import Core
from workflows.renew import recheck
from workflows.reporting import OK, Outcome

# Resting statuses of a run that has started: its approval can be renewed there.
UNDER_WAY = (
    Status.PHASE_DONE,
    Status.FAILED,
    Status.ABORTED,
    Status.INTERRUPTED,
    Status.ROLLED_BACK,
    Status.SUCCEEDED,
)  # a succeeded run may be verified again


def applies(run: Run | None) -> bool:
    return run is not None and run.status in UNDER_WAY and bool(run.approval)


def files_changed(run: Run, core: Core) -> str | None:
    """Which runbook file changed since the approval (renewal never covers changed files)."""
    approval = run.approval or {}
    changed = why_files_changed(approval.get("checksums") or {}, checksums(core.runbook), since="approval")
    if changed and approval.get("plan"):
        entries = why_plan_changed(approval["plan"], plan_on_disk(core.runbook))
        changed += f" — in the plan: {entries}" if entries else ""
    return changed or why_plan_not_approved(core.runbook, approval)


def renew(core: Core, user: str, run: Run, cmd: Command) -> Outcome:
    now = clock.now()
    refusal = _why_not_renewable(core, run, cmd, now) or why_incident_blocks(core, "no GO")
    if refusal:
        return Outcome.refused(refusal)
    found = recheck(core, run, now)
    if isinstance(found, str):
        return Outcome.refused(found)
    backup, checked, state, evidence = found.backup, found.checked, found.state, found.evidence
    old = run.approval or {}  # (renewal applies only to a run with an approval)
    assert run.preflight is not None  # an approved run has its pre-flight
    approval = {
        **bind_approval(
            by=user,
            at=now,
            ttl_hours=core.settings.approval_ttl_hours,
            preflight=run.preflight,
            checksums=checksums(core.runbook),
            plan=plan(core.runbook),
        ),
        "renewed_from": old.get("expires_at"),
    }
    decision = {"by": user, "at": now.isoformat(), "what": "go", "renewed": True}
    try:  # the run stays where it is (phase done, failed…): only its approval is new
        core.store.update_record(
            run.id,
            fields={"approval": approval, "decision": decision},
            actor=user,
            action="approval renewed",
            expect=(run.status,),
            unchanged_since=run.updated_at,
            evidence={**decision, "database": state, "checks": len(checked)},
        )
    except IllegalTransition as exc:
        return Outcome.refused(exc.reason)
    post = templates.decision(core.runbook, run.id, user, "go", now)
    post.title += " (approval renewed mid-run)"
    post.lines += [
        f"the previous approval expired at {clock.hhmm(datetime.fromisoformat(old['expires_at']))}; "
        f"renewed on checks run now ({len(checked)} passed):",
        *[f"  {c.text()}" for c in checked],
        *[f"  {line}" for line in evidence],
        f"the restore point stays the pre-flight backup {backup.get('path')}",
        f"{core.roster.mention(COORDINATOR)}: "
        + (
            "`verify` when wanted"
            if run.status is Status.SUCCEEDED
            else "the next phase's owner runs it (`run phase <n>`)"
        ),
    ]
    return Outcome(
        OK,
        reply=[
            f"Approval renewed until {approval['expires_at'][:16].replace('T', ' ')} UTC, bound to "
            "the same files and backup."
        ],
        posts=[post],
        run_id=run.id,
    )


def _why_not_renewable(core: Core, run: Run, cmd: Command, now: datetime) -> str | None:
    approval = run.approval or {}  # (renewal applies only to a run with an approval)
    way_out = "`rollback phase <n>` newest first, then a new pre-flight"
    if cmd.at is not None:
        return f"run {run.id} is under way ({run.status.value}): its approval is renewed for now only (`approve`)"
    if approval.get(REVOKED):
        return f"the approval was revoked ({approval[REVOKED]}): it cannot be renewed; {way_out}"
    changed = files_changed(run, core)
    if changed:
        return f"{changed}: an approval is not renewed over changed files; {way_out}"
    expires = datetime.fromisoformat(approval["expires_at"])
    if now < expires:
        return f"the approval is valid until {clock.hhmm(expires)}: nothing to renew"
    return None
