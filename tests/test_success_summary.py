"""The success post opens with the runbook's summary, each line backed by a check's observed
value, and claims "Downtime: Zero" only when the executor measured it under the threshold."""

from __future__ import annotations

import re

from commands import Core
from engine.executor import Executor
from runbook.model import SummaryLine
from tests.support.flow import COORDINATOR, LIU, SERGEI, Console
from workflows import templates


class Ev:
    def __init__(self, name, observed, ok):
        self.name, self.observed, self.ok = name, observed, ok


def test_a_summary_line_shows_only_what_its_checks_prove():
    line = SummaryLine("RLS", "Enabled (24 tables)", ("RLS enabled on all 24 platform tables",))
    assert (
        templates.summary_line(line, [Ev("RLS enabled on all 24 platform tables", "24", True)])
        == "- RLS: Enabled (24 tables) ✅ (RLS enabled on all 24 platform tables: 24)"
    )
    failed = templates.summary_line(line, [Ev("RLS enabled on all 24 platform tables", "23", False)])
    assert "Enabled" not in failed and "❌" in failed and "23" in failed
    assert "not verified" in templates.summary_line(line, [])


def test_downtime_is_zero_only_when_measured_under_the_threshold():
    steps = {"1.1": {"ok": True, "lock_held": 0.2}, "2.1": {"ok": True, "lock_held": 0.4}}
    assert templates.downtime_line(steps, 1.0).startswith("- Downtime: Zero ✅")
    assert "step 2.1" in templates.downtime_line(steps, 1.0)
    slow = {"1.1": {"ok": True, "lock_held": 3.5}}
    assert "Zero" not in templates.downtime_line(slow, 1.0) and "3.50 s" in templates.downtime_line(slow, 1.0)
    assert "not measured" in templates.downtime_line({"1.1": {"ok": True, "lock_held": None}}, 1.0)
    assert "not measured" in templates.downtime_line(None, 1.0)


def test_the_executor_measures_how_long_an_atomic_file_held_its_locks(db_005, tmp_path):
    f = tmp_path / "slow.sql"
    f.write_text("CREATE TABLE public.t_lock (id int);\nSELECT pg_sleep(0.3);\n")
    result = Executor(db_005).run_file(f)
    assert result.ok and 0.3 <= result.lock_held <= result.duration


def test_the_success_post_opens_with_the_plans_summary(ready):
    console = Console(Core.from_settings(ready))
    console.approved()
    assert console(LIU, "run phase 1")[0] == 0
    assert console(SERGEI, "run phase 2")[0] == 0
    code, out = console(COORDINATOR, "verify")
    assert code == 0, out
    body = out[out.index("SUCCESSFUL") :]
    lines = [l.strip() for l in body.splitlines()[1:8]]
    assert lines[0] == "*Summary:*"
    assert lines[1].startswith("- Databases table: Created ✅ (platform.databases has 15 columns: 15")
    assert lines[2].startswith("- Railway databases: Registered (MongoDB + Redis) ✅")
    assert lines[3].startswith(
        "- RLS: Enabled (24 tables, 48 permissive policies) ✅ (RLS enabled on all 24 platform tables: 24"
    )
    assert lines[4].startswith("- Tests: All passing ✅") and lines[5].startswith("- Errors: Zero ✅")
    assert re.match(
        r"- Downtime: Zero ✅ \(the longest any statement held its locks: [0-9.]+ s, step \d\.\d; under 1.00 s\)",
        lines[6],
    )
    assert body.index("*Summary:*") < body.index("Checks:")
