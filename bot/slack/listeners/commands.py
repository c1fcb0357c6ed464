"""`/migrate TEXT`: ack at once, run the command as the invoker, answer them privately."""

from __future__ import annotations

from bot.slack.bridge import request_id
from bot.slack.listeners.replies import ephemeral, is_retry
from commands.result import REFUSED


def register(app, bridge) -> None:
    @app.command("/migrate")
    def migrate(ack, command, respond, request) -> None:
        ack()  # Slack's 3 s: nothing runs before the ack
        retry = is_retry(request)
        bridge.submit(lambda: run(bridge, command, respond, retry))


def run(bridge, command: dict, respond, retry: bool) -> None:
    """Execute the acked command as its invoker and answer them privately."""
    # A slash command carries no id of its own; its trigger_id is unique per invocation.
    outcome = bridge.execute(command["user_id"], command.get("text", ""), request_id(command["trigger_id"]))
    if retry and outcome.code == REFUSED:
        return  # a re-delivery the core refused as already handled: the first answer stands
    ephemeral(respond, [bridge.redact(line) for line in outcome.reply])
