"""The only code that executes migration SQL against DATABASE_URL.

A file runs atomically (one transaction, statements sent many per round trip, progress k of n, the
failing statement's line known), or statement by statement in autocommit when it holds
statements PostgreSQL refuses inside a transaction, or through psql when it uses psql
meta-commands. Every attempt runs under SET LOCAL lock_timeout / statement_timeout; a
lock that cannot be taken in time rolls the attempt back, names the blocker and retries
with back-off, so the migration never sits in the lock queue stalling production traffic.
"""

from __future__ import annotations

import hashlib
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from core import clock
from core.redact import first_line, redact
from engine import batch, concurrent, indexes, ledger, locks
from engine.blockers import Blocker, BlockerWatch, holders
from engine.ledgers.base import Statement as TeamStatement
from engine.psql import PsqlProcess, child_env, command
from runbook.model import Runbook, Step
from runbook.safety import CONCURRENT, LevelTimeouts, LockTimeouts
from runbook.sqlfile import ParsedFile, SqlFileError, Statement, closing_commit_offset, parse_bytes

__all__ = ["Blocker", "StatementError", "FileResult", "LedgerRecord", "ProgressFn", "Executor", "FileChanged"]

LOCK_NOT_AVAILABLE, QUERY_CANCELED, DEADLOCK = "55P03", "57014", "40P01"
RETRYABLE = (LOCK_NOT_AVAILABLE, DEADLOCK)  # nothing was applied; the same file may simply run again
STATEMENT_CHARS = 200

ProgressFn = Callable[[int, int, Statement], None]  # (k, n, statement)
WaitFn = Callable[[Blocker], None]  # a session the running statement waits for, first seen
# The team's ledger statements for this file (engine.ledgers), given the duration in ms (None:
# measured by the server); they run in the file's own transaction, after its body.
TeamLedgerFn = Callable[[int | None], Sequence[TeamStatement]]


@dataclass(frozen=True)
class StatementError:
    file: str
    line: int
    statement: str  # redacted, truncated
    sqlstate: str | None
    message: str  # the server's message, redacted

    def describe(self) -> str:
        state = f" [{self.sqlstate}]" if self.sqlstate else ""
        return f"{self.file}:{self.line}: {self.message}{state} in `{self.statement}`"


@dataclass
class FileResult:
    file: str
    sha256: str
    ok: bool
    statements: int
    executed: int
    duration: float
    notices: list[str]
    attempts: int
    blockers: list[Blocker]
    error: StatementError | None
    cancelled: bool
    atomic: bool
    output: str = ""  # psql's stdout for psql-run files
    # Seconds the longest-held lock of the committed attempt was held: an atomic file's
    # transaction (its locks are taken first and kept to COMMIT), else the longest statement
    # of an autocommit file. None: not measured (psql-run files, nothing committed).
    lock_held: float | None = None
    no_retry: bool = False  # a concurrent build failed: its level allows no blind retry

    @property
    def lock_timed_out(self) -> bool:
        return self.error is not None and self.error.sqlstate == LOCK_NOT_AVAILABLE

    @property
    def retryable(self) -> bool:
        """Failed on a lock (timeout or deadlock victim): rolled back, safe to run again."""
        return self.error is not None and self.error.sqlstate in RETRYABLE and not self.no_retry


@dataclass(frozen=True)
class LedgerRecord:
    runbook: str
    run_id: str
    phase: int
    step: str
    actor: str


