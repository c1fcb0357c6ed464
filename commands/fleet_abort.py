"""`abort` with MIGRATE_TARGETS: the fleet run stops — nothing new starts, and each database
that is running has its running statement cancelled (the single-database `abort` on its own
Core: its file's transaction rolls back, its run ends aborted).

Targets waiting (GO, queued) are skipped at once, so no worker starts them (a queued target's
start is refused in the MULTI of its move). A target a worker has just moved to running whose
own run is not active yet (a second at most) is watched by the work until its run is active,
then aborted too, or until it ended; the wave rule then ends the fleet run failed.
"""

from __future__ import annotations

import time

from commands.abort import abort
from commands.fleetcore import gone, known_core, let_go, store
from commands.parse import Command
from state.fleet import FleetStatus, IllegalTransition, TargetStatus
from state.machine import ACTIVE
from workflows.core import Core
from workflows.reporting import FAILED, OK, Outcome, Post, Reporter

T = TargetStatus
CATCH_UP = 15.0  # seconds the work watches a running target whose own run has not started yet


def fleet_abort(core: Core, user: str, cmd: Command) -> Outcome:
    fstore = store(core)
    run = fstore.current()
    if run is None or run.status is not FleetStatus.RUNNING:
        state = run.status if run else "no fleet run"
        return Outcome.refused(f"nothing is running ({state}): `abort` stops a fleet run in progress")
    reason = f"not started: abort by <@{user}>"
    skipped = []
    for t in run.with_status(T.GO, T.QUEUED):
        try:
            fstore.move(run.id, t.name, T.SKIPPED, actor=user, action="abort", fields={"reason": reason})
            skipped.append(t.name)
        except IllegalTransition:
            pass  # a worker started it meanwhile: it is aborted below with the running ones
    cancelled, waiting = _abort_running(core, user, cmd, run.id)
    lines = [f"Running: {', '.join(f'{n} ({how})' for n, how in cancelled) or 'none'}"]
    if skipped:
        lines.append(f"Not started, skipped: {', '.join(skipped)}")

    def work(reporter: Reporter) -> int:
        deadline = time.monotonic() + CATCH_UP
        left = list(waiting)
        while left and time.monotonic() < deadline:
            time.sleep(0.2)
            done, left = _abort_running(core, user, cmd, run.id, only=left)
            for name, how in done:
                reporter.post(Post("abort", f"Abort reached {name}: {how}", run_id=run.id))
        return OK if not left else FAILED

    return Outcome(
        OK,
        reply=[f"Abort of fleet run {run.id} requested: nothing new starts."] + lines,
        posts=[Post("abort", f"Abort of the fleet run requested by <@{user}>", lines, run_id=run.id)],
        work=work if waiting else None,
        run_id=run.id,
    )


def _abort_running(
    core: Core, user: str, cmd: Command, fleet_id: str, only: list[str] | None = None
) -> tuple[list[tuple[str, str]], list[str]]:
    """The single-database abort on every running target whose own run is active: ([(name, how)]
    aborted, [names] running but not active yet)."""
    done: list[tuple[str, str]] = []
    waiting: list[str] = []
    current = store(core).current()
    assert current is not None  # the caller's fleet run, being aborted
    for t in current.with_status(T.RUNNING):
        if only is not None and t.name not in only:
            continue
        tcore = known_core(core, t.name)
        if tcore is None:  # its URL is unknown here: the process running it must abort it
            done.append((t.name, "not reached from here: " + gone(t.name).split(": ", 1)[1]))
            continue
        own = tcore.store.current()
        if own is None or own.status not in ACTIVE:
            waiting.append(t.name)
            continue
        outcome = abort(tcore, user, cmd)
        done.append((t.name, " ".join(outcome.posts[0].lines) if outcome.posts else " ".join(outcome.reply)))
        let_go(tcore)
    return done, waiting
