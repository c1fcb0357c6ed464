"""Everything a command and its work need, built once from Settings at start-up.

The roster, the runbook, the Redis state (store, lock, audit) and the scheduling interface
(`schedule`, workflows/schedule.py) the adapter hands over. The verbs (commands/) and the
workflows (this package) both take a `Core`; it lives here, at the lower of the two layers.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field

import redis as redis_lib

from core.config import Settings
from core.redact import redact
from core.roster import Roster
from runbook.model import Runbook, load_runbook
from state.audit import EventLog
from state.keys import Keys, database_identity
from state.lock import RunLock
from state.runs import RunStore
from workflows.schedule import Schedule, ScheduleFactory, Unscheduled, process_default


@dataclass
class Core:
    settings: Settings
    roster: Roster
    runbook: Runbook
    redis: redis_lib.Redis
    keys: Keys
    store: RunStore
    lock: RunLock
    events: EventLog
    # Executors working in this process, by run id, so `abort` can cancel them directly.
    executors: dict = field(default_factory=dict)
    executors_guard: threading.Lock = field(default_factory=threading.Lock)
    # The run lock's `lost` event of work running in this process, by run id: set, the work stops.
    lost_locks: dict = field(default_factory=dict)
    # Time-driven work (scheduled GO, follow-ups): handed over at start-up, see from_settings.
    schedule: Schedule = field(default_factory=Unscheduled)

    @classmethod
    def from_settings(
        cls, settings: Settings, *, lock_ttl: float | None = None, schedule: ScheduleFactory | None = None
    ) -> Core:
        """The Core of a process; `schedule(core)` gives its scheduling interface (default: the
        process's, workflows.schedule.process_default)."""
        settings.require("database_url")
        client = redis_lib.Redis.from_url(settings.redis_url)
        target = database_identity(settings.database_url)  # the server's word, not the URL's spelling
        keys = Keys(settings.redis_prefix, target)
        events = EventLog(settings.database_url, target=target)
        core = cls(
            settings=settings,
            roster=Roster.load(settings.roster_path),
            runbook=load_runbook(settings.runbook_path),
            redis=client,
            keys=keys,
            store=RunStore(client, keys, events=events),
            lock=RunLock(client, keys, ttl=lock_ttl or settings.lock_ttl_seconds),
            events=events,
        )
        core.schedule = (schedule or process_default())(core)
        return core

    def reload_runbook(self) -> Runbook:
        """The runbook as it is on disk now, when it changed since this process loaded it.

        The runbook is loaded once per process and every command reads that plan; a new
        pre-flight (the start of every approval) reloads it, so what is checked, approved and
        run is the file's current content. Between pre-flight and run the approval binds its
        sha256: a change on disk makes `run` refuse instead of running an outdated plan.
        Raises RunbookError when the new file does not load."""
        path = self.runbook.path
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != self.runbook.sha256:
            self.runbook = load_runbook(path)
        return self.runbook

    def redact(self, text: str) -> str:
        return redact(text, self.settings.secrets())