@dataclass
class _Run:
    """What one run_file call needs in every attempt."""

    parsed: ParsedFile
    inputs: Mapping[str, str]
    lock_timeout: float
    statement_timeout: float
    record: LedgerRecord | None
    on_progress: ProgressFn | None
    secrets: tuple[str, ...]
    source: bytes = b""  # the file's bytes as read, hashed and parsed once: what runs
    team_ledger: TeamLedgerFn | None = None
    concurrent: LevelTimeouts | None = (
        None  # timeouts of a concurrent index build ([lock_timeouts.concurrent])
    )
    on_wait: WaitFn | None = None
    started_at: object = field(default_factory=clock.now)
    t0: float = field(default_factory=clock.monotonic)

    def settings(self) -> dict[str, str]:
        """Timeouts first, then the inputs: session settings for the file."""
        return {
            "lock_timeout": f"{int(self.lock_timeout * 1000)}ms",
            "statement_timeout": f"{int(self.statement_timeout * 1000)}ms",
            **self.inputs,
        }

    def write_team_ledger(self, conn: psycopg.Connection) -> None:
        """The team's ledger rows, in the caller's (the file's) transaction."""
        if self.team_ledger:
            for statement in self.team_ledger(int((clock.monotonic() - self.t0) * 1000)):
                conn.execute(statement)

    def ledger_values(self, statements: int) -> tuple[Any, ...]:
        r = self.record
        assert r is not None  # the ledger row is written only for a file run with a record
        duration_ms = int((clock.monotonic() - self.t0) * 1000)
        return (
            r.runbook,
            r.run_id,
            r.phase,
            r.step,
            self.parsed.name,
            self.parsed.sha256,
            r.actor,
            self.started_at,
            duration_ms,
            statements,
        )


class _Cancelled(Exception):
    pass


class FileChanged(SqlFileError):
    """The file's bytes are not the approved ones: nothing of it ran."""

    def __init__(self, file: str, approved: str, found: str):
        what = (
            f"changed since approval (sha256 {approved[:12]}… approved, {found[:12]}… now)"
            if approved
            else "is not among the approved files"
        )
        super().__init__(file, 0, f"{what}: nothing of it ran; run preflight again and get a new approval")
        self.approved, self.found = approved, found


