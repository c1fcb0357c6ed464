"""`abort`: cancel the running statement; the file's transaction rolls back, nothing further runs.

Also what an interrupted run left behind (`interruption_facts`, for the notice the command
core gives whoever looks next). The working side of abort, the watch beside a running
PhaseRunner, is workflows/abort.py.
"""

from __future__ import annotations

import psycopg
from psycopg.conninfo import conninfo_to_dict

from commands.parse import Command
from engine import ledger
from state.machine import ACTIVE, Status
from state.record import Run
from workflows import facts
from workflows.checks import leftover_backends, listed
from workflows.core import Core
from workflows.reporting import OK, Outcome, Post


def abort(core: Core, user: str, cmd: Command) -> Outcome:
    run = core.store.current()
    if run is None or run.status not in ACTIVE:
        return Outcome.refused(
            "nothing is running: `abort` cancels a phase, verification or rollback in progress"
        )
    core.store.update_meta(run.id, abort_requested=user)
    how = (
        "the restore stops before it swaps the databases (a pg_restore in progress is stopped within a "
        "second and its partial copy dropped; the live database is not touched); if the swap has begun, "
        "it completes"
        if run.status is Status.RESTORING
        else _cancel(core, run)
    )
    return Outcome(
        OK,
        reply=[f"Abort requested: {how}. The failure template will report the database state."],
        posts=[Post("abort", f"Abort requested by <@{user}>", [how], run_id=run.id)],
        run_id=run.id,
    )


def _cancel(core: Core, run: Run) -> str:
    """Cancel in this process when the executor lives here, else through PostgreSQL."""
    with core.executors_guard:
        executor = core.executors.get(run.id)
    if executor is not None:
        executor.cancel()
        return "running statement cancelled"
    pid = run.meta.get("backend_pid")
    if not pid:
        return "no statement running yet: the run stops before its next step"
    with psycopg.connect(core.settings.required_database_url(), autocommit=True) as conn:
        # Only cancel the bot's own backend: a stale pid may have been reused by someone else.
        row = conn.execute(
            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE pid = %s AND application_name LIKE 'migrate-bot%%'",
            (int(pid),),
        ).fetchone()
    return (
        f"cancel sent to backend {pid}"
        if row and row[0]
        else "the statement had already finished: the run stops before its next step"
    )


def interruption_facts(core: Core, run: Run) -> list[str]:
    """What an interrupted run left behind, checked now: a backend of the dead process still
    in its transaction (PostgreSQL has not noticed the dead client yet), which known state the
    schema matches, and the files the ledger shows committed by this run."""
    dsn = core.settings.required_database_url()  # Core.from_settings required it
    lines = []
    try:
        leftover = leftover_backends(dsn)
        if leftover:
            lines.append(
                f"⚠ A backend of the bot is still in a transaction ({listed(leftover)}): PostgreSQL has not yet noticed "
                "the dead process. Its transaction ends (rolled back) when it does; run nothing until it is "
                "gone, or end it with pg_terminate_backend."
            )
        else:
            lines.append(
                "No backend of the bot is left in a transaction: the open transaction died with its "
                "connection and was rolled back (checked in pg_stat_activity)."
            )
        label = facts.matching_state(dsn, facts.known_states(core, run.id))
        lines.append(
            f"Database: matches {label} (schema compared)"
            if label
            else "Database: matches no known state (schema compared with the pre-migration and post-phase "
            "snapshots): investigate before going on"
        )
        files = [
            f"{r['step']} {r['file']}"
            for r in ledger.applied_files(dsn, core.runbook.id)
            if r["run_id"] == run.id
        ]
        lines.append("Ledger: committed in this run: " + (", ".join(files) if files else "nothing"))
        lines += _restore_leftovers(dsn)
    except Exception as exc:  # the database may be what failed
        lines.append(f"Database state unknown: could not check ({core.redact(str(exc))[:200]})")
    return lines


def _restore_leftovers(dsn: str) -> list[str]:
    """Copies an interrupted `rollback restore` left on the server (they are never swapped in)."""
    live = str(conninfo_to_dict(dsn).get("dbname") or "")  # conninfo values are text
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s ORDER BY 1",
            (live.replace("_", "\\_") + "\\_restore\\_%",),
        ).fetchall()
    return [
        f"Left over by an interrupted restore (never swapped in): database `{r[0]}`; "
        f"remove it with `DROP DATABASE {r[0]};`"
        for r in rows
    ]
