"""`abort`: cancel the running statement; the file's transaction rolls back, nothing further runs."""
from __future__ import annotations

import psycopg

from commands.core import Core
from commands.parse import Command
from commands.result import OK, Outcome, Post
from state.machine import ACTIVE


def abort(core: Core, user: str, cmd: Command) -> Outcome:
    run = core.store.current()
    if run is None or run.status not in ACTIVE:
        return Outcome.refused("nothing is running: `abort` cancels a phase, verification or rollback in progress")
    core.store.update_meta(run.id, abort_requested=user)
    how = _cancel(core, run)
    return Outcome(OK, reply=[f"Abort requested: {how}. The failure template will report the database state."],
                   posts=[Post("abort", f"Abort requested by <@{user}>", [how], run_id=run.id)], run_id=run.id)


def _cancel(core: Core, run) -> str:
    """Cancel in this process when the executor lives here, else through PostgreSQL."""
    with core.executors_guard:
        executor = core.executors.get(run.id)
    if executor is not None:
        executor.cancel()
        return "running statement cancelled"
    pid = run.meta.get("backend_pid")
    if not pid:
        return "no statement running yet: the run stops before its next step"
    with psycopg.connect(core.settings.database_url, autocommit=True) as conn:
        # Only cancel the bot's own backend: a stale pid may have been reused by someone else.
        row = conn.execute("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE pid = %s AND application_name LIKE 'migrate-bot%%'",
                           (int(pid),)).fetchone()
    return f"cancel sent to backend {pid}" if row and row[0] else "the statement had already finished: the run stops before its next step"
