"""`rollback restore` (the coordinator asks) and `rollback restore confirm` (the TPM).

A restore throws away every write since the backup, so the request is a decision of two
people and expires; the confirmation takes the run lock and starts the restore itself,
workflows/restore.py (restore into a new database, verify, swap in, keep the old one aside).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from commands.parse import Command
from core import clock
from core.roster import COORDINATOR, TPM
from state.machine import IllegalTransition, Status, check_transition
from state.record import Run
from workflows.core import Core
from workflows.locked import guarded, lock_refusal
from workflows.reporting import OK, Action, Outcome, Post, Reporter
from workflows.restore import Restore, backup_of, backup_problem, backup_time, dbname


def restore(core: Core, user: str, cmd: Command) -> Outcome:
    """`rollback restore` (the coordinator asks) or `rollback restore confirm` (the TPM)."""
    return _confirm(core, user) if "confirm" in cmd.flags else _request(core, user)


def _request(core: Core, user: str) -> Outcome:
    run = core.store.current()
    if run is None:
        return Outcome.refused("nothing to restore: no run recorded")
    backup = backup_of(run)
    problem = backup_problem(backup, hash_file=False)
    if problem:
        return Outcome.refused(f"cannot restore: {problem}")
    try:
        run = core.store.transition(
            run.id,
            Status.RESTORE_REQUESTED,
            actor=user,
            action="restore requested",
            fields={"meta": {"restore_requested_by": user, "restore_requested_at": clock.now().isoformat()}},
            evidence={"backup": backup.get("path")},
        )
    except IllegalTransition as exc:
        return Outcome.refused(exc.reason)
    live = dbname(core.settings.required_database_url())
    post = Post(
        "restore_request",
        f"Restore from backup requested by <@{user}>: the TPM must confirm",
        [
            f"To: {core.roster.mention(TPM)} (TPM)",
            f"Backup: {backup.get('path')} (sha256 {str(backup.get('sha256'))[:12]}…), taken at "
            f"{backup_time(run)}",
            f"The backup is restored into a new database and verified; only then is it swapped in. "
            f"The current `{live}` is renamed aside, not dropped.",
            f"Anything written to `{live}` since the backup will not be in the restored database.",
        ],
        actions=[
            Action(
                "restore_confirm",
                "Confirm restore",
                "rollback restore confirm",
                style="danger",
                confirm=f"Replace database {live} with the backup taken at {backup_time(run)}? "
                "Writes since then will not be in it.",
                allowed_role=TPM,
            )
        ],
        run_id=run.id,
        mentions=list(core.roster.members(TPM)),
    )
    return Outcome(
        OK,
        reply=[
            f"Restore requested (run {run.id}): waiting for the TPM to confirm (`rollback restore confirm`)."
        ],
        posts=[post],
        run_id=run.id,
    )


def _confirm(core: Core, user: str) -> Outcome:
    run = core.store.current()
    if run is None or run.status is not Status.RESTORE_REQUESTED:
        return Outcome.refused(
            "no restore was requested: the coordinator asks with `rollback restore` "
            f"({core.roster.mention(COORDINATOR)}), then the TPM confirms"
        )
    try:
        check_transition(run, Status.RESTORING)
    except IllegalTransition as exc:
        return Outcome.refused(exc.reason)
    expired = _request_expired(core, run)
    if expired:
        return Outcome.refused(expired)
    handle = core.lock.acquire(f"restore from backup by {user}")
    if handle is None:
        return lock_refusal(core)
    try:
        core.store.transition(
            run.id,
            Status.RESTORING,
            actor=user,
            action="restore confirmed",
            expect={Status.RESTORE_REQUESTED},
            fields={"meta": {"abort_requested": ""}},
            evidence={"backup": backup_of(run).get("path")},
        )
    except IllegalTransition as exc:
        handle.release()
        return Outcome.refused(exc.reason)

    def body(reporter: Reporter) -> int:
        return Restore(core, run.id, user, reporter).execute()

    return Outcome(
        OK,
        reply=[f"Restore confirmed (run {run.id}); updates go to the channel."],
        posts=[
            Post(
                "restore_started",
                f"Restore from backup confirmed by <@{user}>: started",
                [f"requested by <@{run.meta.get('restore_requested_by', '?')}>"],
                run_id=run.id,
            )
        ],
        work=guarded(core, handle, run.id, user, body),
        run_id=run.id,
    )


def _request_expired(core: Core, run: Run) -> str | None:
    """Why the pending request can no longer be confirmed, or None. A restore throws away every
    write since the backup: a confirmation must answer a request made for the situation at hand,
    not one found in the channel hours later."""
    limit = timedelta(minutes=core.settings.restore_request_minutes)
    asked = run.meta.get("restore_requested_at")
    try:
        at = datetime.fromisoformat(asked) if asked else None
    except ValueError:
        at = None
    if at is not None and clock.now() - at <= limit:
        return None
    when = f"at {clock.hhmm(at)} " if at else ""
    return (
        f"the restore request {when}by <@{run.meta.get('restore_requested_by', '?')}> expired (requests are valid "
        f"{core.settings.restore_request_minutes:g} min): the coordinator asks again with `rollback restore` "
        f"({core.roster.mention(COORDINATOR)}), then the TPM confirms"
    )
