"""Every file of a runbook checked before anything runs: exists, parses, may run, checksum.

The plan, the approval request and the executor all read these checks: a run starts only
when every file the runbook may execute is present and parses with PostgreSQL's parser.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from runbook.model import Runbook, RunbookError, load_runbook
from runbook.sqlfile import SqlFileError, parse_file, sha256_of


@dataclass(frozen=True)
class FileCheck:
    name: str
    ok: bool
    sha256: str | None
    problem: str | None  # why the file may not run, e.g. "file:12: syntax error at or near …"
    atomic: bool
    needs_psql: bool
    statements: int


def check_file(rb: Runbook, name: str) -> FileCheck:
    """One file: present, not DO NOT RUN, parses."""
    path = rb.file_path(name)
    if name in rb.do_not_run:
        return FileCheck(name, False, None, rb.refusal_for(name), True, False, 0)
    if not path.is_file():
        return FileCheck(name, False, None, f"{name}: file not found in {rb.directory}", True, False, 0)
    try:
        parsed = parse_file(path, name)
    except SqlFileError as exc:
        return FileCheck(name, False, sha256_of(path), str(exc), True, False, 0)
    return FileCheck(
        name, True, parsed.sha256, None, parsed.atomic, parsed.needs_psql, len(parsed.sql_statements)
    )


def validate_runbook(rb: Runbook) -> list[FileCheck]:
    """A FileCheck for every file the runbook may execute, in runbook order."""
    return [check_file(rb, name) for name in rb.files()]


def checksums(rb: Runbook) -> dict[str, str]:
    """File name -> sha256 of every file the approval binds, as they are on disk now: the
    runbook file itself (its name, e.g. `runbook.toml`) and every file it may execute
    (missing files left out)."""
    sums = {name: sha256_of(rb.file_path(name)) for name in rb.files() if rb.file_path(name).is_file()}
    if rb.path.is_file():
        sums[rb.path.name] = sha256_of(rb.path)
    if (
        rb.ledger.plan and rb.file_path(rb.ledger.plan).is_file()
    ):  # sqitch's plan: the ledger rows come from it
        sums[rb.ledger.plan] = sha256_of(rb.file_path(rb.ledger.plan))
    return sums


def plan(rb: Runbook) -> dict[str, str]:
    """The resolved plan as named entries (`step 2.1 choose` -> `"A"`), to say *what* changed in
    the runbook since an approval; the runbook's sha256 is what binds, these only name it."""
    entries: dict[str, str] = {"defaults": _show(rb.defaults), "version": _show(rb.version)}
    entries.update({f"input {name}": _show(spec) for name, spec in rb.inputs.items()})
    entries.update({f"do_not_run {name}": _show(reason) for name, reason in rb.do_not_run.items()})
    entries.update(
        {
            f"preflight {what}": _show(getattr(rb.preflight, what))
            for what in ("deployment", "reach", "sql", "http")
        }
    )
    entries["ledger"] = _show(rb.ledger)
    entries["fleet"] = _show(rb.fleet)
    entries["lock_safety"] = _show(rb.lock_safety)
    entries["lock_timeouts"] = _show(rb.lock_timeouts)
    entries.update(
        {
            f"waiver {w.rule} {w.file}" + (f" '{w.statement}'" if w.statement else ""): _show(w)
            for w in rb.waivers
        }
    )
    for phase in rb.phases:
        entries[f"phase {phase.number}"] = _show(
            (phase.name, phase.owner, phase.kind, phase.rollback, phase.estimate)
        )
        for step in phase.steps:
            for what in (
                "file",
                "chosen",
                "options",
                "on_failure",
                "rollback",
                "inputs",
                "lock_timeout",
                "statement_timeout",
                "migration",
                "revert",
                "verify",
            ):
                label = "choose" if what == "chosen" else what
                entries[f"step {step.id} {label}"] = _show(getattr(step, what))
        for check in phase.checks:
            entries[f"phase {phase.number} check '{check.name}'"] = _show(
                (check.sql, check.expect, check.compare)
            )
        for suite in phase.suites:
            entries[f"phase {phase.number} suite '{suite.name}'"] = _show(suite)
        for smoke in phase.smoke:
            entries[f"phase {phase.number} smoke '{smoke.name}'"] = _show(smoke)
    return entries


def plan_on_disk(rb: Runbook) -> dict[str, str] | None:
    """The plan of the runbook file as it is on disk now (None when it no longer loads)."""
    if rb.path.is_file() and sha256_of(rb.path) == rb.sha256:
        return plan(rb)
    try:
        return plan(load_runbook(rb.path))
    except (RunbookError, OSError):
        return None


def _show(value: object) -> str:
    return json.dumps(
        dataclasses.asdict(value)
        if dataclasses.is_dataclass(value)
        and not isinstance(value, type)  # an instance (a class never comes here)
        else value,
        default=str,
        ensure_ascii=False,
        sort_keys=True,
    )


def refuse_file(rb: Runbook, name: str) -> str | None:
    """Why a request to run `name` must be refused (DO NOT RUN, unknown, missing, does not
    parse), or None when it may run."""
    reason = rb.refusal_for(name)
    if reason:
        return reason
    check = check_file(rb, name)
    return None if check.ok else check.problem
