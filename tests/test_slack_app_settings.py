"""Two settings of the bolt App (bot/slack/app.py) that are not request verification:
`process_before_response=False` (HTTP mode under waitress: the ack is Slack's answer, listeners
finish afterwards on bolt's pool) and the `@app.error` handler (a listener's exception is logged
once, redacted, without a traceback; Slack gets its usual ack, never the error)."""

from __future__ import annotations

import logging
import threading

from tests.support.slack_fixtures import bot, scripted, standin  # noqa: F401 (fixtures)


def test_the_ack_does_not_wait_for_a_listener_still_running(bot):
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    @bot.app.event("reaction_added")
    def slow(ack) -> None:
        ack()
        started.set()
        release.wait(20)
        finished.set()

    try:
        reply = bot.slack.event({"type": "reaction_added", "user": "U0NOBODY", "reaction": "tada"})
        # With process_before_response=True bolt answers only when the listener returns (20 s).
        assert reply.status == 200 and not finished.is_set()
        assert started.wait(10)  # the listener did run, on bolt's pool, after the answer
    finally:
        release.set()
    assert finished.wait(10)


def test_a_listener_s_exception_is_logged_once_redacted_and_not_sent_to_slack(bot, standin, caplog):
    caplog.set_level(logging.DEBUG)
    secret = bot.bridge.secrets[0]
    raised = threading.Event()

    @bot.app.event("reaction_added")
    def broken(ack) -> None:
        ack()
        raised.set()
        raise RuntimeError(f"could not reach the database with {secret}")

    reply = bot.slack.event({"type": "reaction_added", "user": "U0NOBODY", "reaction": "boom"})
    assert reply.status == 200 and "could not reach" not in reply.body
    assert raised.wait(10)
    from tests.support.waiting import wait_until

    wait_until(
        lambda: any("slack listener failed" in r.getMessage() for r in caplog.records),
        timeout=10,
        what="the listener's failure to be logged",
    )
    failed = [
        r
        for r in caplog.records
        if "could not reach the database" in r.getMessage()
        or (r.exc_text and "could not reach" in r.exc_text)
    ]
    assert len(failed) == 1 and failed[0].getMessage().startswith("slack listener failed")
    assert failed[0].exc_info is None  # one line, no traceback
    assert secret not in caplog.text and "Traceback" not in caplog.text
    assert not any(
        "could not reach" in str(c.body) for c in standin.calls_of("chat.postMessage", ok_only=False)
    )
