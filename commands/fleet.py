"""The verbs with MIGRATE_TARGETS set: the same commands, over every target of the fleet.

`route(core, cmd)` gives the fleet's version of a verb when a targets file is configured, else
None (the single-database verb runs, unchanged). `run` is workflows/fleet's (the waves); this
module routes the operator's surface: preflight, approve, defer, status, report, rollback all
(on one target or every one).
"""

from __future__ import annotations

from collections.abc import Callable

from commands.fleet_abort import fleet_abort
from commands.fleet_decide import fleet_approve, fleet_defer
from commands.fleet_info import fleet_help, fleet_report, fleet_status
from commands.fleet_preflight import fleet_preflight
from commands.fleet_rollback import fleet_rollback
from commands.fleet_run import fleet_run
from commands.fleetcore import fleet_of
from commands.parse import Command
from commands.result import Outcome
from workflows.core import Core

Verb = Callable[[Core, str, Command], Outcome]


def route(core: Core, cmd: Command) -> Verb | None:
    """The fleet verb for `cmd`, or None to run the single-database one."""
    if fleet_of(core) is None:
        return _single_target if cmd.target is not None else None
    return FLEET_VERBS.get(cmd.verb)


def _verify(core: Core, user: str, cmd: Command) -> Outcome:
    return Outcome.refused(
        "with MIGRATE_TARGETS, `run` verifies each database after its phases (its verification and "
        "final checks); `verify` again is per database: run it with that target's DATABASE_URL"
    )


def _single_target(core: Core, user: str, cmd: Command) -> Outcome:
    return Outcome.refused(
        f"`rollback all on {cmd.target}` names a target of MIGRATE_TARGETS, which is not set: "
        "with one database, `rollback all`"
    )


FLEET_VERBS: dict[str, Verb] = {
    "preflight": fleet_preflight,
    "approve": fleet_approve,
    "defer": fleet_defer,
    "help": fleet_help,
    "abort": fleet_abort,
    "verify": _verify,
    "status": fleet_status,
    "report": fleet_report,
    "rollback": fleet_rollback,
    "run": fleet_run,
}
