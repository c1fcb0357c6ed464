"""Signed requests from another Slack workspace or organization are refused, not executed
(issue 11 defect 10): the installation's team comes from auth.test at start-up."""

from __future__ import annotations

import logging

import pytest

from bot.slack.identity import REFUSAL, Installation
from tests.support.slack_fixtures import bot, scripted, standin  # noqa: F401 (fixtures)
from tests.support.slack_standin import RunningBot, SlackSender

TPM = "U0DYLAN"


def sender(bot, team: str, enterprise: str | None = None) -> SlackSender:  # noqa: F811
    return SlackSender(
        bot.url, bot.settings.slack_signing_secret, bot.standin, team=team, enterprise=enterprise
    )


def test_a_slash_command_signed_for_another_workspace_is_refused_and_logged(bot, scripted, caplog):  # noqa: F811
    caplog.set_level(logging.INFO)
    reply = sender(bot, "T0OTHER").slash(TPM, "approve")
    bot.bridge.wait_work()
    assert reply.status == 200 and reply.body == REFUSAL
    assert scripted.executed == []
    assert any("refused a signed request from team T0OTHER" in r.getMessage() for r in caplog.records)


def test_the_installation_workspace_is_still_served(bot, scripted):  # noqa: F811
    reply = sender(bot, "T0TEAM").slash(TPM, "help")
    bot.bridge.wait_work()
    assert reply.status == 200 and reply.body != REFUSAL and scripted.ran("help") == 1


def test_a_button_click_and_an_event_from_another_workspace_run_nothing(bot, scripted, standin):  # noqa: F811
    other = sender(bot, "T0OTHER")
    click = other.interaction(
        {
            "type": "block_actions",
            "team": {"id": "T0OTHER"},
            "user": {"id": TPM, "name": "dylan"},
            "api_app_id": "A0APP",
            "trigger_id": "1.2.trigger",
            "response_url": standin.response_url("x"),
            "channel": {"id": "C0MIGRATE"},
            "container": {"type": "message", "message_ts": "1700000000.000001", "channel_id": "C0MIGRATE"},
            "actions": [
                {
                    "type": "button",
                    "action_id": "approve_now",
                    "block_id": "b",
                    "value": "approve",
                    "action_ts": "1",
                }
            ],
        }
    )
    event = other.event({"type": "app_home_opened", "user": TPM, "channel": "D0HOME", "tab": "home"})
    bot.bridge.wait_work()
    assert click.status == event.status == 200
    assert scripted.executed == []
    assert standin.calls_of("views.publish") == [] and standin.calls_of("response_url", ok_only=False) == []


@pytest.fixture
def grid_bot(settings, standin, scripted):  # noqa: F811
    """The bot installed in team T0TEAM of Enterprise Grid organization E0ORG."""
    standin.enterprise_id = "E0ORG"
    running = RunningBot(settings, standin, handle=scripted)
    yield running
    running.close()


def test_a_request_naming_another_enterprise_is_refused(grid_bot, scripted):  # noqa: F811
    refused = sender(grid_bot, "T0TEAM", enterprise="E0OTHER").slash(TPM, "help")
    served = sender(grid_bot, "T0TEAM", enterprise="E0ORG").slash(TPM, "help")
    grid_bot.bridge.wait_work()
    assert refused.body == REFUSAL and served.body != REFUSAL
    assert scripted.ran("help") == 1


def test_an_installation_decides_by_team_and_organization():
    workspace = Installation("T0TEAM", None)
    assert not workspace.foreign("T0TEAM", None) and not workspace.foreign(None, None)
    assert workspace.foreign("T0OTHER", None) and workspace.foreign("T0TEAM", "E0ANY")
    org_wide = Installation("T0TEAM", "E0ORG", org_wide=True)
    assert not org_wide.foreign("T0SISTER", "E0ORG") and org_wide.foreign("T0SISTER", "E0OTHER")
