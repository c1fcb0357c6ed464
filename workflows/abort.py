"""Abort, on the working side: what lets `abort` reach a run in progress from any process,
and the step result when the database connection dies under a running file.

The `abort` verb (commands/abort.py) only sets the run's abort flag or cancels; the
AbortWatch, running beside each PhaseRunner, makes that reach the executor.
"""

from __future__ import annotations

import logging
import threading

import psycopg

from engine.executor import FileResult, StatementError
from runbook.sqlfile import parse_file

log = logging.getLogger("migrate.abort")


class AbortWatch:
    """Runs beside a PhaseRunner: makes `abort` reliable from any process.

    Every `interval` seconds it publishes the executor's backend pid in the run's meta (so an
    `abort` in a process without the executor can `pg_cancel_backend` it, even while the
    first statement waits on a lock), and cancels the executor itself as soon as the run's
    meta says `abort_requested` (set by `abort` in any process). A stale request from an
    earlier abort is cleared when the watch starts: `abort` is refused unless the run is
    active, and it only becomes active after this point.
    """

    def __init__(self, core, run_id: str, executor, interval: float = 0.2):
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
    seen: set[int] = set()
    current: BaseException | None = exc
    last = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for candidate in (current, getattr(current, "error", None)):
            if isinstance(candidate, psycopg.Error) and getattr(candidate, "sqlstate", None):
                return candidate
        last = current
        current = current.__cause__ or current.__context__
    return last
