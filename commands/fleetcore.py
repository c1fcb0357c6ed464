"""The fleet as the verbs see it: MIGRATE_TARGETS's databases, each with a Core of its own.

Design (issue 18, the operator's surface; the waves, the job queue and the per-target run job
are workflows/fleet's):

- Each target keeps its own run: a Core built from the process's settings with DATABASE_URL
  set to the target's URL and BACKUP_DIR to `BACKUP_DIR/targets/<name>` (two targets' backups
  taken in the same second must not share a file name). Its run state, run lock, audit and
  ledger are the target's own (state.keys under its identity), so `rollback all on <target>`
  is the single-database `rollback all` on that Core, and `status`/`report` per target read the
  same records as today.
- What spans the targets is the fleet run (state/fleet.py, FleetStore): which targets, their
  waves, each one's status, phase and duration, the approval that covers the GO ones, and an
  event stream with one entry per change — the Slack thread renders one line per target
  transition from it (bot/slack/fleet_feed.py) and the parent message is the table of targets
  (bot/slack/fleet_blocks.py), edited in place.
- Every target Core shares the process's runbook object: what is pre-flighted, approved and run
  is one plan, bound by the same checksums on every database.
"""

from __future__ import annotations

import threading
from pathlib import Path

from core.config import Settings
from core.targets import Fleet, Target
from state.fleet import FleetStore
from workflows.core import Core

_GUARD = threading.Lock()


def fleet_of(core: Core) -> Fleet | None:
    """The targets file's fleet, or None when MIGRATE_TARGETS is unset (one database)."""
    return core.settings.targets


def the_fleet(core: Core) -> Fleet:
    """The targets file's fleet, where one is certain (the fleet verbs run only with
    MIGRATE_TARGETS set); ValueError otherwise."""
    fleet = core.settings.targets
    if fleet is None:
        raise ValueError("MIGRATE_TARGETS is unset: there is no fleet")
    return fleet


def named_core(core: Core, name: str) -> Core:
    """The Core of the target called `name` in the targets file; KeyError when the file no
    longer has it."""
    target = the_fleet(core).get(name)
    if target is None:
        raise KeyError(f"no target {name!r} in MIGRATE_TARGETS")
    return target_core(core, target)


def store(core: Core) -> FleetStore:
    """The fleet runs of this bot (one prefix), their audit mirrored to the process's database."""
    return FleetStore(core.redis, core.settings.redis_prefix, events=core.events)


def target_settings(core: Core, target: Target) -> Settings:
    """The process's settings, aimed at one target: its URL, a backup folder of its own, and no
    targets file (its Core is one database's)."""
    return core.settings.with_(
        database_url=target.url,
        backup_dir=Path(core.settings.backup_dir) / "targets" / target.name,
        targets=None,  # a target's Core is a single database: its verbs are today's
    )


def target_core(core: Core, target: Target) -> Core:
    """The Core of one target, built once per process core (kept on it) and target; the
    runbook and roster are the process core's."""
    with _GUARD:
        cores: dict[str, Core] = core.__dict__.setdefault("fleet_cores", {})
        found = cores.get(target.name)
        if found is None or found.settings.database_url != target.url:
            found = Core.from_settings(
                target_settings(core, target),
                lock_ttl=core.settings.lock_ttl_seconds,
                schedule=type(core.schedule),  # wired as the process core (workflows/schedule.py)
            )
            cores[target.name] = found
    found.runbook = core.runbook
    found.roster = core.roster
    return found


def known_core(core: Core, name: str) -> Core | None:
    """The Core of the fleet run's target `name`, or None when MIGRATE_TARGETS no longer names
    it (the targets file changed since the fleet run was created: its URL is unknown here)."""
    fleet = fleet_of(core)
    target = fleet.get(name) if fleet is not None else None
    return target_core(core, target) if target is not None else None


def gone(name: str) -> str:
    """Why a target of the fleet run cannot be acted on from this process."""
    return f"{name}: MIGRATE_TARGETS no longer names it (put its [[targets]] entry back to act on it)"


def let_go(tcore: Core) -> None:
    """Close a target Core's idle audit connection (it reopens on the next write): a fleet of
    50 must not hold 50 idle connections between commands (servers have max_connections)."""
    tcore.events.close()


def close_target_cores(core: Core) -> None:
    """Let go of the target Cores' connections (their audit pools, their Redis clients)."""
    with _GUARD:
        cores = core.__dict__.pop("fleet_cores", {})
    for found in cores.values():
        found.events.close()
        found.redis.close()


def canary_names(fleet: Fleet) -> list[str]:
    return [t.name for t in fleet.canary()]
