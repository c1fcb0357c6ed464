"""`incident start <text>` / `incident clear`: a critical incident blocks GO and run
(the check itself, `why_incident_blocks`, is workflows/checks.py: the scheduled start makes it too)."""

from __future__ import annotations

from commands.parse import Command
from workflows.core import Core
from workflows.reporting import OK, Outcome, Post


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
