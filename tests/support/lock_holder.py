"""A separate process that takes the run lock, for the lock tests.

`python -m tests.support.lock_holder REDIS_URL PREFIX TARGET TTL MODE`
  race: wait for the gate (a Redis list the test pushes to), try once, print "acquired" or
        "refused", exit without releasing;
  hold: acquire, renew with a heartbeat, print "acquired", then wait to be killed.
"""

from __future__ import annotations

import sys
import threading

import redis

from state.keys import Keys
from state.lock import RunLock


def main(url: str, prefix: str, target: str, ttl: str, mode: str) -> None:
    client = redis.Redis.from_url(url)
    keys = Keys(prefix, target)
    lock = RunLock(client, keys, ttl=float(ttl))
    if mode == "race":
        client.client_setname(f"lock-race-{prefix}")  # lets the test see that both wait at the gate
        client.blpop([keys.lock() + ":test-gate"], timeout=30)
    handle = lock.acquire(f"pid-{mode}")
    print("acquired" if handle else "refused", flush=True)
    if mode == "hold" and handle:
        handle.start_heartbeat()
        threading.Event().wait()


if __name__ == "__main__":
    main(*sys.argv[1:6])
