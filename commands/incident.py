"""`incident start <text>` / `incident clear`: a critical incident blocks GO and run."""

from __future__ import annotations

from commands.core import Core
from commands.parse import Command
from commands.result import OK, Outcome, Post


def why_incident_blocks(core: Core, blocked: str) -> str | None:
    """The refusal while a critical incident is declared (it blocks GO and run), or None."""
    declared = core.store.incident()
    if declared is None:
        return None
    return (
        f"a critical incident is declared by <@{declared.get('by')}> ({declared.get('text')}): {blocked} until "
        "`/migrate incident clear`"
    )


def incident(core: Core, user: str, cmd: Command) -> Outcome:
    if "start" in cmd.flags:
        core.store.set_incident(user, cmd.text)
        return Outcome(
            OK,
            reply=["Incident recorded: pre-flight is NO-GO and nothing runs until `incident clear`."],
            posts=[
                Post(
                    "incident",
                    f"🚨 Critical incident declared by <@{user}>: {cmd.text}",
                    ["Migration work is blocked until `/migrate incident clear`."],
                )
            ],
        )
    existing = core.store.incident()
    if existing is None:
        return Outcome.refused("no incident is declared: nothing to clear")
    core.store.clear_incident(user)
    return Outcome(
        OK,
        reply=["Incident cleared."],
        posts=[Post("incident", f"Incident cleared by <@{user}>", [f"was: {existing.get('text')}"])],
    )
