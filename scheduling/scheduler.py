"""The bot's scheduler: APScheduler 3's BackgroundScheduler over a job store in Redis.

Jobs live in Redis under state.keys (`schedule_jobs`, `schedule_run_times`), so a restart
loses none and every bot process of the same target sees the same jobs. APScheduler does
not coordinate processes sharing a store, so:
- each firing is claimed once in Redis before any work (scheduling.once);
- the job store tolerates a job another process already removed (a date job fired by two
  processes is removed twice), where APScheduler's main loop would otherwise die;
- each process wakes up every `poll` seconds to notice jobs added by another process;
- APScheduler deletes a date job as soon as it hands it to its thread pool, so a process
  dying during a scheduled start would lose it: when a scheduler starts and on each poll,
  a SCHEDULED current run whose start job is missing and whose firing nobody (alive) holds
  gets its start job back (`recover_start`), and the late rule of scheduling.go applies.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, Literal

import redis as redis_lib
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.job import Job
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.redis import RedisJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from core import clock
from core.config import Settings
from scheduling import context, jobs, once
from state.machine import Status
from workflows.core import Core
from workflows.reporting import Reporter

log = logging.getLogger("migrate.scheduling")

REMINDER_BEFORE = timedelta(minutes=15)
FOLLOWUPS = (timedelta(hours=1), timedelta(hours=24))
WEEK = timedelta(days=7)
HEALTH_EVERY = timedelta(minutes=5)
POLL_SECONDS = 5.0
WORKERS = 4


class _Default(Enum):
    DEFAULT = "the setting's value"


_DEFAULT = _Default.DEFAULT


def _setting(settings: Settings, name: str, default: float) -> float:
    """An operational knob: the Settings field once core.config has it, else the default."""
    value = getattr(settings, name, None)
    return default if value is None else value


def default_reminder(settings: Settings) -> timedelta:
    return timedelta(minutes=_setting(settings, "reminder_minutes", REMINDER_BEFORE.total_seconds() / 60))


def default_followups(settings: Settings) -> tuple[timedelta, ...]:
    hours = getattr(settings, "followup_hours", None)
    return tuple(timedelta(hours=h) for h in hours) if hours else FOLLOWUPS


def default_week(settings: Settings) -> timedelta | None:
    hours = _setting(settings, "followup_reminder_hours", WEEK.total_seconds() / 3600)
    return timedelta(hours=hours) if hours else None


def default_health_every(settings: Settings) -> timedelta | None:
    seconds = _setting(settings, "health_interval_seconds", HEALTH_EVERY.total_seconds())
    return timedelta(seconds=seconds) if seconds else None


class SharedRedisJobStore(RedisJobStore):
    """RedisJobStore for several schedulers: removing or updating a job that another process
    already removed is not an error (APScheduler would raise JobLookupError in its loop)."""

    def remove_job(self, job_id: str) -> None:
        try:
            super().remove_job(job_id)
        except JobLookupError:
            log.debug("job %s already removed by another process", job_id)

    def _reconstitute_jobs(self, job_states: list[tuple[str, Any]]) -> Any:
        # A job listed as due whose state another process removed meanwhile is gone, not corrupt.
        return super()._reconstitute_jobs([(i, state) for i, state in job_states if state is not None])

    def update_job(self, job: Job) -> None:
        try:
            super().update_job(job)
        except JobLookupError:
            log.debug("job %s removed by another process: not updated", job.id)


class _Executor(ThreadPoolExecutor):
    """Gives the health job the time it was scheduled for (`fired_for`), which APScheduler 3
    does not pass to a job function: the processes firing one time claim one key."""

    def _do_submit_job(self, job: Job, run_times: list[datetime]) -> Any:
        if job.id == jobs.HEALTH_ID and run_times:
            copy = Job.__new__(Job)
            copy.__setstate__(job.__getstate__())  # a copy: the stored job keeps its own kwargs
            copy._scheduler, copy._jobstore_alias = job._scheduler, job._jobstore_alias
            copy.kwargs = {**job.kwargs, "fired_for": run_times[-1].astimezone(UTC).isoformat()}
            job = copy
        return super()._do_submit_job(job, run_times)

    def drain(self) -> None:
        """Wait for the running jobs to finish (no new ones are accepted)."""
        self._pool.shutdown(wait=True)


class _Background(BackgroundScheduler):
    def _process_jobs(self) -> Any:
        """One pass over the due jobs; a failure (Redis away) retries later instead of killing the loop."""
        try:
            return super()._process_jobs()
        except Exception as exc:  # noqa: BLE001 - APScheduler's thread would end silently
            log.error(
                "scheduler pass failed, retrying in %s s: %s",
                self.jobstore_retry_interval,
                type(exc).__name__,
            )
            return self.jobstore_retry_interval


class Scheduler:
    """Time-driven work of one bot process: scheduled GO, follow-ups, health checks.

    `reporter_factory` gives the Reporter a job posts to (the Slack adapter's, or a console
    one). With `start=False` the scheduler only reads and writes the job store and runs
    nothing (a console process that schedules for the serving process to run)."""

    def __init__(
        self,
        core: Core,
        reporter_factory: Callable[[], Reporter],
        *,
        start: bool = True,
        poll: float = POLL_SECONDS,
        workers: int = WORKERS,
    ):
        self.core = core
        self.name = f"{core.keys.target}#{uuid.uuid4().hex[:8]}"
        self.running = start
        context.register(self.name, context.JobContext(core, reporter_factory, self))
        store = SharedRedisJobStore(
            jobs_key=core.keys.schedule_jobs(),
            run_times_key=core.keys.schedule_run_times(),
            connection_pool=redis_lib.ConnectionPool.from_url(core.settings.redis_url),
        )
        self._executor = executor = _Executor(
            workers,
            pool_kwargs={
                "initializer": context.bind,
                "initargs": (self.name,),
                "thread_name_prefix": "migrate-job",
            },
        )
        self._aps = _Background(
            timezone=UTC,
            jobstores={"default": store},
            executors={"default": executor},
            job_defaults={"coalesce": True, "misfire_grace_time": None, "max_instances": 1},
        )
        self._aps.start(paused=not start)
        self._stop = threading.Event()
        self._poller = None
        if start:
            self._poller = threading.Thread(
                target=self._poll, args=(poll,), name="migrate-scheduler-poll", daemon=True
            )
            self._poller.start()

    # ------------------------------------------------------------ scheduled GO

    def schedule_run(self, run_id: str, at: datetime, *, reminder_before: timedelta | None = None) -> None:
        """The start of `run_id` at `at` (replacing any earlier time), and its reminder
        (default: 15 min before, or the `reminder_minutes` setting)."""
        at = at.astimezone(UTC)
        if reminder_before is None:
            reminder_before = default_reminder(self.core.settings)
        title = self.core.runbook.title
        self._at(
            jobs.start_run,
            jobs.start_id(run_id),
            at,
            f"{title}: scheduled start of run {run_id}",
            run_id=run_id,
            at=at.isoformat(),
        )
        remind_at = max(at - reminder_before, clock.now())
        if reminder_before > timedelta(0) and remind_at < at:
            self._at(
                jobs.remind,
                jobs.reminder_id(run_id),
                remind_at,
                f"{title}: reminder before run {run_id}",
                run_id=run_id,
                at=at.isoformat(),
            )
        else:
            self._remove(jobs.reminder_id(run_id))

    def recover_start(self) -> bool:
        """Re-add the start job of the current run when it is SCHEDULED, its job is gone
        (fired by a process that died) and no live claimant holds that firing; True when
        re-added. Runs when the scheduler starts and on each poll."""
        run = self.core.store.current()
        planned = (run.approval or {}).get("scheduled_for") if run is not None else None
        if run is None or run.status != Status.SCHEDULED or not planned:
            return False
        if (run.approval or {}).get("fleet"):  # a fleet's GO scheduled: its workers' sweep starts it
            return False
        job_id = jobs.start_id(run.id)
        if self._aps.get_job(job_id) is not None:
            return False
        at = datetime.fromisoformat(planned).astimezone(UTC)
        if once.claimed_by(self.core, job_id, at.isoformat()) is not None:
            return False  # being started by a live process, or already done
        log.warning(
            "run %s is scheduled for %s but its start job is missing (its process died?): re-added",
            run.id,
            at.isoformat(),
        )
        self._at(
            jobs.start_run,
            job_id,
            at,
            f"{self.core.runbook.title}: scheduled start of run {run.id}",
            run_id=run.id,
            at=at.isoformat(),
        )
        return True

    def cancel_run(self, run_id: str) -> bool:
        """Remove the scheduled start (and its reminder); True when a start was scheduled."""
        self._remove(jobs.reminder_id(run_id))
        return self._remove(jobs.start_id(run_id))

    # ------------------------------------------------------------ after the run

    def schedule_followups(
        self,
        run_id: str,
        offsets: Sequence[timedelta] | None = None,
        *,
        week: timedelta | None | Literal[_Default.DEFAULT] = _DEFAULT,
    ) -> None:
        """The post-execution checks at each offset from now (default +1 h, +24 h, or the
        `followup_hours` setting) and the medium-term reminder after `week` (default 7 days;
        None: no reminder)."""
        now = clock.now()
        offsets = default_followups(self.core.settings) if offsets is None else offsets
        week = default_week(self.core.settings) if week is _DEFAULT else week
        for n, offset in enumerate(offsets, start=1):
            label = label_of(offset)
            self._at(
                jobs.followup,
                jobs.followup_id(run_id, n),
                now + offset,
                f"{label} follow-up of run {run_id}",
                run_id=run_id,
                label=label,
                n=n,
            )
        if week is not None:
            label = label_of(week)
            self._at(
                jobs.week_reminder,
                jobs.followup_id(run_id, "week"),
                now + week,
                f"{label} reminder of run {run_id}",
                run_id=run_id,
                label=label,
            )

    def cancel_followups(self, run_id: str) -> int:
        ids = [j.id for j in self._aps.get_jobs() if j.id.startswith(f"followup:{run_id}:")]
        return sum(self._remove(i) for i in ids)

    # ------------------------------------------------------------ health

    def start_health_checks(self, every: timedelta | None = None) -> bool:
        """The periodic health check of the registered databases (one job shared by all
        processes); default every 5 min, or the `health_interval_seconds` setting (0: off)."""
        every = default_health_every(self.core.settings) if every is None else every
        if not every:
            self.stop_health_checks()
            return False
        seconds = every.total_seconds()
        start = jobs.grid_point(clock.now(), seconds, after=True)  # fire times: multiples of the interval
        self._aps.add_job(
            jobs.health_check,
            IntervalTrigger(seconds=seconds, start_date=start, timezone=UTC),
            id=jobs.HEALTH_ID,
            name=f"health check of the registered databases every {label_of(every)[1:]}",
            kwargs={"every": seconds},
            replace_existing=True,
        )
        return True

    def stop_health_checks(self) -> bool:
        return self._remove(jobs.HEALTH_ID)

    # ------------------------------------------------------------ reading

    def jobs(self) -> list[dict[str, Any]]:
        """Every job of this target, soonest first: {id, kind, run_id, next_run_at, name}."""
        out = []
        for job in self._aps.get_jobs():
            out.append(
                {
                    "id": job.id,
                    "kind": job.id.split(":", 1)[0],
                    "run_id": job.kwargs.get("run_id"),
                    "next_run_at": job.next_run_time.astimezone(UTC) if job.next_run_time else None,
                    "name": job.name,
                }
            )
        return out

    def shutdown(self, wait: bool = True) -> None:
        """Stop running jobs here (they stay in Redis for the next process)."""
        self._stop.set()
        if self._aps.running:
            if wait:
                # APScheduler waits for running jobs while holding its job store lock, so a job
                # that adds a job (a scheduled run scheduling its follow-ups) would deadlock it:
                # stop firing, let any pass in progress end, then wait for the jobs unlocked.
                self._aps.pause()
                with self._aps._jobstores_lock:
                    pass
                self._executor.drain()
            self._aps.shutdown(wait=wait)
        if self._poller is not None and self._poller is not threading.current_thread():
            self._poller.join(timeout=30)
        context.unregister(self.name)

    # ------------------------------------------------------------ internals

    def _at(self, func: Callable[..., object], job_id: str, when: datetime, name: str, **kwargs: Any) -> None:
        when = when.astimezone(UTC)
        self._aps.add_job(
            func,
            DateTrigger(run_date=when, timezone=UTC),
            id=job_id,
            name=name,
            kwargs={**kwargs, "due": when.isoformat()},
            replace_existing=True,
        )

    def _remove(self, job_id: str) -> bool:
        if self._aps.get_job(job_id) is None:
            return False
        try:
            self._aps.remove_job(job_id)
        except JobLookupError:
            return False
        return True

    def _poll(self, seconds: float) -> None:
        while True:
            try:
                if self.recover_start():
                    self._aps.wakeup()
            except Exception as exc:  # noqa: BLE001 - Redis away: next poll tries again
                log.error("start recovery failed: %s", self.core.redact(f"{type(exc).__name__}: {exc}")[:200])
            if self._stop.wait(seconds):
                return
            self._aps.wakeup()


def label_of(offset: timedelta) -> str:
    """`+1 h`, `+24 h`, `+1 week`, `+90 s`: how posts name an offset."""
    s = offset.total_seconds()
    if s >= 7 * 86400 and s % (7 * 86400) == 0:
        weeks = int(s // (7 * 86400))
        return f"+{weeks} week" + ("s" if weeks > 1 else "")
    if s >= 3600 and s % 3600 == 0:
        return f"+{int(s // 3600)} h"
    if s >= 60 and s % 60 == 0:
        return f"+{int(s // 60)} min"
    return f"+{s:g} s"


def schedule_lines(jobs_: list[dict[str, Any]]) -> list[str]:
    """Lines for `status`: what is scheduled, when."""
    return [
        f"⏱ {j['name']}: {j['next_run_at']:%Y-%m-%d %H:%M:%S} UTC"
        if j["next_run_at"]
        else f"⏱ {j['name']}: paused"
        for j in jobs_
    ]


_clients: dict[str, Scheduler] = {}
_clients_guard = threading.Lock()


def for_core(core: Core) -> Scheduler:
    """The Scheduler to use from a command: this process's running one for the same target and
    prefix, else a store-only one (start=False), kept for the process, whose jobs the serving
    process runs. Lets `approve at` in the console persist a job that `serve` fires."""
    base = (core.keys.prefix, core.keys.target)
    for ctx in context.registered():
        sched: Scheduler | None = ctx.scheduler
        if sched is not None and sched.running and (sched.core.keys.prefix, sched.core.keys.target) == base:
            return sched
    return store_only(core)


def store_only(core: Core) -> Scheduler:
    """A Scheduler that only reads and writes the job store of `core`'s target (start=False),
    kept for the process: the jobs it stores are fired by a process that runs one."""
    base = (core.keys.prefix, core.keys.target)
    with _clients_guard:
        key = "|".join(base)
        if key not in _clients:
            _clients[key] = Scheduler(core, lambda: context.LogReporter(core.redact), start=False)
        return _clients[key]
