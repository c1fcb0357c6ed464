"""Approval binds to what was approved: the preflight report, its backup and the sha256 of
every runbook file. Pure functions over plain dicts (stored in `Run.approval`).

Every `why_*` function returns None when all is well, else one sentence saying why not and,
where it helps, what to do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from core.clock import hhmm


class LoadedPlan(Protocol):
    """What `why_plan_not_approved` reads of a loaded runbook (runbook.model.Runbook)."""

    @property
    def path(self) -> Path: ...

    @property
    def sha256(self) -> str: ...


REVOKED = "revoked"  # key set on an approval or preflight that must not be used any more


def bind_approval(
    *,
    by: str,
    at: datetime,
    ttl_hours: float,
    preflight: Mapping[str, Any],
    checksums: Mapping[str, str],
    mode: str = "now",
    scheduled_for: datetime | None = None,
    plan: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The approval record. It expires `ttl_hours` after the moment it applies to (now, or
    the scheduled time), and carries the checksums (runbook file included) and backup it was
    given for, and the resolved plan's entries, which name what changed in the runbook later."""
    if mode not in ("now", "scheduled"):
        raise ValueError(f"approval mode must be 'now' or 'scheduled' (got {mode!r})")
    if mode == "scheduled" and scheduled_for is None:
        raise ValueError("a scheduled approval needs scheduled_for")
    expires = (scheduled_for or at) + timedelta(hours=ttl_hours)
    backup = preflight.get("backup") or {}
    return {
        "by": by,
        "at": at.isoformat(),
        "expires_at": expires.isoformat(),
        "mode": mode,
        "scheduled_for": scheduled_for.isoformat() if scheduled_for else None,
        "checksums": dict(checksums),
        "plan": dict(plan or {}),
        "preflight_at": preflight.get("at"),
        "backup_sha256": backup.get("sha256"),
        "backup_path": backup.get("path"),
    }


def why_approval_invalid(
    approval: Mapping[str, Any] | None,
    *,
    checksums: Mapping[str, str],
    now: datetime,
    plan: Mapping[str, str] | None = None,
) -> str | None:
    """Why `run` must not use this approval now: missing, revoked, expired, or a runbook file
    changed (named, with old and new sha256 prefixes; with `plan`, the runbook's current
    plan entries, also which of them changed)."""
    if not approval:
        return "not approved"
    if approval.get(REVOKED):
        return f"approval no longer valid: {approval[REVOKED]}"
    expires = datetime.fromisoformat(approval["expires_at"])
    if now >= expires:
        return f"approval expired at {hhmm(expires)}"
    changed = why_files_changed(approval.get("checksums") or {}, checksums, since="approval")
    if changed and plan is not None and approval.get("plan"):
        entries = why_plan_changed(approval["plan"], plan)
        changed += f" — in the plan: {entries}" if entries else ""
    return changed


def why_plan_not_approved(runbook: LoadedPlan, approval: Mapping[str, Any] | None) -> str | None:
    """Why the plan a process holds in memory (`runbook`, loaded from `runbook.path`) is not
    the one approved, or None: a serve process loaded the file before it changed."""
    approved = ((approval or {}).get("checksums") or {}).get(runbook.path.name)
    if approved == runbook.sha256:
        return None
    return (
        f"this bot process holds {runbook.path.name} as loaded before the approval (sha256 {runbook.sha256[:6]}…, "
        f"approved {str(approved)[:6]}…): run preflight again (it reloads the runbook)"
    )


def why_plan_changed(
    before: Mapping[str, str], after: Mapping[str, str] | None, limit: int = 5
) -> str | None:
    """Which entries of a resolved plan differ (`step 2.1 choose "A" → "B"`), the first `limit`."""
    if after is None:
        return "the runbook no longer loads"
    changes = _differences(
        before,
        after,
        [*before, *(n for n in after if n not in before)],
        added=lambda name: f"{name} added",
        removed=lambda name: f"{name} removed",
        changed=lambda name, old, new: (
            f"{name} {old} → {new}" if len(old) <= 40 and len(new) <= 40 else f"{name} changed"
        ),
    )
    more = f" (and {len(changes) - limit} more)" if len(changes) > limit else ""
    return "; ".join(changes[:limit]) + more if changes else None


def why_files_changed(before: Mapping[str, str], after: Mapping[str, str], *, since: str) -> str | None:
    """The first difference between two {file: sha256} maps, as a sentence; None if equal."""
    changes = _differences(
        before,
        after,
        sorted(set(before) | set(after)),
        added=lambda name: f"{name} was added since {since}",
        removed=lambda name: f"{name} was removed since {since}",
        changed=lambda name, old, new: f"{name} changed since {since} (sha256 {old[:6]}… → {new[:6]}…)",
    )
    return "; ".join(changes) or None


def _differences(
    before: Mapping[str, str],
    after: Mapping[str, str],
    names: Iterable[str],
    *,
    added: Callable[[str], str],
    removed: Callable[[str], str],
    changed: Callable[[str, str, str], str],
) -> list[str]:
    """Name by name (in `names` order), how two {name: value} maps differ, worded by the caller."""
    out: list[str] = []
    for name in names:
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if old is None:
            out.append(added(name))
        elif new is None:
            out.append(removed(name))
        else:
            out.append(changed(name, old, new))
    return out


def why_preflight_stale(preflight: Mapping[str, Any] | None, *, now: datetime) -> str | None:
    """Why the preflight report can no longer back a decision: missing, revoked or expired."""
    if not preflight:
        return "no preflight has run"
    if preflight.get(REVOKED):
        return f"preflight no longer valid: {preflight[REVOKED]}"
    expires_at = preflight.get("expires_at")
    if not expires_at:
        return "the preflight report has no expiry time"
    expires = datetime.fromisoformat(expires_at)
    if now >= expires:
        return f"preflight expired at {hhmm(expires)}: run preflight again"
    return None


def why_cannot_approve(
    preflight: Mapping[str, Any] | None, *, checksums: Mapping[str, str], now: datetime
) -> str | None:
    """Why the TPM cannot approve on this preflight: stale, NO-GO, or files changed since."""
    stale = why_preflight_stale(preflight, now=now)
    if stale or not preflight:  # no preflight: `stale` says so
        return stale
    if str(preflight.get("outcome", "")).lower() != "go":
        return "preflight did not end GO: fix what it reported and run preflight again"
    changed = why_files_changed(preflight.get("checksums") or {}, checksums, since="preflight")
    return f"{changed}: run preflight again" if changed else None


def revoke(record: Mapping[str, Any] | None, reason: str) -> dict[str, Any] | None:
    """A copy of an approval or preflight record marked unusable, with the reason."""
    return {**record, REVOKED: reason} if record else None
