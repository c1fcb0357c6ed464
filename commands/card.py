"""The run's live card, as facts: what is happening now, who must act next, each phase.

One function of the run's stored state (`describe`), so that every adapter showing the run
(Slack's parent message, App Home, the console's status) says the same thing, and nothing
shown is a leftover of an earlier event: the card is derived again each time it is shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.roster import COORDINATOR, TPM, Roster
from runbook.model import Phase, Runbook
from state.machine import PhaseStatus, Status
from state.record import Run
from workflows.templates import FAIL_MARK, OK_MARK, seconds

PHASE_MARK = {
    PhaseStatus.PENDING: "▫️",
    PhaseStatus.RUNNING: "🔄",
    PhaseStatus.SUCCEEDED: OK_MARK,
    PhaseStatus.FAILED: FAIL_MARK,
    PhaseStatus.ROLLING_BACK: "↩️",
    PhaseStatus.ROLLED_BACK: "↩️",
}
# Statuses whose live progress (statement k of n, the bar) belongs on the card.
SHOWS_PROGRESS = {
    Status.PREFLIGHT_RUNNING,
    Status.RUNNING,
    Status.VERIFYING,
    Status.ROLLING_BACK,
    Status.RESTORING,
}


@dataclass(frozen=True)
class Card:
    now: str  # one line: what is happening
    next: str | None  # who must act next, and how; None: nobody (work in progress, or over)
    phases: list[str] = field(default_factory=list)
    working: bool = False  # work is in progress: its live progress belongs on the card


def describe(run: Run, rb: Runbook, roster: Roster) -> Card:
    """The card of `run` (a state.record.Run) as it is stored now."""
    now, nxt = _now_and_next(run, rb, roster)
    return Card(now, nxt, phase_lines(run, rb), run.status in SHOWS_PROGRESS)


def phase_lines(run: Run, rb: Runbook) -> list[str]:
    """One line per phase: its mark, name, state and duration (the stored one, set once)."""
    lines = []
    for phase in rb.phases:
        state = run.phases.get(phase.number)
        status = state.status if state else PhaseStatus.PENDING
        took = f" · {seconds(state.duration)}" if state and state.duration is not None else ""
        mark = "▫️" if outdated(run, phase.number) else PHASE_MARK[status]
        lines.append(f"{mark} Phase {phase.number} {phase.name}: {phase_status(run, phase.number)}{took}")
    return lines


def outdated(run: Run, number: int) -> bool:
    """A verification whose result no longer describes the database: a migration phase was
    rolled back, restored or run again after it finished."""
    state = run.phases.get(number)
    if state is None or state.kind != "verification" or state.finished_at is None:
        return False
    return any(
        p.kind == "migration" and p.finished_at is not None and p.finished_at > state.finished_at
        for p in run.phases.values()
    )


def phase_status(run: Run, number: int) -> str:
    """The phase's status as people should read it now (a stale verification says so)."""
    state = run.phases.get(number)
    status = str(state.status) if state else str(PhaseStatus.PENDING)
    return f"{status} before later changes (verify again)" if outdated(run, number) else status


def _phase_name(rb: Runbook, number: int | None) -> str:
    phase = rb.phase(number) if number is not None else None
    return f"phase {number} ({phase.name})" if phase else "the run"


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def next_phase(run: Run, rb: Runbook) -> Phase | None:
    """The first phase of the runbook not yet succeeded in this run, or None."""
    for phase in rb.phases:
        state = run.phases.get(phase.number)
        if state is None or state.status is not PhaseStatus.SUCCEEDED:
            return phase
    return None


def _run_next(run: Run, rb: Runbook, roster: Roster) -> str:
    phase = next_phase(run, rb)
    if phase is None:
        return f"{roster.mention(COORDINATOR)}: `verify`"
    verb = "`verify`" if phase.is_verification else f"`run phase {phase.number}`"
    return f"{roster.mention(phase.owner)}: {verb} (or the coordinator: `run`)"


def _applied(run: Run) -> list[int]:
    return [
        n
        for n, p in run.phases.items()
        if p.kind == "migration" and p.status in (PhaseStatus.SUCCEEDED, PhaseStatus.FAILED)
    ]


