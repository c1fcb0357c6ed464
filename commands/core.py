"""Everything a command needs, built once from Settings: roster, runbook, Redis state."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

import redis as redis_lib

from core.config import Settings
from core.redact import redact
from core.roster import Roster
from runbook.model import Runbook, load_runbook
from state.audit import EventLog
from state.keys import Keys, target_identity
from state.lock import RunLock
from state.runs import RunStore


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

    @classmethod
    def from_settings(cls, settings: Settings, *, lock_ttl: float | None = None) -> "Core":
        settings.require("database_url")
        client = redis_lib.Redis.from_url(settings.redis_url)
        target = target_identity(settings.database_url)
        keys = Keys(settings.redis_prefix, target)
        events = EventLog(settings.database_url, target=target)
        return cls(
            settings=settings,
            roster=Roster.load(settings.roster_path),
            runbook=load_runbook(settings.runbook_path),
            redis=client,
            keys=keys,
            store=RunStore(client, keys, events=events),
            lock=RunLock(client, keys, ttl=lock_ttl or settings.lock_ttl_seconds),
            events=events,
        )

    def redact(self, text: str) -> str:
        return redact(text, self.settings.secrets())
