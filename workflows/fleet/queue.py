"""The fleet's job queue: dramatiq's Redis broker on the bot's own Redis (README, "Many
databases (fleet)", says why dramatiq rather than rq).

One queue (`fleet`), one actor (`fleet_target`, args: fleet run id, target name). Every process
that runs a FleetWorker consumes it; dramatiq keeps each fetched message in the fetching
worker's ack set until the job returns, and every dispatch the worker makes (its fetches, at
least once a second) refreshes that worker's heartbeat. A worker whose heartbeat is older than
HEARTBEAT_TIMEOUT is dead: the next dispatch of any live worker on the queue (maintenance runs
on every one: MAINTENANCE_SCALE) puts its unacked messages back on the queue, and another worker
takes them. The job itself (workflows/fleet/target.py) makes a second delivery harmless.

No retry, age or time limit middleware: a job never runs again because it raised (the target is
recorded failed) and a long phase is never cut short by the queue.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from dramatiq import Actor
from dramatiq.brokers.redis import MAINTENANCE_SCALE, RedisBroker

from state.keys import FleetKeys

QUEUE = "fleet"
ACTOR = "fleet_target"
HEARTBEAT_TIMEOUT = 20.0  # seconds without a dispatch before a worker counts as dead


class FleetQueue:
    """The broker and the actor for one bot prefix. `attach` the function a worker runs."""

    def __init__(self, redis_url: str, prefix: str, *, heartbeat_timeout: float = HEARTBEAT_TIMEOUT):
        self.heartbeat_timeout = heartbeat_timeout
        self.broker = RedisBroker(
            url=redis_url,
            namespace=FleetKeys(prefix).queue_namespace(),
            heartbeat_timeout=int(heartbeat_timeout * 1000),
            maintenance_chance=MAINTENANCE_SCALE,  # every dispatch looks for dead workers' jobs
            middleware=[],
        )
        self._handler: Callable[[str, str], None] | None = None
        self.actor = Actor(
            self._perform, broker=self.broker, actor_name=ACTOR, queue_name=QUEUE, priority=0, options={}
        )

    def attach(self, handler: Callable[[str, str], None]) -> None:
        self._handler = handler

    def _perform(self, fleet_id: str, name: str) -> None:
        if self._handler is None:
            raise RuntimeError("no fleet worker attached to this queue")
        self._handler(fleet_id, name)

    def send(self, fleet_id: str, name: str, *, delay: float | None = None) -> str:
        """Queue the job of target `name`; with `delay` (seconds), not before then. Its message id."""
        message = self.actor.send_with_options(
            args=(fleet_id, name), delay=int(delay * 1000) if delay else None
        )
        return message.message_id

    def live_processes(self) -> int:
        """Processes whose broker dispatched on this queue (a worker's fetch, a sweep, a send)
        within the heartbeat timeout: 0 means nobody is at work on the fleet's jobs."""
        now = int(time.time() * 1000)
        key = f"{self.broker.namespace}:__heartbeats__"
        return int(self.broker.client.zcount(key, now - int(self.heartbeat_timeout * 1000), "+inf"))

    def pending(self) -> int:
        """Jobs waiting in the queue (not the delayed ones). Also runs the broker's maintenance."""
        return int(self.broker.do_qsize(QUEUE) or 0)

    def close(self) -> None:
        self.broker.close()
