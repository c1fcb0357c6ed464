"""Modal submissions: GO scheduled (date and time) and NO-GO (the reason)."""

from __future__ import annotations

from bot.slack import blocks
from bot.slack.bridge import request_id
from bot.slack.listeners.actions import Clicked
from bot.slack.listeners.replies import ephemeral_in
from commands.result import OK
from core import clock


def register(app, bridge) -> None:
    @app.view(blocks.SCHEDULE_VIEW)
    def schedule(ack, body, view, client) -> None:
        when = blocks.scheduled_at(view["state"]["values"])
        if when <= clock.now():
            ack(
                response_action="errors",
                errors={"time": "That moment has passed: pick a time in the future (UTC)."},
            )
            return
        ack()
        bridge.submit(lambda: _submit(bridge, client, body, f"approve at {when.strftime('%Y-%m-%dT%H:%MZ')}"))

    @app.view(blocks.DEFER_VIEW)
    def defer(ack, body, view, client) -> None:
        reason = blocks.defer_reason(view["state"]["values"])
        if not reason:
            ack(response_action="errors", errors={"reason": "Say why: it goes into the record."})
            return
        ack()
        bridge.submit(lambda: _submit(bridge, client, body, f"defer {reason}"))


def _submit(bridge, client, body: dict, command: str) -> None:
    user = body["user"]["id"]
    message = Clicked.unstash(bridge, body["view"]["private_metadata"])
    message.unstash_drop(bridge)
    stale = message.stale(bridge)  # the run may have changed while the modal was open
    if stale:
        ephemeral_in(client, message.channel, user, [stale])
        message.expire(bridge, stale)
        return
    outcome = bridge.execute(user, command, request_id(body["view"]["id"], body.get("trigger_id", "")))
    ephemeral_in(client, message.channel, user, [bridge.redact(line) for line in outcome.reply])
    if outcome.code == OK:
        message.decide(bridge, user, command)
