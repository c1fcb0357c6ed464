"""Issue 18 in Slack: a fleet run's parent message is ONE table of its targets, edited in place
(state, phase, duration), and its thread gets one line per target transition — not a storm.
Against the Slack stand-in, with the real bot, PostgreSQL and Redis; a card for 120 targets
stays within Block Kit's limits; App Home shows the fleet."""

from __future__ import annotations

import re
import time

import pytest

from bot.slack import fleet_blocks
from commands.fleet_templates import transition_line
from commands.fleetcore import close_target_cores, store
from core.roster import Roster
from core.targets import load_fleet
from state.fleet import FleetStore, TargetStatus
from tests.support.fleetui import WAVES, missing_database_url, scratch_fleet, small_runbook, targets_file
from tests.support.flow import COORDINATOR, TPM
from tests.support.slack_fixtures import standin  # noqa: F401 (fixture)
from tests.support.slack_standin import RunningBot, check_blocks
from tests.support.waiting import wait_until


@pytest.fixture
def fleet_bot(settings, standin, scratch_db, tmp_path):
    urls = scratch_fleet(scratch_db, [n for n in WAVES if n != "db-5"])
    urls["db-5"] = missing_database_url()
    path, env = targets_file(tmp_path, urls, WAVES)
    fleet = load_fleet(path, env)
    fleet_settings = settings.with_(
        database_url=urls["canary"], runbook_path=small_runbook(tmp_path), targets=fleet
    )
    running = RunningBot(fleet_settings, standin)
    yield running
    running.close()
    close_target_cores(running.core)


LINE = re.compile(r"^\S+ [A-Za-z0-9][A-Za-z0-9_.-]* \(wave \d+\): \S+ → ")


def _is_lines(call) -> bool:
    """A thread message made of transition lines only."""
    return all(LINE.match(line) for line in call.body["text"].splitlines())


def _thread_lines(calls) -> list[str]:
    """The transition lines of these messages, in order (as Slack shows them: from the blocks)."""
    out = []
    for call in calls:
        for block in call.body["blocks"]:
            out += block["text"]["text"].splitlines()
    return out


def _status(bot) -> str | None:
    run = store(bot.core).current()
    return str(run.status) if run else None


def _drained(bot, seconds: float = 60) -> None:
    """The work ended, the outbox worker read the whole fleet stream and delivered everything."""
    bot.bridge.wait_work(seconds)
    fleets = store(bot.core)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        fleet = fleets.current()
        last = fleets.events(fleet.id)[-1].id
        cursor = bot.core.redis.get(bot.core.keys.fleet_feed(fleet.id))
        if cursor and cursor.decode() == last and not len(bot.bridge.outbox):
            return
        time.sleep(0.2)
    raise AssertionError("the fleet's thread lines were not all delivered")


