"""Who may run which command: the contract's table, read against the roster."""

from __future__ import annotations

from commands.parse import Command
from core.roster import COORDINATOR, TPM, Roster
from runbook.model import Runbook


def allowed_roles(cmd: Command, runbook: Runbook) -> tuple[str, ...] | None:
    """The roles that may run `cmd`; None means anyone, () means any roster member."""
    verb = cmd.verb
    if verb in ("help", "status", "report"):
        return None
    if verb == "incident":
        return ()
    if verb == "preflight":
        return (COORDINATOR, TPM)
    if verb in ("approve", "defer"):
        return (TPM,)
    if verb == "abort":
        return (COORDINATOR, TPM)
    if verb == "verify":
        return (COORDINATOR,)
    if verb == "rollback" and "restore" in cmd.flags:
        return (TPM,) if "confirm" in cmd.flags else (COORDINATOR,)
    if verb == "rollback" and "accept" in cmd.flags:
        return (TPM,)
    if cmd.phase is not None:  # run phase n / rollback phase n: that phase's owner or the coordinator
        phase = runbook.phase(cmd.phase)
        owner = phase.owner if phase else None
        return tuple(dict.fromkeys(r for r in (owner, COORDINATOR) if r))
    return (COORDINATOR,)  # run (all phases)


def refusal(roster: Roster, runbook: Runbook, user: str, cmd: Command) -> str | None:
    """Why `user` may not run `cmd` (naming the rule and whom to ask), or None."""
    roles = allowed_roles(cmd, runbook)
    if roles is None:
        return None
    if roles == ():
        return (
            None
            if roster.is_member(user)
            else "only people on the roster can do that: ask the coordinator to add you (MIGRATE_ROSTER)"
        )
    if roster.has_role(user, *roles):
        return None
    names = " or ".join(_role_name(r) for r in roles)
    asks = ", ".join(roster.mention(r) for r in roles)
    return f"only the {names} can `{describe(cmd)}`: ask {asks}"


def _role_name(role: str) -> str:
    return "TPM" if role == TPM else role.replace("-", " ")


def describe(cmd: Command) -> str:
    """The command as a person would type it (without free text)."""
    if cmd.verb == "rollback" and "restore" in cmd.flags:
        return "rollback restore" + (" confirm" if "confirm" in cmd.flags else "")
    if cmd.verb == "rollback" and cmd.flags & {"all", "accept"}:
        return (
            "rollback "
            + next(iter(cmd.flags & {"all", "accept"}))
            + (f" on {cmd.target}" if cmd.target else "")
        )
    if cmd.phase is not None:
        return f"{cmd.verb} phase {cmd.phase}"
    if cmd.verb == "incident":
        return "incident " + ("start" if "start" in cmd.flags else "clear")
    return cmd.verb + (" at" if cmd.at else "")
