"""`abort`: cancel the running statement; the file's transaction rolls back, nothing further runs."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

import psycopg

from commands.core import Core
from commands.parse import Command
from commands.result import OK, Outcome, Post
from state.machine import ACTIVE, Status

if TYPE_CHECKING:
    from engine.executor import FileResult

log = logging.getLogger("migrate.abort")


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
        row = conn.execute(
            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE pid = %s AND application_name LIKE 'migrate-bot%%'",
            (int(pid),),
        ).fetchone()
    return (
        f"cancel sent to backend {pid}"
        if row and row[0]
        else "the statement had already finished: the run stops before its next step"
    )


class AbortWatch:
    """Runs beside a PhaseRunner: makes `abort` reliable from any process.

    Every `interval` seconds it publishes the executor's backend pid in the run's meta (so an
    `abort` in a process without the executor can `pg_cancel_backend` it, even while the
    first statement waits on a lock), and cancels the executor itself as soon as the run's
    meta says `abort_requested` (set by `abort` in any process). A stale request from an
    earlier abort is cleared when the watch starts: `abort` is refused unless the run is
    active, and it only becomes active after this point.
    """

    def __init__(self, core: Core, run_id: str, executor, interval: float = 0.2):
        self.core, self.run_id, self.executor, self.interval = core, run_id, executor, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"abort-watch-{run_id}", daemon=True)
        self._published: int | None = None
        self._cancelled = False

    def __enter__(self) -> AbortWatch:
        self.core.store.update_meta(self.run_id, abort_requested="", backend_pid="")
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._tick()
            except Exception as exc:  # Redis blip: keep watching; the lock heartbeat judges liveness
                log.warning("abort watch of run %s: %s", self.run_id, self.core.redact(str(exc))[:200])

    def _tick(self) -> None:
        pid = self.executor.backend_pid
        if pid != self._published:
            self.core.store.update_meta(self.run_id, backend_pid=str(pid or ""))
            self._published = pid
        meta = self.core.store.meta(self.run_id)  # only the field it watches: it polls 5 times a second
        if meta is not None and meta.get("abort_requested") and not self._cancelled:
            self._cancelled = True
            self.executor.cancel()


def lost_connection(rb, step, exc: BaseException, duration: float, redact) -> FileResult:
    """The step's result when its connection died mid-file (pg_terminate_backend, a server
    restart, a network cut): a failed FileResult carrying the server's real reason, found in
    the exception chain (the executor's own rollback on the dead connection only says "the
    connection is lost"). An atomic file's transaction died with the connection."""
    from engine.executor import FileResult, StatementError
    from runbook.sqlfile import parse_file

    cause = _server_cause(exc)
    sqlstate = getattr(cause, "sqlstate", None)
    first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
    message = (
        redact(first.removeprefix("consuming input failed: "))[:300]
        + " — the connection to the database was lost"
    )
    parsed = parse_file(rb.file_path(step.file), step.file)
    error = StatementError(step.file, 0, "", sqlstate, message)
    return FileResult(
        step.file,
        parsed.sha256,
        False,
        len(parsed.body),
        0,
        round(duration, 3),
        [],
        1,
        [],
        error,
        False,
        parsed.atomic,
    )


def _server_cause(exc: BaseException) -> BaseException:
    """The first error in the chain that the server sent (it has a SQLSTATE), else the
    original one (libpq's "consuming input failed: <the server's message>")."""
    seen, current, last = set(), exc, exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for candidate in (current, getattr(current, "error", None)):
            if isinstance(candidate, psycopg.Error) and getattr(candidate, "sqlstate", None):
                return candidate
        last, current = current, current.__cause__ or current.__context__
    return last


LEFTOVER_SQL = """SELECT pid, extract(epoch FROM now() - xact_start)::int FROM pg_stat_activity
WHERE datname = current_database() AND application_name LIKE 'migrate-bot%%' AND xact_start IS NOT NULL
  AND pid <> pg_backend_pid()"""


def leftover_backends(dsn: str) -> list[tuple[int, int]]:
    """(pid, seconds in transaction) of the bot's backends still inside a transaction."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        return [(pid, age) for pid, age in conn.execute(LEFTOVER_SQL).fetchall()]


def _listed(leftover: list[tuple[int, int]]) -> str:
    return ", ".join(f"pid {pid} ({age} s)" for pid, age in leftover)


def why_orphans_block(core: Core) -> str | None:
    """With nobody holding the run lock, a bot backend inside a transaction belongs to a dead
    process: its locks and half-done work are still there until PostgreSQL notices."""
    if core.lock.held():
        return None
    leftover = leftover_backends(core.settings.database_url)
    if not leftover:
        return None
    return (
        f"a backend of a stopped bot process is still inside its transaction ({_listed(leftover)}): wait until PostgreSQL "
        "ends it, or end it with pg_terminate_backend, then try again"
    )


def interruption_facts(core: Core, run) -> list[str]:
    """What an interrupted run left behind, checked now: a backend of the dead process still
    in its transaction (PostgreSQL has not noticed the dead client yet), which known state the
    schema matches, and the files the ledger shows committed by this run."""
    from commands import facts
    from commands.execution import PhaseRunner
    from engine import ledger

    dsn = core.settings.database_url
    lines = []
    try:
        leftover = leftover_backends(dsn)
        if leftover:
            lines.append(
                f"⚠ A backend of the bot is still in a transaction ({_listed(leftover)}): PostgreSQL has not yet noticed "
                "the dead process. Its transaction ends (rolled back) when it does; run nothing until it is "
                "gone, or end it with pg_terminate_backend."
            )
        else:
            lines.append(
                "No backend of the bot is left in a transaction: the open transaction died with its "
                "connection and was rolled back (checked in pg_stat_activity)."
            )
        label = facts.matching_state(dsn, PhaseRunner(core, run.id, "bot", None).known_states())
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
    from psycopg.conninfo import conninfo_to_dict

    live = conninfo_to_dict(dsn).get("dbname") or ""
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
