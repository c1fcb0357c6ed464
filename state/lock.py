"""The run lock: one active run per target database.

The lock is one Redis string (`Keys.lock()`) set with NX and a TTL, holding a random token
and its owner (JSON). It is an owned key (state/owned.py): only the holder of the token
renews or releases it, so a holder whose lock expired and was taken by someone else can
neither extend nor delete the new holder's lock. While work runs, a heartbeat thread renews
it every ttl/3; a holder that dies stops renewing, and the lock expires.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from typing import Any

from redis import Redis

from core import clock
from state.keys import Keys
from state.owned import OwnedKey, Renewal

log = logging.getLogger(__name__)


class LockHandle:
    """A held run lock. `lost` is set when a renewal finds the lock no longer ours."""

    def __init__(self, lock: RunLock, token: str, owner: str):
        self.token = token
        self.owner = owner
        self.lost = threading.Event()
        self._lock = lock
        self._owned = OwnedKey(lock.redis, lock.key, token, field="token")
        self._renewal: Renewal | None = None

    def claim(self, value: str) -> bool:
        """SET NX: True when the lock was free and now holds `value` (JSON with our token)."""
        return self._owned.claim(self._lock.ttl, value)

    def renew(self) -> bool:
        """Extend the TTL if the lock is still ours."""
        return self._owned.extend(self._lock.ttl)

    def release(self) -> bool:
        """Stop the heartbeat and delete the lock if it is still ours."""
        self.stop_heartbeat()
        return self._owned.delete()

    def start_heartbeat(self, interval: float | None = None) -> None:
        """Renew from a daemon thread every `interval` seconds (default ttl/3)."""
        if self._renewal is not None:
            return
        # Redis briefly unreachable: keep trying until the TTL would have run out.
        self._renewal = self._owned.renewal(
            self._lock.ttl,
            every=interval,
            give_up_after=self._lock.ttl,
            on_lost=self._on_lost,
            name=f"lock-heartbeat-{self.owner}",
            lost=self.lost,
        )
        self._renewal.start()

    def stop_heartbeat(self) -> None:
        if self._renewal is not None:
            self._renewal.stop()
            self._renewal = None

    def _on_lost(self, cause: Exception | None) -> None:
        if cause is None:
            log.warning("run lock lost by %s: it expired or was taken over", self.owner)
        else:
            log.warning("run lock of %s could not be renewed within its TTL: %s", self.owner, cause)

    def __enter__(self) -> LockHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class RunLock:
    """One active run per target database."""

    def __init__(self, redis: Redis, keys: Keys, ttl: float = 15.0):
        self.redis = redis
        self.key = keys.lock()
        self.ttl = ttl

    def acquire(self, owner: str) -> LockHandle | None:
        """The lock with a fresh random token, or None when someone else holds it."""
        token = secrets.token_hex(16)
        value = json.dumps({"token": token, "owner": owner, "since": clock.now().isoformat()})
        handle = LockHandle(self, token, owner)
        return handle if handle.claim(value) else None

    def holder(self) -> dict[str, Any] | None:
        """{owner, since} of the current holder (never the token), or None."""
        raw = self.redis.get(self.key)
        if raw is None:
            return None
        data = json.loads(raw)
        return {"owner": data.get("owner"), "since": data.get("since")}

    def held(self) -> bool:
        return bool(self.redis.exists(self.key))
