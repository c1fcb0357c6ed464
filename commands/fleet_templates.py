"""What the fleet's surface says: the pre-flight summary, the TPM's one request, the table of
targets (facts shared by the Slack card, App Home, `status` and the console) and the one thread
line per target transition. Plain data (Post, Row, text); the adapters lay it out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from commands.fleet_preflight import TargetResult

from commands.result import Post
from core.roster import COORDINATOR, TPM, Roster
from core.targets import Fleet
from runbook.model import Runbook
from state.fleet import FleetEvent, FleetRun, TargetState, TargetStatus
from workflows.templates import FAIL_MARK, OK_MARK, go_no_go_actions, seconds

NAMES_SHOWN = 40  # names listed inline in a summary line; the rest are counted
REASON_CHARS = 300

T = TargetStatus
MARKS = {
    T.PENDING: "▫️",
    T.PREFLIGHT: "⏳",
    T.GO: "🟢",
    T.NO_GO: "⛔",
    T.QUEUED: "🕒",
    T.RUNNING: "🔄",
    T.SUCCEEDED: OK_MARK,
    T.FAILED: FAIL_MARK,
    T.SKIPPED: "⏭️",
    T.ROLLING_BACK: "↩️",
    T.ROLLED_BACK: "↩️",
    T.ROLLBACK_FAILED: FAIL_MARK,
}


def names(items: list[str], limit: int = NAMES_SHOWN) -> str:
    """`a, b, c` — past `limit`, the first ones and how many more."""
    if len(items) <= limit:
        return ", ".join(items)
    return ", ".join(items[:limit]) + f" and {len(items) - limit} more"


def waves_line(fleet: Fleet) -> str:
    waves = "; ".join(
        f"wave {n}{' (canary)' if n == fleet.waves()[0][0] else ''}: {names([t.name for t in ts], 12)}"
        for n, ts in fleet.waves()
    )
    return f"Waves: {waves} — {fleet.parallel} at once, stop after {fleet.stop_after_failures} failure" + (
        "s" if fleet.stop_after_failures != 1 else ""
    )


def backup_line(rb: Runbook, fleet: Fleet) -> str:
    if rb.fleet.backup == "canary":
        canary = [t.name for t in fleet.canary()]
        others = [t.name for t in fleet.targets if t.name not in canary]
        return (
            f"Backups: the canary only ({names(canary, 12)}), verified by a restore; the backups of the "
            f"{len(others)} other database{'s' if len(others) != 1 else ''} are skipped on purpose "
            f'(the runbook\'s [fleet] backup = "canary"), and so are their rehearsals'
        )
    return (
        "Backups: every database's own, each verified by a restore (the runbook's [fleet] backup = \"every\")"
    )


def preflight_started(rb: Runbook, fleet_id: str, fleet: Fleet, user: str) -> Post:
    return Post(
        "preflight_started",
        f"{rb.title}: pre-flight of {len(fleet.targets)} databases started by <@{user}>",
        [waves_line(fleet), backup_line(rb, fleet)],
        run_id=fleet_id,
    )


def _reason(result: TargetResult) -> str:
    first = result.reasons[0] if result.reasons else "no reason recorded"
    more = f" (+{len(result.reasons) - 1} more)" if len(result.reasons) > 1 else ""
    return (first if len(first) <= REASON_CHARS else first[: REASON_CHARS - 1] + "…") + more


def preflight_summary(
    rb: Runbook, fleet_id: str, fleet: Fleet, results: list[TargetResult], roster: Roster
) -> list[Post]:
    """ONE summary: how many GO, each NO-GO named with its reason; the backups as done; and,
    when any is GO, the TPM's one decision for all of them."""
    go = [r for r in results if r.go]
    nogo = [r for r in results if not r.go]
    mark = OK_MARK if not nogo else ("⚠️" if go else FAIL_MARK)
    lines = []
    if nogo:
        lines += ["*NO-GO:*", *[f"• {FAIL_MARK} *{r.name}* (wave {r.wave}): {_reason(r)}" for r in nogo], ""]
    lines.append(f"*GO ({len(go)}):* {names([f'{r.name} (wave {r.wave})' for r in go]) or 'none'}")
    skipped = [r.name for r in go if (r.backup or {}).get("skipped")]
    backed = [r.name for r in go if (r.backup or {}).get("verified")]
    if skipped:
        lines.append(
            f"Backups verified by a restore: {names(backed) or 'none'}; skipped on purpose "
            f'(the runbook\'s [fleet] backup = "canary"): {names(skipped)}'
        )
    else:
        lines.append(f"Backups verified by a restore: {len(backed)} of {len(go)} GO databases")
    lines.append(waves_line(fleet))
    posts = [
        Post(
            "preflight_result",
            f"{rb.title} pre-flight on {len(results)} databases: {len(go)} GO, {len(nogo)} NO-GO {mark}",
            lines,
            run_id=fleet_id,
            final=not go,
        )
    ]
    if go:
        posts.append(decision_request(rb, fleet_id, [r.name for r in go], [r.name for r in nogo], roster))
    return posts


