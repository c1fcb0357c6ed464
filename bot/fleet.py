"""The fleet's wiring: a FleetContext handed the single-database machinery its jobs drive (a
database's Core, the start of its phases), so that workflows/fleet imports no verb."""

from __future__ import annotations

from commands.core import Core
from commands.parse import Command
from commands.run import run
from core.config import Settings
from workflows.fleet.context import FleetContext


def start_phases(core: Core, actor: str):
    """Every phase the target's run has not applied, then verification, as `run` does; the fleet
    run's decision stands for now, so a target run approved for a scheduled time starts too."""
    return run(core, actor, Command("run"), scheduled=True)


def make_core(settings: Settings, *, lock_ttl: float | None = None) -> Core:
    return Core.from_settings(settings, lock_ttl=lock_ttl)


def fleet_context(settings: Settings, **options) -> FleetContext:
    return FleetContext.from_settings(settings, make_core=make_core, start_phases=start_phases, **options)
