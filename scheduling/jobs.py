"""The job functions APScheduler stores: module-level, plain arguments (run ids, ISO times).

Every job first claims its firing (scheduling.once), so with several bot processes on one
Redis exactly one does the work; then it runs with the context of the process it landed in
(scheduling.context). A job never raises into APScheduler without a log line saying why.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime

from core import clock
from scheduling import context, followups, go, health, once

log = logging.getLogger("migrate.scheduling")


def _claimed(ctx: context.JobContext, job_id: str, due: str) -> bool:
    who = getattr(ctx.scheduler, "name", "")
    if once.claim(ctx.core, job_id, due, who=who):
        return True
    log.info(
        "job %s due %s already fired by another process (%s)",
        job_id,
        due,
        once.claimed_by(ctx.core, job_id, due),
    )
    return False


def _guarded(job_id: str, body: Callable[[], object]) -> None:
    try:
        body()
    except Exception as exc:  # noqa: BLE001 - logged redacted; APScheduler would log the raw text
        ctx = context.current()
        log.error("job %s failed: %s", job_id, ctx.core.redact(f"{type(exc).__name__}: {exc}")[:500])


def start_run(run_id: str, at: str, due: str) -> None:
    """GO scheduled: the start of run `run_id` planned for `at`. The claim is held (renewed)
    while the start runs: if this process dies, it lapses and the start can be re-fired."""
    job_id = start_id(run_id)
    ctx = context.current()
    held = once.hold(ctx.core, job_id, due, who=getattr(ctx.scheduler, "name", ""))
    if held is None:
        log.info(
            "job %s due %s already fired by another process (%s)",
            job_id,
            due,
            once.claimed_by(ctx.core, job_id, due),
        )
        return
    with held:
        _guarded(job_id, lambda: go.start(ctx.core, ctx.reporter(), run_id, datetime.fromisoformat(at)))


def remind(run_id: str, at: str, due: str) -> None:
    """The reminder before a scheduled start."""
    job_id = reminder_id(run_id)
    ctx = context.current()
    if _claimed(ctx, job_id, due):
        _guarded(job_id, lambda: go.remind(ctx.core, ctx.reporter(), run_id, datetime.fromisoformat(at)))


def followup(run_id: str, label: str, n: int, due: str) -> None:
    """A post-execution follow-up (+1 h, +24 h) of a succeeded run."""
    job_id = followup_id(run_id, n)
    ctx = context.current()
    if _claimed(ctx, job_id, due):
        _guarded(job_id, lambda: followups.post_followup(ctx.core, ctx.reporter(), run_id, label))


def week_reminder(run_id: str, label: str, due: str) -> None:
    """The +1 week reminder of the medium-term items."""
    job_id = followup_id(run_id, "week")
    ctx = context.current()
    if _claimed(ctx, job_id, due):
        _guarded(job_id, lambda: followups.post_week_reminder(ctx.core, ctx.reporter(), run_id, label))


def health_check(every: float, fired_for: str | None = None) -> None:
    """The periodic health check; one process per scheduled fire time does it.

    `fired_for` is the scheduled fire time the executor passes (scheduler._Executor); the
    trigger's times are multiples of `every`, so every process firing the same time claims
    the same key whatever its wall clock says. Without it (a direct call): the grid point
    at or before now."""
    ctx = context.current()
    if fired_for is None:
        fired_for = grid_point(clock.now(), every).isoformat()
    if once.claim(
        ctx.core,
        HEALTH_ID,
        fired_for,
        ttl=int(max(every, 1.0) * 3) + 1,
        who=getattr(ctx.scheduler, "name", ""),
    ):
        _guarded(HEALTH_ID, lambda: health.check_all(ctx.core, ctx.reporter()))
    else:
        log.debug("health check for %s already done by another process", fired_for)


def grid_point(moment: datetime, every: float, *, after: bool = False) -> datetime:
    """The multiple of `every` seconds (since the epoch) at or before `moment` (at or after: `after`)."""
    every = max(float(every), 1e-3)
    ts = moment.timestamp() / every
    n = math.ceil(ts) if after else math.floor(ts)
    return datetime.fromtimestamp(n * every, UTC)


# --------------------------------------------------------------- job ids

HEALTH_ID = "health"


def start_id(run_id: str) -> str:
    return f"start:{run_id}"


def reminder_id(run_id: str) -> str:
    return f"reminder:{run_id}"


def followup_id(run_id: str, n: int | str) -> str:
    return f"followup:{run_id}:{n}"
