"""The whole runbook rehearsed on the restored copy, before production is touched.

Same path as the real run (the executor's `run_step`, the phase checks, the verification
suites), then every rollback newest phase first, and the schema compared with the snapshot
taken at backup time. The API smoke tests are left out: they hit the live deployment.

Locks come from the parse tree of each statement (`Statement.locks`), each marked
`observed` when pg_locks, sampled while the phases ran, showed it granted. How long a lock was
held is bounded by the duration of the transaction that took it (locks are released at
commit), so "longest" is the longest rehearsed transaction that took ACCESS EXCLUSIVE.
"""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Mapping

import psycopg

from core import clock
from core.config import Settings
from engine import schema
from engine.executor import Executor, FileResult
from engine.verify import run_checks, run_suite
from preflight import backup, catalog
from preflight.lockwatch import LockWatch
from preflight.report import RehearsalResult
from runbook.model import Phase, Runbook
from runbook.sqlfile import SqlFileError, parse_file

ACCESS_EXCLUSIVE = "ACCESS EXCLUSIVE"
APP = "migrate-bot-rehearsal"  # the executor's sessions on the copy, as pg_locks sees them


class _Failed(Exception):
    """A rehearsed phase failed: `where` is "file:line: message" or the check that failed."""

    def __init__(self, where: str):
        super().__init__(where)
        self.where = where


def rehearse(settings: Settings, runbook: Runbook, copy: str, snapshot: Path | None,
             inputs: Mapping[str, str]) -> RehearsalResult:
    """Run the runbook on database `copy` (a restored backup) and roll it back."""
    executor = Executor(copy, secrets=settings.secrets(), application_name=APP)
    with psycopg.connect(copy, autocommit=True) as conn:
        before = catalog.objects(conn)
    phases: list[dict] = []
    results: list[FileResult] = []
    failure, verification_ok, started = None, False, []
    watch = LockWatch(copy, APP)
    try:
        with watch:
            for phase in runbook.phases:  # in runbook order, as the real run goes
                if phase.is_verification:
                    _timed(phases, phase, lambda p=phase: _verify(runbook, p, copy, inputs, settings))
                else:
                    started.append(phase)
                    _timed(phases, phase, lambda p=phase: _migrate(executor, runbook, p, copy, inputs, results))
        verification_ok = True
    except _Failed as exc:
        failure = exc.where
    rollback_problem = _roll_back(executor, runbook, started, copy, before, snapshot)
    return _result(runbook, phases, results, failure, verification_ok, rollback_problem, watch.seen)


def _timed(phases: list[dict], phase: Phase, body) -> None:
    start = clock.monotonic()
    entry = {"number": phase.number, "name": phase.name, "seconds": 0.0, "ok": False}
    phases.append(entry)
    try:
        body()
        entry["ok"] = True
    finally:
        entry["seconds"] = round(clock.monotonic() - start, 3)


def _migrate(executor: Executor, rb: Runbook, phase: Phase, copy: str, inputs: Mapping[str, str],
             results: list[FileResult]) -> None:
    for step in phase.steps:
        try:
            result = executor.run_step(rb, step, inputs=inputs)
        except (SqlFileError, ValueError) as exc:
            raise _Failed(str(exc)) from None
        results.append(result)
        if not result.ok:
            raise _Failed(result.error.describe() if result.error else f"{step.file}: failed")
    _checks(phase, copy)


def _checks(phase: Phase, copy: str) -> None:
    for evidence in run_checks(copy, phase.checks):
        if not evidence.ok:
            raise _Failed(f"phase {phase.number} check “{evidence.name}”: observed {evidence.observed}, expected {evidence.expected}")


def _verify(rb: Runbook, phase: Phase, copy: str, inputs: Mapping[str, str], settings: Settings) -> None:
    for suite in phase.suites:
        result = run_suite(copy, rb.file_path(suite.file), suite, inputs=inputs, secrets=settings.secrets())
        if not result.ok:
            raise _Failed(f"{suite.file}: {result.reason}")
    _checks(phase, copy)