class Executor:
    """Runs SQL files against one database. One file at a time; cancel() from any thread."""

    def __init__(
        self,
        dsn: str,
        *,
        secrets: Sequence[str] = (),
        application_name: str = "migrate-bot",
        keep_connection: bool = False,
    ):
        """`keep_connection`: a file's session, once the file is over (committed or rolled back,
        the connection healthy), is kept for the next file, which starts it with DISCARD ALL
        (settings, temporary tables, prepared statements, advisory locks: as a fresh session)
        instead of a new connection; close() ends it."""
        self._dsn = dsn
        self._keep = keep_connection
        self._kept: psycopg.Connection | None = None
        password = conninfo_to_dict(dsn).get("password")
        self._secrets = tuple(str(s) for s in (*secrets, password) if s)  # conninfo values are text
        self._app = application_name
        self._guard = threading.Lock()
        self._cancelled = threading.Event()
        self._conn: psycopg.Connection | None = None
        self._psql: PsqlProcess | None = None
        self._pid: int | None = None

    # ------------------------------------------------------------------ public

    @property
    def backend_pid(self) -> int | None:
        """Pid of the backend currently executing a file (None between files and for psql)."""
        return self._pid

    def cancel(self) -> bool:
        """Cancel the running statement; no further work starts until reset_cancel().
        True when something was running and got the cancel request."""
        self._cancelled.set()
        with self._guard:
            conn, proc = self._conn, self._psql
        if proc is not None:
            proc.interrupt()
            return True
        if conn is not None:
            try:
                conn.cancel_safe(timeout=5.0)
            except psycopg.Error:
                pass  # the statement may have just finished; the flag still stops the file
            return True
        return False

    def reset_cancel(self) -> None:
        self._cancelled.clear()

    def close(self) -> None:
        """Close the session kept between files (keep_connection)."""
        with self._guard:
            kept, self._kept = self._kept, None
        if kept is not None:
            kept.close()

    def _reused(self, autocommit: bool) -> psycopg.Connection | None:
        """The kept session, reset to a fresh one's state, or None (none kept, or it is gone)."""
        with self._guard:
            kept, self._kept = self._kept, None
        if kept is None:
            return None
        try:
            if kept.broken or kept.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                raise psycopg.InterfaceError("the kept session is not idle")
            kept.autocommit = True
            kept.execute("DISCARD ALL")
            kept.autocommit = autocommit
            return kept
        except psycopg.Error:
            kept.close()
            return None

    def run_step(
        self,
        rb: Runbook,
        step: Step,
        *,
        inputs: Mapping[str, str],
        record: LedgerRecord | None = None,
        on_progress: ProgressFn | None = None,
        approved_sha256: str | None = None,
        team_ledger: TeamLedgerFn | None = None,
        on_wait: WaitFn | None = None,
    ) -> FileResult:
        """Run a runbook step's file with the runbook's timeouts and retries (step overrides
        first) and exactly the inputs the step declares. Refuses DO-NOT-RUN/unknown files,
        and (FileChanged) bytes other than `approved_sha256` when given."""
        reason = rb.refusal_for(step.file)
        if reason:
            raise SqlFileError(step.file, 0, reason)
        missing = [n for n in step.inputs if not inputs.get(n)]
        if missing:
            envs = ", ".join(rb.inputs[n].env for n in missing)
            raise ValueError(f"step {step.id} needs {', '.join(missing)}: set {envs}")
        d = rb.defaults
        return self.run_file(
            rb.file_path(step.file),
            name=step.file,
            inputs={n: inputs[n] for n in step.inputs},
            lock_timeout=step.lock_timeout if step.lock_timeout is not None else d.lock_timeout,
            statement_timeout=step.statement_timeout
            if step.statement_timeout is not None
            else d.statement_timeout,
            lock_retries=d.lock_retries,
            retry_backoff=d.retry_backoff,
            record=record,
            on_progress=on_progress,
            approved_sha256=approved_sha256,
            team_ledger=team_ledger,
            by_level=None if step.lock_timeout is not None else rb.lock_timeouts,  # a step's own value wins
            auto_analyze=rb.lock_safety.auto_analyze,
            on_wait=on_wait,
        )

    def run_file(
        self,
        path: Path,
        *,
        inputs: Mapping[str, str] = {},
        lock_timeout: float = 2.0,
        statement_timeout: float = 300.0,
        lock_retries: int = 3,
        retry_backoff: float = 2.0,
        record: LedgerRecord | None = None,
        on_progress: ProgressFn | None = None,
        approved_sha256: str | None = None,
        team_ledger: TeamLedgerFn | None = None,
        name: str | None = None,
        by_level: LockTimeouts | None = None,
        auto_analyze: bool = False,
        on_wait: WaitFn | None = None,
    ) -> FileResult:
        """Run one file; raises SqlFileError before touching the database if it does not parse.
        `name`: what results and the ledger call it (a runbook file: its path relative to the
        runbook); by default the file's base name.

        The file is read once: those bytes are hashed (FileChanged when they are not the
        `approved_sha256`), parsed, executed (psql gets a private copy of them, never the
        original path, which could change in between) and their sha256 goes into the ledger.

        An atomic file first takes the table locks its parse tree names, NOWAIT, polling for
        up to lock_timeout (engine.locks); its statements then run under SET LOCAL
        lock_timeout/statement_timeout. A lock not obtained (55P03) or a deadlock (40P01)
        rolls the attempt back; it is retried up to `lock_retries` times, waiting
        retry_backoff, 2×, 4×… in between (cancel() interrupts the wait).

        `by_level` (the runbook's [lock_timeouts]): the file's lock_timeout and retries are those
        of the strongest lock it takes, and a concurrent index build gets the `concurrent` ones
        for the time it runs. `auto_analyze`: ANALYZE the tables the file built indexes on.
        `on_wait` hears of each session the file waits for, when it is first seen."""
        source = read_verified(Path(path), approved_sha256, name)
        parsed = parse_bytes(source, Path(path), name)
        level = concurrent.file_level(by_level, parsed) if by_level is not None else None
        if level is not None:
            lock_timeout, lock_retries = level.lock_timeout, level.lock_retries
            statement_timeout = level.statement_timeout or statement_timeout
        run = _Run(
            parsed,
            dict(inputs),
            lock_timeout,
            statement_timeout,
            record,
            on_progress,
            (*self._secrets, *inputs.values()),
            source,
            team_ledger,
            concurrent=by_level.for_level(CONCURRENT) if by_level is not None else None,
            on_wait=on_wait,
        )
        result = FileResult(
            parsed.name, parsed.sha256, False, len(parsed.body), 0, 0.0, [], 0, [], None, False, parsed.atomic
        )
        attempt_fn = (
            self._psql_attempt
            if parsed.needs_psql
            else (self._atomic_attempt if parsed.atomic else self._autocommit_attempt)
        )
        for attempt in range(1, lock_retries + 2):
            if self._cancelled.is_set():
                result.cancelled = True
                break
            result.attempts, result.error, result.notices = attempt, None, []
            try:
                attempt_fn(run, result)
            except psycopg.OperationalError as exc:  # could not connect: nothing ran
                result.error = self._error(
                    parsed.name, 0, None, getattr(exc, "sqlstate", None), first_line(exc), run.secrets
                )
            if result.ok or result.cancelled or not result.retryable or attempt > lock_retries:
                break
            self._cancelled.wait(retry_backoff * 2 ** (attempt - 1))
        result.cancelled = result.cancelled or (self._cancelled.is_set() and not result.ok)
        if result.ok and auto_analyze and concurrent.indexed_tables(parsed):
            result.notices += self._analyze(run)
        result.duration = round(clock.monotonic() - run.t0, 3)
        return result

    def _analyze(self, run: _Run) -> list[str]:
        """auto_analyze after the file's index builds; a failure is a notice, not a failed file
        (the indexes are there; autovacuum will analyze later)."""
        try:
            return concurrent.analyze(self._dsn, concurrent.indexed_tables(run.parsed), run.statement_timeout)
        except psycopg.Error as exc:
            return [
                redact(
                    f"auto_analyze: ANALYZE failed ({first_line(exc)}); autovacuum will do it later",
                    run.secrets,
                )
            ]

    # ------------------------------------------------------------- atomic

    def _atomic_attempt(self, run: _Run, result: FileResult) -> None:
        """The whole body in one transaction, sent in multi-statement chunks; the ledger row
        in the same transaction. Any error rolls everything back."""
        body = run.parsed.body
        result.executed = 0
        with self._connect(run, result, autocommit=False) as conn:
            with self._watch(run, result):
                try:
                    self._set(conn, run.settings(), local=True)  # also opens the transaction
                    held_from = clock.monotonic()
                    self._take_locks(conn, run)
                    for chunk in batch.chunks(body):
                        self._check_cancel()
                        self._run_chunk(conn, chunk, run, result)
                    keep = not run.parsed.ends_in_rollback  # BEGIN … ROLLBACK: a test that undoes itself
                    if run.record and keep:
                        ledger.ensure_schema(conn)
                        conn.execute(ledger.INSERT_SQL, run.ledger_values(len(body)))
                    if keep:
                        run.write_team_ledger(conn)
                    self._check_cancel()
                    conn.commit() if keep else _rollback(conn)
                    result.lock_held = round(clock.monotonic() - held_from, 3)
                    result.ok = True
                except _Cancelled:
                    _rollback(conn)
                    result.cancelled = True
                except locks.LocksUnavailable as busy:
                    _rollback(conn)
                    _merge_blockers(
                        result, holders(self._dsn, busy.relation, busy.level, self._pid, run.secrets)
                    )
                    self._failed(run, result, busy.error, busy.statement)
                except locks.LockRefused as refused:  # named at the statement needing it, never file:0
                    _rollback(conn)
                    self._failed(run, result, refused.error, refused.statement, positioned=False)
                except batch.ChunkError as failure:
                    _rollback(conn)
                    self._failed(run, result, failure.error, failure.statement, failure.position_base)
                except psycopg.Error as exc:
                    _rollback(conn)
                    self._failed(run, result, exc, None)

    def _take_locks(self, conn: psycopg.Connection, run: _Run) -> None:
        """Every table lock the file needs, up front, without queueing (engine.locks)."""
        plan = locks.existing(conn, locks.lock_plan(run.parsed))
        if plan:
            locks.take(conn, plan, run.lock_timeout, self._cancelled.is_set)

    def _run_chunk(
        self, conn: psycopg.Connection, chunk: list[Statement], run: _Run, result: FileResult
    ) -> None:
        """One chunk (engine.batch), counting and reporting each statement as it completes."""

        def done(stmt: Statement) -> None:
            result.executed += 1
            if run.on_progress:
                run.on_progress(result.executed, len(run.parsed.body), stmt)

        batch.run_chunk(conn, chunk, done)

    # --------------------------------------------------------- autocommit

    def _autocommit_attempt(self, run: _Run, result: FileResult) -> None:
        """Statement by statement in autocommit (CREATE INDEX CONCURRENTLY, VACUUM, …). A retry
        resumes at the statement that failed: the ones before it are committed."""
        body = run.parsed.body
        before: tuple[str, list[int], str] | None = None  # the table of a concurrent build, before it
        with self._connect(run, result, autocommit=True) as conn:
            with self._watch(run, result):
                try:
                    self._set(conn, run.settings(), local=False)
                    for stmt in body[result.executed :]:
                        before = None  # never a previous statement's: only what this one may leave is dropped
                        self._check_cancel()
                        table = concurrent.build_table(conn, stmt)
                        if table:
                            before = (table, *indexes.before_build(conn, table))
                        with concurrent.timeouts(conn, run.concurrent if table else None, run.settings()):
                            began = clock.monotonic()
                            conn.execute(stmt.sql)
                        result.lock_held = max(result.lock_held or 0.0, round(clock.monotonic() - began, 3))
                        if (
                            stmt.concurrent_index
                            and stmt.concurrent_index[1]
                            and indexes.is_invalid(conn, stmt.concurrent_index[1])
                        ):
                            raise _KeptInvalid(stmt, stmt.concurrent_index[1])
                        result.executed += 1
                        if run.on_progress:
                            run.on_progress(result.executed, len(body), stmt)
                    if run.record or run.team_ledger:
                        with conn.transaction():
                            if run.record:
                                ledger.ensure_schema(conn)
                                conn.execute(ledger.INSERT_SQL, run.ledger_values(len(body)))
                            run.write_team_ledger(conn)
                    result.ok = True
                except _Cancelled:
                    result.cancelled = True
                except _KeptInvalid as kept:
                    name = kept.index
                    result.error = self._error(
                        run.parsed.name,
                        kept.stmt.line,
                        kept.stmt,
                        None,
                        f"index {name} exists but is INVALID (left by an earlier failed "
                        f"concurrent build; IF NOT EXISTS kept it): run `DROP INDEX "
                        f"CONCURRENTLY {name};`, then run the file again",
                        run.secrets,
                    )
                except psycopg.Error as exc:
                    failing = body[result.executed] if result.executed < len(body) else None
                    self._failed(run, result, exc, failing)
                    if failing is not None and before is not None:
                        result.no_retry = run.concurrent is not None and run.concurrent.lock_retries == 0
                        self._drop_left_invalid(run, result, before[0], (before[1], before[2]))

    def _drop_left_invalid(
        self, run: _Run, result: FileResult, table: str, before: tuple[list[int], str]
    ) -> None:
        """A failed concurrent build on `table`: drop the INVALID index it left (engine.indexes),
        and say so in the error the operator reads."""
        timeouts = {k: v for k, v in run.settings().items() if k in ("lock_timeout", "statement_timeout")}
        notes = indexes.drop_left_invalid(self._dsn, table, before, timeouts)
        if notes and result.error is not None:
            result.error = replace(
                result.error, message=redact(f"{result.error.message}; {'; '.join(notes)}", run.secrets)
            )

    # --------------------------------------------------------------- psql

    def _psql_attempt(self, run: _Run, result: FileResult) -> None:
        """Through psql (meta-commands). -1 when the file allows it; the ledger row then runs
        as a second -f in the same transaction."""
        parsed = run.parsed
        single = parsed.atomic and not parsed.manages_transaction
        before = self._indexes_before([s for s in parsed.body if concurrent.is_concurrent_build(s)])
        app = f"{self._app}/{clock.now().strftime('%H%M%S%f')}"
        conninfo, env = child_env(self._dsn, run.settings(), app)
        with tempfile.TemporaryDirectory(prefix="migrate-bot-") as tmp:
            inline = "" if single else _inline_ledger(run, len(parsed.body))
            files = [_private_copy(Path(tmp), run, inline)]
            if (run.record or run.team_ledger) and single:
                files.append(_ledger_file(Path(tmp), run, len(parsed.body)))
            proc = PsqlProcess(command(conninfo, files, single), env)
            with self._guard:
                self._psql = proc
            try:
                with BlockerWatch(
                    self._dsn,
                    min(run.lock_timeout / 4, 1.0),
                    application_name=app,
                    secrets=run.secrets,
                    on_new=run.on_wait,
                ) as watch:
                    out = proc.run()
                _merge_blockers(result, watch.blockers)
            finally:
                with self._guard:
                    self._psql = None
        result.output = redact(out.stdout, run.secrets)
        result.notices = [redact(n, run.secrets) for n in out.notices]
        # An ERROR fails the file even when psql exits 0 (a file that turns ON_ERROR_STOP off).
        if out.returncode == 0 and out.error_message is None:
            result.ok, result.executed = True, len(parsed.body)
            if run.on_progress and parsed.body:  # psql reports no per-statement progress: done is done
                run.on_progress(len(parsed.body), len(parsed.body), parsed.body[-1])
            if (run.record or run.team_ledger) and not single and not parsed.ends_in_rollback and not inline:
                self._record_after(run)
            return
        if inline and out.error_line:  # lines after the inserted ledger rows moved down by its lines
            at = _closing_line(run)
            out.error_line = (
                max(at, out.error_line - inline.count("\n")) if out.error_line > at else out.error_line
            )
        stmt = _statement_at(parsed, out.error_line)
        result.cancelled = self._cancelled.is_set()
        result.error = self._error(
            parsed.name,
            out.error_line or (stmt.line if stmt else 0),
            stmt,
            out.error_state,
            out.error_message or "psql failed",
            run.secrets,
        )
        if stmt is not None and stmt.index in before:
            table, snapshot = before[stmt.index]
            self._drop_left_invalid(run, result, table, snapshot)
            result.no_retry = run.concurrent is not None and run.concurrent.lock_retries == 0

    def _indexes_before(self, builds: list[Statement]) -> dict[int, tuple[str, tuple[list[int], str]]]:
        """For a psql-run file: for each concurrent build (by statement index), its table and that
        table's indexes before the file runs (psql gives no hook between statements). Empty when
        unreadable: the clean-up after a failed build then does not happen, and nothing else changes."""
        if not builds:
            return {}
        try:
            with psycopg.connect(self._dsn, autocommit=True, connect_timeout=10) as conn:
                tables = {s.index: concurrent.build_table(conn, s) for s in builds}
                return {i: (t, indexes.before_build(conn, t)) for i, t in tables.items() if t}
        except psycopg.Error:
            return {}

    def _record_after(self, run: _Run) -> None:
        """Ledger row for a file that commits by itself (psql without -1)."""
        with psycopg.connect(self._dsn) as conn:
            if run.record:
                ledger.ensure_schema(conn)
                conn.execute(ledger.INSERT_SQL, run.ledger_values(len(run.parsed.body)))
            run.write_team_ledger(conn)

    # ------------------------------------------------------------- helpers

    def _connect(self, run: _Run, result: FileResult, *, autocommit: bool) -> _Session:
        return _Session(self, run, result, autocommit)

    def _watch(self, run: _Run, result: FileResult) -> _Watch:
        return _Watch(self, run, result)

    def _check_cancel(self) -> None:
        if self._cancelled.is_set():
            raise _Cancelled()

    @staticmethod
    def _set(conn: psycopg.Connection, settings: Mapping[str, str], *, local: bool) -> None:
        """Timeouts and inputs as bound parameters of set_config: never interpolated (one
        statement for all of them)."""
        if settings:
            calls = ", ".join(["set_config(%s, %s, %s)"] * len(settings))
            conn.execute(
                f"SELECT {calls}", [v for name, value in settings.items() for v in (name, value, local)]
            )

    def _failed(
        self,
        run: _Run,
        result: FileResult,
        exc: psycopg.Error,
        stmt: Statement | None,
        position_base: int = 0,
        *,
        positioned: bool = True,
    ) -> None:
        """`positioned`: the server's error position points into `stmt` (not into a LOCK TABLE
        the executor sent for it)."""
        sqlstate = getattr(exc, "sqlstate", None)
        if sqlstate == QUERY_CANCELED and self._cancelled.is_set():
            result.cancelled = True
        diag = getattr(exc, "diag", None)
        message = diag.message_primary if diag and diag.message_primary else first_line(exc)
        if diag and diag.message_detail:
            message += f" ({diag.message_detail})"
        if diag and diag.context and stmt is not None and stmt.sql.lstrip()[:2].upper() == "DO":
            message += f" [{diag.context.splitlines()[0]}]"
        position = diag.statement_position if diag and positioned else None
        line = stmt.line + batch.line_offset(stmt.sql, position, position_base) if stmt else 0
        result.error = self._error(run.parsed.name, line, stmt, sqlstate, message, run.secrets)

    @staticmethod
    def _error(
        file: str,
        line: int,
        stmt: Statement | None,
        sqlstate: str | None,
        message: str,
        secrets: Sequence[str],
    ) -> StatementError:
        text = " ".join(stmt.sql.split()) if stmt else ""
        text = redact(text, secrets)
        if len(text) > STATEMENT_CHARS:
            text = text[: STATEMENT_CHARS - 1] + "…"
        return StatementError(file, line, text, sqlstate, redact(message, secrets))


