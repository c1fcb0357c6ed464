"""The Slack adapter's guards against the real command core (commands.handle), not a stand-in:
Slack's retries and duplicate deliveries run a command once, and a decision submitted by
someone who is not the TPM is refused by the core and changes nothing.

The adapter's own tests (tests/test_slack_http.py, tests/test_slack_interactions.py) use a
scripted core without guards; whatever guards a command lives in the core and is tested here.
"""

from __future__ import annotations

import pytest

from state.audit import redis_events
from state.machine import Status
from tests.support.slack_fixtures import standin  # noqa: F401 (fixture)
from tests.support.slack_standin import RunningBot
from tests.support.unchanged import Snapshot

COORDINATOR, TPM, LIU = "U0RAFAEL", "U0DYLAN", "U0LIU"


@pytest.fixture
def bot(ready, standin):
    running = RunningBot(ready, standin)  # the real commands.handle
    yield running
    running.close()


def _answers(standin) -> list[str]:
    return [c.body.get("text", "") for c in standin.calls if c.method == "response_url"]


def _events(bot, action: str) -> list[dict]:
    return [e for e in redis_events(bot.core.redis, bot.core.keys, count=10_000) if e["action"] == action]


def _go_request(bot, standin) -> dict:
    """Pre-flight through Slack; the GO / NO-GO request as Slack stores it."""
    assert bot.slack.slash(COORDINATOR, "preflight").status == 200
    call = standin.wait_method(
        "chat.postMessage", where=lambda b: "Requesting go/no-go decision" in b.get("text", ""), timeout=120
    )[-1]
    bot.bridge.wait_work()
    assert bot.core.store.current().status is Status.GO
    return standin.messages[("C0MIGRATE", call.answer["ts"])]


def test_a_slack_retry_of_a_slash_command_runs_it_once(bot, standin):
    """Slack re-sends a slash command it thinks timed out (X-Slack-Retry-Num): the same
    trigger_id. The incident is declared once, posted once, answered once."""
    body = bot.slack.slash_body(
        COORDINATOR, "incident start primary disk full", trigger_id="777.retry.trigger"
    )
    assert bot.slack.send(body, "application/x-www-form-urlencoded").status == 200
    standin.wait_for(lambda c: c.method == "response_url")
    for attempt in (1, 2):
        assert bot.slack.send(body, "application/x-www-form-urlencoded", retry_num=attempt).status == 200
    bot.slack.slash(COORDINATOR, "help")  # a later request, answered after the retries were handled
    standin.wait_for(
        lambda c: (
            c.method == "response_url"
            and "/migrate" in c.body.get("text", "")
            and "Incident recorded" not in c.body.get("text", "")
        )
    )
    bot.bridge.wait_work()
    bot.bridge.worker.drain(timeout=30)

    assert len(_events(bot, "incident start")) == 1
    declared = [
        c
        for c in standin.calls_of("chat.postMessage")
        if "Critical incident declared" in c.body.get("text", "")
    ]
    assert len(declared) == 1
    answers = _answers(standin)
    assert len(answers) == 2 and "Incident recorded" in answers[0]  # the retries' refusals are not shown


def test_a_go_click_delivered_twice_approves_once(bot, standin):
    """The same block_actions payload (same trigger_id) arriving twice: one approval, and the
    second delivery neither approves again nor leaves a refusal in the audit trail."""
    request = _go_request(bot, standin)
    payload = bot.slack.click_payload(TPM, request, "approve_now")
    assert bot.slack.interaction(payload).status == 200
    standin.wait_for(
        lambda c: c.method == "response_url" and "GO recorded" in c.body.get("text", ""), timeout=30
    )
    assert bot.slack.interaction(payload).status == 200
    standin.wait_for(
        lambda c: c.method == "response_url" and "already handled" in c.body.get("text", ""), timeout=30
    )
    bot.bridge.wait_work()

    approvals = _events(bot, "approve")
    assert [(e["actor"], e["outcome"]) for e in approvals] == [(TPM, "ok")]
    assert bot.core.store.current().status is Status.APPROVED


@pytest.mark.parametrize(
    "action_id, values",
    [
        (
            "approve_scheduled",
            {
                "date": {"date": {"type": "datepicker", "selected_date": "2099-01-01"}},
                "time": {"time": {"type": "timepicker", "selected_time": "02:30"}},
            },
        ),
        ("defer", {"reason": {"reason": {"type": "plain_text_input", "value": "not convinced"}}}),
    ],
)
def test_a_decision_modal_submitted_by_someone_else_is_refused_by_the_core(bot, standin, action_id, values):
    """The modal submission path has no role check of its own: the core's TPM-only rule is
    what stands between a non-TPM's submission and a decision."""
    request = _go_request(bot, standin)
    bot.slack.click(TPM, request, action_id)
    view = standin.wait_method("views.open")[0].body["view"]
    snapshot = Snapshot(bot.core)

    assert bot.slack.submit_view(LIU, view, values).status == 200
    refusal = standin.wait_method(
        "chat.postEphemeral", where=lambda b: "only the TPM can" in b.get("text", ""), timeout=30
    )[0]
    bot.bridge.wait_work()
    bot.bridge.worker.drain(timeout=30)

    assert refusal.body["user"] == LIU
    snapshot.assert_unchanged(f"{LIU} submitting {action_id}", ignore=(":slack:", ":request:"))
    assert bot.core.store.current().status is Status.GO
    assert not [
        c for c in standin.calls_of("chat.update") if c.body["ts"] == request["ts"]
    ]  # buttons still there


def test_the_go_buttons_clicked_by_someone_else_change_nothing(bot, standin):
    """GO now and GO scheduled clicked by a phase owner: refused privately, no modal, the run
    still waits for the TPM, and only refusals reach the audit trail."""
    request = _go_request(bot, standin)
    snapshot = Snapshot(bot.core)

    for action_id in ("approve_now", "approve_scheduled", "defer"):
        assert bot.slack.click(LIU, request, action_id).status == 200
    standin.wait_for(
        lambda c: c.method == "response_url" and "Only the tpm" in c.body.get("text", ""), count=3, timeout=30
    )
    bot.bridge.wait_work()

    snapshot.assert_unchanged("non-TPM clicks", ignore=(":slack:", ":request:"))
    assert standin.calls_of("views.open") == []
    assert bot.core.store.current().status is Status.GO
