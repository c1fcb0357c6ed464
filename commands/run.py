"""`run`, `run phase <n>` and `verify`: execute the approved runbook, phase by phase.

The checks and the start are workflows/run.py (the scheduled start makes the same ones)."""

from __future__ import annotations

from commands.parse import Command
from workflows.core import Core
from workflows.reporting import Outcome
from workflows.run import start_phases, start_verification


def run(core: Core, user: str, cmd: Command) -> Outcome:
    """`run` (all remaining phases, then verification) or `run phase n` (one phase)."""
    return start_phases(core, user, cmd.phase)


def verify(core: Core, user: str, cmd: Command) -> Outcome:
    """The verification suites (phase 3): every migration phase must have succeeded."""
    return start_verification(core, user)
