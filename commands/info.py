"""`help` and `status`: what can be done now, and the state of the run."""

from __future__ import annotations

from datetime import datetime

from commands import card, renew
from commands.parse import USAGE, Command
from commands.policy import allowed_roles
from core import clock
from core.redact import redact_url
from runbook.model import Runbook
from runbook.validate import checksums
from state.approval import REVOKED, why_approval_invalid
from state.audit import signoff
from state.machine import Status, left_difference
from state.record import Run
from workflows import templates
from workflows.core import Core
from workflows.reporting import OK, Outcome

NEXT_STEP = {
    None: "`preflight` (coordinator or TPM)",
    Status.PREFLIGHT_RUNNING: "wait for the pre-flight to finish",
    Status.GO: "the TPM decides: `approve`, `approve at <time>` or `defer <reason>`",
    Status.NO_GO: "fix the NO-GO conditions, then `preflight` again",
    Status.DEFERRED: "`preflight` again when the condition is met",
    Status.APPROVED: "`run` (coordinator) or `run phase 1` (its owner)",
    Status.SCHEDULED: "wait for the scheduled start, or the TPM moves/cancels it",
    Status.RUNNING: "wait, or `abort`",
    Status.PHASE_DONE: "the next phase's owner: `run phase <n>`, or the coordinator: `run`",
    Status.VERIFYING: "wait for verification",
    Status.SUCCEEDED: "monitor; `report` for the completed report",
    Status.FAILED: "see the failure template: retry the phase, `rollback phase <n>` / `rollback all`, or `rollback restore`",
    Status.ROLLING_BACK: "wait for the rollback",
    Status.ROLLED_BACK: "`rollback phase <n>` (or `rollback all`) for earlier phases, or `run phase <n>` again",
    Status.ABORTED: "decide: `run phase <n>` again or `rollback phase <n>`",
    Status.INTERRUPTED: "the bot stopped mid-run: check `status`, then `run phase <n>` again or `rollback phase <n>`",
    Status.RESTORE_REQUESTED: "the TPM confirms: `rollback restore confirm`",
    Status.RESTORING: "wait for the restore",
    Status.RESTORED: "the database is the backup again; drop the replaced copy when sure; `preflight` to start over",
}


def next_step(core: Core, run: Run | None) -> str:
    """What to do next in this state; for a run under way, with its approval in mind."""
    if run is None:
        return NEXT_STEP[None]
    if renew.applies(run) and run.status is not Status.SUCCEEDED:
        approval = run.approval or {}  # (renew.applies: it has one)
        expires = datetime.fromisoformat(approval["expires_at"])
        changed = renew.files_changed(run, core)
        if changed:
            return f"{changed}: `rollback phase <n>` newest first, then a new `preflight` (an approval is not renewed over changed files)"
        if clock.now() >= expires and not approval.get(REVOKED):
            return (
                f"the approval expired at {clock.hhmm(expires)}: the TPM renews it with `approve` "
                f"(checked again first); then {NEXT_STEP[run.status]}"
            )
    if run.phase is not None and left_difference(run, run.phase):
        return (
            f"phase {run.phase}'s rollback ran but left a difference (see the failure post): the TPM decides — "
            "`rollback accept` (recorded in the audit) or `rollback restore`"
        )
    return NEXT_STEP.get(run.status, "")


def help_(core: Core, user: str, cmd: Command) -> Outcome:
    run = core.store.current()
    lines = [f"/migrate — {core.runbook.title}: {core.runbook.summary}", ""]
    for verb, usage in USAGE.items():
        roles = allowed_roles(Command(verb), core.runbook)
        who = "anyone" if roles is None else ("any roster member" if roles == () else ", ".join(roles))
        if verb in ("run", "rollback"):
            who += "; `phase <n>`: that phase's owner too"
        if verb == "rollback":
            who += "; `restore confirm`, `accept`: tpm"
        lines.append(f"• /migrate {usage}  — {who}")
    lines += [
        "",
        f"Your roles: {', '.join(core.roster.roles_of(user)) or 'none (not on the roster)'}",
        f"Now: {status_word(run) if run else 'no run'} → next: {next_step(core, run)}",
    ]
    return Outcome(OK, reply=lines)


def status(core: Core, user: str, cmd: Command) -> Outcome:
    return Outcome(OK, reply=status_lines(core))


