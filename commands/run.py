"""`run`, `run phase <n>` and `verify`: execute the approved runbook, phase by phase."""
from __future__ import annotations

from commands.core import Core
from commands.execution import PhaseRunner
from commands.lockmsg import lock_refusal
from commands.parse import Command
from commands.result import OK, Outcome, Reporter
from commands.work import guarded
from core import clock
from core.roster import TPM
from runbook.validate import checksums
from state.approval import why_approval_invalid
from state.machine import IllegalTransition, PhaseStatus, Status, check_transition, why_phase_cannot_start


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
            return Outcome.refused(f"runbook {core.runbook.id} has no phase {cmd.phase}: phases are {numbers}")
        if phase.is_verification:
            return verify(core, user, cmd)
        numbers, also_verify = [cmd.phase], False
    else:
        numbers = [p.number for p in core.runbook.migration_phases
                   if _phase_status(current, p.number) != PhaseStatus.SUCCEEDED]
        also_verify = True
    if numbers:
        reason = why_phase_cannot_start(current, numbers[0], [p.number for p in core.runbook.phases])
        if reason:
            return Outcome.refused(reason)
    return _start(core, user, current, lambda runner: runner.run_all(numbers, also_verify),
                  f"Running phase{'s' if len(numbers) != 1 else ''} {', '.join(map(str, numbers)) or '(none left)'}"
                  + (" then verification" if also_verify else ""), Status.RUNNING if numbers else Status.VERIFYING, numbers)


def verify(core: Core, user: str, cmd: Command) -> Outcome:
    """The verification suites (phase 3): every migration phase must have succeeded."""
    current = core.store.current()
    refusal = _why_not_runnable(core, current, False)
    if refusal:
        return Outcome.refused(refusal)
    pending = [p.number for p in core.runbook.migration_phases if _phase_status(current, p.number) != PhaseStatus.SUCCEEDED]
    if pending:
        return Outcome.refused(f"verification needs every phase applied: run phase {pending[0]} first")
    return _start(core, user, current, lambda runner: runner.run_all([], True), "Running verification", Status.VERIFYING, [])


def _start(core: Core, user: str, current, body, what: str, first_status: Status, numbers: list[int]) -> Outcome:
    try:
        check_transition(current, first_status, phase=numbers[0] if numbers else None)
    except IllegalTransition as exc:
        return Outcome.refused(exc.reason)
    handle = core.lock.acquire(f"{what.lower()} by {user}")
    if handle is None:
        return lock_refusal(core)

    def work(reporter: Reporter) -> int:
        return body(PhaseRunner(core, current.id, user, reporter))

    return Outcome(OK, reply=[f"{what} (run {current.id}); updates go to the channel."],
                   work=guarded(core, handle, current.id, user, work), run_id=current.id)


def _why_not_runnable(core: Core, current, scheduled: bool) -> str | None:
    if current is None:
        return "nothing approved to run: `/migrate preflight` first, then the TPM approves"
    incident = core.store.incident()
    if incident:
        return (f"a critical incident is declared by <@{incident.get('by')}> ({incident.get('text')}): "
                "nothing runs until `/migrate incident clear`")
    if current.meta.get("rebuilt"):
        return "the run state was rebuilt from history after Redis lost it: run `/migrate preflight` again"
    reason = why_approval_invalid(current.approval, checksums=checksums(core.runbook), now=clock.now())
    if reason:
        return f"{reason}: ask the TPM ({core.roster.mention(TPM)}) to approve"
    approval = current.approval or {}
    if approval.get("mode") == "scheduled" and current.status == Status.SCHEDULED and not scheduled:
        return (f"GO is scheduled for {str(approval.get('scheduled_for'))[:16].replace('T', ' ')} UTC and starts by itself: "
                "ask the TPM for GO now to run earlier")
    return None


def _phase_status(run, number: int):
    state = run.phases.get(number) if run else None
    return state.status if state else PhaseStatus.PENDING