def test_the_thread_parent_is_one_table_and_each_transition_one_line(fleet_bot, standin):
    bot = fleet_bot
    assert bot.slack.slash(COORDINATOR, "preflight").status == 200
    wait_until(lambda: _status(bot) in ("go", "no-go"), 120, what="the fleet's pre-flight to end")
    _drained(bot)
    fleet = store(bot.core).current()
    parent = bot.bridge.threads.parent(fleet.id)
    assert parent is not None

    posts = standin.calls_of("chat.postMessage")
    top = [c for c in posts if "thread_ts" not in c.body]
    assert [c.body.get("ts") for c in top] == [None] and len(top) == 1  # one parent: the table
    in_thread = [c for c in posts if c.body.get("thread_ts") == parent]
    transitions = [e for e in store(bot.core).events(fleet.id) if e.kind == "target"]
    assert len(transitions) == 16  # 8 targets: pending → preflight → go / no-go
    lines = [c for c in in_thread if _is_lines(c)]
    assert _thread_lines(lines) == [transition_line(e) for e in transitions]  # one each, in order
    assert len(in_thread) == len(lines) + 3  # + started, the summary, the TPM's request
    assert any("db-5 (wave 2): preflight → no-go: " in c.body["text"] for c in lines)
    summary = next(i for i, c in enumerate(in_thread) if "pre-flight on 8 databases" in c.body["text"])
    assert summary > in_thread.index(lines[-1])  # the summary after the lines that led to it

    card = standin.messages[("C0MIGRATE", parent)]
    check_blocks(card["blocks"])
    text = "\n".join(b["text"]["text"] for b in card["blocks"] if b["type"] == "section")
    assert "7 GO — awaiting the TPM's decision" in text
    for name, wave in WAVES.items():
        assert f" {name} · wave {wave} · {'no-go' if name == 'db-5' else 'go'} · " in text
    updates = standin.calls_of("chat.update")
    assert all(c.body["ts"] == parent for c in updates)  # the table is edited in place

    before = len(standin.calls_of("views.publish"))
    bot.slack.event({"type": "app_home_opened", "user": TPM, "channel": "D0HOME", "tab": "home"})
    view = standin.wait_method("views.publish", count=before + 1, timeout=30)[-1].body["view"]
    check_blocks(view["blocks"], 100)
    home = "\n".join(b["text"]["text"] for b in view["blocks"] if b.get("text") and b["type"] == "section")
    assert f"fleet run `{fleet.id}` · 8 databases" in home and "waits for GO / NO-GO" in home
    assert " db-3 · wave 1 · go · " in home

    # One approval, the run: still one parent, one line per target transition, no per-phase posts.
    assert bot.slack.slash(TPM, "approve").status == 200
    wait_until(lambda: _status(bot) == "approved", 30, what="the approval")
    assert bot.slack.slash(COORDINATOR, "run").status == 200
    wait_until(lambda: _status(bot) in ("succeeded", "failed"), 240, what="the fleet run's end")
    _drained(bot, 240)
    fleet = store(bot.core).current()
    assert str(fleet.status) == "succeeded", fleet.status
    posts = standin.calls_of("chat.postMessage")
    assert len([c for c in posts if "thread_ts" not in c.body]) == 1
    in_thread = [c for c in posts if c.body.get("thread_ts") == parent]
    transitions = [e for e in store(bot.core).events(fleet.id) if e.kind == "target"]
    assert len(transitions) == 16 + 7 * 3  # 7 GO databases: go → queued → running → succeeded
    lines = [c for c in in_thread if _is_lines(c)]
    assert _thread_lines(lines) == [transition_line(e) for e in transitions]
    assert len(lines) <= len(transitions)  # lines that came together went out in one message
    others = [c.body["text"].splitlines()[0] for c in in_thread if c not in lines]
    assert len(others) == 3 + 2, others  # + the decision and the run's one summary: no phase posts
    card = standin.messages[("C0MIGRATE", parent)]
    check_blocks(card["blocks"])
    text = "\n".join(b["text"]["text"] for b in card["blocks"] if b["type"] == "section")
    assert "Succeeded on every database of the run" in text
    for name, wave in WAVES.items():
        if name != "db-5":
            assert f" {name} · wave {wave} · succeeded · phase " in text, text


def test_a_card_of_120_targets_stays_within_block_kit_limits(redis_client, redis_prefix, tmp_path):
    fleets = FleetStore(redis_client, redis_prefix)
    pairs = [(f"shard-{i:03d}", 0 if i == 0 else 1 + i // 40) for i in range(120)]
    run = fleets.create("U0RAFAEL", "generated", pairs)
    for name, _ in pairs:
        fleets.move(run.id, name, TargetStatus.PREFLIGHT, actor="U0RAFAEL", action="preflight")
        bad = name == "shard-077"
        fleets.move(
            run.id,
            name,
            TargetStatus.NO_GO if bad else TargetStatus.GO,
            actor="U0RAFAEL",
            action="preflight",
            fields={"reason": "x" * 900 if bad else None},
        )
    roster = Roster({"tpm": ("U0DYLAN",), "coordinator": ("U0RAFAEL",)})
    card = fleet_blocks.fleet_card(fleets.get(run.id), "Migration generated", roster, run.id)

    check_blocks(card.blocks)
    text = "\n".join(b["text"]["text"] for b in card.blocks if b["type"] == "section")
    assert "shard-077 · wave 2 · no-go" in text  # what needs eyes is shown in full
    assert "🟢 119 go: shard-000, shard-001" in text and "and 89 more" in text  # the rest summarized
    assert len(card.text) <= 3000
