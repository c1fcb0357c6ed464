"""Private answers to the invoker, shared by the listeners."""

from __future__ import annotations

from bot.slack import blocks


def is_retry(request) -> bool:
    """Slack re-sent this request (`X-Slack-Retry-Num`): it may already have been handled."""
    return bool(request.headers.get("x-slack-retry-num"))


def ephemeral(respond, lines: list[str]) -> None:
    """Answer only the invoker, through the interaction's response_url."""
    if lines:
        respond(**blocks.reply_message(lines).payload(), response_type="ephemeral", replace_original=False)


def ephemeral_in(client, channel: str, user: str, lines: list[str]) -> None:
    """Answer only `user` in `channel` (view submissions have no response_url)."""
    if lines:
        client.chat_postEphemeral(channel=channel, user=user, **blocks.reply_message(lines).payload())
