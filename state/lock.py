"""The run lock: one active run per target database.

The lock is one Redis string (`Keys.lock()`) set with NX and a TTL, holding a random token
and its owner. Only the holder of the token renews (PEXPIRE) or releases (DEL) it; both are
compare-and-act Lua scripts, so a holder whose lock expired and was taken by someone else
can neither extend nor delete the new holder's lock. While work runs, a heartbeat thread
renews it every ttl/3; a holder that dies stops renewing, and the lock expires.
"""
from __future__ import annotations

import json
import logging
import secrets
import threading

from redis import Redis
from redis.exceptions import RedisError

from core import clock
from state.keys import Keys

log = logging.getLogger(__name__)

_RENEW = """
local v = redis.call('GET', KEYS[1])
if v and cjson.decode(v)['token'] == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
local v = redis.call('GET', KEYS[1])
if v and cjson.decode(v)['token'] == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class LockHandle:
    """A held run lock. `lost` is set when a renewal finds the lock no longer ours."""

    def __init__(self, lock: "RunLock", token: str, owner: str):
        self.token = token
        self.owner = owner
        self.lost = threading.Event()
        self._lock = lock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def renew(self) -> bool:
        """Extend the TTL if the lock is still ours."""
        return bool(self._lock._renew(keys=[self._lock.key], args=[self.token, self._lock.ttl_ms]))

    def release(self) -> bool:
        """Stop the heartbeat and delete the lock if it is still ours."""
        self.stop_heartbeat()
        return bool(self._lock._release(keys=[self._lock.key], args=[self.token]))

    def start_heartbeat(self, interval: float | None = None) -> None:
        """Renew from a daemon thread every `interval` seconds (default ttl/3)."""
        if self._thread is not None:
            return
        every = interval if interval is not None else self._lock.ttl / 3
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, args=(every,), name=f"lock-heartbeat-{self.owner}",
                                        daemon=True)
        self._thread.start()

    def stop_heartbeat(self) -> None:
        if self._thread is not None:
            self._stop.set()
            if self._thread is not threading.current_thread():
                self._thread.join()
            self._thread = None

    def _beat(self, every: float) -> None:
        last_ok = clock.monotonic()
        while not self._stop.wait(every):
            try:
                if self.renew():
                    last_ok = clock.monotonic()
                    continue
                log.warning("run lock lost by %s: it expired or was taken over", self.owner)
                self.lost.set()
                return
            except RedisError as exc:
                # Redis briefly unreachable: keep trying until the TTL would have run out.
                if clock.monotonic() - last_ok > self._lock.ttl:
                    log.warning("run lock of %s could not be renewed within its TTL: %s", self.owner, exc)
                    self.lost.set()
                    return

    def __enter__(self) -> "LockHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class RunLock:
    """One active run per target database."""

    def __init__(self, redis: Redis, keys: Keys, ttl: float = 15.0):
        self.redis = redis
        self.key = keys.lock()
        self.ttl = ttl
        self.ttl_ms = max(1, int(ttl * 1000))
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    def acquire(self, owner: str) -> LockHandle | None:
        """The lock with a fresh random token, or None when someone else holds it."""
        token = secrets.token_hex(16)
        value = json.dumps({"token": token, "owner": owner, "since": clock.now().isoformat()})
        if self.redis.set(self.key, value, nx=True, px=self.ttl_ms):
            return LockHandle(self, token, owner)
        return None

    def holder(self) -> dict | None:
        """{owner, since} of the current holder (never the token), or None."""
        raw = self.redis.get(self.key)
        if raw is None:
            return None
        data = json.loads(raw)
        return {"owner": data.get("owner"), "since": data.get("since")}

    def held(self) -> bool:
        return bool(self.redis.exists(self.key))
