"""The posts of time-driven work: reminder, scheduled start (or its cancellation),
follow-up checks, the one-week reminder, health alerts. Pure builders, like
workflows/templates.py: every field comes from a fact the caller established."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from core.clock import hhmm
from core.roster import COORDINATOR, TPM, Roster
from runbook.model import Runbook
from workflows.reporting import Post
from workflows.templates import FAIL_MARK, OK_MARK, mark

# The report's "Medium-term (Within 1 week)" items and who owns each (roster roles).
MEDIUM_TERM: tuple[tuple[str, str], ...] = (
    (
        "Redis integration: session caching and query caching (report: Yasmin, Phase 3)",
        "integration-engineer",
    ),
    ("Update the real Railway connection strings if placeholders were used", "database-engineer"),
    ("Database health monitoring dashboard (platform.databases health columns)", "database-engineer"),
    (
        "Migration 007 readiness: session middleware, test_007 on staging, restrictive RLS plan",
        "security-specialist",
    ),
)


def _minutes(seconds: float) -> str:
    if seconds < 90:
        return f"{max(seconds, 0):.0f} s"
    return f"{seconds / 60:.0f} min"


def reminder(rb: Runbook, run_id: str, at: datetime, now: datetime, roster: Roster) -> Post:
    owners = [f"Phase {p.number} {p.name}: {roster.mention(p.owner)} ({p.owner})" for p in rb.phases]
    people = {
        *roster.members(TPM),
        *roster.members(COORDINATOR),
        *(u for p in rb.phases for u in roster.members(p.owner)),
    }
    return Post(
        "schedule_reminder",
        f"⏰ {rb.title} starts at {hhmm(at)} (in {_minutes((at - now).total_seconds())})",
        [
            f"TPM: {roster.mention(TPM)}",
            f"Coordinator: {roster.mention(COORDINATOR)}",
            *owners,
            "At the start the bot re-runs the fast pre-flight checks (not the backup): any NO-GO cancels the start.",
            "Cancel: `/migrate defer <reason>` · move: `/migrate approve at <time>` (TPM).",
        ],
        run_id=run_id,
        mentions=sorted(people),
    )


def start_go(rb: Runbook, run_id: str, at: datetime, lines: Sequence[str]) -> Post:
    return Post(
        "schedule_start",
        f"{rb.title}: scheduled start at {hhmm(at)} — fast pre-flight GO {OK_MARK}, running the runbook",
        list(lines),
        run_id=run_id,
    )


def start_cancelled(
    rb: Runbook,
    run_id: str,
    at: datetime,
    reasons: Sequence[str],
    lines: Sequence[str],
    roster: Roster,
    deferred: bool,
) -> Post:
    what = (
        "The run is deferred (NO-GO): a new `/migrate preflight` is needed before the next attempt."
        if deferred
        else "The run could not be marked deferred: check `/migrate status`."
    )
    return Post(
        "schedule_cancelled",
        f"{rb.title}: scheduled start at {hhmm(at)} CANCELLED {FAIL_MARK}",
        [*lines, what, f"{roster.mention(TPM)} {roster.mention(COORDINATOR)}"],
        fields={"NO-GO because": "; ".join(reasons)},
        run_id=run_id,
        final=True,
        mentions=[*roster.members(TPM), *roster.members(COORDINATOR)],
    )


def followup_check(
    label: str, run_id: str, name: str, ok: bool, summary: str, evidence: Sequence[str], roster: Roster
) -> Post:
    lines = list(evidence)
    mentions: list[str] = []
    if not ok:
        lines.append(f"{roster.mention(COORDINATOR)}: please investigate")
        mentions = list(roster.members(COORDINATOR))
    return Post(
        "followup_check",
        f"{mark(ok)} {label} follow-up — {name}: {summary}",
        lines,
        run_id=run_id,
        mentions=mentions,
    )


def followup_summary(
    rb: Runbook, label: str, run_id: str, results: Sequence[tuple[str, bool]], roster: Roster
) -> Post:
    failed = [name for name, ok in results if not ok]
    title = f"{rb.title} {label} follow-up: {len(results) - len(failed)}/{len(results)} checks {OK_MARK}" + (
        f", {FAIL_MARK} {', '.join(failed)}" if failed else ""
    )
    lines = [f"{mark(ok)} {name}" for name, ok in results]
    if failed:
        lines.append(f"{roster.mention(COORDINATOR)}: see the ❌ above")
    return Post(
        "followup_summary",
        title,
        lines,
        run_id=run_id,
        mentions=list(roster.members(COORDINATOR)) if failed else [],
    )


def week_reminder(rb: Runbook, label: str, run_id: str, roster: Roster) -> Post:
    lines = [f"• {item} — owner {roster.mention(role)} ({role})" for item, role in MEDIUM_TERM]
    people = sorted({u for _item, role in MEDIUM_TERM for u in roster.members(role)})
    return Post(
        "followup_reminder",
        f"{rb.title} {label}: medium-term items of the post-execution checklist",
        lines,
        run_id=run_id,
        mentions=people,
    )


def health_change(
    name: str, kind: str, where: str, healthy: bool, message: str | None, since: str | None, roster: Roster
) -> Post:
    if healthy:
        title = f"{OK_MARK} Database {name} ({kind}, {where}) recovered: healthy again"
        lines = [message or "probe answered"] + ([f"unhealthy since {since}"] if since else [])
        mentions: list[str] = []
    else:
        title = f"{FAIL_MARK} Database {name} ({kind}, {where}) is UNHEALTHY"
        lines = [message or "probe failed", f"{roster.mention(COORDINATOR)}: please investigate"]
        mentions = list(roster.members(COORDINATOR))
    lines.append("recorded in platform.databases (update_database_health); announced once per change")
    return Post("health_alert", title, lines, mentions=mentions)
