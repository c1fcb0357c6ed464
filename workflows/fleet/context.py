"""What the fleet's work shares inside one process: the settings, Redis, the fleet store, and
the Core of each target database.

The single-database machinery a target's job drives (a database's Core; the start of its
phases: approval, incident and leftover checks, the run lock, the PhaseRunner) is handed in by
whoever builds the context (commands/fleet_run.py `fleet_context`), as `core_for` and
`start_phases`: this package imports no verb."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis as redis_lib

from core.config import Settings
from core.redact import redact
from core.targets import Fleet, Target
from state.fleet import FleetStore

# Exit codes of work (CONTRACT: the console's): the same numbers a target's run work returns.
OK, FAILED, REFUSED = 0, 1, 2
Core = Any  # a database's Core (workflows' once the workflows split lands; commands' before)
Reporter = Any  # anything with post(Post) and progress(Progress)


def process_name() -> str:
    """`<host>:<pid>`: who is working, in the audit and on each target."""
    return f"{socket.gethostname()}:{os.getpid()}"


class QuietReporter:
    """A fleet target's reporter: the per-phase posts of one database are not sent anywhere
    (the fleet's card and thread show every target from state.fleet's events instead, one line
    per transition, not a message storm); the phase it is in goes to the fleet state."""

    def __init__(self, on_phase: Callable[[int | None], None]):
        self._on_phase = on_phase
        self._phase: int | None = None
        self.posts: list = []

    def post(self, post) -> None:
        self.posts.append(post)
        del self.posts[:-20]  # the last few, for a failure's explanation

    def progress(self, progress) -> None:
        if progress.phase is not None and progress.phase != self._phase:
            self._phase = progress.phase
            self._on_phase(progress.phase)


@dataclass
class FleetContext:
    settings: Settings
    redis: redis_lib.Redis
    fleets: FleetStore
    # target name -> that database's Core (its own keys, run store, run lock, audit)
    core_for: Callable[[str], Core]
    # (Core, actor) -> Outcome (code, reply, work): every phase not applied, then verification,
    # as `run` does; a scheduled approval counts as now (the fleet run's decision stands)
    start_phases: Callable[[Core, str], Any]
    # why the fleet run's approval cannot start a target now (None: it can)
    why_not_approved: Callable[[Any], str | None] = lambda fleet: None
    worker: str = field(default_factory=process_name)
    # Where a target's own posts go: (fleet id, target name, on_phase) -> Reporter. The default
    # keeps them quiet (above); an adapter may hand its own.
    reporter_for: Callable[[str, str, Callable[[int | None], None]], Reporter] | None = None

    @property
    def fleet(self) -> Fleet:
        return self.settings.fleet()

    def target(self, name: str) -> Target:
        found = self.fleet.get(name)
        if found is None:
            raise KeyError(
                f"no target {name!r} in MIGRATE_TARGETS (targets: {', '.join(self.fleet.names())})"
            )
        return found

    def reporter(self, fleet_id: str, name: str) -> Reporter:
        def on_phase(phase: int | None) -> None:
            self.fleets.set_phase(fleet_id, name, phase, actor=self.worker)

        if self.reporter_for is not None:
            return self.reporter_for(fleet_id, name, on_phase)
        return QuietReporter(on_phase)

    def redact(self, text: str) -> str:
        return redact(text, self.settings.secrets())
