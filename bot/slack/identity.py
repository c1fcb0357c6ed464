"""The Slack workspace the bot is installed in, and the guard that refuses every other one.

A valid signature proves that a request came through Slack for this app, not that it came
from the workspace the roster describes: an app distributed to (or reinstalled in) another
workspace receives that workspace's requests signed with the same secret, and its user IDs
could collide with the roster's. So the installation's team (and Enterprise Grid
organization) is learned once at start-up from `auth.test` with the bot token, and a request
naming another one is answered briefly and not executed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from slack_bolt import BoltResponse
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from core.config import ConfigError

log = logging.getLogger(__name__)

REFUSAL = "This bot serves another Slack workspace: nothing was run."


@dataclass(frozen=True)
class Installation:
    team_id: str | None
    enterprise_id: str | None
    org_wide: bool = False  # installed for a whole Enterprise Grid organization: any of its teams

    @classmethod
    def of(cls, client: WebClient) -> Installation:
        """Asked from Slack: `auth.test` with the bot token says where the token belongs."""
        try:
            answer = client.auth_test()
        except SlackApiError as exc:
            raise ConfigError(
                f"SLACK_BOT_TOKEN was refused by Slack's auth.test ({exc.response.get('error')})"
            ) from None
        return cls(
            answer.get("team_id") or None,
            answer.get("enterprise_id") or None,
            bool(answer.get("is_enterprise_install")),
        )

    def foreign(self, team_id: str | None, enterprise_id: str | None) -> bool:
        """Whether a request naming `team_id` / `enterprise_id` comes from outside this installation.
        A request naming neither (Slack's URL verification, SSL check) carries no command."""
        if enterprise_id is not None and enterprise_id != self.enterprise_id:
            return True  # another organization (or any, when this installation is in none)
        if self.org_wide:
            return False  # any team of this organization
        return team_id is not None and team_id != self.team_id


def team_guard(installation: Installation):
    """bolt global middleware: a request from another team or organization stops here."""

    def guard(context, next) -> BoltResponse | None:
        team, enterprise = context.team_id, context.enterprise_id
        if not installation.foreign(team, enterprise):
            return next()
        log.warning(
            "refused a signed request from team %s (enterprise %s): this bot is installed in team %s "
            "(enterprise %s)",
            team,
            enterprise,
            installation.team_id,
            installation.enterprise_id,
        )
        return BoltResponse(status=200, body=REFUSAL)

    return guard
