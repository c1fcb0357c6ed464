"""A fleet run wave by wave: start it, move it on, repair what a dead process left half-done.

The wave rule itself is state.fleet's (`decide`, applied by `FleetStore.advance` in one MULTI):
the canary wave first, `parallel` targets at once, the next wave only when the previous one
succeeded entirely, nothing new after `stop_after_failures` failures. Here each target it
queues becomes a job on the queue (one per target), and its sending is recorded (`sent`) so
that a sweep can tell a job lost between the two (its sender died) from one on its way.

Every process running a FleetWorker sweeps every few seconds: `advance` again (a job's process
may have died between recording its target's end and advancing) and send the jobs of queued
targets nobody sent. Both are idempotent, so any number of processes may sweep.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta

from core import clock
from state.codec import dumps
from state.fleet import Advance, FleetRun, FleetStatus, IllegalTransition
from state.fleet import TargetStatus as T
from workflows.fleet.context import FleetContext
from workflows.fleet.queue import FleetQueue

SEND_GRACE = 10.0  # seconds: a queued target with no job sent after this is sent by the sweep
STARTABLE = (FleetStatus.APPROVED, FleetStatus.SCHEDULED, FleetStatus.FAILED)


def start(ctx: FleetContext, queue: FleetQueue, fleet_id: str, actor: str) -> Advance:
    """The fleet run goes RUNNING (from APPROVED or SCHEDULED; from FAILED it retries what failed
    or was skipped) and its first jobs are sent: the canary wave's."""
    ctx.fleets.transition(
        fleet_id,
        FleetStatus.RUNNING,
        actor=actor,
        action="run",
        fields={"meta": {"run_by": actor}},
        expect=STARTABLE,
    )
    return advance(ctx, queue, fleet_id, actor=actor)


def advance(ctx: FleetContext, queue: FleetQueue, fleet_id: str, *, actor: str | None = None) -> Advance:
    """Apply the wave rule and send a job for each target it queued."""
    step = ctx.fleets.advance(fleet_id, actor=actor or ctx.worker)
    for name in step.queued:
        send(ctx, queue, fleet_id, name)
    return step


def send(
    ctx: FleetContext, queue: FleetQueue, fleet_id: str, name: str, *, delay: float | None = None
) -> str:
    message_id = queue.send(fleet_id, name, delay=delay)
    record = {"message": message_id, "at": clock.now().isoformat(), "delay": delay}
    ctx.redis.hset(ctx.fleets.keys.sent(fleet_id), name, dumps(record))
    return message_id


def unsent(ctx: FleetContext, fleet: FleetRun, grace: float = SEND_GRACE) -> list[str]:
    """Targets queued more than `grace` seconds ago for which no job was sent since."""
    sent = ctx.redis.hgetall(ctx.fleets.keys.sent(fleet.id))
    records = {k.decode() if isinstance(k, bytes) else k: json.loads(v) for k, v in sent.items()}
    cutoff = clock.now() - timedelta(seconds=grace)
    found = []
    for t in fleet.with_status(T.QUEUED):
        record = records.get(t.name)
        was_sent = record is not None and t.queued_at is not None and record["at"] >= t.queued_at.isoformat()
        if not was_sent and t.queued_at is not None and t.queued_at < cutoff:
            found.append(t.name)
    return found


def sweep(ctx: FleetContext, queue: FleetQueue) -> Advance | None:
    """Start the current fleet run when its GO scheduled time came; move it on if it is
    RUNNING, and send what was queued but never sent."""
    queue.pending()  # a dispatch on the queue: the broker re-queues dead workers' jobs
    fleet = ctx.fleets.current()
    if fleet is not None and fleet.status is FleetStatus.SCHEDULED:
        return start_when_due(ctx, queue, fleet)
    if fleet is None or fleet.status is not FleetStatus.RUNNING:
        return None
    step = advance(ctx, queue, fleet.id)
    moved = ctx.fleets.get(fleet.id)
    for name in unsent(ctx, moved) if moved is not None else ():
        send(ctx, queue, fleet.id, name)
    return step


def start_when_due(ctx: FleetContext, queue: FleetQueue, fleet: FleetRun) -> Advance | None:
    """A GO scheduled: at its time the canary wave starts (any worker's sweep, once: the move to
    RUNNING is atomic). Missed by more than MIGRATE_SCHEDULE_LATE_MINUTES (no worker was
    running), or its approval no longer valid: deferred, with the reason."""
    approval = fleet.approval or {}
    at = approval.get("scheduled_for")
    now = clock.now()
    if not at or datetime.fromisoformat(at) > now:
        return None
    late = now - datetime.fromisoformat(at)
    reason = None
    if late > timedelta(minutes=ctx.settings.schedule_late_minutes):
        reason = f"the scheduled start was missed by {int(late.total_seconds() // 60)} min (no fleet worker was running)"
    reason = reason or ctx.why_not_approved(fleet)
    actor = approval.get("by") or ctx.worker
    try:
        if reason:
            ctx.fleets.transition(
                fleet.id,
                FleetStatus.DEFERRED,
                actor=ctx.worker,
                action="scheduled start cancelled",
                fields={
                    "decision": {
                        "what": "deferred",
                        "by": ctx.worker,
                        "reason": reason,
                        "at": now.isoformat(),
                    }
                },
                expect=[FleetStatus.SCHEDULED],
            )
            return None
        return start(ctx, queue, fleet.id, actor)
    except IllegalTransition:
        return None  # another worker's sweep came first


def wait(ctx: FleetContext, fleet_id: str, *, timeout: float, poll: float = 0.2) -> FleetRun:
    """The fleet run once it is no longer RUNNING (or as it is when `timeout` ran out);
    KeyError when there is no such fleet run (its caller would have nothing to report)."""
    deadline = time.monotonic() + timeout
    while True:
        fleet = ctx.fleets.get(fleet_id)
        if fleet is None:
            raise KeyError(f"there is no fleet run {fleet_id}")
        if fleet.status is not FleetStatus.RUNNING or time.monotonic() >= deadline:
            return fleet
        time.sleep(poll)
