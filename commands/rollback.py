"""`rollback phase <n>`, `rollback all`, `rollback accept` (and `rollback restore`, commands/restore.py).

The verbs check whether the rollback may start and take the run lock; the work, each phase's
rollback file and its proof (schema equal to the snapshot before the phase, the version gone
from the ledger, row counts of surviving tables unchanged), is workflows/rollback.py.
"""

from __future__ import annotations

from commands.parse import Command
from commands.restore import restore
from runbook.model import Phase
from state.machine import (
    PhaseStatus,
    Status,
    applied_phases,
    left_difference,
    why_phase_cannot_roll_back,
)
from state.record import Run
from workflows.checks import why_orphans_block
from workflows.core import Core
from workflows.locked import start_locked
from workflows.reporting import OK, Outcome, Post
from workflows.rollback import (
    ACCEPTED_DIFF,
    AllRollback,
    PhaseRollback,
    applied_before,
    before_text,
    foreseen,
    left_nothing,
    nothing_to_undo,
    without_phase,
)


def rollback(core: Core, user: str, cmd: Command) -> Outcome:
    if "restore" in cmd.flags:  # issue 6: nuclear restore
        return restore(core, user, cmd)
    if "accept" in cmd.flags:
        return accept(core, user)
    current = core.store.current()
    if current is None:
        return Outcome.refused("nothing to roll back: no run recorded")
    if "all" in cmd.flags:
        return rollback_all(core, user, current)
    assert cmd.phase is not None  # parse: `rollback phase <n>` has its number
    number = cmd.phase
    phase = core.runbook.phase(number)
    nothing_left = phase is not None and left_nothing(current, number)
    if phase is None or not (phase.undo or nothing_left):
        return Outcome.refused(
            f"phase {number} has no rollback file in runbook {core.runbook.id}" + _reverts_missing(phase)
        )
    reason = why_phase_cannot_roll_back(current, number) or why_orphans_block(core)
    if reason:
        return Outcome.refused(reason)
    if nothing_left:  # its file would drop what this run did not create
        return start_locked(
            core,
            user,
            current,
            lambda runner: nothing_to_undo(runner, number),
            f"Marking phase {number} rolled back (nothing of it was applied)",
            Status.ROLLING_BACK,
            [number],
        )
    return start_locked(
        core,
        user,
        current,
        lambda runner: PhaseRollback(runner, phase).execute(),
        f"Rolling back phase {number} with {phase.undo}",
        Status.ROLLING_BACK,
        [number],
    )


# ------------------------------------------------------------------ rollback all


def rollback_all(core: Core, user: str, current: Run) -> Outcome:
    """Every applied phase's rollback, newest first, in one command; stops at the first failure."""
    before = applied_before(current)
    numbers = [n for n in reversed(applied_phases(current)) if n not in before]
    if not numbers:
        return Outcome.refused(
            f"nothing to roll back: no phase of run {current.id} is applied"
            + (f" by it ({before_text(before)})" if before else "")
        )
    missing = [n for n in numbers if not left_nothing(current, n) and not _rollback_file(core, n)]
    if missing:
        many = len(missing) > 1
        newer = [n for n in numbers if n > missing[0]]
        one_by_one = (
            f"roll back the newer ones one by one (`rollback phase {newer[0]}` first) or " if newer else ""
        )
        return Outcome.refused(
            f"phase{'s' if many else ''} {', '.join(map(str, missing))} "
            f"{'have' if many else 'has'} no rollback file in runbook {core.runbook.id}: "
            f"`rollback all` cannot undo {'them' if many else 'it'}; {one_by_one}"
            "`rollback restore` returns to the verified backup"
        )
    reason = why_phase_cannot_roll_back(current, numbers[0]) or why_orphans_block(core)
    if reason:
        return Outcome.refused(reason)
    order = ", ".join(f"phase {n}" for n in numbers)
    return start_locked(
        core,
        user,
        current,
        lambda runner: AllRollback(runner, numbers, before).execute(),
        f"Rolling back {order}, newest first",
        Status.ROLLING_BACK,
        [numbers[0]],
    )


def _reverts_missing(phase: Phase | None) -> str:
    """For a phase whose steps name their own reverts, which steps lack one."""
    missing = [s.id for s in (phase.steps if phase and not phase.rollback else ()) if not s.revert]
    if not phase or len(missing) == len(phase.steps):
        return ""
    return (
        f" (step{'s' if len(missing) > 1 else ''} {', '.join(missing)} name{'' if len(missing) > 1 else 's'} no "
        "`revert`: the phase is undone by the reverts of all its steps or not at all; `rollback restore` "
        "returns to the verified backup)"
    )


def _rollback_file(core: Core, n: int) -> str | None:
    phase = core.runbook.phase(n)
    return phase.undo if phase else None


# ------------------------------------------------------------------ rollback accept


def accept(core: Core, user: str) -> Outcome:
    """The TPM accepts the difference the last phase rollback left: recorded in the audit with
    the diff and who accepted it, and the phase counts as rolled back."""
    run = core.store.current()
    difference = (run.result or {}).get("rollback_difference") if run else None
    n = difference.get("phase") if difference else None
    if run is None or difference is None or n is None or not left_difference(run, n):
        return Outcome.refused(
            "nothing to accept: no phase rollback left a difference that is still pending "
            "(`rollback accept` follows a `rollback phase <n>` / `rollback all` whose proof failed)"
        )
    result = without_phase(run.result, n)
    # Older phases' rollbacks are judged without these lines, as the rehearsal judges them.
    result[ACCEPTED_DIFF] = [*result.get(ACCEPTED_DIFF, []), *difference.get("diff", [])]
    core.store.transition(
        run.id,
        Status.ROLLED_BACK,
        actor=user,
        action=f"rollback accept phase {n}",
        phase=n,
        phase_status=PhaseStatus.ROLLED_BACK,
        expect=[Status.FAILED],
        fields={"result": result},
        evidence={
            "accepted_by": user,
            "phase": n,
            "file": difference.get("file"),
            "difference": difference.get("lines", []),
            "rehearsal": foreseen(run, n),
        },
    )
    core.schedule.run_undone(run.id)  # post-execution follow-ups no longer apply
    after = core.store.get_existing(run.id)
    older = [m for m in applied_phases(after)]
    nxt = (
        f"next: `rollback all` (or `rollback phase {older[-1]}`) for {', '.join(f'phase {m}' for m in older)}"
        if older
        else "no phase is applied any more"
    )
    post = Post(
        "rollback_accepted",
        f"Rollback of phase {n} accepted with a known difference by <@{user}>",
        [
            *difference.get("lines", []),
            f"Pre-flight: {foreseen(run, n)}.",
            "Recorded in the audit with this difference.",
            nxt,
        ],
        run_id=run.id,
    )
    return Outcome(
        OK, reply=[f"Accepted: phase {n} counts as rolled back; {nxt}."], posts=[post], run_id=run.id
    )
