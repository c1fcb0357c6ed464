"""Exactly one firing per job and due time, whichever bot process gets there first.

APScheduler 3 does not coordinate schedulers that share a job store: every process that
sees a due job runs it. Each job function therefore first claims its firing with a Redis
`SET NX` on a key named after the job and its due time; the processes that lose the race
do nothing. The key keeps who fired it (host, pid) as evidence, and expires after `ttl`.
"""
from __future__ import annotations

import json
import os
import socket

from core import clock

CLAIM_TTL = 7 * 24 * 3600  # seconds: longer than any job could be seen twice

PROCESS = f"{socket.gethostname()}:{os.getpid()}"


def firing_key(keys, job_id: str, due: str) -> str:
    """The claim key of one firing. Lives beside APScheduler's job hash (state.keys)."""
    return keys.schedule_fired(job_id, due)


def claim(core, job_id: str, due: str, *, ttl: int = CLAIM_TTL, who: str = "") -> bool:
    """True for the one caller that claims this firing first; False for every other."""
    value = json.dumps({"process": PROCESS, "scheduler": who, "at": clock.now().isoformat()})
    return bool(core.redis.set(firing_key(core.keys, job_id, due), value, nx=True, ex=max(int(ttl), 1)))


def claimed_by(core, job_id: str, due: str) -> dict | None:
    """Who fired it, or None when nobody has yet."""
    raw = core.redis.get(firing_key(core.keys, job_id, due))
    return json.loads(raw) if raw else None
