"""Preflight: every check concurrently, the backup with its proof, the rehearsal, the verdict.

The quick checks and the backup start together (the backup is by far the longest); the
rehearsal runs on the backup's restored copy as soon as the backup is proven, and the copy
is dropped in every case. `fast_checks` is the same without backup and rehearsal, for the
moment a scheduled GO comes due.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from core import clock
from core.config import Settings
from core.redact import redact
from engine import schema
from preflight import backup, lint, proof, rehearsal, scratch
from preflight.inputs import step_inputs
from preflight.lines import Spec, line
from preflight.quick import Timeouts, checks
from preflight.report import SKIPPED, BackupInfo, CheckLine, PreflightReport, RehearsalResult
from runbook.model import Runbook
from runbook.validate import checksums

log = logging.getLogger(__name__)
OnCheck = Callable[[CheckLine], None]
BACKUP_SPEC = Spec(
    "backup", "Full database backup created and verified", "", "restores without error, equal to the source"
)
SKIPPED_BACKUP_SPEC = Spec(
    "backup",
    "Full database backup created and verified",
    "the runbook's [fleet] backup policy; pg_dump --schema-only",
    "restores without error, equal to the source — or skipped on purpose by the runbook's policy",
)
REHEARSAL_SPEC = Spec(
    "rehearsal",
    "Rehearsal on a copy passed (phases, verification, rollback)",
    "every migration phase, its checks, the verification suites and the rollbacks on the restored copy",
    "all pass, schema back to the snapshot",
)


def fast_checks(
    settings: Settings,
    runbook: Runbook,
    *,
    incident: Mapping[str, Any] | None,
    now: datetime | None = None,
    at: datetime | None = None,
    on_check: OnCheck | None = None,
    timeouts: Timeouts | None = None,
) -> PreflightReport:
    """The quick checks only (no backup, no rehearsal); the window is judged at `at`."""
    started = now or clock.now()
    held = lint.Held()
    lines = _quick(settings, runbook, incident, at or started, timeouts or Timeouts(), on_check, held)
    return PreflightReport.build(
        runbook.id, started, clock.now(), lines, checksums=checksums(runbook), lint=_lint(held, None)
    )


def run_preflight(
    settings: Settings,
    runbook: Runbook,
    *,
    incident: Mapping[str, Any] | None,
    now: datetime | None = None,
    on_check: OnCheck | None = None,
    rehearse: bool = True,
    backup: bool = True,
    timeouts: Timeouts | None = None,
    skip_backup: str | None = None,
) -> PreflightReport:
    """Every check, the verified backup and the rehearsal; GO only when every line holds.

    `skip_backup` (why, e.g. the runbook's [fleet] backup = "canary" for a target outside the
    canary wave): no backup and no rehearsal (it runs on the backup's copy); both lines say
    they were skipped on purpose and why (⏭️, never ✅), and the schema snapshot that a rollback's
    proof compares with is still taken."""
    started = now or clock.now()
    held = lint.Held()
    skipped = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="preflight-backup") as pool:
        skipping: Future[_Skipped] | None = None
        slow: Future[_Proven] | None = None
        if skip_backup:
            skipping = pool.submit(_skipped_backup, settings, runbook, started, skip_backup)
        elif backup:
            slow = pool.submit(_backup_and_rehearse, settings, runbook, started, rehearse)
        lines = _quick(settings, runbook, incident, started, timeouts or Timeouts(), on_check, held)
        info, rehearsed = None, None
        if skipping is not None:
            b_line, skipped, r_line = skipping.result()
        elif slow is not None:
            b_line, info, r_line, rehearsed = slow.result()
        else:  # the report's GO needs a verified backup: a preflight without one cannot be GO
            b_line = line(BACKUP_SPEC, False, "not taken: preflight run without a backup")
            r_line = _not_rehearsed(rehearse, "no backup to rehearse on")
        for l in (b_line, r_line):
            if l is not None:
                lines.append(l)
                if on_check:
                    on_check(l)
    return PreflightReport.build(
        runbook.id,
        started,
        clock.now(),
        lines,
        backup=info,
        rehearsal=rehearsed,
        checksums=checksums(runbook),
        lint=_lint(held, rehearsed),
        skipped_backup=skipped,
    )


# (backup line, skipped record, rehearsal line) and (backup line, info, rehearsal line, result)
_Skipped = tuple[CheckLine, dict[str, Any] | None, CheckLine | None]
_Proven = tuple[CheckLine, BackupInfo | None, CheckLine | None, RehearsalResult | None]


def _skipped_backup(settings: Settings, runbook: Runbook, at: datetime, why: str) -> _Skipped:
    """(backup line, skipped record, rehearsal line) for a backup skipped on purpose: only the
    schema-only snapshot is taken (a failure to take it is a failed backup line)."""
    start = clock.monotonic()
    path = Path(settings.backup_dir) / backup.file_name(runbook.backup_prefix, at).replace(
        ".dump", ".schema.sql"
    )
    try:
        Path(settings.backup_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
        schema.write_snapshot(settings.required_database_url(), path)
    except Exception as exc:  # noqa: BLE001 - the rollback proof needs it: a failed line, not a crash
        observed = f"skipped on purpose ({why}), but the schema snapshot failed: {type(exc).__name__}: {exc}"
        return (
            line(SKIPPED_BACKUP_SPEC, False, observed, settings.secrets(), clock.monotonic() - start),
            None,
            None,
        )
    b_line = skipped_line(
        SKIPPED_BACKUP_SPEC,
        f"skipped on purpose: {why}; schema snapshot {path.name} taken for the rollback proof",
        clock.monotonic() - start,
    )
    r_line = skipped_line(
        REHEARSAL_SPEC, f"skipped on purpose with the backup (no copy to rehearse on): {why}"
    )
    return b_line, {"skipped": why, "schema_snapshot": str(path.resolve())}, r_line


def skipped_line(spec: Spec, observed: str, duration: float = 0.0) -> CheckLine:
    """A line not checked on purpose, as the runbook asks: ⏭️, never ✅."""
    return CheckLine(spec.key, spec.title, spec.how, observed, spec.required, SKIPPED, round(duration, 4))


def _lint(held: lint.Held, rehearsed: RehearsalResult | None) -> dict[str, Any] | None:
    """The lint result for the report, with the rehearsal's lock-holding times next to it."""
    if held.result is None:
        return None
    if rehearsed is not None:
        lint.attach_timings(held.result, rehearsed.held)
    return held.result.to_dict()


def _quick(
    settings: Settings,
    runbook: Runbook,
    incident: Mapping[str, Any] | None,
    at: datetime,
    timeouts: Timeouts,
    on_check: OnCheck | None,
    held: lint.Held,
) -> list[CheckLine]:
    """Run the quick checks concurrently; a check past its deadline is a failed line."""
    todo = checks(settings, runbook, incident, at, timeouts)
    todo.append(
        (("lock_safety",), timeouts.database * 2, lambda: held.check(settings, runbook, timeouts.database))
    )
    pool = ThreadPoolExecutor(max_workers=len(todo), thread_name_prefix="preflight")
    try:
        start = clock.monotonic()
        futures = [(keys, deadline, pool.submit(check)) for keys, deadline, check in todo]
        out: list[CheckLine] = []
        for keys, deadline, future in futures:
            left = max(0.0, start + deadline - clock.monotonic())
            for l in _collect(future, keys, deadline, left, settings.secrets()):
                out.append(l)
                if on_check:
                    on_check(l)
        return out
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # a stuck probe must not hold the report


def _collect(
    future: Future[list[CheckLine]],
    keys: tuple[str, ...],
    deadline: float,
    left: float,
    secrets: Sequence[str],
) -> list[CheckLine]:
    """The check's lines, or one failed line per key when it crashed or is still running at
    its deadline (its thread is abandoned; the report does not wait for it)."""
    try:
        return future.result(timeout=left)
    except FutureTimeout:
        observed = f"no result within {deadline:g} s"
    except Exception as exc:  # noqa: BLE001 - a check that crashed is a failed check, never a crashed report
        observed = f"check failed: {type(exc).__name__}: {exc}"
    return [line(Spec(key, key, "check thread", "a result"), False, observed, secrets) for key in keys]


def _backup_and_rehearse(settings: Settings, runbook: Runbook, at: datetime, rehearse: bool) -> _Proven:
    """(backup line, BackupInfo, rehearsal line, RehearsalResult): the scratch copy lives
    from the restore to the end of the rehearsal and is dropped in every case."""
    copy, problem = None, None
    try:
        copy = scratch.create(settings)
    except scratch.ScratchError as exc:
        problem = str(exc)
    try:
        proven, info = _backup(settings, runbook, at, copy, problem)
        if not rehearse:
            return proven, info, None, None
        if info is None or not info.verified or copy is None:
            return (
                proven,
                info,
                _not_rehearsed(True, "the backup is not verified" if info else "no backup"),
                None,
            )
        result = _rehearse(settings, runbook, copy, info)
        return proven, info, _rehearsal_line(result, settings.secrets()), result
    finally:
        if copy is not None:
            _drop(settings, copy)


def _backup(
    settings: Settings, runbook: Runbook, at: datetime, copy: str | None, problem: str | None
) -> tuple[CheckLine, BackupInfo | None]:
    """Dump (streamed into `copy` when there is one) and prove it: the backup line and info."""
    start = clock.monotonic()
    try:
        dumped = backup.dump(settings, runbook.backup_prefix, at, restore_into=copy)
    except Exception as exc:  # noqa: BLE001 - BackupError, a driver error…: a failed line, not a crash
        return line(BACKUP_SPEC, False, str(exc), settings.secrets(), clock.monotonic() - start), None
    info = proof.verify(settings, dumped, copy, problem)
    return backup_line(settings, info, copy, clock.monotonic() - start), info


def _drop(settings: Settings, copy: str) -> None:
    try:
        scratch.drop(settings, copy)
    except psycopg.Error as exc:  # the report stands; the leftover database is logged for cleanup
        log.warning("scratch database not dropped: %s", redact(str(exc), settings.secrets()))


def _rehearse(settings: Settings, runbook: Runbook, copy: str, info: BackupInfo) -> RehearsalResult:
    try:
        return rehearsal.rehearse(settings, runbook, copy, step_inputs(settings, runbook))
    except Exception as exc:  # noqa: BLE001 - a rehearsal that crashes is a failed rehearsal
        text = redact(f"{type(exc).__name__}: {exc}", settings.secrets())
        return RehearsalResult(False, [], False, False, [], None, text, f"rehearsal could not run: {text}")


def backup_line(settings: Settings, info: BackupInfo, copy: str | None, seconds: float) -> CheckLine:
    """The report's backup line from a verified (or not) BackupInfo."""
    how = f"pg_dump ({info.format}) in one snapshot → {info.path}" + (
        f" ({info.space})" if info.space else ""
    )
    if copy:
        how += (
            f", streamed into pg_restore --exit-on-error of a scratch database on {scratch.server_url(settings)[1]}; "
            f"{len(info.comparisons)} comparisons"
        )
    spec = Spec(BACKUP_SPEC.key, BACKUP_SPEC.title, how, BACKUP_SPEC.required)
    if not info.verified:
        return line(
            spec,
            False,
            f"{info.path.rsplit('/', 1)[-1]} NOT verified: {info.problem}",
            settings.secrets(),
            seconds,
        )
    rows = sum(info.row_counts.values())
    observed = (
        f"{info.path.rsplit('/', 1)[-1]}: {info.size / 1e6:.1f} MB, sha256 {info.sha256[:12]}…; restored and equal "
        f"({len(info.row_counts)} tables, {rows} rows); dump {info.dump_seconds:.1f} s, verify {info.verify_seconds:.1f} s"
    )
    return line(spec, True, observed, settings.secrets(), seconds)


def _rehearsal_line(result: RehearsalResult, secrets: Sequence[str]) -> CheckLine:
    observed = result.summary if result.ok else f"FAILED: {result.failure} ({result.summary})"
    return line(REHEARSAL_SPEC, result.ok, observed, secrets, sum(p["seconds"] for p in result.phases))


def _not_rehearsed(rehearse: bool, why: str) -> CheckLine | None:
    return line(REHEARSAL_SPEC, False, f"not rehearsed: {why}") if rehearse else None
