"""The contract's who-may-do-what table, checked user by user against the shipped roster.

Every command of the contract, every roster member and a stranger: allowed exactly when the
table says so, and a refusal names the role and whom to ask. Pure (no database, no Redis),
so mutation testing (scripts/mutate) runs it on every mutant of commands/policy.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from commands.parse import parse
from commands.policy import describe, refusal
from core.roster import Roster
from runbook.model import load_runbook
from sql import DEFAULT_RUNBOOK

ROOT = Path(__file__).resolve().parent.parent
ROSTER = Roster.load(ROOT / "roster.toml")
RUNBOOK = load_runbook(DEFAULT_RUNBOOK)
NOW = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)
TPM, COORDINATOR, LIU, SERGEI, YASMIN, STRANGER = (
    "U0DYLAN",
    "U0RAFAEL",
    "U0LIU",
    "U0SERGEI",
    "U0YASMIN",
    "U0NOBODY",
)
EVERYONE = (TPM, COORDINATOR, LIU, SERGEI, YASMIN, STRANGER)
MEMBERS = EVERYONE[:-1]

# command text -> who may run it (the contract's table; phase owners from sql/006/runbook.toml)
TABLE = {
    "help": EVERYONE,
    "status": EVERYONE,
    "report": EVERYONE,
    "incident start disk full": MEMBERS,
    "incident clear": MEMBERS,
    "preflight": (COORDINATOR, TPM),
    "approve": (TPM,),
    "approve at 02:00": (TPM,),
    "defer not today": (TPM,),
    "run": (COORDINATOR,),
    "run phase 1": (LIU, COORDINATOR),
    "run phase 2": (SERGEI, COORDINATOR),
    "run phase 3": (COORDINATOR,),  # phase 3's owner is the coordinator
    "run phase 9": (COORDINATOR,),  # no such phase: the coordinator alone (the verb then says so)
    "verify": (COORDINATOR,),
    "rollback phase 1": (LIU, COORDINATOR),
    "rollback phase 2": (SERGEI, COORDINATOR),
    "rollback restore": (COORDINATOR,),
    "rollback restore confirm": (TPM,),
    "rollback all": (COORDINATOR,),
    "rollback accept": (TPM,),
    "abort": (COORDINATOR, TPM),
}


@pytest.mark.parametrize("text", sorted(TABLE))
@pytest.mark.parametrize("user", EVERYONE)
def test_each_command_is_allowed_exactly_to_the_roles_of_the_contract(text, user):
    cmd = parse(text, NOW)
    reason = refusal(ROSTER, RUNBOOK, user, cmd)
    if user in TABLE[text]:
        assert reason is None, f"{user} refused `{text}`: {reason}"
    else:
        assert reason, f"{user} allowed `{text}`"


@pytest.mark.parametrize(
    "text, says",
    [
        ("approve", "only the TPM can `approve`: ask <@U0DYLAN>"),
        ("approve at 02:00", "only the TPM can `approve at`: ask <@U0DYLAN>"),
        ("defer not today", "only the TPM can `defer`: ask <@U0DYLAN>"),
        ("rollback restore confirm", "only the TPM can `rollback restore confirm`: ask <@U0DYLAN>"),
        ("rollback restore", "only the coordinator can `rollback restore`: ask <@U0RAFAEL>"),
        (
            "run phase 1",
            "only the database engineer or coordinator can `run phase 1`: ask <@U0LIU>, <@U0RAFAEL>",
        ),
        ("verify", "only the coordinator can `verify`: ask <@U0RAFAEL>"),
        ("preflight", "only the coordinator or TPM can `preflight`: ask <@U0RAFAEL>, <@U0DYLAN>"),
    ],
)
def test_a_refusal_names_the_rule_and_whom_to_ask(text, says):
    assert refusal(ROSTER, RUNBOOK, YASMIN, parse(text, NOW)) == says


def test_a_stranger_is_told_to_be_added_to_the_roster():
    reason = refusal(ROSTER, RUNBOOK, STRANGER, parse("incident start x", NOW))
    assert reason == "only people on the roster can do that: ask the coordinator to add you (MIGRATE_ROSTER)"


@pytest.mark.parametrize(
    "text, described",
    [
        ("incident start disk full", "incident start"),
        ("incident clear", "incident clear"),
        ("rollback restore", "rollback restore"),
        ("rollback restore confirm", "rollback restore confirm"),
        ("run phase 2", "run phase 2"),
        ("approve at 02:00", "approve at"),
        ("approve", "approve"),
        ("run", "run"),
        ("rollback all", "rollback all"),
        ("rollback accept", "rollback accept"),
        ("rollback phase 1", "rollback phase 1"),
    ],
)
def test_describe_says_the_command_as_typed_without_free_text(text, described):
    assert describe(parse(text, NOW)) == described
