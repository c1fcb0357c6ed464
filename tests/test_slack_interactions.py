"""Buttons and modals through the real bot HTTP server: who may click, what a decision edits."""

from __future__ import annotations

import json

from tests.support.slack_fixtures import bot, scripted, standin  # noqa: F401 (fixtures)

TPM, COORDINATOR, LIU = "U0DYLAN", "U0RAFAEL", "U0LIU"


def request_message(bot, standin) -> dict:
    """Run preflight as the coordinator; return the go/no-go request as Slack stores it."""
    assert bot.slack.slash(COORDINATOR, "preflight").status == 200
    call = standin.wait_method("chat.postMessage", where=lambda b: "GO / NO-GO?" in b.get("text", ""))[0]
    ts = call.answer["ts"]
    return standin.messages[("C0MIGRATE", ts)]


def edits_of(standin, ts):
    return [c for c in standin.calls_of("chat.update") if c.body["ts"] == ts]


def test_the_request_sits_in_the_run_thread_with_three_buttons_for_the_tpm(bot, standin):
    message = request_message(bot, standin)
    parent = bot.bridge.threads.parent(message_run(message))
    assert message["thread_ts"] == parent
    buttons = [el for b in message["blocks"] if b["type"] == "actions" for el in b["elements"]]
    assert [b["text"]["text"] for b in buttons] == ["GO now", "GO scheduled", "NO-GO"]
    assert f"<@{TPM}>" in json.dumps(message["blocks"])


def message_run(message) -> str:
    buttons = [el for b in message["blocks"] if b["type"] == "actions" for el in b["elements"]]
    return json.loads(buttons[0]["value"])["run"]


def test_a_click_by_someone_else_is_refused_privately_and_changes_nothing(bot, standin, scripted):
    message = request_message(bot, standin)
    assert bot.slack.click(LIU, message, "approve_now").status == 200
    refusal = standin.wait_for(
        lambda c: c.method == "response_url" and "Only the tpm" in c.body.get("text", "")
    )[0]
    assert refusal.body["response_type"] == "ephemeral" and refusal.body["replace_original"] is False
    bot.slack.click(LIU, message, "defer")  # nor may they open the NO-GO modal
    standin.wait_for(
        lambda c: c.method == "response_url" and "Only the tpm" in c.body.get("text", ""), count=2
    )
    assert scripted.ran("approve") == 0
    assert standin.calls_of("views.open") == [] and edits_of(standin, message["ts"]) == []


def test_go_now_by_the_tpm_runs_approve_and_replaces_the_buttons_by_the_decision(bot, standin, scripted):
    message = request_message(bot, standin)
    bot.slack.click(TPM, message, "approve_now")
    edit = standin.wait_for(lambda c: c.method == "chat.update" and c.body["ts"] == message["ts"])[0]
    assert scripted.ran("approve") == 1
    assert "decided by <@U0DYLAN> at " in edit.body["text"] and edit.body["text"].endswith("UTC: GO now")
    assert not [b for b in edit.body["blocks"] if b["type"] == "actions"]
    assert "GO / NO-GO?" in json.dumps(edit.body["blocks"])  # the request itself stays readable


def test_go_scheduled_opens_a_modal_at_the_next_window_and_its_submission_approves_at_that_time(
    bot, standin, scripted
):
    message = request_message(bot, standin)
    bot.slack.click(TPM, message, "approve_scheduled")
    view = standin.wait_method("views.open")[0].body["view"]
    date_el, time_el = view["blocks"][1]["element"], view["blocks"][2]["element"]
    assert time_el["initial_time"] == "02:00"
    values = {
        "date": {"date": {"type": "datepicker", "selected_date": date_el["initial_date"]}},
        "time": {"time": {"type": "timepicker", "selected_time": "02:30"}},
    }
    reply = bot.slack.submit_view(TPM, view, values)
    assert reply.status == 200 and reply.body == ""  # closes the modal
    edit = standin.wait_for(lambda c: c.method == "chat.update" and c.body["ts"] == message["ts"])[0]
    command = f"approve at {date_el['initial_date']}T02:30Z"
    assert scripted.ran(command) == 1
    assert edit.body["text"].endswith(f"GO scheduled for {date_el['initial_date']} 02:30 UTC")


def test_a_schedule_in_the_past_is_refused_inside_the_modal(bot, standin, scripted):
    message = request_message(bot, standin)
    bot.slack.click(TPM, message, "approve_scheduled")
    view = standin.wait_method("views.open")[0].body["view"]
    values = {"date": {"date": {"selected_date": "2020-01-01"}}, "time": {"time": {"selected_time": "02:00"}}}
    reply = bot.slack.submit_view(TPM, view, values)
    assert reply.json()["response_action"] == "errors" and "time" in reply.json()["errors"]
    assert not [t for _, t in scripted.executed if t.startswith("approve")]


def test_no_go_asks_the_reason_and_records_it(bot, standin, scripted):
    message = request_message(bot, standin)
    bot.slack.click(TPM, message, "defer")
    view = standin.wait_method("views.open")[0].body["view"]
    assert view["callback_id"] == "defer_modal"
    bot.slack.submit_view(
        TPM, view, {"reason": {"reason": {"type": "plain_text_input", "value": "backup older than 24 h"}}}
    )
    edit = standin.wait_for(lambda c: c.method == "chat.update" and c.body["ts"] == message["ts"])[0]
    assert scripted.ran("defer backup older than 24 h") == 1
    assert edit.body["text"].endswith("NO-GO (backup older than 24 h)")


def test_a_10000_line_notice_output_is_never_a_rejected_message(bot, standin):
    bot.slack.slash(COORDINATOR, "notice")
    standin.wait_method("files.completeUploadExternal")
    assert [c for c in standin.calls if c.answer.get("error") in ("invalid_blocks", "msg_too_long")] == []
    assert len(standin.calls_of("upload")[0].body["content"].splitlines()) == 10_000
