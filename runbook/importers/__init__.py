"""`python -m bot import DIR`: an existing migration folder read as it is, written as a runbook.

Pure: reads the folder, returns the runbook's TOML text and a summary; never touches a
database. Each layout module (flyway, updown, sqitch, plain) finds the migrations in order and
the ledger its tool keeps; `render` turns them into a readable runbook.toml (format: sql/README.md).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from runbook.importers import flyway, plain, sqitch, updown
from runbook.importers.found import Found, ImportRefused, Migration

__all__ = ["LAYOUTS", "ImportRefused", "Imported", "import_folder", "detect"]
LAYOUTS = {"sqitch": sqitch, "flyway": flyway, "updown": updown, "plain": plain}  # detection order
EXPECTED = (
    "V<version>__<description>.sql (flyway), <version>_<name>.up.sql/.down.sql (updown), "
    "sqitch.plan with deploy/ (sqitch) or *.sql files (plain)"
)


@dataclass(frozen=True)
class Imported:
    found: Found
    toml: str
    group: int = 1

    def summary(self) -> list[str]:
        """What was found, for the operator: counts, missing rollbacks, verify scripts, ignored files."""
        ms = self.found.migrations
        missing = [m.up for m in ms if not m.down]
        lines = [
            f"layout {self.found.layout}, ledger {self.found.ledger['kind']}: {len(ms)} migrations "
            f"({ms[0].key} … {ms[-1].key})",
            f"rollbacks: {len(ms) - len(missing)} present, {len(missing)} missing"
            + (f" ({', '.join(missing[:8])}{' …' if len(missing) > 8 else ''})" if missing else ""),
            f"verify scripts: {sum(1 for m in ms if m.verify)}",
        ]
        lines.append(self._grouping())
        lines += [f"ignored {file}: {why}" for file, why in self.found.ignored]
        return lines

    def _grouping(self) -> str:
        ms, g = self.found.migrations, self.group
        phases = -(-len(ms) // g)
        if g == 1:
            return f"phases: {phases}, one migration each"
        partial = [
            n
            for n, start in enumerate(range(0, len(ms), g), 1)
            if not all(m.down for m in ms[start : start + g])
        ]
        return (
            f"phases: {phases}, {g} migrations each (--group {g}"
            + (f"; the last has {len(ms) - (phases - 1) * g}" if len(ms) % g else "")
            + "); each step keeps its own "
            "revert (a phase's rollback runs them newest first) and verify script (run right after it)"
            + (
                f"; phase {', '.join(map(str, partial))} cannot be rolled back by the bot: a migration of it has "
                "no rollback file"
                if partial
                else ""
            )
        )


def detect(folder: Path) -> str:
    """The layout of `folder` (first match in LAYOUTS order); ImportRefused when none fits."""
    if not folder.is_dir():
        raise ImportRefused(f"{folder} is not a folder — expected a folder of migrations: {EXPECTED}")
    for name, module in LAYOUTS.items():
        if module.detect(folder):
            return name
    raise ImportRefused(f"nothing recognised in {folder} — expected {EXPECTED}")


def import_folder(
    folder: Path | str,
    layout: str | None = None,
    *,
    group: int = 1,
    owner: str = "coordinator",
    runbook_id: str | None = None,
    out: Path | None = None,
) -> Imported:
    """Read `folder` in `layout` (detected when None); ImportRefused with one line when the
    folder is not that layout or is inconsistent. Paths in the runbook are relative to where it
    is written (`out`, default `folder/runbook.toml`)."""
    folder = Path(folder)
    layout = layout or detect(folder)
    if layout not in LAYOUTS:
        raise ImportRefused(f"unknown layout {layout!r} — expected one of {', '.join(LAYOUTS)}")
    if group < 1:
        raise ImportRefused(f"--group {group}: expected a number of migrations per phase, 1 or more")
    found = LAYOUTS[layout].scan(folder)
    if not found.migrations:
        raise ImportRefused(f"no {layout} migration in {folder} — expected {EXPECTED}")
    prefix = os.path.relpath(folder.resolve(), (out or folder / "runbook.toml").resolve().parent)
    return Imported(
        found, render(_relative_to(found, prefix), runbook_id or _id(folder), group, owner), group
    )


def _relative_to(found: Found, prefix: str) -> Found:
    """The folder's paths as seen from the runbook's own folder."""
    if prefix == ".":
        return found

    def at(rel: str) -> str:
        return rel and f"{Path(prefix).as_posix()}/{rel}"

    def at_opt(rel: str | None) -> str | None:
        return rel and at(rel)

    migrations = [
        replace(m, up=at(m.up), down=at_opt(m.down), verify=at_opt(m.verify)) for m in found.migrations
    ]
    ledger = {k: at(v) if k == "plan" else v for k, v in found.ledger.items()}
    return replace(found, migrations=migrations, ledger=ledger)


def _id(folder: Path) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", folder.resolve().name).strip("-") or "imported"


def render(found: Found, runbook_id: str, group: int, owner: str) -> str:
    """The runbook as TOML a reviewer can read: one phase per `group` migrations."""
    ms = found.migrations
    out = [
        f"# Runbook imported by `python -m bot import` from a {found.layout} folder: {len(ms)} migrations.",
        "# Review it like code; the approval binds this file and every file it names (sql/README.md).",
        "",
        "[runbook]",
        f"id = {_q(runbook_id)}",
        f"title = {_q(f'Migrations of {runbook_id}')}",
        f"version = {_q(ms[-1].key)}",
        "",
        "[ledger]                     # what is applied, read and written as the tool does",
        *(f"{k} = {_q(v)}" for k, v in found.ledger.items()),
    ]
    for number, start in enumerate(range(0, len(ms), group), 1):
        out += _phase(number, ms[start : start + group], owner)
    return "\n".join(out) + "\n"


def _phase(number: int, ms: list[Migration], owner: str) -> list[str]:
    name = ms[0].name if len(ms) == 1 else f"{ms[0].key} … {ms[-1].key}"
    out = [
        "",
        "[[phases]]",
        f"number = {number}",
        f"name = {_q(f'{ms[0].key}: {name}' if len(ms) == 1 else name)}",
        f"owner = {_q(owner)}",
    ]
    if len(ms) == 1 and ms[0].down:
        out.append(f"rollback = {_q(ms[0].down)}")
    for i, m in enumerate(ms, 1):
        out += [
            "",
            "[[phases.steps]]",
            f"id = {_q(f'{number}.{i}')}",
            f"name = {_q(m.name)}",
            f"file = {_q(m.up)}",
            f"migration = {_q(m.key)}",
        ]
        if len(ms) > 1:  # several migrations in a phase: each undone and verified on its own
            out += [f"revert = {_q(m.down)}"] if m.down else []
            out += [f"verify = {_q(m.verify)}       # run right after this step"] if m.verify else []
    for m in ms if len(ms) == 1 else ():
        if m.verify:
            out += [
                "",
                "[[phases.suites]]                     # the change's verify script, right after it",
                f"name = {_q(f'verify {m.key}')}",
                f"file = {_q(m.verify)}",
            ]
    return out


def _q(value: str) -> str:
    """A TOML basic string."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