class _KeptInvalid(Exception):
    """CREATE INDEX CONCURRENTLY IF NOT EXISTS found an INVALID index of that name and kept it."""

    def __init__(self, stmt: Statement, index: str):
        super().__init__(stmt.sql)
        self.stmt = stmt
        self.index = index


class _Session:
    """A connection for one attempt: notices captured and redacted, registered for cancel()."""

    def __init__(self, ex: Executor, run: _Run, result: FileResult, autocommit: bool):
        self._ex, self._run, self._result, self._autocommit = ex, run, result, autocommit

    def __enter__(self) -> psycopg.Connection:
        # client_connection_check_interval: if the bot dies mid-statement, PostgreSQL notices the
        # dead client within a second and rolls back, instead of holding the locks until the
        # statement ends by itself (pg_sleep, a long DDL).
        conn = self._ex._reused(self._autocommit) or psycopg.connect(
            self._ex._dsn,
            autocommit=self._autocommit,
            prepare_threshold=None,
            application_name=self._ex._app,
            options="-c client_connection_check_interval=1000",
        )
        conn.add_notice_handler(self._notice)
        with self._ex._guard:
            self._ex._conn, self._ex._pid = conn, conn.info.backend_pid
        self._conn = conn
        return conn

    def __exit__(self, *exc: object) -> None:
        with self._ex._guard:
            self._ex._conn, self._ex._pid = None, None
        conn = self._conn
        conn.remove_notice_handler(self._notice)
        idle = not conn.closed and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        if self._ex._keep and exc[0] is None and idle and not conn.broken:
            with self._ex._guard:
                self._ex._kept = conn  # the next file starts it with DISCARD ALL (Executor._reused)
        else:
            conn.close()

    def _notice(self, diag: psycopg.errors.Diagnostic) -> None:
        self._result.notices.append(redact(f"{diag.severity}: {diag.message_primary}", self._run.secrets))


