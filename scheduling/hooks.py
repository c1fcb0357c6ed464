"""The scheduling interface the command core is handed at start-up (workflows/schedule.py).

`ProcessSchedule` is what `serve` (and the scheduler-only process) give their Core: the
process's running Scheduler for the target, store-only when none runs. `StoredForServe` is
the console's: no scheduler runs in a console, so jobs are only stored in Redis, for the
scheduler in `python -m bot serve` to fire (the console says so after `approve at`).

The functions under them are what the commands and workflows call (through `core.schedule`)
after their own transition succeeded; a scheduling failure (Redis away) never undoes a
decision or fails a run: it comes back as a sentence to show.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta

from core import clock
from core.config import Settings
from preflight.window import WindowError, parse_window
from scheduling.scheduler import Scheduler, for_core, label_of, schedule_lines, store_only
from workflows.core import Core
from workflows.reporting import Reporter

SchedulerFor = Callable[[Core], Scheduler]  # the Scheduler a command uses (for_core; tests hand their own)

log = logging.getLogger("migrate.scheduling")

LOW_TRAFFIC = time(2, 0)  # the report's Best Execution Time: 2-4 AM UTC preferred


def suggested_start(settings: Settings, now: datetime | None = None) -> datetime:
    """The default time to offer for GO scheduled: the next opening of MIGRATE_WINDOW, else
    the next 02:00 UTC (the report's low-traffic period)."""
    now = (now or clock.now()).astimezone(UTC)
    opens = LOW_TRAFFIC
    if settings.window:
        try:
            opens = parse_window(settings.window)[0]
        except WindowError:
            pass
    candidate = datetime.combine(now.date(), opens, tzinfo=UTC)
    return candidate if candidate > now else candidate + timedelta(days=1)


def scheduled(core: Core, run_id: str, at: datetime, *, scheduler: SchedulerFor = for_core) -> str | None:
    """After `approve at`: the start job and its reminder (a moved time replaces the old one).
    None, or why the job could not be stored (the run would not start by itself)."""
    try:
        scheduler(core).schedule_run(run_id, at)
    except Exception as exc:  # noqa: BLE001 - reported to the TPM, who must know it will not start
        reason = core.redact(f"{type(exc).__name__}: {exc}")[:200]
        log.error("could not schedule the start of run %s: %s", run_id, reason)
        return f"⚠ the start could not be scheduled ({reason}): it will NOT start by itself; approve again or run by hand"
    return None


def cancelled(core: Core, run_id: str, *, scheduler: SchedulerFor = for_core) -> bool:
    """After `defer`: the scheduled start (and its reminder) removed; True when there was one."""
    try:
        return scheduler(core).cancel_run(run_id)
    except Exception as exc:  # noqa: BLE001 - the start job re-checks the run's status anyway
        log.error("could not remove the start job of run %s: %s", run_id, core.redact(str(exc))[:200])
        return False


def succeeded(core: Core, run_id: str, *, scheduler: SchedulerFor = for_core) -> list[str]:
    """After a run reached SUCCEEDED: the follow-ups (+1 h, +24 h, +1 week); the labels scheduled."""
    try:
        sched = scheduler(core)
        sched.schedule_followups(run_id)
    except Exception as exc:  # noqa: BLE001 - the run succeeded; only its follow-ups are missing
        log.error("could not schedule the follow-ups of run %s: %s", run_id, core.redact(str(exc))[:200])
        return []
    return [j["name"] for j in sched.jobs() if j["kind"] == "followup" and j["run_id"] == run_id]


def run_undone(core: Core, run_id: str, *, scheduler: SchedulerFor = for_core) -> int:
    """After a succeeded run was rolled back or restored: its follow-ups (+1 h, +24 h, +1 week)
    removed; how many. The jobs also check the run's status, so a failure here posts nothing."""
    try:
        return scheduler(core).cancel_followups(run_id)
    except Exception as exc:  # noqa: BLE001 - the rollback/restore stands; the jobs re-check the status
        log.error("could not remove the follow-ups of run %s: %s", run_id, core.redact(str(exc))[:200])
        return 0


def status_lines(core: Core, *, scheduler: SchedulerFor = for_core) -> list[str]:
    """What is scheduled for this target, for `status`."""
    try:
        return schedule_lines(scheduler(core).jobs())
    except Exception as exc:  # noqa: BLE001 - status still answers
        return [f"Schedule: unavailable ({type(exc).__name__})"]


class ProcessSchedule:
    """`core.schedule` of a bot process: the Scheduler running in it for this target (`serve`),
    else a store-only one whose jobs a serving process fires."""

    def __init__(self, core: Core):
        self.core = core

    def scheduled(self, run_id: str, at: datetime) -> str | None:
        return scheduled(self.core, run_id, at)

    def cancelled(self, run_id: str) -> bool:
        return cancelled(self.core, run_id)

    def succeeded(self, run_id: str) -> list[str]:
        return succeeded(self.core, run_id)

    def run_undone(self, run_id: str) -> int:
        return run_undone(self.core, run_id)

    def status_lines(self) -> list[str]:
        return status_lines(self.core)


class StoredForServe(ProcessSchedule):
    """The console's `core.schedule`: scheduling runs in `python -m bot serve`. Jobs are written
    to the shared job store only (no scheduler runs in a console process) for `serve` to fire."""

    def scheduled(self, run_id: str, at: datetime) -> str | None:
        return scheduled(self.core, run_id, at, scheduler=store_only)

    def cancelled(self, run_id: str) -> bool:
        return cancelled(self.core, run_id, scheduler=store_only)

    def succeeded(self, run_id: str) -> list[str]:
        return succeeded(self.core, run_id, scheduler=store_only)

    def run_undone(self, run_id: str) -> int:
        return run_undone(self.core, run_id, scheduler=store_only)

    def status_lines(self) -> list[str]:
        return status_lines(self.core, scheduler=store_only)


def serve(core: Core, reporter_factory: Callable[[], Reporter]) -> Scheduler:
    """The running scheduler of a bot process, with the periodic health checks started."""
    sched = Scheduler(core, reporter_factory)
    sched.start_health_checks()
    return sched


__all__ = [
    "ProcessSchedule",
    "StoredForServe",
    "scheduled",
    "cancelled",
    "succeeded",
    "run_undone",
    "status_lines",
    "serve",
    "suggested_start",
    "label_of",
]
