"""The bot's HTTP edge, served by waitress in-process: signatures, retries, acks, health, Home."""
from __future__ import annotations

import json
import time

import pytest

from tests.support.slack_fixtures import bot, scripted, standin  # noqa: F401 (fixtures)
from tests.support.slack_standin import RunningBot, ScriptedCommands

TPM, COORDINATOR = "U0DYLAN", "U0RAFAEL"


def test_help_is_acked_and_answered_privately_through_the_response_url(bot, standin, scripted):
    reply = bot.slack.slash("U0NOBODY", "help")
    assert reply.status == 200 and reply.headers.get("X-Slack-No-Retry") == "1"
    answer = standin.wait_for(lambda c: c.method == "response_url")[0]
    assert answer.body["response_type"] == "ephemeral" and "/migrate status" in answer.body["text"]
    assert scripted.ran("help") == 1
    assert standin.calls_of("chat.postMessage") == []  # nothing in the channel


def test_a_bad_signature_is_rejected_with_401_and_runs_nothing(bot, scripted):
    reply = bot.slack.slash(TPM, "help", bad_signature=True)
    assert reply.status == 401
    assert scripted.executed == []


def test_a_stale_timestamp_is_rejected_with_401_and_runs_nothing(bot, scripted):
    reply = bot.slack.slash(TPM, "help", timestamp=int(time.time()) - 600)
    assert reply.status == 401
    assert scripted.executed == []


def test_a_slack_retry_of_the_same_request_never_runs_twice(bot, standin, scripted):
    body = bot.slack.slash_body(COORDINATOR, "status", trigger_id="4242.retry.trigger")
    first = bot.slack.send(body, "application/x-www-form-urlencoded")
    standin.wait_for(lambda c: c.method == "response_url")
    again = bot.slack.send(body, "application/x-www-form-urlencoded", retry_num=1)
    assert first.status == again.status == 200
    bot.slack.slash(COORDINATOR, "help")  # a later request, answered after the retry was handled
    standin.wait_for(lambda c: c.method == "response_url", count=2)
    bot.bridge.wait_work()
    assert scripted.ran("status") == 1
    assert len([c for c in standin.calls if c.method == "response_url"]) == 2  # no "already handled" noise


def test_healthz_is_200_when_redis_and_the_database_answer(bot):
    reply = bot.get("/healthz")
    assert reply.status == 200 and reply.json() == {"redis": "ok", "database": "ok"}


def test_healthz_is_503_naming_the_database_when_it_is_unreachable(settings, standin):
    down = settings.with_(database_url="postgresql://postgres:Pw0fTheDb@127.0.0.1:1/nowhere")
    running = RunningBot(down, standin, handle=ScriptedCommands())
    try:
        reply = running.get("/healthz")
    finally:
        running.close()
    assert reply.status == 503 and reply.json() == {"redis": "ok", "database": "unreachable"}
    assert "Pw0fTheDb" not in reply.body


def test_opening_the_home_tab_publishes_the_current_run_and_history(bot, standin):
    reply = bot.slack.event({"type": "app_home_opened", "user": TPM, "channel": "D0HOME", "tab": "home"})
    assert reply.status == 200
    call = standin.wait_method("views.publish")[0]
    assert call.body["user_id"] == TPM
    text = json.dumps(call.body["view"])
    assert "Current run" in text and "No run in progress." in text and "Last runs" in text


def test_unknown_paths_are_404(bot):
    assert bot.get("/nope").status == 404


def test_healthz_is_503_naming_redis_when_it_is_unreachable(settings, standin):
    down = settings.with_(redis_url="redis://:RedisPw0rd@127.0.0.1:1/0")
    running = RunningBot(down, standin, handle=ScriptedCommands())
    try:
        reply = running.get("/healthz")
    finally:
        running.close()
    assert reply.status == 503 and reply.json() == {"redis": "unreachable", "database": "ok"}
    assert "RedisPw0rd" not in reply.body
