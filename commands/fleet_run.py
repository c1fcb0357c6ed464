"""`run` with MIGRATE_TARGETS: the approved fleet run, wave by wave, by the fleet workers.

The verb checks the fleet run may start (approved, not expired, nothing changed since, no
incident) and its work starts it (workflows/fleet/waves.py: the canary wave's jobs on the
queue), then waits until it has ended: every `serve` process and `python -m bot fleet-worker`
works on it; when none runs in this process (the console), a worker runs here meanwhile.
`fleet_context` is the wiring workflows/fleet needs from the verbs' side: each target's Core
(commands/fleetcore.py) and the single-database start of its phases (workflows/run.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from commands.fleet_decide import why_fleet_approval_invalid
from commands.fleetcore import fleet_of, store, target_core, the_fleet
from commands.parse import Command
from commands.result import FAILED, OK, Outcome, Post, Reporter
from state.fleet import FleetRun, FleetStatus, IllegalTransition, TargetStatus
from workflows.checks import why_incident_blocks
from workflows.core import Core
from workflows.fleet import waves
from workflows.fleet.context import FleetContext
from workflows.fleet.queue import FleetQueue
from workflows.fleet.worker import FleetWorker
from workflows.run import start_phases as start_target_phases

# A target some rollback touched: out of the wave rule's run, so a retry must not pass over it.
UNDONE = (TargetStatus.ROLLING_BACK, TargetStatus.ROLLED_BACK, TargetStatus.ROLLBACK_FAILED)


def start_phases(core: Core, actor: str) -> Outcome:
    """Every phase the target's run has not applied, then verification, as `run` does; the fleet
    run's decision stands for now, so a target run approved for a scheduled time starts too."""
    return start_target_phases(core, actor, scheduled=True, in_fleet=True)


def fleet_context(core: Core, **options: Any) -> FleetContext:
    """The fleet workflows' view of this process: `core` is the process's (DATABASE_URL's)."""

    def core_for(name: str) -> Core:
        fleet = fleet_of(core)
        target = fleet.get(name) if fleet else None
        if target is None:
            raise KeyError(f"no target {name!r} in MIGRATE_TARGETS")
        return target_core(core, target)

    return FleetContext(
        settings=core.settings,
        redis=core.redis,
        fleets=store(core),
        core_for=core_for,
        start_phases=start_phases,
        why_not_approved=lambda run: why_fleet_approval_invalid(core, run),
        **options,
    )


def release_idle_connections(core: Core, run: FleetRun) -> None:
    """Close the idle pooled connections the target Cores' audit logs keep (one per database
    since pre-flight): a fleet of 50 must not hold 50 idle connections per process. Only the
    targets the run covers (a NO-GO one may be unreachable)."""
    fleet = the_fleet(core)
    for name, state in run.targets.items():
        target = fleet.get(name) if state.status is TargetStatus.GO else None
        if target is not None:
            target_core(core, target).events.close()


