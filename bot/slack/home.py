"""The App Home tab, the team's dashboard: the current run's card, what waits for a decision,
the last runs (outcome, duration, who approved) and the follow-ups still due."""

from __future__ import annotations

import logging

from bot.slack import blocks, fleet_blocks
from commands import card, fleet_templates
from commands.fleetcore import store as fleet_store
from commands.info import status_word
from core.clock import hhmm
from scheduling.scheduler import for_core
from state.machine import Status
from workflows.templates import FAIL_MARK, OK_MARK, seconds

log = logging.getLogger(__name__)

# Statuses in which the run waits for the TPM's decision.
AWAITING_DECISION = {Status.GO, Status.RESTORE_REQUESTED}
OUTCOME_MARK = {
    Status.SUCCEEDED: OK_MARK,
    Status.RESTORED: "🛟",
    Status.ROLLED_BACK: "↩️",
    Status.FAILED: FAIL_MARK,
    Status.DEFERRED: "⛔",
    Status.NO_GO: "⛔",
    Status.ABORTED: "⏹️",
    Status.INTERRUPTED: "⚠️",
}


def run_lines(core, run) -> list[str]:
    """The current run as its live card (the same facts as the channel's parent message)."""
    facts = card.describe(run, core.runbook, core.roster)
    lines = [
        f"*{core.runbook.title}* · run `{run.id}` · started by <@{run.created_by}> "
        f"on {run.created_at:%Y-%m-%d} at {hhmm(run.created_at)}"
    ]
    return lines + blocks.card_lines(facts)


def pending_lines(run, roster) -> list[str]:
    if run is None or run.status not in AWAITING_DECISION:
        return []
    what = "the restore from backup" if run.status is Status.RESTORE_REQUESTED else "GO / NO-GO"
    return [f"Run `{run.id}` waits for {what} from {roster.mention('tpm')}."]


def took(run) -> float:
    """How long the run lasted: from its pre-flight to its last change of state (stored times)."""
    return (run.updated_at - run.created_at).total_seconds()


def history_line(run) -> str:
    """`✅ run-id 2026-12-07 03:00 — succeeded · lasted 3 min 05 s · approved by <@U…>`."""
    mark = OUTCOME_MARK.get(run.status, "•")
    parts = [status_word(run), f"lasted {seconds(took(run))}"]
    approver = (run.approval or {}).get("by")
    parts.append(f"approved by <@{approver}>" if approver else "not approved")
    return f"{mark} `{run.id}` {run.created_at:%Y-%m-%d} {hhmm(run.created_at)} — " + " · ".join(parts)


def followup_lines(core) -> list[str]:
    """Scheduled starts and follow-ups still due for this database (not the health checks)."""
    try:
        jobs = [j for j in for_core(core).jobs() if j.get("run_id")]
    except Exception as exc:  # noqa: BLE001 - the dashboard still shows the rest
        log.warning("App Home: schedule unavailable: %s", core.redact(str(exc))[:200])
        return ["Schedule unavailable right now."]
    return [
        f"⏱ {j['name']}: {j['next_run_at']:%Y-%m-%d %H:%M} UTC"
        if j["next_run_at"]
        else f"⏱ {j['name']}: paused"
        for j in jobs
    ]


def fleet_view(core) -> dict:
    """The Home tab of a fleet (MIGRATE_TARGETS): the current fleet run's table of targets, the
    decision it waits for, and the last fleet runs."""
    fleets = fleet_store(core)
    current = fleets.current()
    pending = []
    if current is not None and str(current.status) == "go":
        go = len(current.with_status(fleet_templates.T.GO))
        pending = [
            f"Fleet run `{current.id}` waits for GO / NO-GO from {core.roster.mention('tpm')} ({go} databases GO)."
        ]
    history = [
        f"{fleet_templates.headline(f, core.roster)[0]} · `{f.id}` {f.created_at:%Y-%m-%d} {hhmm(f.created_at)} · "
        f"{len(f.targets)} databases · {fleet_templates.counts_line(f)}"
        for f in fleets.history()
        if current is None or f.id != current.id
    ]
    return blocks.home_view(
        fleet_blocks.home_lines(current, core.runbook.title, core.roster) if current else [],
        pending,
        history,
        followup_lines(core),
    )


def view(core) -> dict:
    """The Home tab's view, from the run store and the scheduler."""
    if core.settings.targets is not None:
        return fleet_view(core)
    current = core.store.current()
    history = [r for r in core.store.history() if current is None or r.id != current.id]
    return blocks.home_view(
        run_lines(core, current) if current else [],
        pending_lines(current, core.roster),
        [history_line(r) for r in history],
        followup_lines(core),
    )


def publish(core, client, user: str) -> None:
    client.views_publish(user_id=user, view=view(core))
