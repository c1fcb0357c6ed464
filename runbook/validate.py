"""Every file of a runbook checked before anything runs: exists, parses, may run, checksum.

The plan, the approval request and the executor all read these checks: a run starts only
when every file the runbook may execute is present and parses with PostgreSQL's parser.
"""
from __future__ import annotations

from dataclasses import dataclass

from runbook.model import Runbook
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
        parsed = parse_file(path)
    except SqlFileError as exc:
        return FileCheck(name, False, sha256_of(path), str(exc), True, False, 0)
    return FileCheck(name, True, parsed.sha256, None, parsed.atomic, parsed.needs_psql, len(parsed.sql_statements))


def validate_runbook(rb: Runbook) -> list[FileCheck]:
    """A FileCheck for every file the runbook may execute, in runbook order."""
    return [check_file(rb, name) for name in rb.files()]


def checksums(rb: Runbook) -> dict[str, str]:
    """File name -> sha256 of every file the runbook may execute (missing files left out)."""
    return {name: sha256_of(rb.file_path(name)) for name in rb.files() if rb.file_path(name).is_file()}


def refuse_file(rb: Runbook, name: str) -> str | None:
    """Why a request to run `name` must be refused (DO NOT RUN, unknown, missing, does not
    parse), or None when it may run."""
    reason = rb.refusal_for(name)
    if reason:
        return reason
    check = check_file(rb, name)
    return None if check.ok else check.problem