def fleet_run(core: Core, user: str, cmd: Command, *, scheduled: bool = False) -> Outcome:
    if cmd.phase is not None:
        return Outcome.refused(
            "with MIGRATE_TARGETS, `run` takes every target through every phase, wave by wave: "
            "`run phase <n>` is for one database"
        )
    fstore = store(core)
    run = fstore.current()
    if run is None:
        return Outcome.refused("nothing approved to run: `/migrate preflight` first, then the TPM approves")
    if run.status is FleetStatus.RUNNING:
        return _resume(core, run)
    undone = [t.name for t in run.targets.values() if t.status in UNDONE]
    if run.status is FleetStatus.FAILED and undone:  # the wave rule would pass over them
        return Outcome.refused(
            f"fleet run {run.id} has databases rolled back ({', '.join(undone)[:200]}): a retry would "
            "skip them; run preflight and have the TPM approve a new fleet run"
        )
    if run.status not in waves.STARTABLE:
        return Outcome.refused(
            f"the fleet run is {run.status}: `run` needs it approved (or failed, to retry)"
        )
    if run.status is FleetStatus.SCHEDULED and not scheduled:
        at = str((run.approval or {}).get("scheduled_for") or "")[:16].replace("T", " ")
        return Outcome.refused(
            f"GO is scheduled for {at} UTC and starts by itself: ask the TPM for GO now to run earlier"
        )
    refusal = why_incident_blocks(core, "nothing runs") or why_fleet_approval_invalid(core, run)
    if refusal:
        return Outcome.refused(f"{refusal}: ask the TPM to approve")
    ctx = fleet_context(core)
    release_idle_connections(core, run)
    queue = FleetQueue(core.settings.redis_url, core.settings.redis_prefix)
    try:
        waves.start(ctx, queue, run.id, user)
    except IllegalTransition as exc:  # another `run` (or the scheduled start) came first
        queue.close()
        return Outcome.refused(exc.reason)
    except Exception:
        queue.close()
        raise

    waves_text = ", ".join(str(w) for w in run.waves())
    return Outcome(
        OK,
        reply=[
            f"Fleet run {run.id} started: waves {waves_text}, canary first, {run.parallel} at once; "
            "updates go to the channel."
        ],
        work=_until_ended(core, ctx, queue, run.id),
        run_id=run.id,
    )


def _until_ended(
    core: Core, ctx: FleetContext, queue: FleetQueue, fleet_id: str
) -> Callable[[Reporter], int]:
    """The work of `run`: a worker here too when this process has none (the console), until the
    fleet run has ended; its summary posted."""

    def work(reporter: Reporter) -> int:
        here = None
        if not FleetWorker.running_here(core.settings.redis_prefix):
            here = FleetWorker(ctx, queue).start()  # the console: work on it here too
        try:
            done = waves.wait(ctx, fleet_id, timeout=float("inf"))
        finally:
            if here is not None:
                here.stop()
            queue.close()
        if done is None:
            return FAILED
        reporter.post(summary(done))
        return OK if done.status is FleetStatus.SUCCEEDED else FAILED

    return work


def _resume(core: Core, run: FleetRun) -> Outcome:
    """`run` on a fleet run already RUNNING: refused while any process is at work on its queue;
    with none (every worker died, no serve), resumed here: the jobs the dead left are re-queued
    by this worker's dispatch or re-sent by its sweep, and each job decides from the state, so no
    database runs twice."""
    queue = FleetQueue(core.settings.redis_url, core.settings.redis_prefix)
    live = queue.live_processes()
    if live:
        queue.close()
        wait = int(queue.heartbeat_timeout)
        return Outcome.refused(
            f"fleet run {run.id} is running: {live} process(es) at work on it seen in the last {wait} s "
            f"(`status` shows where it is); if they were stopped, `run` again after {wait} s resumes it here"
        )
    refusal = why_incident_blocks(core, "nothing runs")
    if refusal:
        queue.close()
        return Outcome.refused(refusal)
    return Outcome(
        OK,
        reply=[
            f"Fleet run {run.id} resumed: no process was at work on it; working on it here until it ends."
        ],
        work=_until_ended(core, fleet_context(core), queue, run.id),
        run_id=run.id,
    )


def summary(run: FleetRun) -> Post:
    counts = run.counts()
    ok = counts.get(str(TargetStatus.SUCCEEDED), 0)
    title = (
        f"Fleet run {run.id}: {ok} of {len(run.targets)} databases succeeded"
        if run.status is FleetStatus.SUCCEEDED
        else f"Fleet run {run.id} stopped ({run.status}): {ok} of {len(run.targets)} databases succeeded"
    )
    lines = []
    for t in run.targets.values():
        if t.status is TargetStatus.FAILED:
            lines.append(f"❌ {t.name} (wave {t.wave}): {t.error or 'failed'}")
        elif t.status is TargetStatus.SKIPPED:
            lines.append(f"⏭️ {t.name} (wave {t.wave}): {t.reason or 'skipped'}")
    return Post(
        "success" if run.status is FleetStatus.SUCCEEDED else "failure",
        title,
        lines,
        run_id=run.id,
        final=True,
    )
