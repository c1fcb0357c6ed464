"""The whole runbook rehearsed on the restored copy, before production is touched.

Same path as the real run (the executor's `run_step`, the phase checks, the verification
suites), then each phase's rollback, newest phase first, with production's per-phase proof:
after the rollback of phase n the schema (pg_dump --schema-only) must equal the schema before
phase n ran. A phase whose rollback leaves a difference is shown with its diff, as a warning
in the go/no-go request (the TPM decides knowing it; in production `rollback accept` or
`rollback restore`); a rollback that errors fails the rehearsal. A phase whose atomic step
failed before anything of it committed is not rolled back — production does not run it either
(it would drop objects that run did not create). The API smoke tests are left out: they hit
the live deployment.

Locks come from the parse tree of each statement (`Statement.locks`), each marked
`observed` when pg_locks, sampled while the phases ran, showed it granted. How long a lock was
held is bounded by the duration of the transaction that took it (locks are released at
commit), so "longest" is the longest rehearsed transaction that took ACCESS EXCLUSIVE.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Set
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from core import clock
from core.config import Settings
from engine import ledgers, schema
from engine.executor import Executor, FileResult
from engine.verify import run_checks, run_suite
from preflight import backup
from preflight.held import TimedExecutor
from preflight.lockwatch import LockWatch
from preflight.report import RehearsalResult
from runbook.model import Phase, Runbook, Suite
from runbook.sqlfile import SqlFileError, parse_file

ACCESS_EXCLUSIVE = "ACCESS EXCLUSIVE"
APP = "migrate-bot-rehearsal"  # the executor's sessions on the copy, as pg_locks sees them


class _Failed(Exception):
    """A rehearsed phase failed: `where` is "file:line: message" or the check that failed."""

    def __init__(self, where: str):
        super().__init__(where)
        self.where = where


@dataclass
class _Applied:
    """A migration phase the rehearsal started: the schema its rollback must return to, and
    whether anything of it may be in the copy (a step committed, or ran non-atomically)."""

    phase: Phase
    expected: str  # pg_dump --schema-only before the phase
    left: bool = False
    committed: list[Any] = field(
        default_factory=list
    )  # its steps that committed, in order (their reverts undo them)


def rehearse(settings: Settings, runbook: Runbook, copy: str, inputs: Mapping[str, str]) -> RehearsalResult:
    """Run the runbook on database `copy` (a restored backup) and roll it back phase by phase."""
    executor = TimedExecutor(Executor(copy, secrets=settings.secrets(), application_name=APP), runbook)
    # The copy's own schema, not the backup's snapshot: a copy restored on MIGRATE_SCRATCH_URL's
    # server (--no-owner --no-privileges) differs from it in GRANTs the rollbacks never touch.
    expected = _dump(copy)
    shown, _problem = ledgers.applied(copy, runbook)  # what `run` will skip, the rehearsal skips too
    phases: list[dict[str, Any]] = []
    results: list[FileResult] = []
    failure, verification_ok, applied = None, False, []
    watch = LockWatch(copy, APP)
    try:
        with watch:
            for phase in runbook.phases:  # in runbook order, as the real run goes
                if phase.is_verification:
                    _timed(phases, phase, partial(_verify, runbook, phase, copy, inputs, settings))
                elif all(s.migration in shown for s in phase.steps):
                    continue  # the ledger shows every migration of the phase applied: `run` skips it
                else:
                    applied.append(_Applied(phase, expected))
                    _timed(
                        phases,
                        phase,
                        partial(
                            _migrate, executor, runbook, applied[-1], copy, inputs, results, shown, settings
                        ),
                    )
                    expected = _dump(copy)
        verification_ok = True
    except _Failed as exc:
        failure = exc.where
    rollbacks = _roll_back(executor, runbook, applied, copy)
    result = _result(runbook, phases, results, failure, verification_ok, rollbacks, watch.seen)
    result.held = executor.held  # each statement's lock-holding time, next to squawk's findings
    return result


def _dump(copy: str) -> str:
    return schema.schema_dump(copy, pg_dump=backup.tool("pg_dump"))


def _timed(phases: list[dict[str, Any]], phase: Phase, body: Callable[[], object]) -> None:
    start = clock.monotonic()
    entry = {"number": phase.number, "name": phase.name, "seconds": 0.0, "ok": False}
    phases.append(entry)
    try:
        body()
        entry["ok"] = True
    finally:
        entry["seconds"] = round(clock.monotonic() - start, 3)


def _migrate(
    executor: Executor | TimedExecutor,
    rb: Runbook,
    applied: _Applied,
    copy: str,
    inputs: Mapping[str, str],
    results: list[FileResult],
    shown: set[str],
    settings: Settings,
) -> None:
    phase = applied.phase
    for step in phase.steps:
        if step.migration in shown:
            continue
        try:
            result = executor.run_step(rb, step, inputs=inputs)
        except (SqlFileError, ValueError) as exc:
            raise _Failed(str(exc)) from None
        results.append(result)
        applied.left |= result.ok or not result.atomic  # a failed atomic file left nothing behind
        if not result.ok:
            raise _Failed(result.error.describe() if result.error else f"{step.file}: failed")
        applied.committed.append(step)
        if step.verify:  # right after its step, as `run` runs it
            _run_suites(
                rb, [Suite(f"verify {step.migration or step.id}", step.verify)], copy, inputs, settings
            )
    _checks(phase, copy)
    _suites(rb, phase, copy, inputs, settings)  # a migration phase's own suites, as `run` runs them


def _checks(phase: Phase, copy: str) -> None:
    for evidence in run_checks(copy, phase.checks):
        if not evidence.ok:
            raise _Failed(
                f"phase {phase.number} check “{evidence.name}”: observed {evidence.observed}, expected {evidence.expected}"
            )


def _verify(rb: Runbook, phase: Phase, copy: str, inputs: Mapping[str, str], settings: Settings) -> None:
    _suites(rb, phase, copy, inputs, settings)
    _checks(phase, copy)


def _suites(rb: Runbook, phase: Phase, copy: str, inputs: Mapping[str, str], settings: Settings) -> None:
    _run_suites(rb, phase.suites, copy, inputs, settings)


def _run_suites(
    rb: Runbook, suites: Iterable[Suite], copy: str, inputs: Mapping[str, str], settings: Settings
) -> None:
    for suite in suites:
        result = run_suite(copy, rb.file_path(suite.file), suite, inputs=inputs, secrets=settings.secrets())
        if not result.ok:
            raise _Failed(f"{suite.file}: {result.reason}")


def _roll_back(
    executor: Executor | TimedExecutor, rb: Runbook, applied: list[_Applied], copy: str
) -> list[dict[str, Any]]:
    """Each started phase's rollback, newest first, compared with the schema before that phase:
    {phase, file, status, diff, error}; status exact | differs | failed | skipped | none.

    A difference an earlier (newer) rollback left is not blamed on the older ones: each phase
    shows only the lines its own rollback did not return. A rollback that errors stops here."""
    out: list[dict[str, Any]] = []
    carried: set[str] = set()
    for a in reversed(applied):
        undo = (
            [a.phase.rollback]
            if a.phase.rollback
            else [s.revert for s in reversed(a.committed)]
            if a.phase.reverts
            else []
        )
        entry: dict[str, Any] = {
            "phase": a.phase.number,
            "file": ", ".join(undo) or None,
            "status": "exact",
            "diff": [],
            "error": None,
        }
        out.append(entry)
        if not a.left:
            entry["status"] = "skipped"  # its atomic step failed: nothing of it is in the copy
            continue
        if not a.phase.undo:
            entry["status"] = "none"
            carried.update(schema.difference(a.expected, _dump(copy), limit=100_000))
            continue
        error = next((e for e in (_run_rollback(executor, rb, file) for file in undo) if e), None)
        if error:
            entry.update(status="failed", error=error)
            break
        every = schema.difference(a.expected, _dump(copy), limit=100_000)
        entry["diff"] = [line for line in every if line not in carried][:40]
        entry["status"] = "differs" if entry["diff"] else "exact"
        carried.update(every)
    return out


def _run_rollback(executor: Executor | TimedExecutor, rb: Runbook, file: str) -> str | None:
    d = rb.defaults
    try:
        result = executor.run_file(
            rb.file_path(file),
            name=file,
            lock_timeout=d.lock_timeout,
            statement_timeout=d.statement_timeout,
            lock_retries=d.lock_retries,
            retry_backoff=d.retry_backoff,
        )
    except SqlFileError as exc:
        return str(exc)
    if result.ok:
        return None
    return result.error.describe() if result.error else f"{file}: failed"


def locks(rb: Runbook, seen: Set[tuple[str, str]] = frozenset()) -> list[dict[str, Any]]:
    """Every table lock the migration steps take: {level, relation, statement_line, file,
    observed} (observed: that level on that relation was seen granted in pg_locks)."""
    found = []
    for phase in rb.migration_phases:
        for step in phase.steps:
            try:
                parsed = parse_file(rb.file_path(step.file), step.file)
            except SqlFileError:
                continue
            found += [
                {
                    "level": level,
                    "relation": rel,
                    "statement_line": s.line,
                    "file": parsed.name,
                    "observed": (level, rel) in seen,
                }
                for s in parsed.statements
                for level, rel in s.locks
            ]
    return found


def _result(
    rb: Runbook,
    phases: list[dict[str, Any]],
    results: list[FileResult],
    failure: str | None,
    verification_ok: bool,
    rollbacks: list[dict[str, Any]],
    seen: set[tuple[str, str]],
) -> RehearsalResult:
    taken = locks(rb, seen)
    exclusive_files = {l["file"] for l in taken if l["level"] == ACCESS_EXCLUSIVE}
    held = [r.duration * 1000 for r in results if r.ok and r.file in exclusive_files]
    longest = round(max(held), 1) if held else None
    broken = next((r for r in rollbacks if r["status"] == "failed"), None)
    rollback_clean = all(r["status"] in ("exact", "skipped") for r in rollbacks)
    ok = failure is None and verification_ok and broken is None
    if failure is None and broken is not None:
        failure = f"rollback of phase {broken['phase']}: {broken['error']}"
    return RehearsalResult(
        ok=ok,
        phases=phases,
        verification_ok=verification_ok,
        rollback_clean=rollback_clean,
        locks=taken,
        longest_lock_ms=longest,
        failure=failure,
        summary=_summary(phases, failure, verification_ok, rollbacks, taken, longest),
        rollbacks=rollbacks,
    )


def _summary(
    phases: list[dict[str, Any]],
    failure: str | None,
    verification_ok: bool,
    rollbacks: list[dict[str, Any]],
    taken: list[dict[str, Any]],
    longest: float | None,
) -> str:
    timings = ", ".join(
        f"phase {p['number']} {p['seconds']:.1f} s{'' if p['ok'] else ' FAILED'}" for p in phases
    )
    parts = [f"rehearsed on a copy: {timings or 'no phase ran'}"]
    parts.append("verification passed" if verification_ok else f"failed at {failure}")
    parts.append(rollback_text(rollbacks))
    tables = {l["relation"] for l in taken if l["level"] == ACCESS_EXCLUSIVE}
    observed = {l["relation"] for l in taken if l["level"] == ACCESS_EXCLUSIVE and l["observed"]}
    lock_text = f"ACCESS EXCLUSIVE on {len(tables)} tables" + (
        f", longest {longest:.0f} ms" if longest is not None else ""
    )
    if tables:
        lock_text += f" ({len(observed)} of {len(tables)} seen in pg_locks)"
    return ", ".join(parts) + "; " + lock_text


def rollback_text(rollbacks: list[dict[str, Any]]) -> str:
    """The rehearsed rollbacks in one phrase: clean, or which phase is not and why."""
    if not rollbacks:
        return "no rollback to rehearse"
    problems = []
    for r in rollbacks:
        if r["status"] == "failed":
            problems.append(f"phase {r['phase']} {r['file']} failed: {r['error']}")
        elif r["status"] == "differs":
            problems.append(
                f"phase {r['phase']} {r['file']} leaves {len(r['diff'])} schema lines different "
                f"({'; '.join(d.strip() for d in r['diff'][:3])[:240]})"
            )
        elif r["status"] == "none":
            problems.append(f"phase {r['phase']} has no rollback file")
    order = ", ".join(f"phase {r['phase']}" for r in rollbacks if r["status"] != "skipped")
    if not problems:
        return f"rollback clean ({order or 'nothing'} rolled back newest first, each to the schema before it)"
    return "rollback NOT clean: " + "; ".join(problems)