class _Watch:
    """BlockerWatch on the executor's own backend; its sightings go into the result."""

    def __init__(self, ex: Executor, run: _Run, result: FileResult):
        self._result = result
        # At most a second apart: a concurrent build may wait minutes, and who it waits for is news.
        self._watch = BlockerWatch(
            ex._dsn,
            min(run.lock_timeout / 4, 1.0),
            pid=lambda: ex._pid,
            secrets=run.secrets,
            on_new=run.on_wait,
        )

    def __enter__(self) -> BlockerWatch:
        return self._watch.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._watch.__exit__(*exc)
        _merge_blockers(self._result, self._watch.blockers)


def _rollback(conn: psycopg.Connection) -> None:
    """Roll back; a connection that died mid-file has nothing left to roll back (the server
    discarded the transaction), and the error that killed it is what gets reported."""
    try:
        conn.rollback()
    except psycopg.OperationalError:
        pass


def _merge_blockers(result: FileResult, seen: list[Blocker]) -> None:
    """Add sighted blockers, one per backend; the longest-running first (the likely culprit,
    not the short queries that happened to queue ahead)."""
    latest = {b.pid: b for b in result.blockers}
    for b in seen:  # the latest sighting of a backend: its age is how long it has held on
        if b.pid not in latest or b.age > latest[b.pid].age:
            latest[b.pid] = b
    result.blockers[:] = sorted(latest.values(), key=lambda b: -b.age)


