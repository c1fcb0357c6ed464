"""One target's job: the phases of one database of a fleet run, exactly once.

A job may be delivered more than once (the queue re-delivers a dead worker's jobs; a sweep
may re-send one), so it decides from the state, never from the delivery:

1. The target's fleet state: ended (succeeded, failed, skipped, ...) -> nothing to do.
2. The target's claim (an owned key per fleet run and target, renewed while the job runs):
   held by a live worker -> come back later (`Retry`). Only one worker works on a target.
3. Its database's run lock held (by a live `run` from Slack, or a dead worker's lock not yet
   expired) -> come back later. A run left ACTIVE by a dead worker whose lock expired is marked
   INTERRUPTED (state.runs.detect_interrupted) and resumed: steps the ledger shows committed
   in this run are skipped (the single-database resume), the rest run.
4. The fleet move QUEUED -> RUNNING (the start rule: refused once the fleet stopped; then the
   job ends and the wave rule skips the target) or RUNNING -> RUNNING ("taken over"). On a take
   over, a run that already ended (the dead worker finished the database but not the fleet's
   bookkeeping) is recorded as it ended, and nothing runs again.
5. The phases, through the single-database `run` (approval, incident and leftover-backend
   checks, the run lock, the PhaseRunner); the target's state follows its run's outcome.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Any

from state.fleet import ENDED, IllegalTransition
from state.fleet import TargetStatus as T
from state.machine import ACTIVE, Status
from state.owned import OwnedKey
from workflows.fleet.context import OK, REFUSED, FleetContext

log = logging.getLogger("migrate.fleet")

CLAIM_TTL = 15.0  # seconds: a dead worker's claim on a target is free again after this
RETRY_SECONDS = 3.0  # how soon a job that found its target busy comes back


@dataclass(frozen=True)
class Done:
    """The job is over: `what` happened ("succeeded", "failed", "nothing to do", ...)."""

    what: str


@dataclass(frozen=True)
class Retry:
    """The target is busy now (another worker, a lock, a dying backend): send the job again later."""

    why: str
    after: float = RETRY_SECONDS


def run_target(ctx: FleetContext, fleet_id: str, name: str) -> Done | Retry:
    """Work on target `name` of fleet run `fleet_id` (see the module docstring)."""
    state = ctx.fleets.target(fleet_id, name)
    if state is None:
        return Done(f"fleet run {fleet_id} has no target {name}")
    if state.status in ENDED or state.status not in (T.QUEUED, T.RUNNING):
        return Done(f"nothing to do: {name} is {state.status}")
    claim = OwnedKey(ctx.redis, ctx.fleets.keys.job_lock(fleet_id, name), secrets.token_hex(16))
    if not claim.claim(CLAIM_TTL):
        return Retry(f"{name} is being worked on by another worker")
    renewal = claim.renewal(CLAIM_TTL, give_up_after=CLAIM_TTL, name=f"fleet-claim-{name}").start()
    try:
        return _work(ctx, fleet_id, name, renewal)
    finally:
        renewal.stop()
        claim.delete()


def _work(ctx: FleetContext, fleet_id: str, name: str, renewal) -> Done | Retry:
    state = ctx.fleets.target(fleet_id, name)  # again, now that it is ours
    if state is None or state.status not in (T.QUEUED, T.RUNNING):
        return Done(f"nothing to do: {name} is {state.status if state else 'gone'}")
    core = ctx.core_for(name)
    try:
        return _on_core(ctx, fleet_id, name, state, core, renewal)
    finally:
        # the idle pooled connections of its audit log (the pool comes back on next use): a
        # worker that ran 50 databases must not keep an idle connection to each
        core.events.close()


def _on_core(ctx: FleetContext, fleet_id: str, name: str, state, core, renewal) -> Done | Retry:
    if state.identity and core.keys.target != state.identity:  # its URL changed since pre-flight
        return _failed(
            ctx,
            fleet_id,
            name,
            f"not run here: {ctx.target(name).url_env} now reaches another database than the one "
            "pre-flighted and approved; put it back, or run preflight and approve again",
        )
    if core.lock.held():
        return Retry(f"the run lock of {name} is held")
    run = core.store.current()
    if run is None:
        return _failed(ctx, fleet_id, name, "no run of this database to go on with: run preflight")
    interrupted = core.store.detect_interrupted(core.lock)  # a dead worker's run: INTERRUPTED
    if interrupted is not None:
        run = interrupted
    fields = {"worker": ctx.worker, "identity": core.keys.target, "run_id": run.id}
    if state.status is T.QUEUED:
        unapproved = ctx.why_not_approved(ctx.fleets.get(fleet_id))
        if unapproved:  # e.g. a file changed since the approval: refused before anything runs
            return _failed(ctx, fleet_id, name, f"not started: {unapproved}")
    try:
        if state.status is T.QUEUED:
            ctx.fleets.move(
                fleet_id,
                name,
                T.RUNNING,
                actor=ctx.worker,
                action="started",
                fields=fields,
                expect=[T.QUEUED],
            )
        else:
            ctx.fleets.move(
                fleet_id,
                name,
                T.RUNNING,
                actor=ctx.worker,
                action="taken over",
                fields=fields,
                expect=[T.RUNNING],
                evidence={"run_status": str(run.status), "interrupted": interrupted is not None},
            )
            ended = _already_ended(ctx, fleet_id, name, run)
            if ended is not None:
                return ended
    except IllegalTransition as exc:  # stopped after failures, or another move came first
        log.info("fleet %s: %s not started: %s", fleet_id, name, exc.reason)
        return Done(f"not started: {exc.reason}")
    fleet = ctx.fleets.get(fleet_id)
    actor = ((fleet.meta if fleet is not None else None) or {}).get("run_by") or ctx.worker
    outcome = ctx.start_phases(core, actor)
    if outcome.code == REFUSED or outcome.work is None:
        reason = ctx.redact(" ".join(outcome.reply) or "refused")
        if _transient(core, reason):
            return Retry(reason)
        return _failed(ctx, fleet_id, name, f"not started: {reason}")
    reporter = ctx.reporter(fleet_id, name)
    try:
        code = outcome.work(reporter)
    except Exception as exc:  # noqa: BLE001 - guarded() already turns errors into a failed run
        code = 1
        log.error("fleet %s: %s: %s", fleet_id, name, ctx.redact(f"{type(exc).__name__}: {exc}"))
    run = core.store.get(run.id)
    if renewal.lost.is_set():
        # our claim expired (this process stalled): another worker may have taken the target over
        log.warning("fleet %s: lost the claim on %s while it ran", fleet_id, name)
    if code == OK and run is not None and run.status is Status.SUCCEEDED:
        ctx.fleets.move(
            fleet_id, name, T.SUCCEEDED, actor=ctx.worker, action="succeeded", fields={"phase": run.phase}
        )
        return Done("succeeded")
    return _failed(ctx, fleet_id, name, _why_failed(run, reporter), phase=run.phase if run else None)


def _already_ended(ctx: FleetContext, fleet_id: str, name: str, run) -> Done | None:
    """On a take over: the dead worker's run may have ended already; record that, run nothing."""
    if run.status is Status.SUCCEEDED:
        ctx.fleets.move(
            fleet_id,
            name,
            T.SUCCEEDED,
            actor=ctx.worker,
            action="succeeded (found ended)",
            fields={"phase": run.phase},
        )
        return Done("succeeded (found ended)")
    if run.status in (Status.FAILED, Status.ABORTED):
        return _failed(ctx, fleet_id, name, _why_failed(run), phase=run.phase)
    return None


