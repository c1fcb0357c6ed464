"""`status` and `report` with MIGRATE_TARGETS: every target of the fleet run, in one answer."""

from __future__ import annotations

from commands import fleet_templates
from commands.fleet_decide import why_fleet_approval_invalid
from commands.fleetcore import gone, known_core, let_go, store, the_fleet
from commands.info import help_
from commands.parse import Command
from commands.report import render
from commands.result import OK, Outcome, Post
from core import clock
from state.fleet import FleetRun
from workflows.core import Core
from workflows.templates import seconds


def fleet_help(core: Core, user: str, cmd: Command) -> Outcome:
    """`help`, its last line about the fleet run instead of one database's run."""
    outcome = help_(core, user, cmd)
    run = store(core).current()
    fleet = the_fleet(core)
    if run is None:
        now = f"Now: no fleet run ({len(fleet.targets)} databases in MIGRATE_TARGETS) → next: `preflight`"
    else:
        headline, nxt = fleet_templates.headline(run, core.roster)
        now = f"Now: fleet run {run.id}: {headline}" + (f" → next: {nxt}" if nxt else "")
    outcome.reply = [now if line.startswith("Now: ") else line for line in outcome.reply]
    return outcome


def fleet_status(core: Core, user: str, cmd: Command) -> Outcome:
    return Outcome(OK, reply=status_lines(core))


def status_lines(core: Core) -> list[str]:
    fleet = the_fleet(core)
    run = store(core).current()
    head = [f"{core.runbook.title} on {len(fleet.targets)} databases ({fleet_templates.waves_line(fleet)})"]
    incident = core.store.incident()
    if incident:
        head.append(f"🚨 Incident declared by <@{incident.get('by')}>: {incident.get('text')}")
    if run is None:
        return head + ["No fleet run yet. Next: `preflight` (coordinator or TPM)"]
    lines = fleet_templates.status_lines(run, core.roster)
    if str(run.status) in ("approved", "scheduled"):  # does the decision still hold?
        invalid = why_fleet_approval_invalid(core, run)
        expires = str((run.approval or {}).get("expires_at"))[:16].replace("T", " ")
        note = f"  ❌ {invalid}: the TPM approves again" if invalid else f"  valid until {expires} UTC"
        at = next((i for i, line in enumerate(lines) if line.startswith("Approval: ")), None)
        if at is not None:
            lines.insert(at + 1, note)
    return head + lines


def _decision(run: FleetRun) -> str:
    decision, approval = run.decision or {}, run.approval or {}
    if decision.get("what") == "no-go":
        return f"NO-GO by <@{decision.get('by')}> at {str(decision.get('at'))[:16]}: {decision.get('reason')}"
    if not approval:
        return "none yet"
    left_out = sorted(approval.get("not_covered") or {})
    return (
        f"GO{' scheduled for ' + str(approval['scheduled_for'])[:16] if approval.get('scheduled_for') else ''} "
        f"by <@{approval.get('by')}> at {str(approval.get('at'))[:16]} for {len(approval.get('targets') or {})} databases"
        + (f" (not covered: {', '.join(left_out)})" if left_out else "")
    )


def fleet_report(core: Core, user: str, cmd: Command) -> Outcome:
    """One Markdown document: the fleet's table, then every target's own run report."""
    run = store(core).current()
    if run is None:
        return Outcome.refused("no fleet run to report on: `/migrate preflight` starts one")
    out = [
        f"# {core.runbook.title} - Fleet Execution Report",
        "",
        f"**Fleet run:** {run.id}  ",
        f"**Status:** {run.status}  ",
        f"**Databases:** {len(run.targets)} ({fleet_templates.counts_line(run)})  ",
        f"**Backup policy:** {run.backup_policy or '—'}  ",
        f"**Decision:** {_decision(run)}  ",
        f"**Generated:** {clock.now():%Y-%m-%d %H:%M} UTC",
        "",
        "| Target | Wave | State | Phase | Duration | Run | Note |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in run.targets.values():
        note = (t.error or t.reason or "").replace("|", "\\|").replace("\n", " ")
        phase = t.phase if t.phase is not None else "—"
        took = seconds(t.duration) if t.duration is not None else "—"
        out.append(
            f"| {t.name} | {t.wave} | {t.status} | {phase} | {took} | {t.run_id or '—'} | {note[:200]} |"
        )
    for t in run.targets.values():
        out += ["", f"## Target {t.name} (wave {t.wave}): {t.status}", ""]
        if t.run_id is None:
            out.append(f"No run of its own: {t.reason or t.error or 'not pre-flighted'}.")
            continue
        tcore = known_core(core, t.name)
        if tcore is None:
            out.append(f"Its run {t.run_id} is not read here: {gone(t.name)}.")
            continue
        own = tcore.store.get(t.run_id)
        if own is None:
            out.append(f"Its run {t.run_id} is no longer in Redis.")
            continue
        try:
            events = tcore.events.events(own.id, limit=1000)
        except Exception:  # noqa: BLE001 - history unreachable: the report says what it has
            events = []
        body = render(tcore, own, events).splitlines()
        let_go(tcore)
        out += ["#" + line if line.startswith("#") else line for line in body]  # one level down
    document = core.redact("\n".join(out) + "\n")
    title = f"{core.runbook.title} fleet report — {run.id} ({run.status})"
    return Outcome(
        OK,
        reply=[f"Report of fleet run {run.id} ({len(run.targets)} databases) posted to its thread."],
        posts=[Post("report", title, detail=document, run_id=run.id)],
        run_id=run.id,
    )
