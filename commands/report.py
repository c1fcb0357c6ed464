"""`report`: the run's completed report, in the shape of the seed report, as Markdown.

Built from the recorded run (Redis) and its event history (PostgreSQL): every row is
something that ran; nothing is copied from the seed report's example text.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from commands.parse import Command
from core import clock
from core.redact import redact_url
from runbook.model import Runbook
from state.audit import signoff
from state.record import Run
from workflows import templates
from workflows.core import Core
from workflows.reporting import OK, Outcome, Post


def report(core: Core, user: str, cmd: Command) -> Outcome:
    run = core.store.current()
    if run is None:
        return Outcome.refused("no run to report on: `/migrate preflight` starts one")
    try:
        events = core.events.events(run.id, limit=1000)
    except Exception:  # history unreachable: the report says so instead of failing
        events = []
    document = core.redact(render(core, run, events))
    title = f"{core.runbook.title} report — run {run.id} ({run.status.value})"
    return Outcome(
        OK,
        reply=[f"Report of run {run.id} posted to the run's thread ({len(document.splitlines())} lines)."],
        posts=[Post("report", title, detail=document, run_id=run.id)],
        run_id=run.id,
    )


def render(core: Core, run: Run, events: list[dict[str, Any]]) -> str:
    rb = core.runbook
    out = [
        f"# {rb.title} - Execution Report",
        "",
        f"**Run:** {run.id}  ",
        f"**Database:** {redact_url(core.settings.database_url)}  ",
        f"**Status:** {run.status.value}  ",
        f"**Generated:** {clock.now():%Y-%m-%d %H:%M} UTC",
        "",
    ]
    out += (
        _preflight(run) + _decision(run) + _execution(rb, run) + _evidence(run) + _gates(run) + _restore(run)
    )
    out += _accepted(events)
    out += _timeline(rb, run) + _events(events) + _signoff(events)
    return "\n".join(out) + "\n"


def _table(header: list[str], rows: Sequence[Sequence[object]]) -> list[str]:
    def cell(v: object) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(cell(c) for c in r) + " |" for r in rows),
        "",
    ]


def _preflight(run: Run) -> list[str]:
    pf = run.preflight or {}
    out = ["## Pre-Flight Checklist", ""]
    if not pf:
        return out + ["Pre-flight did not finish.", ""]
    rows = [
        _approval_row(c, run)
        if c.get("key") == "approval"
        else [
            c.get("title"),
            c.get("how"),
            c.get("observed"),
            c.get("required"),
            {"pass": "✅", "fail": "❌"}.get(c.get("status"), "⏳"),
        ]
        for c in pf.get("checks", [])
    ]
    out += _table(["Check", "How", "Observed", "Required", "Result"], rows)
    out.append(f"**Outcome:** {pf.get('outcome')}  ")
    backup = pf.get("backup") or {}
    if backup.get("skipped"):
        out.append(f"**Backup:** none, skipped on purpose: {backup['skipped']}  ")
    elif backup:
        out += [
            f"**Backup:** `{backup.get('path')}` — {int(backup.get('size', 0)):,} bytes, sha256 `{backup.get('sha256')}`, "
            f"{'verified by restore' if backup.get('verified') else 'NOT verified'}  ",
            f"**Restore by hand:** `{backup.get('restore_command', '')}`  ",
        ]
    rehearsal = pf.get("rehearsal") or {}
    if rehearsal:
        out.append(f"**Rehearsal:** {rehearsal.get('summary')}  ")
    return out + [""] + _lock_safety(pf)


def _lock_safety(pf: dict[str, Any]) -> list[str]:
    """squawk's findings with their verdicts, the waivers (reason, role) and high-risk locks."""
    if not pf.get("lint"):
        return []
    report = SimpleNamespace(lint=pf["lint"])
    out = ["### Lock safety", "", *(f"- {line}" for line in templates.lock_safety_lines(report))]
    out += [f"- {line}" for line in templates.finding_lines(report)]
    return out + [""]


def _approval_row(check: dict[str, Any], run: Run) -> list[object]:  # cells: _table shows None as None
    """The approval row was pending at pre-flight time; the report shows what happened since."""
    approval = run.approval or {}
    if approval.get("by"):
        when = (
            f", scheduled for {str(approval.get('scheduled_for'))[:16]}"
            if approval.get("scheduled_for")
            else ""
        )
        observed = f"GO by <@{approval['by']}> at {str(approval.get('at'))[:16]}{when}"
        return [check.get("title"), check.get("how"), observed, check.get("required"), "✅"]
    return [check.get("title"), check.get("how"), "not approved", check.get("required"), "⏳"]


def _decision(run: Run) -> list[str]:
    d = run.decision or {}
    if not d:
        return ["## Go/No-Go Decision", "", "No decision recorded.", ""]
    what = {
        "go": "GO (execute now)",
        "scheduled": f"GO (scheduled for {d.get('scheduled_for')})",
        "no-go": f"NO-GO: {d.get('reason')}",
    }.get(d.get("what") or "", d.get("what"))
    return ["## Go/No-Go Decision", "", f"{what} — by <@{d.get('by')}> at {str(d.get('at'))[:16]}", ""]


