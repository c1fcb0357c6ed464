"""The facts a mid-run renewal of an expired approval is decided on, checked now.

The `approve` verb (commands/renew.py) decides whether a renewal applies and records it;
this checks what it rests on: the restore point (the pre-flight backup) still there, the
quick pre-flight checks passing again (but the "migrations before" line, which a run under
way no longer meets), and the database's schema equal to the snapshot of the state the run's
record says it left — or, for a phase that stopped part-way (no snapshot exists between
steps), the ledger showing steps of it committed by this run, with the objects the schema
gained or lost since the snapshot before it listed for the TPM.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from engine import catalog_snapshot, ledger, schema
from preflight import fast_checks
from state.machine import PhaseStatus
from workflows import facts, templates
from workflows.restore import backup_of, backup_problem

NOT_RECHECKED = ("migrations", "approval")  # met only before a run starts / what is being decided


@dataclass
class Rechecked:
    """What the renewal rests on: the checks passed now, the state found, its evidence lines."""

    backup: dict
    checked: list
    state: str
    evidence: list[str]


def recheck(core, run, now: datetime) -> Rechecked | str:
    """The facts checked now, or why the approval cannot be renewed on them."""
    backup = backup_of(run)
    problem = backup_problem(backup, hash_file=False)
    if problem:
        return (
            f"cannot renew the approval: the restore point is gone ({problem}); "
            "`rollback phase <n>` newest first, then a new pre-flight"
        )
    report = fast_checks(core.settings, core.runbook, incident=core.store.incident(), at=now)
    checked = [c for c in report.checks if c.key not in NOT_RECHECKED]
    failed = [c for c in checked if c.status == "fail"]
    if failed:
        return "cannot renew the approval, checked now: " + "; ".join(c.text() for c in failed)
    state, snapshot = expected_state(run, facts.known_states(core, run.id))
    evidence = [f"{templates.OK_MARK} Database: matches {state} (schema compared)"]
    # One dump, compared once: equal, or the differences the partial-phase evidence shows.
    stored = Path(snapshot).read_text(encoding="utf-8")
    differences = schema.difference(
        stored, schema.current_like(stored, core.settings.database_url), limit=100_000
    )
    if differences:
        partial = _partially_applied(core, run)
        if partial is None:
            return (
                f"cannot renew the approval: the database does not match {state}, where this run "
                "left it (schema compared with that snapshot) — someone changed it since; "
                "investigate before going on"
            )
        # No snapshot exists between the steps of a phase: show the TPM exactly how the schema
        # differs from the one before the phase, for them to recognise the committed steps in it.
        objects = _objects_changed(differences)
        evidence = [
            f"⚠ Database: {partial}, per the ledger; its schema differs from {state} by "
            f"{len(objects)} object(s){' (first 12)' if len(objects) > 12 else ''}:",
            *[f"    {line}" for line in objects[:12]],
        ]
        state = partial
    return Rechecked(backup, checked, state, evidence)


def expected_state(run, known: dict[str, Path]) -> tuple[str, Path]:
    """(label, snapshot) of the state the run's own record says the database is in: after the
    highest migration phase that succeeded (and was not rolled back), else before the first."""
    labels = list(known)
    done = [
        n
        for n, phase in run.phases.items()
        if phase.status is PhaseStatus.SUCCEEDED and f"the schema after phase {n}" in known
    ]
    label = f"the schema after phase {max(done)}" if done else labels[0]
    return label, known[label]


def _partially_applied(core, run) -> str | None:
    """A phase that stopped part-way (a step failed, an abort, a crash between steps) leaves the
    database after some of its steps, which no snapshot shows: the ledger (written in each
    step's own transaction) says which. None unless such a phase has steps committed by this run."""
    stopped = [
        n for n, phase in run.phases.items() if phase.status is PhaseStatus.FAILED
    ]  # failed, aborted, cut
    if not stopped:
        return None
    newest = max(stopped)
    steps = [
        r["step"]
        for r in ledger.applied_files(core.settings.database_url, core.runbook.id)
        if r["run_id"] == run.id and r["phase"] == newest
    ]
    if not steps:
        return None
    return f"phase {newest} partially applied (step {', '.join(steps)} committed by this run)"


def _objects_changed(diff: list[str]) -> list[str]:
    """The objects a schema diff adds (+) or removes (-), one line each: `+CREATE TABLE x`."""
    heads = []
    for line in diff:
        if line[:1] in "+-" and line[1:].startswith(("CREATE ", "ALTER TABLE ")):
            heads.append(line.split("(")[0].split(" AS ")[0].rstrip()[:100])
        elif line[:1] in "+-" and line[1:].startswith(catalog_snapshot.OBJECT_LINES) and " | " not in line:
            heads.append(line[:100])  # a catalog snapshot's line (engine/catalog_snapshot.py)
    return heads
