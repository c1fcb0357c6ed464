"""Every Block Kit payload the bot sends, built within Slack's limits.

Listeners and the outbox never assemble blocks themselves: they call these builders, which
keep to Slack's limits (50 blocks per message, 100 per view, section text 3,000, header 150,
button text 75 and value 2,000, confirm title 100 and text 300) and always include a
top-level `text` fallback. Text too long for a message is cut with a note and handed back
as `attachment` so the outbox can upload it as a file snippet.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from commands.card import Card
from commands.result import Action, Post, Progress
from core.clock import hhmm

MAX_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
SECTION_CHARS = 3000
HEADER_CHARS = 150
BUTTON_TEXT = 75
BUTTON_VALUE = 2000
CONFIRM_TITLE = 100
CONFIRM_TEXT = 300
FALLBACK_CHARS = 3000  # the notification text: short, never near Slack's 40,000
DETAIL_INLINE = 2800  # detail shown inline in a code block; longer is attached as a file
TRUNCATED = "… truncated, full output attached"
BAR_CELLS = 20

# Modal callback ids and the low-traffic window of the report (02:00–04:00 UTC).
SCHEDULE_VIEW = "approve_scheduled_modal"
DEFER_VIEW = "defer_modal"
WINDOW_START = time(2, 0)


@dataclass
class Rendered:
    """A message payload plus the full text to attach when something was cut."""

    text: str
    blocks: list[dict]
    attachment: str | None = None

    def payload(self) -> dict:
        return {"text": self.text, "blocks": self.blocks}


def cut(text: str, limit: int, note: str = "…") -> str:
    """`text` if it fits in `limit` characters, else its head and `note`."""
    return text if len(text) <= limit else text[: max(0, limit - len(note) - 1)] + "\n" + note


# The only markup kept from a text: user and channel mentions (`<@U…>`, `<#C…>`, with an
# optional `|label`). Everything else with `<`, `>` or `&` is shown literally, so that user
# text cannot ping the channel (`<!channel>`), hide a link (`<https://…|label>`) or swallow
# a placeholder (`run phase <n>`).
_KEPT_MARKUP = re.compile(r"&lt;([@#][A-Z0-9]+(?:\|[^&<>]*)?)&gt;")
_PARTIAL_ENTITY = re.compile(r"&[a-z]{0,3}$")
MENTION = re.compile(r"<[@#][A-Z0-9]+(?:\|[^<>]*)?>")


def escape(text: str) -> str:
    """`text` for a mrkdwn field: `&`, `<`, `>` escaped, user/channel mentions kept."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _KEPT_MARKUP.sub(r"<\1>", escaped)


def cut_escaped(text: str, limit: int, note: str = "…") -> str:
    """`text` escaped for mrkdwn, cut to `limit` characters without splitting an entity."""
    escaped = escape(text)
    if len(escaped) <= limit:
        return escaped
    head = _PARTIAL_ENTITY.sub("", escaped[: max(0, limit - len(note) - 1)])
    return head + "\n" + note


def plain(text: str) -> dict:
    return {"type": "plain_text", "text": text, "emoji": True}


def mrkdwn(text: str, limit: int = SECTION_CHARS) -> dict:
    """A mrkdwn text object: every text goes through the one escaper on its way in."""
    return {"type": "mrkdwn", "text": cut_escaped(shown(text), limit)}


def shown(text: str | None) -> str:
    """Slack rejects empty text objects: a blank text becomes a dash."""
    return text if text and text.strip() else "—"


def header(text: str) -> dict:
    """A header block: plain_text, so mrkdwn's code marks would show as backticks: dropped."""
    return {"type": "header", "text": plain(cut(shown(text.replace("`", "")), HEADER_CHARS))}


# Anchored at the first blank of a run (`(?<!\s)`): a bare `\s+by` is tried from every blank of
# the run and rescans the rest of it each time — quadratic (an incident text holding 40,000
# spaces took 13 s of the GIL in every post showing it).
_BY_MENTION = re.compile(r"(?<!\s)\s+by (<@[A-Z0-9]+(?:\|[^<>]*)?>)")


