"""The report's quality gates, each checked after the run — never assumed.

"Must Pass Before Declaring Success": all files executed, all suites green, zero errors,
application healthy, database healthy, backup safe. Each gate returns Evidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from engine import ledger, ledgers
from engine.verify import Evidence, run_smoke
from preflight.backup import file_sha256
from runbook.model import Smoke
from workflows import facts


def quality_gates(core, run, suites: Sequence) -> list[Evidence]:
    gates = [
        _files_executed(core, run),
        _suites_green(suites),
        _zero_errors(run),
        _database_healthy(core.settings.database_url),
        _backup_safe((run.preflight or {}).get("backup")),
    ]
    if (
        core.runbook.preflight.deployment is not None
    ):  # a runbook with no deployment has no application to ask
        gates.insert(3, _application_healthy(core.settings.deployment_url))
    return gates


def _files_executed(core, run) -> Evidence:
    """Every step's file in the ledger, run by this run, with the sha256 the approval bound
    (a row for the same name with other bytes is not the approved file)."""
    steps = [s for p in core.runbook.migration_phases for s in p.steps]
    approved = (run.approval or {}).get("checksums") or {}
    applied = {
        (r["step"], r["file"], r["sha256"])
        for r in ledger.applied_files(core.settings.database_url, core.runbook.id)
        if r.get("run_id") == run.id
    }
    ran = [
        s for s in steps if (s.id, s.file, approved.get(s.file)) in applied
    ]  # the ledger names files by runbook path
    before = _applied_before(core, [s for s in steps if s not in ran])
    done = [s for s in steps if s in ran or s.migration in before]
    missing = [s.file for s in steps if s not in done]
    how = "migrate_bot.applied_files rows of this run, sha256 = the approved one" + (
        f"; {ledgers.for_runbook(core.runbook).label} for the {len(before)} applied before it"
        if before
        else ""
    )
    return Evidence(
        "All migrations executed",
        how,
        f"{len(done)}/{len(steps)} files completed"
        + (f" (missing: {', '.join(missing)})" if missing else ""),
        f"{len(steps)}/{len(steps)}",
        not missing,
    )


def _applied_before(core, not_run) -> set[str]:
    """Migrations this run skipped because the runbook's ledger already showed them applied."""
    skipped = [s for s in not_run if s.migration]
    if not skipped:
        return set()
    shown, _problem = ledgers.applied(core.settings.database_url, core.runbook)
    return {s.migration for s in skipped if s.migration in shown}


def _suites_green(suites: Sequence) -> Evidence:
    green = sum(1 for s in suites if s.ok)
    return Evidence(
        "All tests passed",
        "verification suites run through psql, output read",
        f"{green}/{len(suites)} test suites green",
        f"{len(suites)}/{len(suites)}",
        green == len(suites),
    )


def _zero_errors(run) -> Evidence:
    steps = (run.result or {}).get("steps", {})
    unresolved = [k for k, v in steps.items() if not v.get("ok")]
    retried = sum(max(int(v.get("attempts", 1)) - 1, 0) for v in steps.values())
    observed = f"{len(unresolved)} unresolved errors" + (f" ({', '.join(unresolved)})" if unresolved else "")
    if retried:
        observed += f"; {retried} lock-timeout retries"
    return Evidence(
        "Zero errors", "the step results of this run", observed, "0 unresolved errors", not unresolved
    )


def _application_healthy(deployment_url: str | None) -> Evidence:
    probe = run_smoke(deployment_url, Smoke(name="Application healthy", path="", expect_status=(200,)))
    return Evidence("Application healthy", probe.how, probe.observed, probe.expected, probe.ok)


def _database_healthy(dsn: str) -> Evidence:
    try:
        counts = facts.row_counts(dsn)
    except Exception as exc:  # the evidence is the failure itself
        return Evidence(
            "Database healthy",
            "SELECT count(*) from every table",
            f"error: {type(exc).__name__}",
            "every table readable",
            False,
        )
    return Evidence(
        "Database healthy",
        "SELECT count(*) from every table (the bot's schema aside)",
        f"{len(counts)} tables readable",
        "every table readable",
        True,
    )


def _backup_safe(backup: dict | None) -> Evidence:
    if backup and backup.get("skipped"):  # the runbook's [fleet] backup = "canary", outside the canary
        return Evidence(
            "Backup safe",
            "the pre-flight's backup record",
            f"no backup of this database, skipped on purpose: {backup['skipped']}",
            "a verified backup, or none by the runbook's [fleet] backup policy",
            True,
        )
    if not backup or not backup.get("path"):
        return Evidence(
            "Backup safe", "preflight's backup record", "no backup recorded", "verified backup present", False
        )
    path = Path(backup["path"])
    if not path.exists():
        return Evidence("Backup safe", f"stat {path}", "file missing", "verified backup present", False)
    _size, digest = file_sha256(path)
    same = digest == backup.get("sha256")
    return Evidence(
        "Backup safe",
        f"sha256 of {path.name}",
        f"present, sha256 {'matches' if same else 'DIFFERS from'} the verified one ({digest[:12]}…)",
        f"sha256 {str(backup.get('sha256'))[:12]}…, verified by restore",
        same and bool(backup.get("verified")),
    )
