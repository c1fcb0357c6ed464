"""What the approval says about a changed plan, exactly: the runbook a process holds against the
approved one, the plan entries that changed, and how both join the "files changed" refusal.
Pure functions (state/approval.py), so that scripts/mutate judges their mutants in seconds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

from state.approval import bind_approval, why_approval_invalid, why_plan_changed, why_plan_not_approved

NOW = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
RUNBOOK = SimpleNamespace(path=Path("/x/sql/006/runbook.toml"), sha256="abcdef0123456789")


def test_the_runbook_held_is_the_approved_one():
    assert why_plan_not_approved(RUNBOOK, {"checksums": {"runbook.toml": "abcdef0123456789"}}) is None


def test_a_runbook_loaded_before_the_approval_is_named_with_both_checksums():
    reason = why_plan_not_approved(RUNBOOK, {"checksums": {"runbook.toml": "999999aaaa"}})
    assert reason == (
        "this bot process holds runbook.toml as loaded before the approval (sha256 abcdef…, "
        "approved 999999…): run preflight again (it reloads the runbook)"
    )


def test_no_approval_or_no_checksums_is_not_the_approved_plan():
    for approval in (None, {}, {"checksums": None}, {"checksums": {}}):
        assert "approved None…" in why_plan_not_approved(RUNBOOK, approval)


def test_plan_changes_are_named_in_order_short_values_shown():
    before = {"step 1.1 file": "a.sql", "step 2.1 choose": "A", "step 2.2 file": "b.sql", "same": "x"}
    after = {"step 1.1 file": "a.sql", "step 2.1 choose": "B", "same": "x", "step 3.1 file": "c.sql"}
    assert why_plan_changed(before, after) == (
        "step 2.1 choose A → B; step 2.2 file removed; step 3.1 file added"
    )


def test_long_plan_values_are_not_shown():
    long = "x" * 41
    assert why_plan_changed({"a": long}, {"a": "short"}) == "a changed"
    assert why_plan_changed({"a": "short"}, {"a": long}) == "a changed"
    assert why_plan_changed({"a": "y" * 40}, {"a": "z" * 40}) == f"a {'y' * 40} → {'z' * 40}"


def test_at_most_limit_plan_changes_then_how_many_more():
    before = {f"e{i}": "old" for i in range(8)}
    after = {f"e{i}": "new" for i in range(8)}
    assert (
        why_plan_changed(before, after, limit=5)
        == "; ".join(f"e{i} old → new" for i in range(5)) + " (and 3 more)"
    )
    assert why_plan_changed(before, after, limit=8) == "; ".join(f"e{i} old → new" for i in range(8))


def test_an_unchanged_plan_and_an_unloadable_runbook():
    assert why_plan_changed({"a": "1"}, {"a": "1"}) is None
    assert why_plan_changed({}, {}) is None
    assert why_plan_changed({"a": "1"}, None) == "the runbook no longer loads"


def _approval(plan: dict | None) -> dict:
    return bind_approval(
        by="U0DYLAN",
        at=NOW,
        ttl_hours=12,
        preflight={"at": NOW.isoformat()},
        checksums={"runbook.toml": "aaaaaa11", "a.sql": "bbbbbb22"},
        plan=plan,
    )


def test_a_changed_runbook_names_the_plan_entries_that_changed():
    reason = why_approval_invalid(
        _approval({"step 2.1 choose": "A"}),
        now=NOW + timedelta(hours=1),
        checksums={"runbook.toml": "cccccc33", "a.sql": "bbbbbb22"},
        plan={"step 2.1 choose": "B"},
    )
    assert reason == (
        "runbook.toml changed since approval (sha256 aaaaaa… → cccccc…) — in the plan: step 2.1 choose A → B"
    )


def test_the_plan_is_named_only_when_files_changed_and_both_plans_are_known():
    changed = {"runbook.toml": "cccccc33", "a.sql": "bbbbbb22"}
    same = {"runbook.toml": "aaaaaa11", "a.sql": "bbbbbb22"}
    later = NOW + timedelta(hours=1)
    plain = "runbook.toml changed since approval (sha256 aaaaaa… → cccccc…)"
    assert why_approval_invalid(_approval({"k": "A"}), now=later, checksums=changed, plan={"k": "A"}) == plain
    assert why_approval_invalid(_approval({"k": "A"}), now=later, checksums=changed, plan=None) == plain
    assert why_approval_invalid(_approval(None), now=later, checksums=changed, plan={"k": "B"}) == plain
    assert why_approval_invalid(_approval({"k": "A"}), now=later, checksums=same, plan={"k": "B"}) is None


def test_an_approval_lasts_exactly_its_ttl_in_hours():
    approval = _approval(None)
    assert approval["expires_at"] == (NOW + timedelta(hours=12)).isoformat()
    assert (
        why_approval_invalid(
            approval, now=NOW + timedelta(hours=12) - timedelta(seconds=1), checksums=approval["checksums"]
        )
        is None
    )
    assert (
        why_approval_invalid(approval, now=NOW + timedelta(hours=12), checksums=approval["checksums"])
        == "approval expired at 14:00 UTC"
    )