def title_blocks(title: str) -> list[dict]:
    """A post's title as a header; mentions render only in mrkdwn, so a `by <@U…>` moves to a
    context line under the header, and a title with other mentions becomes a bold section."""
    by = _BY_MENTION.findall(title)
    rest = _BY_MENTION.sub("", title)
    if MENTION.search(rest):
        return [section(f"*{title}*")]
    return [header(rest)] + ([context("by " + ", ".join(by))] if by else [])


def section(text: str) -> dict:
    return {"type": "section", "text": mrkdwn(text)}


def context(text: str) -> dict:
    return {"type": "context", "elements": [mrkdwn(text)]}


def chunks(lines: list[str], limit: int = SECTION_CHARS) -> list[str]:
    """Pack lines into texts of at most `limit` characters (an overlong line is cut)."""
    out: list[str] = []
    current = ""
    for line in lines:
        line = cut(line, limit)
        # measured as Slack will count it: escaped
        if current and len(escape(current)) + 1 + len(escape(line)) > limit:
            out.append(current)
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    if current:
        out.append(current)
    return out


def fit(
    blocks: list[dict], tail: list[dict], limit: int = MAX_BLOCKS, note: str = TRUNCATED
) -> tuple[list[dict], bool]:
    """`blocks` + `tail` within `limit` blocks: body blocks dropped (with a note) first."""
    room = limit - len(tail)
    if len(blocks) <= room:
        return blocks + tail, False
    return blocks[: room - 1] + [context(note)] + tail, True


def button(action: Action, index: int, run_id: str | None) -> dict:
    """A button whose value carries the command it stands for (and who may click it)."""
    value = json.dumps({"id": action.id, "c": action.command, "r": action.allowed_role, "run": run_id})
    el = {
        "type": "button",
        "action_id": f"{action.id}:{index}",
        "text": plain(cut(action.label, BUTTON_TEXT)),
        "value": value[:BUTTON_VALUE],
    }
    if action.style in ("primary", "danger"):
        el["style"] = action.style
    if action.confirm:
        el["confirm"] = {
            "title": plain(cut(f"{action.label}?", CONFIRM_TITLE)),
            "text": mrkdwn(action.confirm, CONFIRM_TEXT),
            "confirm": plain("Yes, go ahead"),
            "deny": plain("Cancel"),
            **({"style": action.style} if action.style in ("primary", "danger") else {}),
        }
    return el


def button_value(raw: str) -> dict:
    """The command, role and run a button click stands for."""
    return json.loads(raw)


def actions_block(actions: list[Action], run_id: str | None) -> dict:
    return {
        "type": "actions",
        "block_id": "actions",
        "elements": [button(a, i, run_id) for i, a in enumerate(actions[:25])],
    }


def post_message(post: Post) -> Rendered:
    """A channel message for `post`: title, body, fields, mentions, detail and buttons."""
    body_lines = list(post.lines) + [f"*{k}:* {v}" for k, v in post.fields.items()]
    blocks = title_blocks(post.title) + [section(t) for t in chunks(body_lines)]
    attachment = None
    if post.detail:
        inline = inline_detail(post.detail)
        blocks.append(section(f"```{inline}```"))
        if inline is not post.detail:
            blocks.append(context(TRUNCATED))
            attachment = post.detail
    tail = []
    if post.mentions:
        tail.append(context("Action needed from " + ", ".join(f"<@{u}>" for u in post.mentions)))
    informed = [u for u in post.informed if u not in post.mentions]
    if informed:
        tail.append(context("FYI " + ", ".join(f"<@{u}>" for u in informed)))
    if post.actions:
        tail.append(actions_block(post.actions, post.run_id))
    blocks, dropped = fit(blocks, tail)
    if dropped and attachment is None:
        attachment = post.text()
    return Rendered(fallback(post.text()), blocks, attachment)


