"""`/migrate` text -> a parsed command, or a short answer saying what to type instead.

The grammar is the contract's command table; nothing else is accepted. Parsing is pure so
that a property-based test can throw any text at it.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

USAGE = {
    "help": "help",
    "status": "status",
    "preflight": "preflight",
    "approve": "approve  |  approve at <HH:MM UTC or ISO 8601>",
    "defer": "defer <reason>",
    "run": "run  |  run phase <n>",
    "verify": "verify",
    "rollback": "rollback phase <n>  |  rollback all  |  rollback all on <target>  |  rollback accept  |  rollback restore  |  rollback restore confirm",
    "abort": "abort",
    "incident": "incident start <text>  |  incident clear",
    "report": "report",
}


# A target's name as MIGRATE_TARGETS allows it (core/targets.py NAME): case kept, as written there.
TARGET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


class ParseError(ValueError):
    """The text is not a command; the message says what to type instead."""


@dataclass(frozen=True)
class Command:
    verb: str  # a key of USAGE
    phase: int | None = None  # run phase n / rollback phase n
    at: datetime | None = None  # approve at
    text: str = ""  # defer reason / incident text
    flags: frozenset[str] = field(default_factory=frozenset)  # restore, confirm, all, accept, start, clear
    target: str | None = None  # rollback all on <target>: a target of MIGRATE_TARGETS, by name


def _usage(verb: str) -> str:
    return f"usage: /migrate {USAGE[verb]}"


def _phase_number(words: list[str], verb: str) -> int:
    # ASCII digits only: str.isdigit() is true for '¹' or '①', which int() refuses, and int()
    # reads '١' (Arabic-Indic one) as 1 — a phase number must be what the user can see.
    if len(words) != 2 or words[0] != "phase" or not re.fullmatch(r"[0-9]{1,3}", words[1]):
        hint = f" (the phase is a number written with 0-9, e.g. `{verb} phase 1`)" if len(words) == 2 else ""
        raise ParseError(_usage(verb) + hint)
    return int(words[1])


def parse_time(raw: str, now: datetime) -> datetime:
    """UTC `HH:MM` (its next occurrence after `now`) or an ISO 8601 date-time (UTC if no zone)."""
    raw = raw.strip()
    try:
        if len(raw) <= 5 and ":" in raw:
            hour, minute = (int(x) for x in raw.split(":"))
            candidate = now.astimezone(UTC).replace(hour=hour, minute=minute, second=0, microsecond=0)
            return candidate if candidate > now else candidate + timedelta(days=1)
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ParseError(
            f"{raw!r} is not a time: use HH:MM (UTC), e.g. `approve at 02:00`, "
            "or ISO 8601, e.g. `approve at 2026-11-25T02:00Z`"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse(text: str, now: datetime) -> Command:
    """Parse `/migrate` text. Raises ParseError with a hint."""
    words = (text or "").split()
    if words and words[0].lower() == "/migrate":  # typed as the hints show it (the console)
        words = words[1:]
    if not words:
        return Command("help")
    verb, rest = words[0].lower(), words[1:]
    if verb not in USAGE:
        near = difflib.get_close_matches(verb, USAGE, n=1, cutoff=0.6)
        guess = f"did you mean `{near[0]}`? " if near else ""
        raise ParseError(f"unknown command {words[0][:40]!r}: {guess}try `/migrate help`")
    if verb in ("help", "status", "preflight", "verify", "abort", "report"):
        if rest:
            raise ParseError(f"`{verb}` takes no arguments: {_usage(verb)}")
        return Command(verb)
    if verb == "approve":
        if not rest:
            return Command("approve")
        if rest[0].lower() != "at" or len(rest) < 2:
            raise ParseError(_usage(verb))
        return Command("approve", at=parse_time(" ".join(rest[1:]), now))
    if verb == "defer":
        if not rest:
            raise ParseError("`defer` needs a reason: " + _usage(verb))
        return Command("defer", text=" ".join(rest))
    if verb == "run":
        return (
            Command("run")
            if not rest
            else Command("run", phase=_phase_number([w.lower() for w in rest], verb))
        )
    if verb == "rollback":
        lowered = [w.lower() for w in rest]
        if lowered == ["restore"]:
            return Command("rollback", flags=frozenset({"restore"}))
        if lowered == ["restore", "confirm"]:
            return Command("rollback", flags=frozenset({"restore", "confirm"}))
        if lowered in (["all"], ["accept"]):
            return Command("rollback", flags=frozenset(lowered))
        if lowered[:2] == ["all", "on"]:
            if len(rest) != 3 or not TARGET_NAME.fullmatch(rest[2]):
                raise ParseError(
                    "usage: /migrate rollback all on <target> (one target of MIGRATE_TARGETS, by its name, "
                    "e.g. `rollback all on eu-1`)"
                )
            return Command("rollback", flags=frozenset({"all"}), target=rest[2])
        return Command("rollback", phase=_phase_number(lowered, verb))
    # incident
    if rest and rest[0].lower() == "start" and len(rest) > 1:
        return Command("incident", text=" ".join(rest[1:]), flags=frozenset({"start"}))
    if [w.lower() for w in rest] == ["clear"]:
        return Command("incident", flags=frozenset({"clear"}))
    raise ParseError(_usage("incident"))
