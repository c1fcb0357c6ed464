"""Block Kit for a fleet run: its parent message (one table of targets, edited in place), the
thread's one line per target transition, and App Home's fleet section — within Slack's limits.

The table shows every target while it fits (TABLE_ROWS rows, a few sections of at most 3,000
characters); a bigger fleet is summarized: the counts by state, then the rows that need eyes
(running, failed, queued, rolling back, NO-GO…) up to TABLE_ROWS, then the settled ones named
by state (cut with "and N more"). `status` and `report` carry the full table.
"""

from __future__ import annotations

from bot.slack import blocks
from bot.slack.blocks import Rendered, chunks, context, fallback, fit, header, section
from commands import fleet_templates
from core.roster import Roster
from state.fleet import FleetRun, TargetStatus

TABLE_ROWS = 60  # rows shown in full on the card; above this the settled ones are summarized
CARD_BLOCKS = blocks.MAX_BLOCKS
# States that need no eyes once reached: summarized first when the fleet is big.
SETTLED = (TargetStatus.SUCCEEDED, TargetStatus.ROLLED_BACK, TargetStatus.GO, TargetStatus.PENDING)


def table_lines(run: FleetRun, limit: int = TABLE_ROWS) -> list[str]:
    """The card's table: every row if the fleet has at most `limit` targets, else a summary."""
    rows = fleet_templates.rows(run)
    if len(rows) <= limit:
        return [r.text() for r in rows]
    settled = {str(s) for s in SETTLED}
    urgent = [r for r in rows if r.status not in settled]
    shown = urgent[:limit]
    lines = [r.text() for r in shown]
    if len(urgent) > limit:
        lines.append(f"… and {len(urgent) - limit} more not settled (`/migrate status` lists every one)")
    for status in SETTLED:
        named = [r.name for r in rows if r.status == str(status)]
        if named:
            mark = fleet_templates.MARKS[status]
            lines.append(f"{mark} {len(named)} {status}: {fleet_templates.names(named, 30)}")
    return lines


def fleet_card(run: FleetRun | None, title: str, roster: Roster, fleet_id: str) -> Rendered:
    """The fleet run's parent message, from its stored state (nothing patched)."""
    parts = [header(title)]
    if run is None:
        parts.append(section(f"Fleet run `{fleet_id}` is no longer in Redis."))
        return Rendered(fallback(f"{title}: fleet run {fleet_id}"), parts)
    now, nxt = fleet_templates.headline(run, roster)
    summary = [f"*{now}*"] + ([f"*Next:* {nxt}"] if nxt else [])
    summary.append(
        f"{len(run.targets)} databases · {fleet_templates.counts_line(run)}"
        + (f" · wave {run.wave}" if run.wave is not None else "")
        + f" · failures {run.failures}/{run.stop_after_failures}"
    )
    parts.append(section("\n".join(summary)))
    table = [section(t) for t in chunks(table_lines(run))]
    tail = [context(f"fleet run `{run.id}` · one line per database change in the thread")]
    body, _ = fit(
        parts + table, tail, CARD_BLOCKS, note="… table cut: `/migrate status` lists every database"
    )
    return Rendered(fallback(f"{title}: {now}"), body)


LINES_PER_MESSAGE = 25  # transition lines gathered into one thread message


def transition_message(lines: list[str]) -> Rendered:
    """Thread lines, one per target transition, in one message (a section per 3,000 characters)."""
    return Rendered(fallback("\n".join(lines)), [section(t) for t in chunks(lines)])


def home_lines(run: FleetRun, title: str, roster: Roster) -> list[str]:
    """App Home's current fleet run: headline, counts and its table."""
    now, nxt = fleet_templates.headline(run, roster)
    lines = [f"*{title}* · fleet run `{run.id}` · {len(run.targets)} databases", f"*{now}*"]
    if nxt:
        lines.append(f"*Next:* {nxt}")
    return lines + table_lines(run)
