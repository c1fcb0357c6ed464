"""The report's whole path through Slack with the real command core, real PostgreSQL, real Redis.

preflight (slash) → GO request in the run's thread → a click by a non-TPM refused → GO now by
the TPM (request edited) → phase 1 by its owner (slash) → "Run phase 2" button by the phase 2
owner → "Run phase 3" button by the coordinator (verification) → success broadcast → report
uploaded to the thread. The parent message is edited in place along the way.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import PLANTED
from tests.support.slack_fixtures import standin  # noqa: F401 (fixture)
from tests.support.slack_standin import RunningBot

COORDINATOR, TPM, LIU, SERGEI = "U0RAFAEL", "U0DYLAN", "U0LIU", "U0SERGEI"


@pytest.fixture
def bot(ready, standin):
    running = RunningBot(ready, standin)  # the real commands.handle
    yield running
    running.close()


def posted(standin, needle: str):
    """The stored message (latest version) whose fallback text contains `needle`."""
    call = standin.wait_method("chat.postMessage", where=lambda b: needle in b.get("text", ""), timeout=120)[
        -1
    ]
    return standin.messages[("C0MIGRATE", call.answer["ts"])]


def slash(bot, user: str, text: str) -> None:
    assert bot.slack.slash(user, text).status == 200


def ephemeral_containing(standin, needle: str):
    return standin.wait_for(
        lambda c: c.method == "response_url" and needle in c.body.get("text", ""), timeout=60
    )


def test_whole_path_of_the_report_through_slack(bot, standin):
    slash(bot, COORDINATOR, "preflight")
    request = posted(standin, "Requesting go/no-go decision")
    run_id = json.loads(request["blocks"][-1]["elements"][0]["value"])["run"]
    parent = bot.bridge.threads.parent(run_id)
    assert request["thread_ts"] == parent

    bot.slack.click(LIU, request, "approve_now")
    ephemeral_containing(standin, "Only the tpm")
    bot.slack.click(TPM, request, "approve_now")
    decided = standin.wait_for(
        lambda c: c.method == "chat.update" and c.body["ts"] == request["ts"], timeout=30
    )[0]
    assert "decided by <@U0DYLAN>" in decided.body["text"] and "actions" not in json.dumps(
        decided.body["blocks"]
    )

    slash(bot, SERGEI, "run phase 1")
    ephemeral_containing(standin, "only the database engineer or coordinator")
    slash(bot, LIU, "run phase 1")
    phase1 = posted(standin, "Phase 1 complete")
    # The post is sent before phase 1's work releases the run lock: a click at once waits for
    # that work's last bookkeeping instead of being refused.
    bot.slack.click(SERGEI, phase1, "run_phase")
    assert phase1["thread_ts"] == parent
    clicked = standin.wait_for(
        lambda c: c.method == "chat.update" and c.body["ts"] == phase1["ts"], timeout=30
    )[0]
    assert clicked.body["text"].startswith("`run phase 2` by <@U0SERGEI>") and '"actions"' not in json.dumps(
        clicked.body["blocks"]
    )
    phase2 = posted(standin, "Phase 2 complete")
    bot.slack.click(COORDINATOR, phase2, "run_phase")
    success = standin.wait_method(
        "chat.postMessage", where=lambda b: "SUCCESSFUL" in b.get("text", ""), timeout=120
    )[-1]
    assert success.body["thread_ts"] == parent and success.body["reply_broadcast"] is True
    bot.bridge.wait_work()

    slash(bot, COORDINATOR, "report")
    report = standin.wait_method("files.completeUploadExternal", where=lambda b: True, timeout=30)[-1]
    assert report.body["thread_ts"] == parent
    assert "## Sign-Off" in standin.calls_of("upload")[-1].body["content"]

    bot.bridge.worker.drain(timeout=30)
    run_posts = [c for c in standin.calls_of("chat.postMessage") if c.body.get("thread_ts") == parent]
    top_level = [c for c in standin.calls_of("chat.postMessage") if "thread_ts" not in c.body]
    assert len(top_level) == 1 and top_level[0].answer["ts"] == parent  # one parent for the run
    assert len(run_posts) >= 6
    parent_edits = [c for c in standin.calls_of("chat.update") if c.body["ts"] == parent]
    assert parent_edits and "Succeeded" in json.dumps(parent_edits[-1].body["blocks"])
    assert [c for c in standin.calls if c.answer.get("error")] == []  # Slack rejected nothing
    everything = json.dumps([c.body for c in standin.calls])
    for secret in (PLANTED["key"], "S3cretMongoPw42", "S3cretRedisPw42", PLANTED["bot_token"]):
        assert secret not in everything


def test_status_and_incident_answer_privately_and_announce_in_the_channel(bot, standin):
    slash(bot, COORDINATOR, "status")
    status = ephemeral_containing(standin, "No run yet")[0]
    assert status.body["response_type"] == "ephemeral"
    slash(bot, LIU, "incident start database CPU at 95%")
    ephemeral_containing(standin, "Incident recorded")
    slash(bot, "U0STRANGER", "incident clear")
    ephemeral_containing(standin, "only people on the roster")
    bot.bridge.worker.drain(timeout=30)
    texts = [c.body.get("text", "") for c in standin.calls_of("chat.postMessage")]
    assert len(texts) == 1 and "Critical incident declared by <@U0LIU>: database CPU at 95%" in texts[0]
    assert bot.core.store.incident() is not None  # the stranger's clear changed nothing


def _request(bot, standin):
    slash(bot, COORDINATOR, "preflight")
    return posted(standin, "Requesting go/no-go decision")


def test_go_scheduled_through_the_modal_with_the_real_core(bot, standin):
    request = _request(bot, standin)
    bot.slack.click(TPM, request, "approve_scheduled")
    view = standin.wait_method("views.open")[0].body["view"]
    day = view["blocks"][1]["element"]["initial_date"]
    bot.slack.submit_view(
        TPM, view, {"date": {"date": {"selected_date": day}}, "time": {"time": {"selected_time": "02:00"}}}
    )
    edit = standin.wait_for(
        lambda c: c.method == "chat.update" and c.body["ts"] == request["ts"], timeout=30
    )[0]
    assert edit.body["text"].endswith(f"GO scheduled for {day} 02:00 UTC")
    bot.bridge.wait_work()
    assert str(bot.core.store.current().status) == "scheduled"


def test_no_go_through_the_modal_with_the_real_core(bot, standin):
    request = _request(bot, standin)
    bot.slack.click(TPM, request, "defer")
    view = standin.wait_method("views.open")[0].body["view"]
    bot.slack.submit_view(TPM, view, {"reason": {"reason": {"value": "Black Friday traffic"}}})
    edit = standin.wait_for(
        lambda c: c.method == "chat.update" and c.body["ts"] == request["ts"], timeout=30
    )[0]
    assert edit.body["text"].endswith("NO-GO (Black Friday traffic)")
    bot.bridge.wait_work()
    assert str(bot.core.store.current().status) == "deferred"


def test_a_retried_delivery_of_a_command_runs_it_once_with_the_real_core(bot, standin):
    body = bot.slack.slash_body(LIU, "incident start replica lag 40 s", trigger_id="777.retried.trigger")
    assert bot.slack.send(body, "application/x-www-form-urlencoded").status == 200
    ephemeral_containing(standin, "Incident recorded")
    assert bot.slack.send(body, "application/x-www-form-urlencoded", retry_num=1).status == 200
    slash(bot, COORDINATOR, "status")  # answered after the retry was handled
    standin.wait_for(lambda c: c.method == "response_url", count=2, timeout=30)
    bot.bridge.worker.drain(timeout=30)
    announcements = [
        c for c in standin.calls_of("chat.postMessage") if "replica lag 40 s" in c.body.get("text", "")
    ]
    assert len(announcements) == 1
    assert len([c for c in standin.calls if c.method == "response_url"]) == 2


def test_the_home_tab_shows_the_run_waiting_for_the_tpm(bot, standin):
    _request(bot, standin)
    bot.bridge.wait_work()
    bot.slack.event({"type": "app_home_opened", "user": TPM, "channel": "D0HOME", "tab": "home"})
    view = json.dumps(standin.wait_method("views.publish")[0].body["view"])
    assert "Waiting for a decision" in view and "<@U0DYLAN>" in view and "awaiting the TPM" in view


def test_a_button_of_an_older_run_cannot_decide_the_current_one(bot, standin):
    """Buttons run commands on the current run: an old request's GO must not approve a new run."""
    old = _request(bot, standin)
    bot.bridge.wait_work()
    old_run = bot.core.store.current().id
    slash(bot, TPM, "defer wrong window")
    bot.bridge.wait_work()
    slash(bot, COORDINATOR, "preflight")  # a new run, with its own request
    standin.wait_method(
        "chat.postMessage",
        where=lambda b: "Requesting go/no-go decision" in b.get("text", ""),
        count=2,
        timeout=120,
    )
    bot.bridge.wait_work()
    new_run = bot.core.store.current().id
    assert new_run != old_run

    bot.slack.click(TPM, old, "approve_now")

    ephemeral_containing(standin, f"belongs to run {old_run}, which is no longer current")
    edit = standin.wait_for(lambda c: c.method == "chat.update" and c.body["ts"] == old["ts"], timeout=30)[-1]
    assert not [b for b in edit.body["blocks"] if b["type"] == "actions"]  # the stale buttons are gone
    assert str(bot.core.store.current().status) == "go"  # the new run was not approved
