"""The fleet workers of a bot process: `serve` starts one when MIGRATE_TARGETS is set, and
`python -m bot fleet-worker` runs one alone (README, "Many databases (fleet)")."""

from __future__ import annotations

from commands import Core
from commands.fleet_run import fleet_context
from core.config import ConfigError, Settings
from scheduling.hooks import ProcessSchedule
from workflows.fleet.queue import FleetQueue
from workflows.fleet.worker import FleetWorker, run_forever

SERVE_STOP_TIMEOUT = 20.0  # seconds a stopping serve lets its running targets finish (then: taken over)


class ServeWorker:
    """The fleet worker `serve` runs beside Slack, stopped with it."""

    def __init__(self, core: Core):
        self.queue = FleetQueue(core.settings.redis_url, core.settings.redis_prefix)
        self.worker = FleetWorker(fleet_context(core), self.queue).start()

    def stop(self) -> None:
        self.worker.stop(timeout=SERVE_STOP_TIMEOUT)
        self.queue.close()


def start_for_serve(core: Core) -> ServeWorker | None:
    """A fleet worker in this serve process when MIGRATE_TARGETS is set (none for one database)."""
    return ServeWorker(core) if core.settings.targets is not None else None


def worker_main(settings: Settings, threads: int | None = None) -> int:
    """`python -m bot fleet-worker`: until SIGTERM/SIGINT; running targets finish first."""
    if settings.targets is None:
        raise ConfigError(
            "fleet-worker works on fleet runs: set MIGRATE_TARGETS to a targets file (README, Many databases)"
        )
    core = Core.from_settings(settings, schedule=ProcessSchedule)  # as `serve` wires its Core
    return run_forever(fleet_context(core), threads=threads)
