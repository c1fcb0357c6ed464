"""Starting the run of an approved runbook: which phases, whether they may start, the lock.

`start_phases` is what `run`, `run phase <n>` and `verify` (commands/run.py) and the scheduled
start (scheduling/go.py) call: the approval, the incident, leftovers of a dead process and
the phase order are checked now, then `start_locked` takes the run lock and returns the
Outcome whose work runs the PhaseRunner (workflows/phases.py).
"""

from __future__ import annotations

from core import clock
from core.roster import TPM
from runbook.validate import checksums, plan_on_disk
from state.approval import why_approval_invalid, why_plan_not_approved
from state.machine import PhaseStatus, Status, why_phase_cannot_start
from workflows.checks import why_incident_blocks, why_orphans_block
from workflows.core import Core
from workflows.locked import start_locked
from workflows.reporting import Outcome


def start_phases(
    core: Core, user: str, phase: int | None = None, *, scheduled: bool = False, in_fleet: bool = False
) -> Outcome:
    """All remaining phases, then verification (`phase` None), or that one phase. A run approved
    by a fleet run's approval starts only from that fleet's job (`in_fleet`): in its wave, after
    the canary, never alone from a process with that database's DATABASE_URL."""
    current = core.store.current()
    refusal = _why_not_runnable(core, current, scheduled) or _why_fleet_owned(current, in_fleet)
    if refusal:
        return Outcome.refused(refusal)
    assert current is not None  # _why_not_runnable refused a missing run
    if phase is not None:
        found = core.runbook.phase(phase)
        if found is None:
            known = ", ".join(str(p.number) for p in core.runbook.phases)
            return Outcome.refused(f"runbook {core.runbook.id} has no phase {phase}: phases are {known}")
        if found.is_verification:
            return start_verification(core, user)
        numbers, also_verify = [phase], False
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


def start_verification(core: Core, user: str) -> Outcome:
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


def _why_fleet_owned(current, in_fleet: bool) -> str | None:
    fleet = (current.approval or {}).get("fleet") if current is not None else None
    if not fleet or in_fleet:
        return None
    return (
        f"this database's approval is fleet run {fleet}'s: it runs in its wave, canary first, from "
        "`run` with MIGRATE_TARGETS set; to migrate it alone, preflight it alone and have the TPM approve"
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
