"""The Slack `Reporter`: turns a command's posts and progress into outbox entries.

Posts of a run go into the run's thread (the outbox creates the parent message on the first
one); final posts are also broadcast to the channel. Every post of a run and every progress
queues one refresh of the parent message if none is pending; the refresh renders the run's
card from its stored state when it is delivered, so a burst becomes one `chat.update` (the
latest state wins) and the outbox spaces them out.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, replace

from bot.slack import blocks, fleet_blocks
from bot.slack.outbox import Outbox, RunThreads
from bot.terminal import terminal_safe
from commands.card import describe
from commands.fleetcore import store as fleet_store
from commands.result import Post, Progress
from core.redact import redact

log = logging.getLogger(__name__)

# Posts that mark a change of the run's state: serve logs one line for each.
TRANSITIONS_LOGGED = {
    "preflight_started",
    "preflight_result",
    "decision",
    "phase_started",
    "phase_done",
    "phase_failed",
    "success",
    "failure",
    "rollback_started",
    "rollback_done",
    "restore_request",
    "restore_started",
    "restored",
    "abort",
    "interrupted",
    "schedule_start",
    "schedule_cancelled",
}
# Phase boundaries are also shown in the channel (reply_broadcast), as the communication
# plan's per-phase updates: people who do not open the thread still see them.
BROADCAST = {"phase_started", "phase_done", "phase_failed"}


def redact_post(post: Post, secrets: tuple[str, ...]) -> Post:
    """The post with every secret masked in everything Slack would show."""
    r = lambda text: redact(text, secrets)  # noqa: E731 - a local shorthand
    return replace(
        post,
        title=r(post.title),
        lines=[r(line) for line in post.lines],
        fields={k: r(v) for k, v in post.fields.items()},
        detail=r(post.detail) if post.detail else post.detail,
    )


def card_renderer(core):
    """(run_id, stored meta) -> the run's parent message, for the outbox's Delivery: the run's
    card is derived from its state in the store each time it is delivered (nothing patched)."""

    def render(run_id: str, meta: dict) -> blocks.Rendered:
        fleet = fleet_store(core).get(run_id) if run_id.startswith("fleet-") else None
        if fleet is not None:  # a fleet run's parent message: the table of its targets
            return fleet_blocks.fleet_card(fleet, core.runbook.title, core.roster, run_id)
        progress = Progress(**json.loads(meta["progress"])) if meta.get("progress") else None
        run = core.store.get(run_id)
        card = describe(run, core.runbook, core.roster) if run is not None else None
        if (
            card is not None
            and progress is not None
            and progress.phase != run.phase
            and progress.phase is not None
        ):
            progress = None  # an earlier phase's progress
        return blocks.run_card(run_id, core.runbook.title, card, progress)

    return render


class SlackReporter:
    """Reporter for background work (and for a command's immediate posts)."""

    def __init__(self, outbox: Outbox, threads: RunThreads, secrets: tuple[str, ...] = ()) -> None:
        self.outbox = outbox
        self.threads = threads
        self.secrets = secrets

    def post(self, post: Post) -> None:
        post = redact_post(post, self.secrets)
        if post.kind in TRANSITIONS_LOGGED:
            log.info("run %s: %s", post.run_id or "-", terminal_safe(post.title))
        if post.kind == "report" and post.detail:
            self._upload(post, post.detail, f"report-{post.run_id or 'run'}.md")
            return
        rendered = blocks.post_message(post)
        broadcast = post.final or post.kind in BROADCAST
        self.outbox.put(
            "post",
            message=rendered.payload(),
            run_id=post.run_id,
            broadcast=broadcast,
            fallback=rendered.text,
        )
        if rendered.attachment:
            self._upload(post, rendered.attachment, f"{post.kind}-output.txt")
        if post.run_id:  # the run's state changed before this post: its card is shown again
            self.refresh(post.run_id)

    def progress(self, progress: Progress) -> None:
        self.threads.set_meta(progress.run_id, progress=json.dumps(asdict(progress)))
        self.refresh(progress.run_id)

    def update(self, channel: str, ts: str, rendered: blocks.Rendered) -> None:
        """Edit a message already posted (a decision under a request), in order with the rest."""
        self.outbox.put("update", channel=channel, ts=ts, message=rendered.payload(), fallback=rendered.text)

    def _upload(self, post: Post, content: str, filename: str) -> None:
        self.outbox.put(
            "upload",
            run_id=post.run_id,
            content=content,
            filename=filename,
            title=blocks.cut(post.title, 250),
        )

    def refresh(self, run_id: str) -> None:
        """Queue one edit of the run's parent message (none if one is pending)."""
        if self.threads.mark_dirty(run_id):
            self.outbox.put("refresh", run_id=run_id)
