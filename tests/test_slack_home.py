"""App Home is the team's dashboard: the current run's card, the last runs with outcome,
duration and approver, and what is scheduled next — read from the views.publish JSON."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from commands import Core
from core import clock
from tests.support.flow import COORDINATOR, LIU, SERGEI, TPM, Console
from tests.support.slack_fixtures import standin  # noqa: F401 (fixture)
from tests.support.slack_standin import RunningBot
from workflows.templates import seconds


@pytest.fixture
def bot(ready, standin):
    running = RunningBot(ready, standin)
    yield running
    running.close()


def home_text(bot, standin, user: str = TPM) -> str:
    before = len(standin.calls_of("views.publish"))
    bot.slack.event({"type": "app_home_opened", "user": user, "channel": "D0HOME", "tab": "home"})
    view = standin.wait_method("views.publish", count=before + 1, timeout=30)[-1].body["view"]
    return "\n".join(b["text"]["text"] for b in view["blocks"] if b.get("text") and b["type"] == "section")


def test_the_home_tab_is_the_teams_dashboard(bot, standin):
    console = Console(Core.from_settings(bot.settings))
    console.approved()
    assert console(LIU, "run phase 1")[0] == 0
    assert console(SERGEI, "run phase 2")[0] == 0
    assert console(COORDINATOR, "verify")[0] == 0
    first = bot.core.store.current()
    assert console(COORDINATOR, "rollback phase 2")[0] == 0
    assert console(COORDINATOR, "rollback phase 1")[0] == 0
    assert console(COORDINATOR, "preflight")[0] == 0
    at = (clock.now() + timedelta(hours=5)).replace(second=0, microsecond=0)
    code, out = console(TPM, f"approve at {at:%Y-%m-%dT%H:%MZ}")
    assert code == 0, out

    text = home_text(bot, standin)

    assert (
        "*Current run*" in text
        and "GO scheduled for" in text
        and "▫️ Phase 1 Database infrastructure: pending" in text
    )
    first = bot.core.store.get(first.id)
    lasted = seconds((first.updated_at - first.created_at).total_seconds())
    assert (
        f"↩️ `{first.id}` " in text and f"— rolled back · lasted {lasted} · approved by <@U0DYLAN>" in text
    ), text
    assert "*Follow-ups due*" in text and "⏱ " in text and f"{at:%Y-%m-%d %H:%M} UTC" in text
    assert "<!" not in json.dumps(text)