def _statement_at(parsed: ParsedFile, line: int | None) -> Statement | None:
    """The SQL statement covering `line` (psql reports the line where a statement ends)."""
    candidates = [s for s in parsed.sql_statements if line is None or s.line <= line]
    return candidates[-1] if candidates else None


def read_verified(path: Path, approved_sha256: str | None, name: str | None = None) -> bytes:
    """The file's bytes, read once; FileChanged when they are not the approved ones."""
    name = name or path.name
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SqlFileError(name, 0, f"cannot read: {exc.strerror}") from None
    found = hashlib.sha256(raw).hexdigest()
    if approved_sha256 is not None and found != approved_sha256:
        raise FileChanged(name, approved_sha256, found)
    return raw


def _private_copy(tmp: Path, run: _Run, inline: str = "") -> Path:
    """The verified bytes in the executor's own temporary directory, for psql -f: psql reads
    this copy, not the runbook folder's file (which may have changed since it was hashed).
    `inline` (the ledger rows) goes right before the file's closing COMMIT, inside its transaction."""
    copy = tmp / "source" / run.parsed.name
    copy.parent.mkdir(parents=True, exist_ok=True)
    if inline:
        text = run.source.decode("utf-8")
        at = closing_commit_offset(text)
        copy.write_bytes((text[:at] + inline + text[at:]).encode("utf-8"))
    else:
        copy.write_bytes(run.source)
    return copy


