"""`rollback all on <target>` and `rollback all` with MIGRATE_TARGETS.

Each target is undone by the single-database `rollback all` on the target's own Core (its
phases newest first, each proven against its own snapshots, under its own run lock). `rollback
all` does it for every target the fleet run touched, the newest first (the latest started
first: the last wave before the canary), `parallel` at once. Each target's move (rolling back
→ rolled back / rollback failed) goes through the fleet store, so the table and the thread show
it; the targets' own posts are kept and summed up in one result post.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from commands.fleetcore import gone, known_core, let_go, named_core, store, the_fleet
from commands.parse import Command
from commands.result import FAILED, OK, Outcome, Post, Progress, Reporter
from commands.rollback import rollback_all
from state.fleet import FleetStatus, FleetStore, TargetState, TargetStatus
from state.machine import IllegalTransition
from workflows.core import Core

log = logging.getLogger("migrate.fleet")
T = TargetStatus
# Targets whose database this fleet run changed (or may have, part-way).
UNDOABLE = (T.SUCCEEDED, T.FAILED, T.ROLLBACK_FAILED, T.RUNNING)
# Targets this fleet run never started: nothing of it to undo (and a NO-GO one may be unreachable).
NEVER_STARTED = (T.PENDING, T.PREFLIGHT, T.GO, T.NO_GO, T.QUEUED, T.SKIPPED)


class _Kept:
    """A target's posts, kept for the one result post (no storm of per-phase posts)."""

    def __init__(self) -> None:
        self.posts: list[Post] = []

    def post(self, post: Post) -> None:
        self.posts.append(post)

    def progress(self, progress: Progress) -> None:
        pass


def fleet_rollback(core: Core, user: str, cmd: Command) -> Outcome:
    """`rollback all [on <target>]`; other rollbacks name a target (refused here)."""
    fleet = the_fleet(core)
    if "all" not in cmd.flags:
        return Outcome.refused(
            "with MIGRATE_TARGETS, roll back by database: `rollback all on <target>` (one) or `rollback all` (every one)"
        )
    fstore = store(core)
    run = fstore.current()
    if run is None:
        return Outcome.refused("nothing to roll back: no fleet run recorded")
    if run.status is FleetStatus.RUNNING:  # its waves would go on over what is being undone
        return Outcome.refused(
            f"fleet run {run.id} is running: `abort` first (nothing new starts, what runs stops), "
            "then roll back"
        )
    if cmd.target is not None:
        if fleet.get(cmd.target) is None or cmd.target not in run.targets:
            return Outcome.refused(
                f"no target {cmd.target!r} in the fleet run: targets are {', '.join(run.targets)}"
            )
        chosen = [run.targets[cmd.target]]
        if chosen[0].status in NEVER_STARTED:  # its database was never touched by this fleet run
            return Outcome.refused(
                f"nothing to roll back on {cmd.target}: it is {chosen[0].status} in fleet run {run.id}, "
                "never started (`status` says why)"
            )
    else:
        chosen = newest_first([t for t in run.targets.values() if t.status in UNDOABLE])
        if not chosen:
            return Outcome.refused(
                f"nothing to roll back: no database of fleet run {run.id} was changed by it"
            )
    running = [t.name for t in chosen if t.status is T.RUNNING]
    if running:
        return Outcome.refused(f"{', '.join(running)} still running: `abort` first, or wait for it to end")
    started, refused = [], []
    for t in chosen:  # each target's own `rollback all`: refusals now, the work (under its lock) later
        tcore = known_core(core, t.name)
        if tcore is None:
            refused.append(gone(t.name))
            continue
        own = tcore.store.get(t.run_id) if t.run_id else None
        if own is None:
            refused.append(f"{t.name}: no run of its own to roll back")
            continue
        outcome = rollback_all(tcore, user, own)
        if outcome.work is None:
            refused.append(f"{t.name}: {' '.join(outcome.reply)}")
        else:
            started.append((t, outcome))
    if not started:
        return Outcome.refused("nothing rolled back: " + "; ".join(refused))
    if cmd.target is None:
        try:
            fstore.transition(run.id, FleetStatus.ROLLING_BACK, actor=user, action="rollback all")
        except IllegalTransition:
            pass  # e.g. already rolling back from a `rollback all on` of one target: the targets' moves tell
    order = [t.name for t, _ in started]

    def work(reporter: Reporter) -> int:
        with ThreadPoolExecutor(max(1, run.parallel), thread_name_prefix="fleet-rollback") as pool:
            results = list(pool.map(lambda item: _one(core, run.id, user, *item), started))
        failed = [name for name, code, _ in results if code != OK]
        if cmd.target is None:
            try:
                fstore.transition(
                    run.id,
                    FleetStatus.FAILED if failed else FleetStatus.ROLLED_BACK,
                    actor=user,
                    action="rollback all",
                    evidence={"order": order, "failed": failed},
                )
            except IllegalTransition:
                pass
        lines = []
        for name, code, posts in results:
            mark = "↩️" if code == OK else "❌"
            lines.append(f"{mark} *{name}*: " + ("; ".join(p.title for p in posts[-2:]) or "done"))
        lines += [f"⚠ not rolled back: {r}" for r in refused]
        title = (
            f"Rollback of {len(results)} database{'s' if len(results) != 1 else ''}: "
            f"{len(results) - len(failed)} rolled back, {len(failed)} failed"
        )
        reporter.post(
            Post("rollback_done" if not failed else "failure", title, lines, run_id=run.id, final=True)
        )
        return FAILED if failed or refused else OK

    what = (
        f"on {cmd.target}" if cmd.target else f"on {len(order)} databases, newest first ({', '.join(order)})"
    )
    return Outcome(
        OK,
        reply=[f"Rolling back every applied phase {what}; updates go to the fleet run's thread."]
        + [f"Not rolled back: {r}" for r in refused],
        work=work,
        run_id=run.id,
    )


