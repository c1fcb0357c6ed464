"""Exactly one firing per job and due time, whichever bot process gets there first.

APScheduler 3 does not coordinate schedulers that share a job store: every process that
sees a due job runs it. Each job function therefore first claims its firing with a Redis
`SET NX` on a key named after the job and its due time; the processes that lose the race
do nothing. The key keeps who fired it (host, pid) as evidence, and expires after `ttl`.

A start of a scheduled run is claimed with `hold`: the claim lives `LIVE_TTL` seconds and
the claimant renews it while the start runs, so a process that dies after claiming (and
after APScheduler already deleted the date job) stops renewing and its claim lapses; the
scheduler's recovery (Scheduler.recover_start) then re-adds the job and another process
may claim it. When the start is over, the claim is kept `CLAIM_TTL` as evidence.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from typing import Any

from core import clock
from state.keys import Keys
from state.owned import OwnedKey
from workflows.core import Core

log = logging.getLogger("migrate.scheduling")

CLAIM_TTL = 7 * 24 * 3600  # seconds: longer than any job could be seen twice
LIVE_TTL = 30  # seconds: a held claim whose claimant stopped renewing lapses after this

PROCESS = f"{socket.gethostname()}:{os.getpid()}"


def firing_key(keys: Keys, job_id: str, due: str) -> str:
    """The claim key of one firing. Lives beside APScheduler's job hash (state.keys)."""
    return keys.schedule_fired(job_id, due)


def _value(who: str) -> str:
    return json.dumps({"process": PROCESS, "scheduler": who, "at": clock.now().isoformat()})


def claim(core: Core, job_id: str, due: str, *, ttl: int = CLAIM_TTL, who: str = "") -> bool:
    """True for the one caller that claims this firing first; False for every other."""
    return bool(core.redis.set(firing_key(core.keys, job_id, due), _value(who), nx=True, ex=max(int(ttl), 1)))


def claimed_by(core: Core, job_id: str, due: str) -> dict[str, Any] | None:
    """Who fired it, or None when nobody has yet (or a held claim lapsed)."""
    raw = core.redis.get(firing_key(core.keys, job_id, due))
    return json.loads(raw) if raw else None


class Held:
    """A claim renewed every LIVE_TTL/3 s while the `with` block runs; kept CLAIM_TTL after.
    The claim's whole value is its token (state/owned.py): only this claimant extends it."""

    def __init__(self, core: Core, key: str, value: str, live_ttl: int):
        self.core = core
        self.key = key
        self.value = value
        self.live_ttl = live_ttl
        self._owned = OwnedKey(core.redis, key, value)
        self._renewal = self._owned.renewal(
            max(int(live_ttl), 1),
            every=max(live_ttl / 3, 0.2),
            on_lost=self._lapsed,
            on_error=self._not_renewed,
            name="migrate-claim-renew",
        )

    def claim(self) -> bool:
        """SET NX with the live TTL: True when this firing was not claimed yet."""
        return self._owned.claim(max(int(self.live_ttl), 1))

    def renew(self, ttl: int) -> bool:
        return self._owned.extend(max(int(ttl), 1))

    def __enter__(self) -> Held:
        self._renewal.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._renewal.stop()
        try:
            self.renew(CLAIM_TTL)  # done: kept as evidence, and no re-fire of this firing
        except Exception as exc:  # noqa: BLE001 - the run's status still guards a re-fire
            log.warning("claim %s not kept: %s", self.key, type(exc).__name__)

    def _lapsed(self, _cause: Exception | None) -> None:
        log.warning("claim %s lapsed or was taken over while its job ran", self.key)

    def _not_renewed(self, exc: Exception) -> None:  # Redis away: tried again until the TTL runs out
        log.warning("claim %s not renewed: %s", self.key, type(exc).__name__)


def hold(core: Core, job_id: str, due: str, *, who: str = "", live_ttl: int | None = None) -> Held | None:
    """Claim a firing that must be re-fired if its claimant dies: a `Held` (use it as a
    context manager around the work), or None when a live or finished claimant has it."""
    live_ttl = LIVE_TTL if live_ttl is None else live_ttl
    key, value = firing_key(core.keys, job_id, due), _value(who)
    held = Held(core, key, value, live_ttl)
    return held if held.claim() else None
