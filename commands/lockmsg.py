"""The refusal given when another run holds the target database's run lock."""

from __future__ import annotations

from commands.result import Outcome


def lock_refusal(core) -> Outcome:
    holder = core.lock.holder() or {}
    who = holder.get("owner", "another run")
    since = holder.get("since", "")
    return Outcome.refused(
        f"another run holds the lock on this database ({who}{', since ' + since if since else ''}): "
        "wait for it to finish, or `/migrate abort` it"
    )
