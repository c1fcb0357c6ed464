"""Button clicks: refuse early those the roster does not allow, open the decision modals,
or run the button's command as the clicker; a decided request loses its buttons."""

from __future__ import annotations

import json
import re

from bot.slack import blocks
from bot.slack.bridge import request_id
from bot.slack.listeners.replies import ephemeral
from commands.result import OK
from core import clock
from core.roster import COORDINATOR

MODALS = {
    "approve_scheduled": lambda meta: blocks.schedule_modal(blocks.next_window(clock.now()), meta),
    "defer": blocks.defer_modal,
}


def register(app, bridge) -> None:
    @app.action(re.compile(r".+"))
    def click(ack, body, action, respond, client) -> None:
        ack()
        button = blocks.button_value(action["value"])
        user = body["user"]["id"]
        role = button.get("r")
        if role and not allowed(bridge.core.roster, user, role, button["id"]):
            ephemeral(
                respond,
                [
                    f"Only the {role} ({bridge.core.roster.mention(role)}) can use “{button['c']}”. Nothing changed."
                ],
            )
            return
        message = Clicked.of(body, button)
        stale = message.stale(bridge)
        if stale:
            ephemeral(respond, [stale])
            message.expire(bridge, stale)
            return
        if button["id"] in MODALS:
            message.stash(bridge)
            client.views_open(trigger_id=body["trigger_id"], view=MODALS[button["id"]](message.metadata()))
            return
        bridge.submit(lambda: run(bridge, user, button["c"], body["trigger_id"], respond, message))


def run(bridge, user: str, command: str, trigger_id: str, respond, message: Clicked) -> None:
    """Execute the button's command as the clicker; a success is written into the message."""
    outcome = bridge.execute(user, command, request_id(trigger_id))
    ephemeral(respond, [bridge.redact(line) for line in outcome.reply])
    if outcome.code == OK:
        message.decide(bridge, user, command)


def allowed(roster, user: str, role: str, action_id: str) -> bool:
    """Early check only (the core decides): the button's role, and for a phase the coordinator too."""
    extra = (COORDINATOR,) if action_id == "run_phase" else ()
    return roster.has_role(user, role, *extra)


class Clicked:
    """The message a button sat on, so that a decision can be written into it."""

    def __init__(
        self, channel: str, ts: str, run_id: str | None, action_id: str, blocks_: list[dict]
    ) -> None:
        self.channel, self.ts, self.run_id, self.action_id, self.blocks = (
            channel,
            ts,
            run_id,
            action_id,
            blocks_,
        )

    @classmethod
    def of(cls, body: dict, button: dict) -> Clicked:
        container = body.get("container", {})
        return cls(
            container.get("channel_id") or body["channel"]["id"],
            container["message_ts"],
            button.get("run"),
            button["id"],
            body.get("message", {}).get("blocks", []),
        )

    def metadata(self) -> str:
        return json.dumps({"c": self.channel, "ts": self.ts, "run": self.run_id, "id": self.action_id})

    def _field(self) -> str:
        return f"message:{self.ts}"

    def stash(self, bridge) -> None:
        """Keep the message's blocks until the modal is submitted (metadata holds 3,000 chars only)."""
        bridge.threads.set_meta(self.run_id or "-", **{self._field(): json.dumps(self.blocks)})

    @classmethod
    def unstash(cls, bridge, metadata: str) -> Clicked:
        meta = json.loads(metadata)
        stored = bridge.threads.meta(meta["run"] or "-").get(f"message:{meta['ts']}", "[]")
        return cls(meta["c"], meta["ts"], meta["run"], meta["id"], json.loads(stored))

    def stale(self, bridge) -> str | None:
        """Buttons act through commands on the *current* run: a button of an older run must not
        approve, defer or restore a newer one."""
        current = bridge.core.store.current()
        if self.run_id and current is not None and current.id != self.run_id:
            return (
                f"This button belongs to run {self.run_id}, which is no longer current (the current run is "
                f"{current.id}). Nothing changed."
            )
        return None  # no current run: the core itself refuses whatever the button asks

    def expire(self, bridge, reason: str) -> None:
        """Take the buttons off a message whose run is no longer current."""
        bridge.reporter.update(
            self.channel,
            self.ts,
            blocks.Rendered(blocks.fallback(reason), blocks.decided(self.blocks, reason)),
        )
        self.unstash_drop(bridge)

    def unstash_drop(self, bridge) -> None:
        """The stashed blocks are needed only until the modal is submitted."""
        bridge.core.redis.hdel(bridge.core.keys.slack_meta(self.run_id or "-"), self._field())

    def decide(self, bridge, user: str, command: str) -> None:
        """Edit the message: buttons gone, who decided what and when."""
        line = blocks.decision_line(user, clock.now(), self.action_id, command)
        bridge.reporter.update(
            self.channel, self.ts, blocks.Rendered(blocks.fallback(line), blocks.decided(self.blocks, line))
        )
