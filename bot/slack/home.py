"""The App Home tab: the current run (status, phases, pending decision) and the last runs."""
from __future__ import annotations

from bot.slack import blocks
from core.clock import hhmm

# Statuses in which the run waits for the TPM's decision.
AWAITING_DECISION = {"go"}


def run_lines(run) -> list[str]:
    """One run as lines: status, who started it and when, its phases and the decision."""
    lines = [f"*{run.runbook}* · run `{run.id}` · *{run.status}*",
             f"started by <@{run.created_by}> on {run.created_at:%Y-%m-%d} at {hhmm(run.created_at)}"]
    for number, phase in run.phases.items():
        took = f" ({blocks.duration(phase.duration)})" if phase.duration is not None else ""
        lines.append(f"• phase {number}: {phase.status}{took}")
    if run.decision:
        lines.append(f"decision: {run.decision.get('what')} by <@{run.decision.get('by')}>"
                     + (f" ({run.decision['reason']})" if run.decision.get("reason") else ""))
    return lines


def pending_lines(run, roster) -> list[str]:
    if run is None or str(run.status) not in AWAITING_DECISION:
        return []
    return [f"Run `{run.id}` passed preflight and waits for GO / NO-GO from {roster.mention('tpm')}."]


def history_line(run) -> str:
    return f"• `{run.id}` {run.created_at:%Y-%m-%d} {hhmm(run.created_at)}: *{run.status}*"


def view(core) -> dict:
    """The Home tab's view, from the run store."""
    current = core.store.current()
    history = [r for r in core.store.history() if current is None or r.id != current.id]
    return blocks.home_view(run_lines(current) if current else [], pending_lines(current, core.roster),
                            [history_line(r) for r in history])


def publish(core, client, user: str) -> None:
    client.views_publish(user_id=user, view=view(core))