def _inline_ledger(run: _Run, statements: int) -> str:
    """For a psql file that wraps its body in BEGIN … COMMIT: the ledger rows to write inside
    that transaction, so the step and its record commit together (a crash between the file's
    COMMIT and a separate ledger write would make a resumed run apply it again). Empty when
    the file does not end in a COMMIT of its own (a test that rolls back, no wrapper)."""
    parsed = run.parsed
    if not (run.record or run.team_ledger) or not parsed.manages_transaction or parsed.ends_in_rollback:
        return ""
    if closing_commit_offset(run.source.decode("utf-8")) is None:
        return ""
    return _ledger_text(run, statements)


def _closing_line(run: _Run) -> int:
    text = run.source.decode("utf-8")
    return text[: closing_commit_offset(text)].count("\n") + 1


def _ledger_file(tmp: Path, run: _Run, statements: int) -> Path:
    """The ledger rows as a second psql -f, in the file's transaction (duration: server-side)."""
    path = tmp / "ledger.sql"
    path.write_text(_ledger_text(run, statements))
    return path


def _ledger_text(run: _Run, statements: int) -> str:
    """The ledger rows as SQL run by psql in the file's transaction (duration: server-side)."""
    text = ""
    if run.record:
        values = run.ledger_values(statements)
        values = values[:8] + (None,) + values[9:]
        text = ledger.SCHEMA_SQL + ";\n" + ledger.insert_sql_literal(values) + ";\n"
    if run.team_ledger:
        text += "".join(statement.as_string(None) + ";\n" for statement in run.team_ledger(None))
    return text
