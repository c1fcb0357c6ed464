"""`run`, `run phase <n>` and `verify`: execute the approved runbook, phase by phase."""

from __future__ import annotations

from commands.abort import why_orphans_block
from commands.core import Core
from commands.incident import why_incident_blocks
from commands.parse import Command
from commands.result import Outcome
from commands.work import start_locked
from core import clock
from core.roster import TPM
from runbook.validate import checksums, plan_on_disk
from state.approval import why_approval_invalid, why_plan_not_approved
from state.machine import PhaseStatus, Status, why_phase_cannot_start


def run(core: Core, user: str, cmd: Command, *, scheduled: bool = False) -> Outcome:
    """`run` (all remaining phases, then verification) or `run phase n` (one phase)."""
    current = core.store.current()
    refusal = _why_not_runnable(core, current, scheduled)
    if refusal:
        return Outcome.refused(refusal)
    if cmd.phase is not None:
        phase = core.runbook.phase(cmd.phase)
        if phase is None:
            numbers = ", ".join(str(p.number) for p in core.runbook.phases)
            return Outcome.refused(
                f"runbook {core.runbook.id} has no phase {cmd.phase}: phases are {numbers}"
            )
        if phase.is_verification:
            return verify(core, user, cmd)
        numbers, also_verify = [cmd.phase], False
    else:
        numbers = [
            p.number
            for p in core.runbook.migration_phases
            if _phase_status(current, p.number) != PhaseStatus.SUCCEEDED
        ]
        also_verify = True
    if numbers:
        reason = why_phase_cannot_start(current, numbers[0], [p.number for p in core.runbook.phases])
        if reason:
            return Outcome.refused(reason)
    return start_locked(
        core,
        user,
        current,
        lambda runner: runner.run_all(numbers, also_verify),
        f"Running phase{'s' if len(numbers) != 1 else ''} {', '.join(map(str, numbers)) or '(none left)'}"
        + (" then verification" if also_verify else ""),
        Status.RUNNING if numbers else Status.VERIFYING,
        numbers,
    )


def verify(core: Core, user: str, cmd: Command) -> Outcome:
    """The verification suites (phase 3): every migration phase must have succeeded."""
    current = core.store.current()
    refusal = _why_not_runnable(core, current, False)
    if refusal:
        return Outcome.refused(refusal)
    pending = [
        p.number
        for p in core.runbook.migration_phases
        if _phase_status(current, p.number) != PhaseStatus.SUCCEEDED
    ]
    if pending:
        return Outcome.refused(f"verification needs every phase applied: run phase {pending[0]} first")
    what = (
        "Running verification"
        if core.runbook.verification_phase
        else "Running the final checks (the runbook declares no verification phase)"
    )
    return start_locked(
        core, user, current, lambda runner: runner.run_all([], True), what, Status.VERIFYING, []
    )


def _why_not_runnable(core: Core, current, scheduled: bool) -> str | None:
    if current is None:
        return "nothing approved to run: `/migrate preflight` first, then the TPM approves"
    blocked = why_incident_blocks(core, "nothing runs")
    if blocked:
        return blocked
    orphans = why_orphans_block(core)
    if orphans:
        return orphans
    if current.meta.get("rebuilt"):
        return "the run state was rebuilt from history after Redis lost it: run `/migrate preflight` again"
    reason = why_approval_invalid(
        current.approval, checksums=checksums(core.runbook), now=clock.now(), plan=plan_on_disk(core.runbook)
    ) or why_plan_not_approved(core.runbook, current.approval)
    if reason:
        return f"{reason}: ask the TPM ({core.roster.mention(TPM)}) to approve"
    approval = current.approval or {}
    if approval.get("mode") == "scheduled" and current.status == Status.SCHEDULED and not scheduled:
        return (
            f"GO is scheduled for {str(approval.get('scheduled_for'))[:16].replace('T', ' ')} UTC and starts by itself: "
            "ask the TPM for GO now to run earlier"
        )
    return None


def _phase_status(run, number: int):
    state = run.phases.get(number) if run else None
    return state.status if state else PhaseStatus.PENDING
