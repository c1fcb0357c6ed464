"""The outbox against real Redis and the Slack stand-in: order, threads, nothing lost."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest

import bot.slack.outbox as outbox_module
from bot.slack.bridge import Bridge
from commands import Core
from commands.result import Post, Progress
from tests.support.slack_standin import ScriptedCommands, SlackStandIn


class ControlledStandIn(SlackStandIn):
    """The stand-in, plus: a delay before every Web API answer (a slow Slack, or retry
    handlers sleeping), and an ok:false error every chat.postMessage gets while `refusing`
    is set (a revoked token, a channel the app was removed from)."""

    def __init__(self) -> None:
        super().__init__()
        self.delay = 0.0
        self.refusing: str | None = None
        self.entered = threading.Event()  # set when a Web API call arrives

    def _answer(self, method: str, body: dict) -> dict:
        self.entered.set()
        if self.delay:
            time.sleep(self.delay)
        if self.refusing and method == "chat.postMessage":
            return {"ok": False, "error": self.refusing}
        return super()._answer(method, body)


@pytest.fixture
def standin():
    with ControlledStandIn() as s:
        yield s


@pytest.fixture
def make_bridge(settings, standin):
    """Bridges (one per simulated bot process) on the stand-in; workers closed afterwards."""
    made: list[Bridge] = []

    def make(start: bool = True) -> Bridge:
        core = Core.from_settings(settings.with_(slack_api_url=standin.base_url))
        bridge = Bridge.create(core, handle=ScriptedCommands())
        made.append(bridge)
        if start:
            bridge.worker.start()
        return bridge

    yield make
    for bridge in made:
        bridge.close()


def titles(calls) -> list[str]:
    return [c.body["text"].splitlines()[0] for c in calls]


def thread_posts(standin, ts):
    return [c for c in standin.calls_of("chat.postMessage") if c.body.get("thread_ts") == ts]


def test_posts_of_a_run_go_in_order_into_the_thread_of_one_parent(make_bridge, standin):
    bridge = make_bridge()
    for i in range(5):
        bridge.reporter.post(Post("info", f"step {i}", run_id="r1"))
    bridge.reporter.post(Post("success", "Migration 006 complete", run_id="r1", final=True))
    standin.wait_method("chat.postMessage", 6, where=lambda b: b.get("thread_ts") is not None)
    parent = bridge.threads.parent("r1")
    parents = [c for c in standin.calls_of("chat.postMessage") if "thread_ts" not in c.body]
    assert len(parents) == 1 and parent is not None
    posts = thread_posts(standin, parent)
    assert titles(posts) == [f"step {i}" for i in range(5)] + ["Migration 006 complete"]
    assert [c.body["reply_broadcast"] for c in posts] == [False] * 5 + [True]
    assert all(c.headers["authorization"] == f"Bearer {bridge.core.settings.slack_bot_token}" for c in posts)


def test_a_429_storm_delays_but_loses_no_message_and_keeps_the_order(make_bridge, standin):
    bridge = make_bridge()
    # Five 429s in a row: more than the rate-limit handler's two retries, so the outbox's own
    # retry (entry left at the head) is exercised too.
    standin.storm_429(5, retry_after=1)
    for i in range(8):
        bridge.reporter.post(Post("info", f"message {i}"))
    delivered = standin.wait_method("chat.postMessage", 8, timeout=60)
    assert titles(delivered) == [f"message {i}" for i in range(8)]
    assert len([c for c in standin.calls if c.status == 429]) == 5
    assert len(bridge.outbox) == 0


def test_server_errors_are_retried_until_delivered(make_bridge, standin):
    bridge = make_bridge()
    standin.fail_500(4)
    bridge.reporter.post(Post("info", "after the outage"))
    assert titles(standin.wait_method("chat.postMessage", timeout=60)) == ["after the outage"]


def test_a_message_slack_rejects_is_replaced_by_plain_text(make_bridge, standin):
    bridge = make_bridge(start=False)
    bridge.outbox.put(
        "post",
        message={"text": "the plain words", "blocks": [{"type": "no_such_block"}]},
        fallback="the plain words",
    )
    bridge.outbox.put("post", message={"text": "next one"})
    assert bridge.worker.drain(timeout=20)
    rejected = [c for c in standin.calls if c.method == "chat.postMessage" and not c.answer.get("ok")]
    assert [c.answer["error"] for c in rejected] == ["invalid_blocks"]
    delivered = standin.calls_of("chat.postMessage")
    assert [c.body["text"] for c in delivered] == ["the plain words", "next one"]
    assert "blocks" not in delivered[0].body


def test_a_restarted_bot_resumes_delivery_where_it_stopped(make_bridge, standin):
    first = make_bridge(start=False)  # queued while no worker runs (the bot died)
    for i in range(4):
        first.reporter.post(Post("info", f"queued {i}", run_id="r2"))
    assert standin.calls_of("chat.postMessage") == []
    second = make_bridge()  # a new process on the same Redis
    standin.wait_method("chat.postMessage", 4, where=lambda b: "thread_ts" in b)
    assert titles(thread_posts(standin, second.threads.parent("r2"))) == [f"queued {i}" for i in range(4)]


def test_two_bot_processes_deliver_each_entry_once_in_order(make_bridge, standin):
    one, two = make_bridge(), make_bridge()
    for i in range(12):
        (one if i % 2 else two).reporter.post(Post("info", f"entry {i}"))
    standin.wait_method("chat.postMessage", 12)
    assert titles(standin.calls_of("chat.postMessage")) == [f"entry {i}" for i in range(12)]


def test_progress_is_coalesced_into_few_edits_of_the_parent_showing_the_latest_state(make_bridge, standin):
    bridge = make_bridge()
    bridge.reporter.post(Post("phase_started", "Phase 1 started", run_id="r3"))
    for k in range(1, 201):
        bridge.reporter.progress(
            Progress("r3", 1, "Database infrastructure", "1.1", "a.sql", k, 200, k * 0.1, 180.0, "running")
        )
    bridge.reporter.post(Post("success", "Run succeeded", run_id="r3", final=True))
    parent = standin.wait_method(
        "chat.postMessage", 2, where=lambda b: "thread_ts" in b
    ) and bridge.threads.parent("r3")
    # r3 is unknown to the run store: its card is its latest progress (tests/test_slack_card.py: a real run)
    final = standin.wait_method(
        "chat.update", where=lambda b: b["ts"] == parent and "200 of 200" in json.dumps(b["blocks"])
    )
    bridge.worker.drain(timeout=30)
    updates = standin.calls_of("chat.update")
    assert len(updates) <= 3  # 200 progress reports and a final post: a handful of edits
    assert final


def test_long_output_and_reports_are_uploaded_into_the_thread(make_bridge, standin):
    bridge = make_bridge()
    notice = "\n".join(f"NOTICE: line {i}" for i in range(10_000))
    bridge.reporter.post(Post("phase_done", "Phase 1 complete", detail=notice, run_id="r4"))
    bridge.reporter.post(Post("report", "Migration 006 report", detail="# Report\n\nall good", run_id="r4"))
    completes = standin.wait_method("files.completeUploadExternal", 2)
    parent = bridge.threads.parent("r4")
    assert [c.body["thread_ts"] for c in completes] == [parent, parent]
    uploads = [c.body["content"] for c in standin.calls_of("upload")]
    assert uploads == [notice, "# Report\n\nall good"]
    message = thread_posts(standin, parent)[0]
    assert "truncated, full output attached" in json.dumps(message.body["blocks"])


def test_secrets_never_reach_slack(make_bridge, standin):
    bridge = make_bridge()
    s = bridge.core.settings
    bridge.reporter.post(
        Post("info", f"url {s.register_mongodb_url}", lines=[s.encryption_key], detail=s.register_redis_url)
    )
    call = standin.wait_method("chat.postMessage")[0]
    dumped = json.dumps(call.body)
    for secret in (s.encryption_key, "S3cretMongoPw42", "S3cretRedisPw42"):
        assert secret not in dumped


def test_two_workers_with_a_lock_shorter_than_a_slack_call_deliver_each_entry_once_in_order(
    make_bridge, standin, monkeypatch
):
    # Each call takes longer than the lock's TTL: without renewal during the call, the other
    # worker would take the lock and deliver the same head again (and pop the next one unsent).
    monkeypatch.setattr(outbox_module, "LOCK_TTL_MS", 1000)
    standin.delay = 1.5
    one, two = make_bridge(start=False), make_bridge(start=False)
    for i in range(3):
        (one if i % 2 else two).reporter.post(Post("info", f"slow {i}"))
    one.worker.start()
    two.worker.start()
    standin.wait_method("chat.postMessage", 3, timeout=60)
    assert one.worker.drain(timeout=30) and two.worker.drain(timeout=30)
    assert titles(standin.calls_of("chat.postMessage", ok_only=False)) == [f"slow {i}" for i in range(3)]


def test_a_worker_that_lost_its_lock_mid_call_leaves_the_queue_to_the_new_owner(make_bridge, standin):
    # The lock vanishes while the first worker is inside Slack (its process was paused past the
    # TTL): the second worker takes over and sends the head again (at-least-once), and the
    # first worker's late pop must not remove the next entry, which nobody has sent.
    one, two = make_bridge(start=False), make_bridge(start=False)
    for name in ("A", "B", "C"):
        one.reporter.post(Post("info", name))
    standin.delay = 0.5
    stepping = threading.Thread(target=one.worker.step)
    stepping.start()
    assert standin.entered.wait(15)
    one.outbox.redis.delete(one.worker.lock_key)
    two.worker.step()
    stepping.join(15)
    standin.delay = 0.0
    assert two.worker.drain(timeout=20)
    assert titles(standin.calls_of("chat.postMessage")) == ["A", "A", "B", "C"]
    assert len(one.outbox) == 0


def test_close_keeps_the_lock_while_the_worker_is_still_in_a_slack_call(make_bridge, standin):
    bridge = make_bridge()
    redis = bridge.outbox.redis
    standin.delay = 1.5
    bridge.reporter.post(Post("info", "in flight"))
    assert standin.entered.wait(15)
    bridge.worker.close(timeout=0.05)
    assert redis.get(bridge.worker.lock_key) == bridge.worker.token.encode()
    bridge.worker._thread.join(30)
    assert redis.get(bridge.worker.lock_key) is None  # released by the worker once its call ended
    assert titles(standin.calls_of("chat.postMessage")) == ["in flight"]
    assert len(bridge.outbox) == 0


@pytest.mark.parametrize("error", ["invalid_auth", "channel_not_found"])
def test_an_installation_error_keeps_the_entry_until_slack_accepts_it(make_bridge, standin, caplog, error):
    bridge = make_bridge(start=False)
    standin.refusing = error
    bridge.reporter.post(Post("info", "Phase 1 FAILED"))
    bridge.reporter.post(Post("info", "Migration 006 SUCCESSFUL"))
    with caplog.at_level(logging.ERROR, logger="bot.slack.outbox"):
        delays = [bridge.worker.step() for _ in range(4)]
    assert (
        delays == sorted(delays) and delays[0] > 0 and delays[-1] <= outbox_module.MAX_BACKOFF
    )  # backing off
    assert len(bridge.outbox) == 2  # nothing dropped
    refused = standin.calls_of("chat.postMessage", ok_only=False)
    assert [c.answer.get("error") for c in refused] == [error] * 4
    assert all(
        c.body["text"] == "Phase 1 FAILED" and c.body.get("blocks") for c in refused
    )  # no plain fallback
    logged = [r for r in caplog.records if r.levelno == logging.ERROR and error in r.getMessage()]
    assert len(logged) == 4
    assert bridge.core.settings.slack_bot_token not in caplog.text
    standin.refusing = None
    assert bridge.worker.drain(timeout=20)
    delivered = standin.calls_of("chat.postMessage")
    assert titles(delivered) == ["Phase 1 FAILED", "Migration 006 SUCCESSFUL"]
    assert all(c.body.get("blocks") for c in delivered)


def test_a_runs_slack_keys_expire_after_the_follow_ups(redis_client, redis_prefix):
    """The parent ts and the run's Slack meta do not stay in Redis forever."""
    from bot.slack.outbox import RUN_KEYS_TTL, RunThreads
    from state.keys import Keys

    keys = Keys(redis_prefix, "127.0.0.1:5432/x")
    threads = RunThreads(redis_client, keys)
    threads.set_parent("run-1", "1700000000.000100")
    threads.set_meta("run-1", progress="{}")
    for key in (keys.thread("run-1"), keys.slack_meta("run-1")):
        assert 0 < redis_client.ttl(key) <= RUN_KEYS_TTL
    assert RUN_KEYS_TTL > 7 * 24 * 3600  # the +1 week reminder still finds its thread


