"""Bad input gets a short answer that says what to type instead: exit 2, never a trace."""

from __future__ import annotations

import io

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from bot.console import run_command
from commands import Core, handle
from commands.parse import USAGE, ParseError, parse
from core import clock

MALFORMED = {
    "help me": "`help` takes no arguments",
    "status now": "`status` takes no arguments",
    "preflight --force": "`preflight` takes no arguments",
    "approve tomorrow": "usage: /migrate approve",
    "approve at": "usage: /migrate approve",
    "approve at 25:99": "is not a time",
    "approve at noon": "is not a time",
    "defer": "`defer` needs a reason",
    "run phase": "usage: /migrate run",
    "run phase two": "usage: /migrate run",
    "run 1": "usage: /migrate run",
    "run phase 1 2": "usage: /migrate run",
    "run phase ¹": "written with 0-9, e.g. `run phase 1`",  # str.isdigit() but not int(): was a traceback
    "run phase ١": "written with 0-9",  # int() read it as 1
    "rollback phase ①": "written with 0-9, e.g. `rollback phase 1`",
    "verify all": "`verify` takes no arguments",
    "rollback": "usage: /migrate rollback",
    "rollback phase": "usage: /migrate rollback",
    "rollback restore now": "usage: /migrate rollback",
    "abort please": "`abort` takes no arguments",
    "incident": "usage: /migrate incident",
    "incident start": "usage: /migrate incident",
    "incident clear now": "usage: /migrate incident",
    "report html": "`report` takes no arguments",
    "migrate": "unknown command",
    "DROP DATABASE platform;": "unknown command",
}


@pytest.mark.parametrize("text,hint", sorted(MALFORMED.items()))
def test_every_subcommand_with_malformed_arguments_is_refused_with_a_hint(settings, text, hint):
    core = Core.from_settings(settings)
    out = io.StringIO()
    code = run_command(core, "U0RAFAEL", text, out)
    assert code == 2
    assert hint in out.getvalue()
    assert "Traceback" not in out.getvalue()


def test_unknown_verbs_and_known_verbs_cover_the_contract_table():
    assert set(USAGE) == {
        "help",
        "status",
        "preflight",
        "approve",
        "defer",
        "run",
        "verify",
        "rollback",
        "abort",
        "incident",
        "report",
    }


@hsettings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_parse_accepts_or_explains_any_text(text):
    try:
        parse(text, clock.now())
    except ParseError as exc:
        message = str(exc)
        assert message and len(message) < 300
        assert (
            "usage: /migrate" in message
            or "/migrate help" in message
            or "is not a time" in message
            or "needs a reason" in message
        )


words = st.sampled_from(
    [
        "help",
        "status",
        "preflight",
        "approve",
        "at",
        "defer",
        "run",
        "phase",
        "verify",
        "rollback",
        "restore",
        "confirm",
        "abort",
        "incident",
        "start",
        "clear",
        "report",
        "1",
        "2",
        "3",
        "9",
        "02:00",
        "x",
        "-1",
        "2026-13-01T00:00",
    ]
)


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(words, min_size=0, max_size=5))
def test_random_command_text_never_crashes_and_refusals_exit_2(settings, redis_client, ws):
    """Random command-like text from someone not on the roster: only help/status/report run."""
    core = Core.from_settings(settings)
    outcome = handle(core, "U0STRANGER", " ".join(ws))
    assert outcome.code in (0, 2)
    assert outcome.work is None
    for line in outcome.reply:
        assert "Traceback" not in line
    if outcome.code == 2:
        assert outcome.reply and len(outcome.reply[0]) < 400