def status_lines(core: Core) -> list[str]:
    run = core.store.current()
    rb = core.runbook
    lines = [f"{rb.title} on {redact_url(core.settings.database_url)}"]
    incident = core.store.incident()
    if incident:
        lines.append(
            f"🚨 Incident declared by <@{incident.get('by')}> at {incident.get('at', '')[:16]}: {incident.get('text')}"
        )
    holder = core.lock.holder()
    if holder:
        lines.append(f"Lock held by {holder.get('owner')} since {holder.get('since', '?')}")
    if run is None:
        return lines + ["No run yet. Next: " + NEXT_STEP[None]]
    lines += [
        f"Run {run.id}: {status_word(run)} (started by <@{run.created_by}> at {run.created_at:%Y-%m-%d %H:%M} UTC)",
        f"Next: {next_step(core, run)}",
    ]
    if run.meta.get("rebuilt"):
        lines.append(
            "⚠ Rebuilt from the PostgreSQL history after Redis lost the state: a fresh pre-flight is required"
        )
    lines += (
        _preflight_lines(run)
        + _approval_lines(core, run)
        + _phase_lines(rb, run)
        + core.schedule.status_lines()
    )
    return lines + _signoff_lines(core, run)


# How a status reads in `status`, `help` and App Home where its bare value misleads ("go" is
# not an approval: the pre-flight passed and the TPM has not decided yet).
STATUS_WORDS = {
    Status.GO: "pre-flight passed, awaiting the TPM's GO / NO-GO",
    Status.NO_GO: "pre-flight NO-GO",
}
# Statuses in which the pre-flight and the approval still govern what may run next.
BEFORE_RUN = {Status.GO, Status.APPROVED, Status.SCHEDULED}
# Statuses after which the approval is spent or withdrawn: no "valid until".
FINISHED = {Status.SUCCEEDED, Status.RESTORED, Status.DEFERRED, Status.NO_GO}


def status_word(run: Run) -> str:
    return STATUS_WORDS.get(run.status, run.status.value)


def _preflight_lines(run: Run) -> list[str]:
    pf = run.preflight or {}
    if not pf:
        return ["Pre-flight: not finished"]
    valid = f" (valid until {str(pf.get('expires_at', ''))[:16]})" if run.status in BEFORE_RUN else ""
    lines = [f"Pre-flight: {pf.get('outcome')} at {str(pf.get('finished_at', ''))[:16]}{valid}"]
    for reason in pf.get("nogo_reasons", []):
        lines.append(f"  {templates.FAIL_MARK} {reason}")
    backup = pf.get("backup") or {}
    if backup.get("skipped"):
        lines.append(f"Backup: none, skipped on purpose: {backup['skipped']}")
    elif backup:
        lines.append(
            f"Backup: {backup.get('path')} ({int(backup.get('size', 0)):,} bytes, sha256 {str(backup.get('sha256'))[:12]}…, "
            f"{'verified by restore' if backup.get('verified') else 'NOT verified'})"
        )
    return lines


def _approval_lines(core: Core, run: Run) -> list[str]:
    approval = run.approval
    decision = run.decision or {}
    lines = []
    if decision.get("what") == "no-go":
        lines.append(f"NO-GO by <@{decision.get('by')}>: {decision.get('reason')}")
    if approval and run.status is Status.DEFERRED:
        return lines  # withdrawn by the NO-GO: neither the approval nor its schedule stands
    if approval and run.status in FINISHED:
        return lines + [
            f"Approval: GO by <@{approval.get('by')}> at {str(approval.get('at'))[:16]} (used by this run)"
        ]
    if approval:
        invalid = why_approval_invalid(approval, checksums=checksums(core.runbook), now=clock.now())
        when = (
            f", scheduled for {str(approval.get('scheduled_for'))[:16]}"
            if approval.get("scheduled_for")
            else ""
        )
        lines.append(
            f"Approval: GO by <@{approval.get('by')}> at {str(approval.get('at'))[:16]}{when}; "
            + (
                f"{templates.FAIL_MARK} {invalid}"
                if invalid
                else f"valid until {str(approval.get('expires_at'))[:16]}"
            )
        )
    return lines


def _phase_lines(rb: Runbook, run: Run) -> list[str]:
    lines = []
    for phase in rb.phases:
        state = run.phases.get(phase.number)
        status = card.phase_status(run, phase.number)
        took = (
            f", {templates.versus_estimate(state.duration, phase.estimate)}"
            if state and state.duration is not None
            else ""
        )
        who = f", by <@{state.actor}>" if state and state.actor else ""
        err = f" — {state.error}" if state and state.error else ""
        lines.append(f"Phase {phase.number} {phase.name}: {status}{took}{who}{err}")
    return lines


def _signoff_lines(core: Core, run: Run) -> list[str]:
    try:
        s = signoff(core.events.events(run.id))
    except Exception:  # the PostgreSQL history may be unreachable; status still answers
        return ["Sign-off: history unavailable (PostgreSQL event log unreachable)"]
    return [
        f"Sign-off: reviewed by {s.get('reviewed_by') or '—'}; approved by {s.get('approved_by') or '—'}; "
        f"scheduled execution {s.get('scheduled_execution') or '—'}"
    ]