def give_up(ctx: FleetContext, fleet_id: str, name: str, why: str) -> Done:
    """The target fails without having run (its job kept erring): recorded, the wave rule goes on."""
    return _failed(ctx, fleet_id, name, why)


def _failed(ctx: FleetContext, fleet_id: str, name: str, why: str, *, phase: int | None = None) -> Done:
    fields: dict[str, Any] = {"error": ctx.redact(why)[:500]}
    if phase is not None:
        fields["phase"] = phase
    try:
        ctx.fleets.move(fleet_id, name, T.FAILED, actor=ctx.worker, action="failed", fields=fields)
    except IllegalTransition as exc:
        log.error("fleet %s: could not record %s as failed: %s", fleet_id, name, exc.reason)
    return Done(f"failed: {why}")


def _why_failed(run, reporter=None) -> str:
    """The failing step's error (the run's step outcomes), else the phase's, else the last
    error the run posted, else its status."""
    if run is None:
        return "its run is gone"
    where = f"phase {run.phase}" if run.phase is not None else "the run"
    steps = (run.result or {}).get("steps") or {}
    failed = [(sid, s) for sid, s in steps.items() if not s.get("ok") and s.get("error")]
    if failed:
        sid, step = failed[-1]
        return f"{where}, step {sid} {step.get('file') or ''}: {step['error']}"
    phase = run.phases.get(run.phase) if run.phase is not None else None
    if phase is not None and phase.error:
        return f"{where}: {phase.error}"
    posts = [p for p in getattr(reporter, "posts", []) if p.kind in ("phase_failed", "failure", "error")]
    if posts:
        return f"{where}: {posts[-1].title}"
    return f"{where}: the run is {run.status}"


def _transient(core, reason: str) -> bool:
    """Refusals that pass by themselves: a lock held, a dead process's backend still in its
    transaction, a run still active elsewhere."""
    if core.lock.held():
        return True
    run = core.store.current()
    if run is not None and run.status in ACTIVE:
        return True
    return "backend of a stopped bot process" in reason
