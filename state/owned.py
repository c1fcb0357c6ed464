"""A Redis key held by one owner: claimed with SET NX, extended and deleted only by its owner.

The run lock (state/lock.py), the Slack outbox's delivery lock per channel (bot/slack/outbox.py)
and the scheduler's once-only claims (scheduling/once.py) are all such keys. Extend and delete
are compare-and-act Lua scripts, so an owner whose key expired and was taken by someone else
can neither extend nor delete the new owner's key. `Renewal` keeps a key alive from a thread
while work runs and tells the work (`lost`, `on_lost`) when the key is no longer ours.

Who the owner is: by default the key's whole value is the owner's token; with `field`, the value
is a JSON object and `value[field]` is the token (the run lock keeps owner and since beside it).
TTLs are given in seconds (floats allowed) and written in milliseconds (PEXPIRE / SET PX), so
a 1.5 s TTL is 1500 ms and a 15 s one 15000 ms; nothing is rounded down to zero.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from core import clock

log = logging.getLogger(__name__)

# KEYS[1] the key; ARGV[1] the owner's token; ARGV[2] the JSON field holding it ('' = whole value).
_OURS = """
local function ours(key, token, field)
  local v = redis.call('GET', key)
  if not v then return false end
  if field == '' then return v == token end
  local ok, data = pcall(cjson.decode, v)
  return ok and type(data) == 'table' and data[field] == token
end
"""
_EXTEND = (
    _OURS
    + """
if ours(KEYS[1], ARGV[1], ARGV[2]) then return redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 0
"""
)
_DELETE = (
    _OURS
    + """
if ours(KEYS[1], ARGV[1], ARGV[2]) then return redis.call('DEL', KEYS[1]) end
return 0
"""
)
# Whole-value keys only: take the key if it is free, else extend it if it is already ours.
_TAKE_OR_EXTEND = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
return 0
"""


def ttl_ms(seconds: float) -> int:
    """A TTL in seconds as Redis milliseconds, at least 1 (PEXPIRE 0 would delete the key)."""
    return max(1, int(round(seconds * 1000)))


class OwnedKey:
    """One Redis key and the token of the owner this handle acts for."""

    def __init__(self, redis: Redis, key: str, token: str, *, field: str | None = None):
        self.redis = redis
        self.key = key
        self.token = token
        self.field = field or ""
        self._extend = redis.register_script(_EXTEND)
        self._delete = redis.register_script(_DELETE)
        self._take_or_extend = redis.register_script(_TAKE_OR_EXTEND)

    def claim(self, ttl: float, value: str | None = None) -> bool:
        """SET NX with the TTL: True when the key was free and is now ours. `value` is what is
        stored (JSON holding the token under `field`); by default the token itself."""
        return bool(self.redis.set(self.key, self.token if value is None else value, nx=True, px=ttl_ms(ttl)))

    def take_or_extend(self, ttl: float) -> bool:
        """Claim the key, or extend it when it is already ours (atomically); False when another owns it."""
        if self.field:
            raise ValueError("take_or_extend needs a key whose whole value is the token")
        return bool(self._take_or_extend(keys=[self.key], args=[self.token, ttl_ms(ttl)]))

    def extend(self, ttl: float) -> bool:
        """Set the TTL if the key is still ours; False (and nothing changed) otherwise."""
        return bool(self._extend(keys=[self.key], args=[self.token, self.field, ttl_ms(ttl)]))

    def delete(self) -> bool:
        """Delete the key if it is still ours; False (and nothing deleted) otherwise."""
        return bool(self._delete(keys=[self.key], args=[self.token, self.field]))

    def renewal(self, ttl: float | Callable[[], float], **options: Any) -> Renewal:
        return Renewal(self, ttl, **options)


class Renewal:
    """Extends an owned key every `every` seconds from a daemon thread while work runs.

    When an extension finds the key no longer ours (it expired, or another owner took it) the
    loop stops, sets `lost` and calls `on_lost(None)`: the work checks `lost` (or is stopped by
    the callback) and must not act as the owner any more. A Redis error is passed to `on_error`
    and retried at the next beat; with `give_up_after` (seconds), a key not extended for that
    long counts as lost too (`on_lost(error)`), because by then its TTL has run out.
    `ttl` may be a callable, read at each beat (a setting that can change while running).
    """

    def __init__(
        self,
        owned: OwnedKey,
        ttl: float | Callable[[], float],
        *,
        every: float | None = None,
        give_up_after: float | None = None,
        on_lost: Callable[[Exception | None], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
        name: str = "owned-key-renewal",
        lost: threading.Event | None = None,
    ):
        self.owned = owned
        self._ttl = ttl if callable(ttl) else (lambda: ttl)
        self._every = every
        self.give_up_after = give_up_after
        self.on_lost = on_lost
        self.on_error = on_error
        self.name = name
        self.lost = lost if lost is not None else threading.Event()  # an owner's own event may be passed in
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def every(self) -> float:
        return self._every if self._every is not None else self._ttl() / 3

    def start(self) -> Renewal:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._beat, name=self.name, daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop renewing (the key keeps its TTL); waits for the thread unless called from it."""
        if self._thread is not None:
            self._stop.set()
            if self._thread is not threading.current_thread():
                self._thread.join()
            self._thread = None

    def __enter__(self) -> Renewal:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _beat(self) -> None:
        last_ok = clock.monotonic()
        while not self._stop.wait(self.every):
            try:
                if self.owned.extend(self._ttl()):
                    last_ok = clock.monotonic()
                    continue
                self._lose(None)
                return
            except RedisError as exc:
                if self.give_up_after is not None and clock.monotonic() - last_ok > self.give_up_after:
                    self._lose(exc)
                    return
                if self.on_error is not None:
                    self.on_error(exc)

    def _lose(self, cause: Exception | None) -> None:
        self.lost.set()
        if self.on_lost is not None:
            try:
                self.on_lost(cause)
            except Exception:  # noqa: BLE001 - the callback's failure must not hide that the key is lost
                log.exception("%s: on_lost callback failed", self.name)