def _failure_text(run: Run, rb: Runbook, n: int | None) -> str:
    """What failed: the phase's stored error, else its failed step's (the step outcomes the
    run's record keeps), else a pointer to the thread."""
    state = run.phases.get(n) if n is not None else None
    if state is not None and state.error:
        return state.error
    phase = rb.phase(n) if n is not None else None
    steps = (run.result or {}).get("steps") or {}
    for step in phase.steps if phase else ():
        outcome = steps.get(step.id) or {}
        if outcome.get("ok") is False and outcome.get("error"):
            return f"step {step.id}: {str(outcome['error'])[:300]}"
    return "see the thread"


def _now_and_next(run: Run, rb: Runbook, roster: Roster) -> tuple[str, str | None]:
    s, n = run.status, run.phase
    where = _phase_name(rb, n)
    decision = run.decision or {}
    tpm, coordinator = roster.mention(TPM), roster.mention(COORDINATOR)
    if s is Status.PREFLIGHT_RUNNING:
        return "⏳ Pre-flight running: checks, backup verified by a restore, rehearsal", None
    if s is Status.GO:
        return (
            "🟢 Pre-flight passed — awaiting the TPM's decision",
            f"{tpm} (TPM): GO now, GO scheduled or NO-GO",
        )
    if s is Status.NO_GO:
        return "⛔ Pre-flight NO-GO", f"{coordinator}: fix what the pre-flight names, then `preflight` again"
    if s is Status.APPROVED:
        return f"👍 Approved by <@{decision.get('by')}> — ready to run", _run_next(run, rb, roster)
    if s is Status.SCHEDULED:
        when = str((run.approval or {}).get("scheduled_for") or "")[:16].replace("T", " ")
        return f"🗓️ GO scheduled for {when} UTC — the run starts by itself", None
    if s is Status.DEFERRED:
        return f"⛔ NO-GO by <@{decision.get('by')}>: {decision.get('reason') or 'no reason given'}", None
    if s is Status.RUNNING:
        return f"🔄 Running {where}", None
    if s is Status.PHASE_DONE:
        following = next_phase(run, rb)
        if following is None:
            return f"{OK_MARK} {_upper_first(where)} done", _run_next(run, rb, roster)
        what = "verify" if following.is_verification else f"run phase {following.number}"
        return (
            f"{OK_MARK} {_upper_first(where)} done — waiting for {roster.mention(following.owner)} to {what}",
            _run_next(run, rb, roster),
        )
    if s is Status.VERIFYING:
        return f"🔎 Verifying: {where}", None
    if s is Status.SUCCEEDED:
        return f"{OK_MARK} Succeeded — every phase applied and verified", None
    if s is Status.FAILED:
        error = _failure_text(run, rb, n)
        return (
            f"{FAIL_MARK} Failed at {where}: {error}",
            f"{coordinator} with {tpm}: `run phase {n}` again, `rollback phase {n}` or `rollback restore`",
        )
    if s is Status.ROLLING_BACK:
        return f"↩️ Rolling back {where}", None
    if s is Status.ROLLED_BACK:
        left = sorted(_applied(run), reverse=True)
        nxt = (
            f"{coordinator}: `rollback phase {left[0]}` next (newest first), or `run phase {n}` again"
            if left
            else f"{coordinator}: `run phase {n}` again, or `preflight` to start over"
        )
        return f"↩️ {_upper_first(where)} rolled back", nxt
    if s is Status.RESTORE_REQUESTED:
        return (
            "🛟 Restore from backup requested — awaiting the TPM's confirmation",
            f"{tpm} (TPM): `rollback restore confirm`",
        )
    if s is Status.RESTORING:
        return "🛟 Restoring the backup into a new database", None
    if s is Status.RESTORED:
        return "🛟 Restored from the backup", None
    if s is Status.ABORTED:
        return (
            f"⏹️ {_upper_first(where)} aborted",
            f"{coordinator}: `run phase {n}` again or `rollback phase {n}`",
        )
    return (
        f"⚠️ Interrupted during {where}: the bot process stopped",
        f"{coordinator}: check `status`, then `run phase {n}` again or `rollback phase {n}`",
    )
