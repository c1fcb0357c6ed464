"""The rehearsal checks the rollback production runs (issue 13.7): each phase's rollback,
newest first, compared with the schema before that phase — not only the end state — and
never a phase's rollback after its atomic step left nothing behind."""

from __future__ import annotations

from pathlib import Path

from preflight import Timeouts, run_preflight
from runbook.model import load_runbook
from tests.support.runbooks import copy_runbook, failing_runbook

FAST = Timeouts(network=0.5, database=5)
PHASE_2_ROLLBACK = "006_rollback.sql"
PHASE_1_ROLLBACK = "rollback-006.sql"


def _edit(runbook: Path, file: str, old: str, new: str) -> Path:
    path = runbook.parent / file
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {file}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return runbook


def test_a_phase_rollback_hidden_by_an_older_one_is_caught_with_its_diff(ready, tmp_path):
    """Phase 2's rollback forgets the policies of platform.databases; phase 1's rollback then
    drops the table (and its policies with it), so the end state is right. The old rehearsal
    said "rollback clean"; `rollback phase 2` in production fails its comparison."""
    runbook = _edit(
        copy_runbook(tmp_path),
        PHASE_2_ROLLBACK,
        "DROP POLICY IF EXISTS databases_select_permissive ON platform.databases;",
        "-- forgotten: databases_select_permissive",
    )
    _edit(
        runbook, PHASE_2_ROLLBACK, "IF v_policies > 0 OR v_tables > 0 THEN", "IF v_tables > 0 THEN"
    )  # its own check too
    report = run_preflight(ready, load_runbook(runbook), incident=None, timeouts=FAST)

    rehearsal = report.rehearsal
    assert report.go is True, report.nogo_reasons  # a warning for the TPM, not a NO-GO
    assert rehearsal.ok and not rehearsal.rollback_clean
    assert [(r["phase"], r["status"]) for r in rehearsal.rollbacks] == [(2, "differs"), (1, "exact")]
    diff = rehearsal.rollbacks[0]["diff"]
    assert any(line.startswith("+CREATE POLICY databases_select_permissive") for line in diff), diff
    assert "rollback NOT clean: phase 2 006_rollback.sql leaves" in report.line("rehearsal").observed
    assert [r["phase"] for r in rehearsal.rollback_warnings()] == [2]


def test_correct_rollbacks_are_rehearsed_newest_first_each_exact(ready, tmp_path):
    report = run_preflight(ready, load_runbook(copy_runbook(tmp_path)), incident=None, timeouts=FAST)
    assert report.go is True, report.nogo_reasons
    assert [(r["phase"], r["status"], r["diff"]) for r in report.rehearsal.rollbacks] == [
        (2, "exact", []),
        (1, "exact", []),
    ]
    assert "rollback clean (phase 2, phase 1 rolled back newest first" in report.line("rehearsal").observed


def test_a_phase_whose_atomic_step_left_nothing_is_not_rolled_back(ready, tmp_path):
    """Step 1.1 fails inside its transaction: nothing of phase 1 is in the copy, so its
    rollback must not run (here it would fail: the table it drops does not exist)."""
    runbook = failing_runbook(tmp_path)
    (runbook.parent / PHASE_1_ROLLBACK).write_text("DROP TABLE platform.databases;\n")
    report = run_preflight(ready, load_runbook(runbook), incident=None, timeouts=FAST)

    rehearsal = report.rehearsal
    assert report.go is False and not rehearsal.ok
    assert "division by zero" in rehearsal.failure
    assert rehearsal.rollbacks == [
        {"phase": 1, "file": PHASE_1_ROLLBACK, "status": "skipped", "diff": [], "error": None}
    ]
    assert "does not exist" not in report.line("rehearsal").observed
