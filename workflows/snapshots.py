"""The schema after a phase, taken in the background while the bot does its bookkeeping.

The schema after each phase (engine.schema.snapshot: the catalog snapshot, one query on a
connection kept for the run, or pg_dump when the database holds something only pg_dump
describes) was the bot's largest cost on a folder of small migrations. It starts as soon as
the phase's checks pass and runs while the phase's closing transition, its
posts and the next phase's opening are written; the next step waits for it before it touches
the database. The same dump (with row counts) is also the state "before" that next step, so
an "unchanged" claim after a failure needs no second pg_dump.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import psycopg

from engine import schema
from workflows import facts

log = logging.getLogger("migrate.snapshots")


class PhaseSnapshots:
    """At most one dump in flight; `wait` hands its fingerprint over once (or re-raises)."""

    def __init__(self, dsn: str, lock_wait: float):
        self._dsn, self._lock_wait = dsn, lock_wait
        self._conn: psycopg.Connection | None = None  # kept between phases, used by one thread at a time
        self._thread: threading.Thread | None = None
        self._fingerprint: tuple | None = None
        self._error: BaseException | None = None

    def start(self, path: Path) -> None:
        """Dump the schema to `path` (after waiting for any dump still running). The file is
        created here, so that a BACKUP_DIR that cannot take it raises OSError to the caller."""
        self.wait()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        self._thread = threading.Thread(target=self._dump, args=(path,), name="phase-snapshot", daemon=True)
        self._thread.start()

    def wait(self) -> tuple | None:
        """The last dump's (normalized schema, row counts), once; None when there is none (or
        its row counts could not be read). Raises what the dump raised (pg_dump failed)."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        error, fingerprint = self._error, self._fingerprint
        self._error = self._fingerprint = None
        if error is not None:
            raise error
        return fingerprint

    def finish(self) -> tuple | None:
        """`wait`, then close the connection kept between phases."""
        try:
            return self.wait()
        finally:
            self.close_quietly()

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(self._dsn, autocommit=True, application_name="migrate-bot-schema")
        return self._conn

    def _dump(self, path: Path) -> None:
        try:
            conn = self._connection()
            text = schema.snapshot(self._dsn, lock_wait=self._lock_wait, conn=conn)
        except BaseException as exc:  # the snapshot failed: handed to the thread that waits
            self._error = exc
            self.close_quietly()
            return
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as exc:  # the disk filled since start(): the evidence is missing, the phase stands
            log.warning("schema snapshot %s could not be written: %s", path, exc.strerror or exc)
        try:
            self._fingerprint = (
                schema.normalize(text),
                facts.row_counts(self._dsn, lock_timeout=self._lock_wait, conn=conn),
            )
        except Exception:  # a table locked by someone else: "unchanged" just cannot be claimed from this one
            self._fingerprint = None
            self.close_quietly()  # a fresh session next time, whatever state this one was left in

    def close_quietly(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - closing a broken connection: nothing to keep
                pass