@pytest.mark.slack_pacing
def test_channel_posts_are_spaced_one_second_apart_as_slack_asks(make_bridge, standin):
    """chat.postMessage allows about one message per second per channel: a burst of posts
    (the parent, its thread posts) reaches Slack paced, in order, with no 429 needed."""
    assert outbox_module.POST_INTERVAL == 1.0
    bridge = make_bridge()
    for i in range(3):
        bridge.reporter.post(Post("info", f"step {i}", run_id="r1"))
    posts = standin.wait_method("chat.postMessage", 4, timeout=20)
    gaps = [b.at - a.at for a, b in zip(posts, posts[1:])]
    assert all(gap >= 0.95 for gap in gaps), gaps
    assert titles(posts[1:]) == ["step 0", "step 1", "step 2"]


def test_a_worker_backing_off_longer_than_the_lock_ttl_keeps_its_channel(make_bridge, standin, monkeypatch):
    """Backoff grows past the lock's TTL; were the lock left to lapse, another process would take
    the channel and retry at once, defeating the backoff (and the pacing)."""
    from tests.support.waiting import wait_until

    monkeypatch.setattr(outbox_module, "LOCK_TTL_MS", 1000)
    standin.refusing = "invalid_auth"
    bridge = make_bridge()
    redis, key, token = bridge.outbox.redis, bridge.worker.lock_key, bridge.worker.token.encode()
    bridge.reporter.post(Post("info", "held back"))
    wait_until(lambda: bridge.worker.backoff >= 2.0, timeout=20, what="a backoff twice the lock's TTL")
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        assert redis.get(key) == token
        time.sleep(0.1)
    standin.refusing = None
    posted = standin.wait_method(
        "chat.postMessage", where=lambda b: "held back" in b.get("text", ""), timeout=20
    )
    assert len(posted) == 1
