"""The pre-flight result reads right: the matrix says which condition holds, the NO-GO
reasons are a short list, and evidence is a fact (no compiler banner)."""

from __future__ import annotations

from datetime import UTC, datetime

from core.roster import Roster
from preflight import database
from preflight.report import FAIL, PASS, CheckLine, PreflightReport
from runbook.model import load_runbook
from sql import DEFAULT_RUNBOOK
from workflows import templates

RB = load_runbook(DEFAULT_RUNBOOK)


def test_the_database_line_shows_the_version_not_the_compiler_banner(db_005):
    [line] = [l for l in database.database_lines(db_005, RB, 5.0) if l.key == "database"]
    assert (
        line.observed.startswith("PostgreSQL 15.")
        and "compiled" not in line.observed
        and "gcc" not in line.observed
    )


def test_nogo_reasons_are_a_list_one_a_line(tmp_path):
    roster_file = tmp_path / "roster.toml"
    roster_file.write_text('[roles]\ntpm = ["U0DYLAN"]\ncoordinator = ["U0RAFAEL"]\n')
    now = datetime.now(UTC)
    lines = [
        CheckLine("incident", "No critical incident", "how", "declared by U0LIU", "none", FAIL, 0.1),
        CheckLine("window", "Execution window", "how", "12 min left", "≥ 60 min", FAIL, 0.1),
        CheckLine("backup", "Backup", "how", "ok", "ok", PASS, 0.1),
    ]
    report = PreflightReport.build("006", now, now, lines)
    [post] = templates.preflight_result(RB, "r1", report, Roster.load(roster_file))
    assert "NO-GO because" not in post.fields  # was one "; "-joined sentence
    start = post.lines.index("*NO-GO because:*")
    assert post.lines[start + 1 : start + 3] == [
        "• No critical incident: declared by U0LIU",
        "• Execution window: 12 min left",
    ]
    assert (
        "❌ NO-GO check: incident declared" in post.detail
        and "✅ NO-GO check: backup created and verified" in post.detail
    )
