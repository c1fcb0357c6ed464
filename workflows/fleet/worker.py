"""The fleet worker: dramatiq worker threads running target jobs, and a sweep thread.

`serve` runs one in its own process (threads: no signals needed); `python -m bot fleet-worker`
runs one alone, for more hands on a big fleet (README, "Many databases (fleet)"). Any number of
processes on any hosts may run one against the same Redis.
"""

from __future__ import annotations

import logging
import signal
import threading
import time

from dramatiq import Worker

from workflows.fleet import waves
from workflows.fleet.context import FleetContext
from workflows.fleet.queue import FleetQueue
from workflows.fleet.target import Done, Retry, give_up, run_target

log = logging.getLogger("migrate.fleet")

SWEEP_EVERY = 5.0  # seconds
# A job that errs on every try (its database unreachable, refusing connections) for this long
# fails its target, so the fleet run ends instead of waiting forever; the reason is the error.
GIVE_UP_AFTER = 120.0  # seconds


class FleetWorker:
    """`threads` jobs at once in this process (default: the targets file's `parallel`)."""

    _here: set[FleetWorker] = set()  # the workers started in this process and not stopped
    _here_guard = threading.Lock()

    @classmethod
    def running_here(cls, prefix: str) -> bool:
        """Is a worker of this bot prefix running in this process (serve's, a console's)?"""
        with cls._here_guard:
            return any(w.ctx.settings.redis_prefix == prefix for w in cls._here)

    def __init__(
        self,
        ctx: FleetContext,
        queue: FleetQueue,
        *,
        threads: int | None = None,
        sweep_every: float = SWEEP_EVERY,
    ):
        self.ctx = ctx
        self.queue = queue
        self.threads = threads or ctx.fleet.parallel
        self.sweep_every = sweep_every
        self._worker: Worker | None = None
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None
        queue.attach(self.handle)

    def handle(self, fleet_id: str, name: str) -> None:
        """One delivery of a target's job."""
        try:
            result = run_target(self.ctx, fleet_id, name)
        except Exception as exc:  # noqa: BLE001 - the job must not die silently: come back later
            log.error(
                "fleet %s: job of %s: %s", fleet_id, name, self.ctx.redact(f"{type(exc).__name__}: {exc}")
            )
            result = self._erred(fleet_id, name, self.ctx.redact(str(exc))[:200])
        else:
            self.ctx.redis.delete(self.ctx.fleets.keys.job_erring_since(fleet_id, name))
        if isinstance(result, Retry):
            log.info("fleet %s: %s again in %.0f s: %s", fleet_id, name, result.after, result.why)
            waves.send(self.ctx, self.queue, fleet_id, name, delay=result.after)
            return
        assert isinstance(result, Done)
        log.info("fleet %s: %s: %s", fleet_id, name, result.what)
        waves.advance(self.ctx, self.queue, fleet_id)

    def _erred(self, fleet_id: str, name: str, why: str) -> Done | Retry:
        """Come back in 10 s, unless this target's job has erred on every try for GIVE_UP_AFTER."""
        key = self.ctx.fleets.keys.job_erring_since(fleet_id, name)
        now = time.time()
        self.ctx.redis.set(key, repr(now), nx=True, ex=int(GIVE_UP_AFTER * 10) + 60)
        since = float(self.ctx.redis.get(key) or now)
        if now - since < GIVE_UP_AFTER:
            return Retry(why, after=min(10.0, GIVE_UP_AFTER))
        self.ctx.redis.delete(key)
        minutes = (now - since) / 60
        return give_up(self.ctx, fleet_id, name, f"not run: every try failed for {minutes:.1f} min: {why}")

    def start(self) -> FleetWorker:
        worker = Worker(self.queue.broker, worker_threads=self.threads, worker_timeout=500)
        worker.queue_prefetch = self.threads  # no hoarding: what this process cannot start, others can
        worker.start()
        self._worker = worker
        self._sweeper = threading.Thread(target=self._sweep, name="fleet-sweep", daemon=True)
        self._sweeper.start()
        with self._here_guard:
            self._here.add(self)
        return self

    def _sweep(self) -> None:
        while not self._stop.wait(self.sweep_every):
            try:
                waves.sweep(self.ctx, self.queue)
            except Exception as exc:  # noqa: BLE001 - Redis or PostgreSQL briefly away: next time
                log.warning("fleet sweep failed: %s", self.ctx.redact(f"{type(exc).__name__}: {exc}"))

    def stop(self, timeout: float = 600.0) -> None:
        """Stop taking jobs; the running ones finish (up to `timeout` seconds)."""
        with self._here_guard:
            self._here.discard(self)
        self._stop.set()
        if self._worker is not None:
            self._worker.stop(timeout=int(timeout * 1000))
            self._worker = None
        if self._sweeper is not None:
            self._sweeper.join(timeout=self.sweep_every + 1)


def run_forever(ctx: FleetContext, *, threads: int | None = None) -> int:
    """`python -m bot fleet-worker`: a worker until SIGTERM or SIGINT, then running jobs finish."""
    settings = ctx.settings
    queue = FleetQueue(settings.redis_url, settings.redis_prefix)
    worker = FleetWorker(ctx, queue, threads=threads).start()
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    log.info("fleet worker %s: %d thread(s) on %s", ctx.worker, worker.threads, settings.redis_prefix)
    print(f"fleet worker {ctx.worker} ready: {worker.threads} thread(s)", flush=True)
    stopping.wait()
    worker.stop()
    queue.close()
    return 0
