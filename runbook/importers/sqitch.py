"""A sqitch project: `sqitch.plan` with `deploy/`, `revert/`, `verify/`. Plan order (which
already respects `requires`: a change may only require one before it), reworked changes
(`name@tag` scripts for the earlier version), verify scripts as suites of the change's phase,
run right after it; ledger sqitch's registry."""

from __future__ import annotations

from pathlib import Path

from runbook.importers.found import Found, ImportRefused, Migration
from runbook.sqitchplan import PlanError, load_plan

PLAN = "sqitch.plan"


def detect(folder: Path) -> bool:
    return (folder / PLAN).is_file()


def scan(folder: Path) -> Found:
    try:
        plan = load_plan(folder / PLAN)
    except PlanError as exc:
        raise ImportRefused(str(exc)) from None
    if not plan.changes:
        raise ImportRefused(
            f"{PLAN} names no change — expected at least one `name YYYY-MM-DDTHH:MM:SSZ planner <email>` line"
        )
    migrations, named = [], {PLAN, "sqitch.conf", "runbook.toml"}
    for change in plan.changes:
        deploy, revert, verify = (f"{d}/{change.script}" for d in ("deploy", "revert", "verify"))
        if not (folder / deploy).is_file():
            raise ImportRefused(
                f"{PLAN} names change {change.key} but {deploy} is missing — expected its deploy script"
            )
        migrations.append(
            Migration(
                change.key,
                change.note or change.name,
                deploy,
                revert if (folder / revert).is_file() else None,
                verify if (folder / verify).is_file() else None,
            )
        )
        named.update(m for m in (deploy, revert, verify))
    ignored = [
        (rel, "not named by sqitch.plan")
        for rel in sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        if rel not in named
    ]
    return Found("sqitch", {"kind": "sqitch", "plan": PLAN}, migrations, ignored)
