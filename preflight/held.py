"""How long each statement held its table locks in the rehearsal: evidence next to each squawk
finding (preflight/lint.py), "file:line" -> text.

A file run in one transaction takes its locks up front and keeps them until it commits, so each
of its statements holds them for the whole transaction. In autocommit a statement holds its lock
for its own duration (the time since the previous statement completed).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from core import clock
from engine.executor import Executor, FileResult, ProgressFn
from runbook.model import Runbook, Step
from runbook.sqlfile import SqlFileError, Statement, parse_file


class TimedExecutor:
    """The rehearsal's executor, recording each statement's lock-holding time in `held`."""

    def __init__(self, executor: Executor, rb: Runbook):
        self._executor, self._rb = executor, rb
        self.held: dict[str, str] = {}

    def run_step(self, rb: Runbook, step: Step, **kwargs: Any) -> FileResult:
        return self._timed(lambda progress: self._executor.run_step(rb, step, on_progress=progress, **kwargs))

    def run_file(self, path: Path, **kwargs: Any) -> FileResult:
        return self._timed(lambda progress: self._executor.run_file(path, on_progress=progress, **kwargs))

    def _timed(self, body: Callable[[ProgressFn], FileResult]) -> FileResult:
        start = clock.monotonic()
        marks: list[tuple[Statement, float]] = []
        result = body(lambda k, n, stmt: marks.append((stmt, clock.monotonic())))
        self._record(result, start, marks)
        return result

    def _record(self, result: FileResult, start: float, marks: list[tuple[Statement, float]]) -> None:
        if not result.ok:
            return
        try:
            parsed = parse_file(self._rb.file_path(result.file), result.file)
        except SqlFileError:
            return
        if parsed.atomic or parsed.needs_psql:
            how = (
                "its file's transaction: locks are held until commit"
                if parsed.atomic
                else "its file, run through psql"
            )
            # the transaction from its up-front locks to COMMIT, when the executor measured it
            seconds = result.lock_held if parsed.atomic and result.lock_held is not None else result.duration
            for stmt in parsed.body:
                if stmt.locks:
                    self.held[f"{parsed.name}:{stmt.line}"] = (
                        f"held {seconds * 1000:.0f} ms on the copy ({how})"
                    )
            return
        previous = start
        for stmt, at in marks:
            if stmt.locks:
                self.held[f"{parsed.name}:{stmt.line}"] = (
                    f"held {(at - previous) * 1000:.0f} ms on the copy (the statement, autocommit)"
                )
            previous = at