def _execution(rb: Runbook, run: Run) -> list[str]:
    rows = []
    for phase in rb.phases:
        s = run.phases.get(phase.number)
        rows.append(
            [
                f"{phase.number} {phase.name}",
                phase.owner,
                (s.actor if s and s.actor else "—"),
                templates.seconds(s.duration) if s and s.duration else "—",
                templates.seconds(phase.estimate),
                s.status.value if s else "pending",
            ]
        )
    steps = (run.result or {}).get("steps", {})
    step_rows = [
        [
            k,
            v.get("file"),
            "✅" if v.get("ok") else "❌",
            templates.seconds(v.get("duration")),
            v.get("attempts", 1),
            v.get("error") or "",
        ]
        for k, v in sorted(steps.items())
    ]
    return (
        ["## Execution", ""]
        + _table(["Phase", "Owner role", "Run by", "Duration", "Estimate", "Result"], rows)
        + (
            _table(["Step", "File", "Result", "Duration", "Attempts", "Error"], step_rows)
            if step_rows
            else []
        )
    )


def _evidence(run: Run) -> list[str]:
    out = ["## Verification Evidence", ""]
    for key, items in sorted(((run.result or {}).get("evidence") or {}).items()):
        out.append(f"### Phase {key}")
        out += _table(
            ["Check", "Observed", "Expected", "Result"],
            [[e["name"], e["observed"], e["expected"], "✅" if e["ok"] else "❌"] for e in items],
        )
    return out


def _gates(run: Run) -> list[str]:
    gates = (run.result or {}).get("gates")
    if not gates:
        return ["## Quality Gates", "", "Not evaluated (verification has not passed).", ""]
    return ["## Quality Gates", ""] + _table(
        ["Gate", "Observed", "Required", "Result"],
        [[g["name"], g["observed"], g["expected"], "✅" if g["ok"] else "❌"] for g in gates],
    )


def _restore(run: Run) -> list[str]:
    restore = (run.result or {}).get("restore")
    if not restore:
        return []
    return [
        "## Restore from Backup",
        "",
        f"**Database:** `{restore.get('database')}` restored from the backup "
        f"in {templates.seconds(restore.get('recovery_seconds'))}  ",
        f"**Replaced database kept as:** `{restore.get('replaced_by_backup_kept_as')}`  ",
        f"**History events carried over:** {restore.get('events_carried')}  ",
        *[f"- {line.strip()}" for line in restore.get("loss", [])],
        "",
    ]


def _accepted(events: list[dict[str, Any]]) -> list[str]:
    """Differences the TPM accepted after a phase rollback (`rollback accept`), from the audit."""
    accepted = [e for e in events if str(e.get("action", "")).startswith("rollback accept")]
    out = []
    for e in accepted:
        ev = e.get("evidence") or {}
        out += [
            f"**Phase {ev.get('phase')}** ({ev.get('file')}): accepted by <@{ev.get('accepted_by')}> at {str(e.get('at'))[:16]} UTC  ",
            *[f"    {line.strip()}" for line in ev.get("difference", [])],
            "",
        ]
    return ["## Rollback Differences Accepted", "", *out] if out else []


def _timeline(rb: Runbook, run: Run) -> list[str]:
    rows, total_est, total_act = [], 0.0, 0.0
    for phase in rb.phases:
        s = run.phases.get(phase.number)
        actual = s.duration if s and s.duration else None
        total_est += phase.estimate
        total_act += actual or 0.0
        rows.append(
            [
                f"Phase {phase.number}: {phase.name}",
                templates.seconds(phase.estimate),
                templates.seconds(actual),
            ]
        )
    rows.append(["**Total (phases)**", templates.seconds(total_est), templates.seconds(total_act)])
    return ["## Timeline vs Estimate", ""] + _table(["Phase", "Estimate", "Actual"], rows)


def _events(events: list[dict[str, Any]]) -> list[str]:
    if not events:
        return ["## Event Log", "", "History unavailable.", ""]
    rows = [[str(e.get("at"))[:19], e.get("actor"), e.get("action"), e.get("outcome")] for e in events]
    return ["## Event Log", ""] + _table(["Time (UTC)", "Who", "What", "Outcome"], rows)


def _signoff(events: list[dict[str, Any]]) -> list[str]:
    s = signoff(events) if events else {}
    return [
        "## Sign-Off",
        "",
        f"**Reviewed By:** {s.get('reviewed_by') or '—'}  ",
        f"**Approved By (TPM):** {s.get('approved_by') or '—'}"
        + (f" at {s.get('approved_at')}" if s.get("approved_at") else "")
        + "  ",
        f"**Scheduled Execution:** {s.get('scheduled_execution') or '—'}  ",
    ]
