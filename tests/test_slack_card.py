"""The run's parent message is its live card: at each step of a full run and of a failed one,
the card the Slack stand-in holds says what is happening now and who must act next.

Real command core, PostgreSQL and Redis; the card is read from the stand-in's copy of the
parent message (the latest `chat.update` it received)."""

from __future__ import annotations

import json
import time

import pytest

from bot.slack import blocks
from commands.card import Card
from commands.result import Progress
from tests.support import pg
from tests.support.slack_fixtures import standin  # noqa: F401 (fixture)
from tests.support.slack_standin import RunningBot

COORDINATOR, TPM, LIU, SERGEI = "U0RAFAEL", "U0DYLAN", "U0LIU", "U0SERGEI"


@pytest.fixture
def bot(ready, standin):
    running = RunningBot(ready, standin)
    yield running
    running.close()


def slash(bot, user: str, text: str) -> None:
    bot.bridge.wait_work()  # the previous command's work has released the run lock (as a person would wait)
    assert bot.slack.slash(user, text).status == 200


def parent_of(bot, standin, timeout: float = 120) -> str:
    """The ts of the current run's parent message, once it exists."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = bot.core.store.current()
        ts = bot.bridge.threads.parent(run.id) if run else None
        if ts:
            return ts
        time.sleep(0.1)
    raise AssertionError("no parent message")


def card_text(standin, ts: str) -> str:
    message = standin.messages[("C0MIGRATE", ts)]
    return "\n".join(b["text"]["text"] for b in message["blocks"] if b["type"] == "section")


def card_says(bot, standin, ts: str, *needles: str, timeout: float = 120) -> str:
    """Wait until the parent message's sections contain every needle; return its text."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = card_text(standin, ts)
        if all(n in text for n in needles):
            return text
        time.sleep(0.2)
    raise AssertionError(f"the card never said {needles!r}; it says:\n{text}")


def test_the_card_follows_a_full_run_then_its_rollback(bot, standin):
    slash(bot, COORDINATOR, "preflight")
    parent = parent_of(bot, standin)
    text = card_says(bot, standin, parent, "awaiting the TPM", "*Next:* <@U0DYLAN> (TPM)")
    assert "started" not in text

    slash(bot, TPM, "approve")
    text = card_says(bot, standin, parent, "Approved by <@U0DYLAN>", "<@U0LIU>: `run phase 1`")

    slash(bot, LIU, "run phase 1")
    text = card_says(
        bot,
        standin,
        parent,
        "Phase 1 (Database infrastructure) done — waiting for <@U0SERGEI> to run phase 2",
    )
    assert "✅ Phase 1 Database infrastructure: succeeded · " in text and "▫️ Phase 2" in text
    assert "Statement:" not in text  # no progress bar once the file has run

    slash(bot, SERGEI, "run phase 2")
    card_says(
        bot, standin, parent, "Phase 2 (Security foundation (RLS)) done — waiting for <@U0RAFAEL> to verify"
    )

    slash(bot, COORDINATOR, "verify")
    text = card_says(bot, standin, parent, "Succeeded")
    assert "SUCCESSFUL" not in text and "Running" not in text
    bot.bridge.wait_work()

    slash(bot, COORDINATOR, "rollback phase 2")
    text = card_says(
        bot, standin, parent, "Phase 2 (Security foundation (RLS)) rolled back", "`rollback phase 1` next"
    )
    assert "Succeeded" not in text and "↩️ Phase 2 Security foundation (RLS): rolled back" in text
    done = standin.wait_method(
        "chat.postMessage", where=lambda b: b.get("text", "").startswith("Rollback of phase 2 complete")
    )[-1]
    recovery = done.body["text"].split("Recovery time: ", 1)[1].split("\n", 1)[0]
    assert f"rolled back · {recovery}" in text  # one number for the rollback, post and card
    bot.bridge.wait_work()

    slash(bot, COORDINATOR, "rollback phase 1")
    text = card_says(
        bot, standin, parent, "Phase 1 (Database infrastructure) rolled back", "`run phase 1` again"
    )
    assert "↩️ Phase 1 Database infrastructure: rolled back" in text

    bot.bridge.worker.drain(timeout=30)
    top_level = [c for c in standin.calls_of("chat.postMessage") if "thread_ts" not in c.body]
    assert len(top_level) == 1  # one parent, edited in place
    the_tpm_is_told_at_each_phase_boundary(standin, parent)


