"""Approval binds to what was approved (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from state.approval import (
    bind_approval,
    revoke,
    why_approval_invalid,
    why_cannot_approve,
    why_preflight_stale,
)

T0 = datetime(2026, 11, 24, 2, 3, tzinfo=UTC)
SUMS = {
    "006_add_platform_databases_table.sql": "1a2b3c" + "0" * 58,
    "006_enable_rls_IMPROVED.sql": "4d5e6f" + "1" * 58,
}
PREFLIGHT = {
    "outcome": "GO",
    "at": T0.isoformat(),
    "expires_at": (T0 + timedelta(hours=12)).isoformat(),
    "checksums": SUMS,
    "backup": {"path": "backups/b.dump", "sha256": "ab" * 32, "size": 10},
}


def approval(**kw):
    return bind_approval(by="U0DYLAN", at=T0, ttl_hours=12, preflight=PREFLIGHT, checksums=SUMS, **kw)


def test_a_fresh_approval_is_valid_and_carries_what_was_approved():
    record = approval()
    assert why_approval_invalid(record, checksums=SUMS, now=T0 + timedelta(hours=1)) is None
    assert record["backup_sha256"] == "ab" * 32 and record["checksums"] == SUMS
    assert record["preflight_at"] == PREFLIGHT["at"] and record["mode"] == "now"


def test_no_approval():
    assert why_approval_invalid(None, checksums=SUMS, now=T0) == "not approved"


def test_an_expired_approval_says_when_it_expired():
    assert (
        why_approval_invalid(approval(), checksums=SUMS, now=T0 + timedelta(hours=12))
        == "approval expired at 14:03 UTC"
    )


def test_a_scheduled_approval_lasts_from_its_scheduled_time():
    record = approval(mode="scheduled", scheduled_for=T0 + timedelta(hours=20))
    assert why_approval_invalid(record, checksums=SUMS, now=T0 + timedelta(hours=21)) is None
    assert record["scheduled_for"] == (T0 + timedelta(hours=20)).isoformat()
    with pytest.raises(ValueError):
        approval(mode="scheduled")


def test_a_file_changed_after_approval_is_named_with_both_checksums():
    changed = {**SUMS, "006_enable_rls_IMPROVED.sql": "9f8e7d" + "2" * 58}
    assert (
        why_approval_invalid(approval(), checksums=changed, now=T0)
        == "006_enable_rls_IMPROVED.sql changed since approval (sha256 4d5e6f… → 9f8e7d…)"
    )


def test_files_added_or_removed_after_approval_are_named():
    fewer = {"006_add_platform_databases_table.sql": SUMS["006_add_platform_databases_table.sql"]}
    assert (
        why_approval_invalid(approval(), checksums=fewer, now=T0)
        == "006_enable_rls_IMPROVED.sql was removed since approval"
    )
    assert (
        why_approval_invalid(approval(), checksums={**SUMS, "x.sql": "00"}, now=T0)
        == "x.sql was added since approval"
    )


def test_a_revoked_approval_is_invalid_with_the_reason():
    assert (
        why_approval_invalid(revoke(approval(), "state rebuilt"), checksums=SUMS, now=T0)
        == "approval no longer valid: state rebuilt"
    )


def test_preflight_staleness():
    assert why_preflight_stale(None, now=T0) == "no preflight has run"
    assert why_preflight_stale(PREFLIGHT, now=T0) is None
    assert (
        why_preflight_stale(PREFLIGHT, now=T0 + timedelta(hours=13))
        == "preflight expired at 14:03 UTC: run preflight again"
    )


def test_approving_needs_a_fresh_go_preflight_of_the_same_files():
    assert why_cannot_approve(PREFLIGHT, checksums=SUMS, now=T0) is None
    assert why_cannot_approve({**PREFLIGHT, "outcome": "NO-GO"}, checksums=SUMS, now=T0).startswith(
        "preflight did not end GO"
    )
    changed = {**SUMS, "006_add_platform_databases_table.sql": "ffffff"}
    assert why_cannot_approve(PREFLIGHT, checksums=changed, now=T0) == (
        "006_add_platform_databases_table.sql changed since preflight (sha256 1a2b3c… → ffffff…): "
        "run preflight again"
    )