def inline_detail(detail: str) -> str:
    """The head of `detail` that, escaped, fits in DETAIL_INLINE (the whole when it does)."""
    inline = detail[:DETAIL_INLINE]
    while len(escape(inline)) > DETAIL_INLINE:
        inline = inline[: len(inline) * 9 // 10]
    return detail if inline == detail else inline


def fallback(text: str) -> str:
    """The top-level `text` (notifications parse it as mrkdwn too: escaped like the blocks)."""
    return cut_escaped(shown(text), FALLBACK_CHARS, TRUNCATED)


def reply_message(lines: list[str]) -> Rendered:
    """An ephemeral answer to the invoker (help, refusals, status, a report document)."""
    lines = [part for line in lines for part in line.splitlines()] or ["—"]
    blocks, _ = fit(
        [section(t) for t in chunks(lines)],
        [],
        note="… truncated (long documents are also attached in the run's thread)",
    )
    return Rendered(fallback("\n".join(lines)), blocks)


def plain_message(text: str) -> dict:
    """The plain-text replacement for a message Slack rejected: no blocks at all."""
    return {"text": fallback(text)}


# -- the run's parent message -------------------------------------------------------------------
def bar(fraction: float, cells: int = BAR_CELLS) -> str:
    """A text progress bar: `▓▓▓▓░░░░  40%`."""
    fraction = min(max(fraction, 0.0), 1.0)
    full = round(fraction * cells)
    return "▓" * full + "░" * (cells - full) + f" {round(fraction * 100):3d}%"


def duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, sec = divmod(seconds, 60)
    return f"{minutes} min {sec:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def progress_lines(p: Progress) -> list[str]:
    """Phase, statement k of n, elapsed against the estimate, and a bar."""
    lines = []
    if p.phase is not None:
        lines.append(f"*Phase {p.phase}:* {p.phase_name}" + (f" · step {p.step}" if p.step else ""))
    if p.statements:
        where = f" in `{p.file}`" if p.file else ""
        lines.append(f"*Statement:* {p.statement} of {p.statements}{where}")
        lines.append(f"`{bar(p.statement / p.statements)}`")
    if p.estimate:
        over = " (over the estimate)" if p.elapsed > p.estimate else ""
        lines.append(f"*Elapsed:* {duration(p.elapsed)} of {duration(p.estimate)} estimated{over}")
    return lines


def card_lines(card: Card) -> list[str]:
    """The card's facts: what happens now (bold), who acts next, one line per phase."""
    lines = [f"*{card.now}*"]
    if card.next:
        lines.append(f"*Next:* {card.next}")
    return lines + [""] + card.phases if card.phases else lines


def run_card(run_id: str, title: str, card: Card | None, progress: Progress | None) -> Rendered:
    """The run's parent message, rendered again from the run's state at every change.

    `progress` (the latest statement k of n) is shown only while the card says work runs;
    a run the store does not know (None) shows its progress alone."""
    blocks = [header(title)]
    if card is not None:
        blocks.append(section("\n".join(card_lines(card))))
    if progress is not None and (card is None or card.working):
        blocks.append(section("\n".join(progress_lines(progress) or [progress.state])))
    blocks.append(context(f"run `{run_id}` · details in the thread"))
    text = f"{title}: " + (card.now if card else (progress.state if progress else "started"))
    return Rendered(fallback(text), blocks)


# -- decisions ------------------------------------------------------------------------------
def decision_line(user: str, when: datetime, action_id: str, command: str) -> str:
    """`decided by <@U…> at HH:MM UTC: GO now`; other buttons: `run phase 2 by <@U…> at …`."""
    decisions = {
        "approve_now": lambda: "GO now",
        "approve_scheduled": lambda: (
            "GO scheduled for " + readable(command.removeprefix("approve at ").strip())
        ),
        "defer": lambda: "NO-GO (" + command.removeprefix("defer").strip() + ")",
    }
    if action_id not in decisions:
        return f"`{command}` by <@{user}> at {hhmm(when)}"
    return f"decided by <@{user}> at {hhmm(when)}: {decisions[action_id]()}"


def readable(moment: str) -> str:
    """`2026-11-25T02:00Z` as `2026-11-25 02:00 UTC`; anything else unchanged."""
    try:
        return datetime.fromisoformat(moment).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return moment


def decided(blocks: list[dict], line: str) -> list[dict]:
    """The message's blocks with its buttons gone and the decision appended."""
    kept = [b for b in blocks if b.get("type") != "actions"]
    return fit(kept, [section(line)])[0]


# -- modals ---------------------------------------------------------------------------------
def next_window(now: datetime) -> datetime:
    """The next 02:00 UTC: the start of the report's low-traffic window."""
    now = now.astimezone(UTC)
    start = datetime.combine(now.date(), WINDOW_START, UTC)
    return start if start > now else start + timedelta(days=1)


def schedule_modal(default: datetime, metadata: str) -> dict:
    """GO scheduled: a date and a time (UTC), defaulting to the next low-traffic window."""
    return {
        "type": "modal",
        "callback_id": SCHEDULE_VIEW,
        "private_metadata": metadata,
        "title": plain("GO scheduled"),
        "submit": plain("Schedule GO"),
        "close": plain("Cancel"),
        "blocks": [
            section("Pick when the run starts (UTC). The report's low-traffic window is 02:00–04:00 UTC."),
            {
                "type": "input",
                "block_id": "date",
                "label": plain("Date (UTC)"),
                "element": {
                    "type": "datepicker",
                    "action_id": "date",
                    "initial_date": default.date().isoformat(),
                },
            },
            {
                "type": "input",
                "block_id": "time",
                "label": plain("Time (UTC)"),
                "element": {
                    "type": "timepicker",
                    "action_id": "time",
                    "initial_time": default.strftime("%H:%M"),
                },
            },
        ],
    }


def scheduled_at(values: dict) -> datetime:
    """The UTC moment a schedule modal's submission names."""
    day = date.fromisoformat(values["date"]["date"]["selected_date"])
    hour, minute = map(int, values["time"]["time"]["selected_time"].split(":"))
    return datetime.combine(day, time(hour, minute), UTC)


def defer_modal(metadata: str) -> dict:
    """NO-GO: asks the reason (it goes to the record and the channel)."""
    return {
        "type": "modal",
        "callback_id": DEFER_VIEW,
        "private_metadata": metadata,
        "title": plain("NO-GO"),
        "submit": plain("Record NO-GO"),
        "close": plain("Cancel"),
        "blocks": [
            {
                "type": "input",
                "block_id": "reason",
                "label": plain("Reason"),
                "element": {
                    "type": "plain_text_input",
                    "action_id": "reason",
                    "multiline": True,
                    "max_length": 500,
                },
            },
        ],
    }


def defer_reason(values: dict) -> str:
    return " ".join((values["reason"]["reason"].get("value") or "").split())


# -- App Home -------------------------------------------------------------------------------
def home_view(
    current: list[str], pending: list[str], history: list[str], followups: Sequence[str] = ()
) -> dict:
    """The Home tab: the current run's card, what waits for a decision, the last runs and the
    follow-ups still due."""
    blocks = [
        header("Migration runs"),
        section("*Current run*"),
        *[section(t) for t in chunks(current or ["No run in progress."])],
    ]
    if pending:
        blocks += [section("*Waiting for a decision*"), *[section(t) for t in chunks(pending)]]
    blocks += [
        {"type": "divider"},
        section("*Last runs*"),
        *[section(t) for t in chunks(history or ["No runs yet."])],
    ]
    blocks += [
        {"type": "divider"},
        section("*Follow-ups due*"),
        *[section(t) for t in chunks(list(followups) or ["Nothing scheduled."])],
    ]
    return {"type": "home", "blocks": fit(blocks, [], MAX_VIEW_BLOCKS)[0]}