def contexts(body: dict) -> str:
    return "\n".join(e["text"] for b in body["blocks"] if b["type"] == "context" for e in b["elements"])


def the_tpm_is_told_at_each_phase_boundary(standin, parent: str) -> None:
    """The plan's updates to the TPM: phase n started / complete, verification started, all
    complete — each a thread reply that mentions the TPM and is also shown in the channel."""
    posts = [c.body for c in standin.calls_of("chat.postMessage") if c.body.get("thread_ts") == parent]
    wanted = [
        "Phase 1 started",
        "Phase 1 complete",
        "Phase 2 started",
        "Phase 2 complete",
        "Verification started: phase 3",
        "SUCCESSFUL",
    ]
    for title in wanted:
        body = next(
            (
                b
                for b in posts
                if b["text"].startswith(f"Migration 006 {title}") or b["text"].startswith(title)
            ),
            None,
        )
        assert body is not None, title
        assert "FYI <@U0DYLAN>" in contexts(body) and body["reply_broadcast"] is True, title
        assert "Needed:" not in json.dumps(body) and "Action needed from <@U0DYLAN>" not in contexts(body), (
            title
        )
    order = [next(i for i, b in enumerate(posts) if title in b["text"]) for title in wanted]
    assert order == sorted(order)


def test_the_card_of_a_failed_run_names_the_failure_and_who_decides(bot, standin):
    slash(bot, COORDINATOR, "preflight")
    parent = parent_of(bot, standin)
    card_says(bot, standin, parent, "awaiting the TPM")
    slash(bot, TPM, "approve")
    card_says(bot, standin, parent, "Approved by")
    pg.scalar(
        bot.core.settings.database_url,
        "UPDATE platform.organizations SET slug = 'lancio-old' WHERE slug = 'lancio' RETURNING 1",
    )

    slash(bot, LIU, "run phase 1")

    text = card_says(
        bot,
        standin,
        parent,
        "❌ Failed at phase 1 (Database infrastructure): step 1.2: ",
        "*Next:* <@U0RAFAEL> with <@U0DYLAN>",
    )
    assert "❌ Phase 1 Database infrastructure: failed" in text
    failed_post = standin.wait_method(
        "chat.postMessage", where=lambda b: b.get("text", "").startswith("Phase 1 failed (")
    )[-1]
    took = failed_post.body["text"].split("(", 1)[1].split(")", 1)[0]
    assert f"❌ Phase 1 Database infrastructure: failed · {took}" in text  # one number, channel and card
    failure = standin.wait_method("chat.postMessage", where=lambda b: "FAILED" in b.get("text", ""))[-1].body
    assert (
        failure["text"].startswith("🚨 URGENT: Migration 006 FAILED ❌")
        and failure["reply_broadcast"] is True
    )
    assert "Action needed from <@U0DYLAN>, <@U0RAFAEL>" in contexts(failure)


def test_the_progress_bar_shows_only_while_work_runs():
    progress = Progress("r1", 1, "Database infrastructure", "1.1", "f.sql", 3, 12, 5.0, 180.0, "running")
    running = blocks.run_card(
        "r1", "Migration 006", Card("🔄 Running phase 1", None, [], working=True), progress
    )
    done = blocks.run_card(
        "r1", "Migration 006", Card("✅ Phase 1 done", "<@U0SERGEI>: `run phase 2`", []), progress
    )
    assert "▓" in json.dumps(running.blocks, ensure_ascii=False)
    assert "▓" not in json.dumps(done.blocks, ensure_ascii=False) and "Statement" not in json.dumps(
        done.blocks
    )
