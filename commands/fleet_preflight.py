"""`preflight` with MIGRATE_TARGETS: every target's pre-flight, concurrently within [fleet]
parallel, with the runbook's backup policy; ONE summary (N GO, each NO-GO named with its reason).

Each target's pre-flight is the single-database one (preflight.run_preflight) on the target's
own Core: its own run (GO / NO-GO, the report stored in it), under its own run lock. Whatever
keeps a target from being checked — its database unreachable, its lock held by another run, a
run of it with phases applied — makes that target NO-GO with the reason, never the whole fleet.
With the runbook's `[fleet] backup = "canary"`, the targets outside the canary wave take no
backup (and so no rehearsal, which runs on the backup's copy): their lines say so (⏭️), and the
summary names them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from commands import fleet_templates
from commands.fleetcore import let_go, store, target_core, the_fleet
from commands.parse import Command
from commands.preflight import _why_not_replaceable
from commands.result import FAILED, OK, Outcome, Post, Progress, Reporter
from core import clock
from core.targets import Target
from preflight import run_preflight
from runbook.model import RunbookError
from runbook.validate import checksums, plan
from state.fleet import FleetStatus, TargetStatus
from state.machine import IllegalTransition, Status
from workflows.core import Core
from workflows.locked import guarded

log = logging.getLogger("migrate.fleet")


@dataclass
class TargetResult:
    """One target's pre-flight, as the summary and the fleet record need it."""

    name: str
    wave: int
    go: bool
    reasons: list[str]
    run_id: str | None = None
    identity: str | None = None
    backup: dict[str, Any] | None = None  # {"path", "sha256", "verified"} or {"skipped": why}
    preflight_at: str | None = None

    def record(self) -> dict[str, Any]:
        return {
            "outcome": "GO" if self.go else "NO-GO",
            "run_id": self.run_id,
            "identity": self.identity,
            "reasons": self.reasons,
            "backup": self.backup,
            "preflight_at": self.preflight_at,
        }


class _Collect:
    """A Reporter that keeps a target's posts (the summary speaks for every target)."""

    def __init__(self) -> None:
        self.posts: list[Post] = []

    def post(self, post: Post) -> None:
        self.posts.append(post)

    def progress(self, progress: Progress) -> None:
        pass


def skip_reason(core: Core, target: Target) -> str | None:
    """Why this target's backup is skipped on purpose, or None (it takes one)."""
    fleet = the_fleet(core)
    if core.runbook.fleet.backup != "canary" or target in fleet.canary():
        return None
    names = ", ".join(t.name for t in fleet.canary())
    return f'the runbook\'s [fleet] backup = "canary": only the canary ({names}) is backed up'


def fleet_preflight(core: Core, user: str, cmd: Command) -> Outcome:
    fleet = the_fleet(core)
    try:
        rb = core.reload_runbook()
    except RunbookError as exc:
        return Outcome.refused(core.redact(str(exc)))
    fstore = store(core)
    try:
        run = fstore.create(
            user,
            rb.id,
            fleet.targets,
            parallel=fleet.parallel,
            stop_after_failures=fleet.stop_after_failures,
        )
    except IllegalTransition as exc:
        return Outcome.refused(exc.reason)

    def work(reporter: Reporter) -> int:
        with ThreadPoolExecutor(fleet.parallel, thread_name_prefix="fleet-preflight") as pool:
            same = _same_databases(fleet.targets, list(pool.map(lambda t: _identity(core, t), fleet.targets)))
            results = list(
                pool.map(lambda t: _target(core, run.id, user, t, same.get(t.name)), fleet.targets)
            )
        go = [r for r in results if r.go]
        now = clock.now()
        record = {
            "at": run.created_at.isoformat(),
            "finished_at": now.isoformat(),
            "expires_at": (now + timedelta(hours=core.settings.preflight_ttl_hours)).isoformat(),
            "outcome": "GO" if go else "NO-GO",
            "go": [r.name for r in go],
            "targets": {r.name: r.record() for r in results},
            "checksums": checksums(rb),
            "plan": plan(rb),
        }
        fstore.transition(
            run.id,
            FleetStatus.GO if go else FleetStatus.NO_GO,
            actor=user,
            action="preflight",
            fields={"preflight": record, "backup_policy": rb.fleet.backup},
            evidence={"go": len(go), "nogo": {r.name: r.reasons[:1] for r in results if not r.go}},
        )
        for post in fleet_templates.preflight_summary(rb, run.id, fleet, results, core.roster):
            reporter.post(post)
        return OK if len(go) == len(results) else FAILED

    return Outcome(
        OK,
        reply=[
            f"Pre-flight of {len(fleet.targets)} databases started (fleet run {run.id}); "
            "one summary will be posted in the channel."
        ],
        posts=[fleet_templates.preflight_started(rb, run.id, fleet, user)],
        work=work,
        run_id=run.id,
    )


