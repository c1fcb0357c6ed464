"""The console takes commands the way the hints show them, and says what it cannot do."""

from __future__ import annotations

import re
from datetime import timedelta

from commands import Core
from core import clock
from tests.support.flow import COORDINATOR, TPM, Console


def test_a_leading_slash_migrate_is_accepted(settings):
    console = Console(Core.from_settings(settings))
    code, out = console(COORDINATOR, "/migrate status")
    assert code == 0 and "No run yet" in out


def test_a_near_miss_gets_did_you_mean(settings):
    console = Console(Core.from_settings(settings))
    code, out = console(COORDINATOR, "stauts")
    assert code == 2 and "did you mean `status`?" in out
    code, out = console(COORDINATOR, "rnu phase 1")
    assert code == 2 and "did you mean `run`?" in out
    code, out = console(COORDINATOR, "xyzzy")
    assert code == 2 and "did you mean" not in out


def test_a_hint_can_be_typed_as_shown(settings):
    console = Console(Core.from_settings(settings))
    code, out = console(COORDINATOR, "stauts")
    hints = re.findall(r"`(/migrate [^`]+)`", out)
    assert hints == ["/migrate help"], out
    code, out = console(COORDINATOR, hints[0])
    assert code == 0 and "/migrate status" in out


def test_a_go_scheduled_from_the_console_says_serve_fires_it(ready):
    console = Console(Core.from_settings(ready))
    assert console(COORDINATOR, "preflight")[0] == 0
    at = (clock.now() + timedelta(hours=3)).replace(second=0, microsecond=0)
    code, out = console(TPM, f"approve at {at:%Y-%m-%dT%H:%MZ}")
    assert code == 0, out
    assert "[note] the scheduled start is fired by the scheduler in `python -m bot serve`" in out


def test_every_command_hint_shown_along_a_run_parses_as_typed(ready):
    """Whatever `…` command the console suggests along a whole run (pre-flight, approval,
    phases, status, rollback) is a command the console accepts as written — templates with a
    placeholder (`run phase <n>`) aside."""
    from commands import VERBS
    from commands.parse import ParseError, parse

    console = Console(Core.from_settings(ready))
    for user, text in [
        (COORDINATOR, "help"),
        (COORDINATOR, "status"),
        (COORDINATOR, "run"),
        (COORDINATOR, "preflight"),
        (COORDINATOR, "status"),
        (COORDINATOR, "run"),
        (TPM, "approve"),
        (COORDINATOR, "status"),
        ("U0LIU", "run phase 1"),
        (COORDINATOR, "status"),
        ("U0LIU", "rollback phase 1"),
        (COORDINATOR, "status"),
        (COORDINATOR, "report"),
    ]:
        console(user, text)
    hints = set()
    for match in re.findall(r"`([^`\n]+)`", console.everything()):
        words = match.removeprefix("/migrate ").split()
        if words and words[0] in VERBS and not re.search(r"[<>…]|HH:MM|\.\.\.", match):
            hints.add(match)
    assert len(hints) >= 5, hints  # the run above is full of hints; finding none means the pattern broke
    for hint in sorted(hints):
        try:
            parse(hint.removeprefix("/migrate "), clock.now())
        except ParseError as exc:
            raise AssertionError(f"hint `{hint}` does not parse: {exc}") from exc
        code, out = console(COORDINATOR, hint) if hint.split()[-1] in ("help", "status") else (0, "")
        assert code == 0, out
