"""Starting work under the run lock: heartbeat, lock release, redaction, no stack traces.

`start_locked` is how a verb (or the scheduled start) begins phase work: it re-checks the
transition, takes the run lock and returns an Outcome whose `work` runs a PhaseRunner;
`guarded` wraps any such work (also restore and pre-flight) so the lock is renewed while it
runs and always released, and an unexpected error becomes a failed run, never a trace.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from state.machine import ACTIVE, IllegalTransition, Status, check_transition
from workflows.phases import PhaseRunner
from workflows.reporting import FAILED, OK, Outcome, Post, RedactingReporter, Reporter, Work

log = logging.getLogger("migrate.work")


def lock_refusal(core) -> Outcome:
    """The refusal given when another run holds the target database's run lock."""
    holder = core.lock.holder() or {}
    who = holder.get("owner", "another run")
    since = holder.get("since", "")
    return Outcome.refused(
        f"another run holds the lock on this database ({who}{', since ' + since if since else ''}): "
        "wait for it to finish, or `/migrate abort` it"
    )


def guarded(core, handle, run_id: str, actor: str, body: Callable[[Reporter], int]) -> Work:
    """`body` as Outcome.work: keeps the lock alive while it runs and always releases it.

    An unexpected exception becomes a failed run with a redacted one-line reason in the
    channel (the full trace goes to the log, redacted too), never a stack trace in Slack.
    """

    def work(reporter: Reporter) -> int:
        reporter = RedactingReporter(reporter, core.redact)
        handle.start_heartbeat()
        core.lost_locks[run_id] = handle.lost
        done = threading.Event()
        watcher = threading.Thread(
            target=_stop_when_lost,
            args=(core, handle, run_id, done),
            daemon=True,
            name=f"lock-watch-{run_id}",
        )
        watcher.start()
        try:
            return body(reporter)
        except Exception as exc:
            if handle.lost.is_set():
                reporter.post(
                    Post(
                        "error",
                        "Stopped: this bot process lost the run lock",
                        [
                            "Its heartbeat could not renew the lock in time (Redis unreachable, or the process stalled "
                            "longer than the lock's TTL); the running statement was cancelled and nothing further runs here.",
                            "Check `/migrate status`: the run is reported as interrupted.",
                        ],
                        run_id=run_id,
                        final=True,
                    )
                )
                return FAILED
            reason = core.redact(f"{type(exc).__name__}: {exc}")[:500]
            log.error("run %s failed unexpectedly: %s", run_id, reason)
            _mark_failed(core, run_id, actor, reason)
            reporter.post(
                Post(
                    "error",
                    "Internal error: the run stopped",
                    [reason, "Check `/migrate status`; the database state is reported there."],
                    run_id=run_id,
                    final=True,
                )
            )
            return FAILED
        finally:
            done.set()
            core.lost_locks.pop(run_id, None)
            handle.stop_heartbeat()
            handle.release()

    return work


def _stop_when_lost(core, handle, run_id: str, done: threading.Event, every: float = 0.2) -> None:
    """Another process may take over a run whose lock we lost: stop executing at once."""
    while not done.wait(every):
        if handle.lost.is_set():
            with core.executors_guard:
                executor = core.executors.get(run_id)
            if executor is not None:
                executor.cancel()  # a cancelled executor also refuses to start further files
            return


def _mark_failed(core, run_id: str, actor: str, reason: str) -> None:
    run = core.store.get(run_id)
    if run is None or run.status not in ACTIVE:
        return
    target = Status.NO_GO if run.status == Status.PREFLIGHT_RUNNING else Status.FAILED
    try:
        core.store.transition(
            run_id, target, actor=actor, action="internal error", outcome="error", evidence={"reason": reason}
        )
    except IllegalTransition:
        log.error("could not mark run %s failed after an internal error", run_id)


EPILOGUE_WAIT = 5.0  # seconds: longest a finished phase's work may take to let the lock go


def _acquire_after_epilogue(core, run_id: str, owner: str, poll: float = 0.05):
    """The run lock, or None. The post that offers the next phase ("Phase 1 complete", with its
    button) goes out while that phase's work still holds the lock for its last bookkeeping; a
    click in that moment must not be refused. So while the lock is held but the run rests (no
    work of it is active), wait up to EPILOGUE_WAIT for it to be let go; a run that is active
    (another command started it) is refused at once."""
    deadline = time.monotonic() + EPILOGUE_WAIT
    while True:
        handle = core.lock.acquire(owner)
        if handle is not None or time.monotonic() >= deadline:
            return handle
        run = core.store.get(run_id)
        if run is None or run.status in ACTIVE:
            return None
        time.sleep(poll)


def start_locked(
    core, user: str, current, body: Callable, what: str, first_status: Status, numbers: list[int]
) -> Outcome:
    """Refuse now if the run may not move to `first_status` or the lock is taken; else an
    Outcome whose work runs `body(PhaseRunner)` holding the run lock."""
    try:
        check_transition(current, first_status, phase=numbers[0] if numbers else None)
    except IllegalTransition as exc:
        return Outcome.refused(exc.reason)
    handle = _acquire_after_epilogue(core, current.id, f"{what.lower()} by {user}")
    if handle is None:
        return lock_refusal(core)
    try:  # another command may have moved the run between our check and taking the lock
        check_transition(core.store.get(current.id), first_status, phase=numbers[0] if numbers else None)
    except IllegalTransition as exc:
        handle.release()
        return Outcome.refused(exc.reason)

    def work(reporter: Reporter) -> int:
        with PhaseRunner(core, current.id, user, reporter).attached() as runner:
            return body(runner)

    return Outcome(
        OK,
        reply=[f"{what} (run {current.id}); updates go to the channel."],
        work=guarded(core, handle, current.id, user, work),
        run_id=current.id,
    )