def _identity(core: Core, target: Target) -> str | None:
    """The database a target reaches (its server's word), None when it cannot be asked now."""
    try:
        return target_core(core, target).keys.target
    except Exception:  # noqa: BLE001 - unreachable: its own pre-flight says why
        return None


def _same_databases(targets: Sequence[Target], identities: list[str | None]) -> dict[str, str]:
    """{target name: the earlier target (file order) reaching the same database}: two URL
    spellings (localhost and 127.0.0.1, another DNS name or port) of one database."""
    first: dict[str, str] = {}
    same: dict[str, str] = {}
    for target, identity in zip(targets, identities):
        if identity is None:
            continue
        if identity in first:
            same[target.name] = first[identity]
        else:
            first[identity] = target.name
    return same


def _target(core: Core, fleet_id: str, user: str, target: Target, same_as: str | None = None) -> TargetResult:
    """One target's pre-flight; anything that keeps it from running is its NO-GO reason."""
    fstore = store(core)
    fstore.move(fleet_id, target.name, TargetStatus.PREFLIGHT, actor=user, action="preflight started")
    try:
        if same_as is not None:
            why = (
                f"same database as target {same_as} ({target.url_env} reaches it too): "
                "list each database once in MIGRATE_TARGETS"
            )
            result = TargetResult(target.name, target.wave, False, [why])
        else:
            result = _checked(core, user, target)
        let_go(target_core(core, target))
    except Exception as exc:  # noqa: BLE001 - one target's trouble is its NO-GO, never the fleet's crash
        reason = core.redact(f"{type(exc).__name__}: {exc}")[:300]
        log.warning("fleet pre-flight of %s failed: %s", target.name, reason)
        result = TargetResult(target.name, target.wave, False, [f"pre-flight could not run: {reason}"])
    fstore.move(
        fleet_id,
        target.name,
        TargetStatus.GO if result.go else TargetStatus.NO_GO,
        actor=user,
        action="preflight",
        fields={
            "run_id": result.run_id,
            "identity": result.identity,
            "backup": result.backup,
            "reason": None if result.go else "; ".join(result.reasons)[:500],
        },
    )
    return result


def _checked(core: Core, user: str, target: Target) -> TargetResult:
    tcore = target_core(core, target)
    refused = _why_not_replaceable(tcore.store.current())
    if refused:
        return TargetResult(target.name, target.wave, False, [refused], identity=tcore.keys.target)
    handle = tcore.lock.acquire(f"fleet preflight by {user}")
    if handle is None:
        holder = tcore.lock.holder() or {}
        why = f"another run holds its lock ({holder.get('owner', 'unknown owner')})"
        return TargetResult(target.name, target.wave, False, [why], identity=tcore.keys.target)
    rb = tcore.runbook
    try:
        run = tcore.store.create(
            user,
            rb.id,
            phases=[p.number for p in rb.migration_phases],
            verification=[p.number for p in rb.phases if p.is_verification],
            meta={"fleet_target": target.name},
        )
    except IllegalTransition as exc:
        handle.release()
        return TargetResult(target.name, target.wave, False, [exc.reason], identity=tcore.keys.target)
    skipped = skip_reason(core, target)

    def body(reporter: Reporter) -> int:
        report = run_preflight(tcore.settings, rb, incident=core.store.incident(), skip_backup=skipped)
        data = report.to_dict()
        data["plan"] = plan(rb)
        data["outcome"] = "GO" if report.go else "NO-GO"
        data["expires_at"] = (clock.now() + timedelta(hours=core.settings.preflight_ttl_hours)).isoformat()
        if report.skipped_backup:
            data["backup"] = {**report.skipped_backup, "verified": False, "path": None, "sha256": None}
        tcore.store.transition(
            run.id,
            Status.GO if report.go else Status.NO_GO,
            actor=user,
            action="preflight",
            outcome=data["outcome"],
            fields={"preflight": data},
            evidence={"nogo": report.nogo_reasons, "checks": len(report.checks), "fleet_target": target.name},
        )
        return OK if report.go else FAILED

    collected = _Collect()
    guarded(tcore, handle, run.id, user, body)(collected)
    stored = tcore.store.get(run.id)
    pf = (stored.preflight or {}) if stored else {}
    go = stored is not None and stored.status is Status.GO
    reasons = (
        list(pf.get("nogo_reasons") or []) or [p.title for p in collected.posts] or ["pre-flight did not end"]
    )
    return TargetResult(
        target.name,
        target.wave,
        go,
        [] if go else reasons,
        run_id=run.id,
        identity=tcore.keys.target,
        backup=_backup_record(pf.get("backup")),
        preflight_at=pf.get("finished_at"),
    )


def _backup_record(backup: dict[str, Any] | None) -> dict[str, Any] | None:
    if not backup:
        return None
    if backup.get("skipped"):
        return {"skipped": backup["skipped"]}
    return {k: backup.get(k) for k in ("path", "sha256", "verified", "size")}
