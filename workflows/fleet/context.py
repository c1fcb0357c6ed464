"""What the fleet's work shares inside one process: the settings, Redis, the fleet store, and
one Core per target database (built on first use, kept for the process).

The single-database machinery a target's job drives (a database's Core; the start of its
phases: approval, incident and leftover checks, the run lock, the PhaseRunner) is handed in by
the adapter that builds the context (bot/fleet.py), as `make_core` and `start_phases`: this
package imports no verb."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis as redis_lib

from core.config import Settings
from core.redact import redact
from core.targets import Fleet, Target
from state.audit import EventLog
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
    # (settings of one database, lock_ttl) -> its Core
    make_core: Callable[..., Core]
    # (Core, actor) -> Outcome (code, reply, work): every phase not applied, then verification,
    # as `run` does; a scheduled approval counts as now (the fleet run's decision stands)
    start_phases: Callable[[Core, str], Any]
    worker: str = field(default_factory=process_name)
    # Where a target's own posts go: (fleet id, target name, on_phase) -> Reporter. The default
    # keeps them quiet (above); an adapter may hand its own.
    reporter_for: Callable[[str, str, Callable[[int | None], None]], Reporter] | None = None
    lock_ttl: float | None = None
    _cores: dict[str, Core] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_settings(cls, settings: Settings, **options) -> FleetContext:
        client = redis_lib.Redis.from_url(settings.redis_url)
        mirror = EventLog(settings.database_url, target="fleet") if settings.database_url else None
        return cls(
            settings=settings,
            redis=client,
            fleets=FleetStore(client, settings.redis_prefix, events=mirror),
            **options,
        )

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

    def core_for(self, name: str) -> Core:
        """The Core of target `name`: its own keys (its database's identity), run store, lock."""
        with self._guard:
            core = self._cores.get(name)
            if core is None:
                # each database's backups and snapshots in a folder of its own: two targets'
                # pre-flights in the same second would otherwise write the same file name
                settings = self.settings.with_(
                    database_url=self.target(name).url, backup_dir=self.settings.backup_dir / name
                )
                core = self.make_core(settings, lock_ttl=self.lock_ttl)
                self._cores[name] = core
            return core

    def reporter(self, fleet_id: str, name: str) -> Reporter:
        def on_phase(phase: int | None) -> None:
            self.fleets.set_phase(fleet_id, name, phase, actor=self.worker)

        if self.reporter_for is not None:
            return self.reporter_for(fleet_id, name, on_phase)
        return QuietReporter(on_phase)

    def redact(self, text: str) -> str:
        return redact(text, self.settings.secrets())

    def close(self) -> None:
        with self._guard:
            for core in self._cores.values():
                core.events.close()
            self._cores.clear()
        if self.fleets.mirror is not None:
            self.fleets.mirror.close()