def newest_first(targets: list[Any]) -> list[Any]:
    """The latest started first (then the higher wave): the reverse of the order they ran in."""
    oldest = datetime.min
    return sorted(
        targets,
        key=lambda t: (t.started_at.replace(tzinfo=None) if t.started_at else oldest, t.wave, t.order),
        reverse=True,
    )


def _one(
    core: Core, fleet_id: str, user: str, target: TargetState, outcome: Outcome
) -> tuple[str, int, list[Post]]:
    fstore = store(core)
    tracked = _move(fstore, fleet_id, target.name, T.ROLLING_BACK, user)
    kept = _Kept()
    assert outcome.work is not None  # only the targets whose rollback has work are started
    try:
        code = outcome.work(kept)
    except Exception as exc:  # noqa: BLE001 - the work's own guard posts; this is the fleet's record of it
        kept.post(Post("failure", core.redact(f"{type(exc).__name__}: {exc}")[:300]))
        code = FAILED
    let_go(named_core(core, target.name))
    error = None if code == OK else (kept.posts[-1].title if kept.posts else "rollback failed")
    if tracked:
        _move(fstore, fleet_id, target.name, T.ROLLED_BACK if code == OK else T.ROLLBACK_FAILED, user, error)
    return target.name, code, kept.posts


def _move(
    fstore: FleetStore, fleet_id: str, name: str, to: TargetStatus, user: str, error: str | None = None
) -> bool:
    """The target's move in the fleet's table; a move the table refuses is logged, and the
    database's own rollback goes on (its run record is the truth about its phases)."""
    try:
        fstore.move(fleet_id, name, to, actor=user, action="rollback all", fields={"error": error})
    except IllegalTransition as exc:
        log.warning("fleet %s: %s not shown as %s: %s", fleet_id, name, to, exc.reason)
        return False
    return True