def decision_request(rb: Runbook, fleet_id: str, go: list[str], nogo: list[str], roster: Roster) -> Post:
    lines = [
        f"To: {roster.mention(TPM)} (TPM)",
        f"One decision covers the {len(go)} GO database{'s' if len(go) != 1 else ''}: {names(go)}",
        "GO scheduled starts the canary at that time; each next wave starts when the one before succeeded.",
    ]
    if nogo:
        lines.append(f"Not covered (NO-GO, they will not run): {names(nogo)}")
    return Post(
        "go_no_go_request",
        f"{rb.title} on {len(go)} databases: requesting one go/no-go decision",
        lines,
        actions=go_no_go_actions(f"Start {rb.title} on {len(go)} databases now, canary first?"),
        run_id=fleet_id,
        mentions=list(roster.members(TPM)),
    )


# ------------------------------------------------------------------ the table of targets


@dataclass(frozen=True)
class Row:
    """One target as every view shows it: state, wave, phase, duration."""

    name: str
    wave: int
    status: str
    mark: str
    phase: str  # "phase 2" or "—"
    took: str  # duration, or "—"
    note: str  # the error or reason, short; "" when none

    def text(self) -> str:
        note = f" — {self.note}" if self.note else ""
        return (
            f"{self.mark} {self.name} · wave {self.wave} · {self.status} · {self.phase} · {self.took}{note}"
        )


def row(t: TargetState) -> Row:
    note = " ".join((t.error or t.reason or "").split())
    return Row(
        t.name,
        t.wave,
        str(t.status),
        MARKS.get(t.status, "•"),
        f"phase {t.phase}" if t.phase is not None else "—",
        seconds(t.duration) if t.duration is not None else "—",
        note if len(note) <= 120 else note[:119] + "…",
    )


def rows(run: FleetRun) -> list[Row]:
    return [row(t) for t in run.targets.values()]


def counts_line(run: FleetRun) -> str:
    found = run.counts()
    order = [str(s) for s in TargetStatus]
    return " · ".join(f"{found[s]} {s}" for s in order if s in found)


def headline(run: FleetRun, roster: Roster) -> tuple[str, str | None]:
    """What the fleet is doing now, and who acts next (None: nobody)."""
    s = str(run.status)
    wave = f", wave {run.wave}" if run.wave is not None else ""
    go = len(run.with_status(T.GO))
    if s == "preflight running":
        return "⏳ Pre-flight running on every database", None
    if s == "go":
        return (
            f"🟢 Pre-flight: {go} GO — awaiting the TPM's decision",
            f"{roster.mention(TPM)} (TPM): GO now, GO scheduled or NO-GO",
        )
    if s == "no-go":
        return (
            "⛔ Pre-flight: no database GO",
            f"{roster.mention(COORDINATOR)}: fix what the summary names, then `preflight` again",
        )
    if s == "approved":
        return (
            f"👍 Approved by <@{(run.decision or {}).get('by')}> for {go} databases",
            f"{roster.mention(COORDINATOR)}: `run`",
        )
    if s == "scheduled":
        when = str((run.approval or {}).get("scheduled_for") or "")[:16].replace("T", " ")
        return f"🗓️ GO scheduled for {when} UTC — the canary starts by itself", None
    if s == "deferred":
        return (
            f"⛔ NO-GO by <@{(run.decision or {}).get('by')}>: {(run.decision or {}).get('reason') or '—'}",
            None,
        )
    if s == "running":
        return f"🔄 Running{wave}: {counts_line(run)}", None
    if s == "succeeded":
        return f"{OK_MARK} Succeeded on every database of the run", None
    if s == "failed":
        return (
            f"{FAIL_MARK} Stopped{wave}: {counts_line(run)}",
            f"{roster.mention(COORDINATOR)} with {roster.mention(TPM)}: `rollback all on <target>`, `rollback all` or `run` again",
        )
    if s == "rolling back":
        return f"↩️ Rolling back: {counts_line(run)}", None
    return f"↩️ Rolled back: {counts_line(run)}", None


def status_lines(run: FleetRun, roster: Roster) -> list[str]:
    """`status` of a fleet run: the headline, the counts, then every target's row."""
    now, nxt = headline(run, roster)
    lines = [
        f"Fleet run {run.id}: {run.status} (started by <@{run.created_by}> at {run.created_at:%Y-%m-%d %H:%M} UTC)",
        now,
    ]
    if nxt:
        lines.append(f"Next: {nxt}")
    lines.append(
        f"{len(run.targets)} databases: {counts_line(run)} · failures {run.failures}/{run.stop_after_failures}"
        + (f" · backup policy {run.backup_policy}" if run.backup_policy else "")
    )
    approval = run.approval or {}
    if approval:
        lines.append(
            f"Approval: GO by <@{approval.get('by')}> at {str(approval.get('at'))[:16]} for "
            f"{len(approval.get('targets') or {})} databases"
            + (
                f", scheduled for {str(approval.get('scheduled_for'))[:16]}"
                if approval.get("scheduled_for")
                else ""
            )
        )
    return lines + [r.text() for r in rows(run)]


# ------------------------------------------------------------------ the thread


def transition_line(event: FleetEvent) -> str | None:
    """The thread's one line for a target's transition (None: not a target transition)."""
    if event.kind != "target" or not event.target:
        return None
    to = event.after or "?"
    try:
        mark = MARKS[TargetStatus(to)]
    except ValueError:
        mark = "•"
    phase = f" at phase {event.phase}" if event.phase is not None and to in ("running", "failed") else ""
    why = " ".join((event.error or event.reason or "").split())  # one line, whatever the error's shape
    tail = f": {why[:REASON_CHARS]}" if why else ""
    return f"{mark} {event.target} (wave {event.wave}): {event.before or '—'} → {to}{phase}{tail}"