def _roll_back(executor: Executor, rb: Runbook, started: list[Phase], copy: str, before: dict,
               snapshot: Path | None) -> str | None:
    """Run the started phases' rollbacks newest first; None when the schema is back as it was."""
    d = rb.defaults
    for phase in reversed(started):
        if not phase.rollback:
            continue
        try:
            result = executor.run_file(rb.file_path(phase.rollback), lock_timeout=d.lock_timeout,
                                       statement_timeout=d.statement_timeout, lock_retries=d.lock_retries,
                                       retry_backoff=d.retry_backoff)
        except SqlFileError as exc:
            return str(exc)
        if not result.ok:
            return result.error.describe() if result.error else f"{phase.rollback}: failed"
    with psycopg.connect(copy, autocommit=True) as conn:
        after = catalog.objects(conn)
    diffs = [f"{kind}: {d}" for kind in catalog.QUERIES for d in catalog.differences(before[kind], after[kind])]
    if diffs:
        return "schema differs after rollback: " + ", ".join(diffs[:5])
    return _snapshot_problem(copy, snapshot)


def _snapshot_problem(copy: str, snapshot: Path | None) -> str | None:
    """Compare the copy's schema-only dump with the snapshot written at backup time."""
    if snapshot is None or not Path(snapshot).exists():
        return None
    try:
        diff = schema.difference(Path(snapshot).read_text(), schema.schema_dump(copy, pg_dump=backup.tool("pg_dump")))
    except subprocess.CalledProcessError as exc:
        return f"pg_dump --schema-only of the copy failed: {(exc.stderr or '').strip()}"
    return f"schema-only dump differs from the snapshot at: {diff[0][:120]}" if diff else None


def locks(rb: Runbook, seen: set[tuple[str, str]] = frozenset()) -> list[dict]:
    """Every table lock the migration steps take: {level, relation, statement_line, file,
    observed} (observed: that level on that relation was seen granted in pg_locks)."""
    found = []
    for phase in rb.migration_phases:
        for step in phase.steps:
            try:
                parsed = parse_file(rb.file_path(step.file))
            except SqlFileError:
                continue
            found += [{"level": level, "relation": rel, "statement_line": s.line, "file": parsed.name,
                       "observed": (level, rel) in seen}
                      for s in parsed.statements for level, rel in s.locks]
    return found


def _result(rb: Runbook, phases: list[dict], results: list[FileResult], failure: str | None,
            verification_ok: bool, rollback_problem: str | None, seen: set[tuple[str, str]]) -> RehearsalResult:
    taken = locks(rb, seen)
    exclusive_files = {l["file"] for l in taken if l["level"] == ACCESS_EXCLUSIVE}
    held = [r.duration * 1000 for r in results if r.ok and r.file in exclusive_files]
    longest = round(max(held), 1) if held else None
    rollback_clean = rollback_problem is None
    ok = failure is None and verification_ok and rollback_clean
    if failure is None and not rollback_clean:
        failure = f"rollback: {rollback_problem}"
    return RehearsalResult(ok=ok, phases=phases, verification_ok=verification_ok, rollback_clean=rollback_clean,
                           locks=taken, longest_lock_ms=longest, failure=failure,
                           summary=_summary(phases, failure, verification_ok, rollback_clean, rollback_problem, taken, longest))


def _summary(phases, failure, verification_ok, rollback_clean, rollback_problem, taken, longest) -> str:
    timings = ", ".join(f"phase {p['number']} {p['seconds']:.1f} s{'' if p['ok'] else ' FAILED'}" for p in phases)
    parts = [f"rehearsed on a copy: {timings or 'no phase ran'}"]
    parts.append("verification passed" if verification_ok else f"failed at {failure}")
    parts.append("rollback clean" if rollback_clean else f"rollback NOT clean ({rollback_problem})")
    tables = {l["relation"] for l in taken if l["level"] == ACCESS_EXCLUSIVE}
    observed = {l["relation"] for l in taken if l["level"] == ACCESS_EXCLUSIVE and l["observed"]}
    lock_text = f"ACCESS EXCLUSIVE on {len(tables)} tables" + (f", longest {longest:.0f} ms" if longest is not None else "")
    if tables:
        lock_text += f" ({len(observed)} of {len(tables)} seen in pg_locks)"
    return ", ".join(parts) + "; " + lock_text
