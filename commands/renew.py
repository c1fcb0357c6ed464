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
from pathlib import Path

from commands import templates
from commands.core import Core
from commands.incident import why_incident_blocks
from commands.parse import Command
from commands.result import OK, Outcome
from core import clock
from core.roster import COORDINATOR
from engine import catalog_snapshot, schema
from preflight import fast_checks
from runbook.validate import checksums, plan, plan_on_disk
from state.approval import REVOKED, bind_approval, why_files_changed, why_plan_changed, why_plan_not_approved
from state.machine import IllegalTransition, PhaseStatus, Status

# Resting statuses of a run that has started: its approval can be renewed there.
UNDER_WAY = (
    Status.PHASE_DONE,
    Status.FAILED,
    Status.ABORTED,
    Status.INTERRUPTED,
    Status.ROLLED_BACK,
    Status.SUCCEEDED,
)  # a succeeded run may be verified again
NOT_RECHECKED = ("migrations", "approval")  # met only before a run starts / what is being decided


def applies(run) -> bool:
    return run is not None and run.status in UNDER_WAY and bool(run.approval)


def files_changed(run, core: Core) -> str | None:
    """Which runbook file changed since the approval (renewal never covers changed files)."""
    approval = run.approval or {}
    changed = why_files_changed(approval.get("checksums") or {}, checksums(core.runbook), since="approval")
    if changed and approval.get("plan"):
        entries = why_plan_changed(approval["plan"], plan_on_disk(core.runbook))
        changed += f" — in the plan: {entries}" if entries else ""
    return changed or why_plan_not_approved(core.runbook, approval)


def renew(core: Core, user: str, run, cmd: Command) -> Outcome:
    now = clock.now()
    refusal = _why_not_renewable(core, run, cmd, now) or why_incident_blocks(core, "no GO")
    if refusal:
        return Outcome.refused(refusal)
    from commands.execution import PhaseRunner  # execution imports the command layer
    from commands.restore import backup_problem

    backup = dict((run.preflight or {}).get("backup") or {})
    problem = backup_problem(backup, hash_file=False)
    if problem:
        return Outcome.refused(
            f"cannot renew the approval: the restore point is gone ({problem}); "
            "`rollback phase <n>` newest first, then a new pre-flight"
        )
    report = fast_checks(core.settings, core.runbook, incident=core.store.incident(), at=now)
    checked = [c for c in report.checks if c.key not in NOT_RECHECKED]
    failed = [c for c in checked if c.status == "fail"]
    if failed:
        return Outcome.refused(
            "cannot renew the approval, checked now: " + "; ".join(c.text() for c in failed)
        )
    state, snapshot = expected_state(run, PhaseRunner(core, run.id, "bot", None).known_states())
    evidence = [f"{templates.OK_MARK} Database: matches {state} (schema compared)"]
    # One dump, compared once: equal, or the differences the partial-phase evidence shows.
    stored = Path(snapshot).read_text(encoding="utf-8")
    differences = schema.difference(
        stored, schema.current_like(stored, core.settings.database_url), limit=100_000
    )
    if differences:
        partial = _partially_applied(core, run)
        if partial is None:
            return Outcome.refused(
                f"cannot renew the approval: the database does not match {state}, where this run "
                "left it (schema compared with that snapshot) — someone changed it since; "
                "investigate before going on"
            )
        # No snapshot exists between the steps of a phase: show the TPM exactly how the schema
        # differs from the one before the phase, for them to recognise the committed steps in it.
        objects = _objects_changed(differences)
        evidence = [
            f"⚠ Database: {partial}, per the ledger; its schema differs from {state} by "
            f"{len(objects)} object(s){' (first 12)' if len(objects) > 12 else ''}:",
            *[f"    {line}" for line in objects[:12]],
        ]
        state = partial
    old = run.approval
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


def expected_state(run, known: dict[str, Path]) -> tuple[str, Path]:
    """(label, snapshot) of the state the run's own record says the database is in: after the
    highest migration phase that succeeded (and was not rolled back), else before the first."""
    labels = list(known)
    done = [
        n
        for n, phase in run.phases.items()
        if phase.status is PhaseStatus.SUCCEEDED and f"the schema after phase {n}" in known
    ]
    label = f"the schema after phase {max(done)}" if done else labels[0]
    return label, known[label]


def _partially_applied(core: Core, run) -> str | None:
    """A phase that stopped part-way (a step failed, an abort, a crash between steps) leaves the
    database after some of its steps, which no snapshot shows: the ledger (written in each
    step's own transaction) says which. None unless such a phase has steps committed by this run."""
    from engine import ledger

    stopped = [
        n for n, phase in run.phases.items() if phase.status is PhaseStatus.FAILED
    ]  # failed, aborted, cut
    if not stopped:
        return None
    newest = max(stopped)
    steps = [
        r["step"]
        for r in ledger.applied_files(core.settings.database_url, core.runbook.id)
        if r["run_id"] == run.id and r["phase"] == newest
    ]
    if not steps:
        return None
    return f"phase {newest} partially applied (step {', '.join(steps)} committed by this run)"


def _objects_changed(diff: list[str]) -> list[str]:
    """The objects a schema diff adds (+) or removes (-), one line each: `+CREATE TABLE x`."""
    heads = []
    for line in diff:
        if line[:1] in "+-" and line[1:].startswith(("CREATE ", "ALTER TABLE ")):
            heads.append(line.split("(")[0].split(" AS ")[0].rstrip()[:100])
        elif line[:1] in "+-" and line[1:].startswith(catalog_snapshot.OBJECT_LINES) and " | " not in line:
            heads.append(line[:100])  # a catalog snapshot's line (engine/catalog_snapshot.py)
    return heads


def _why_not_renewable(core: Core, run, cmd: Command, now: datetime) -> str | None:
    approval = run.approval
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
