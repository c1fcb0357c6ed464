"""A sqitch plan (`sqitch.plan`) read as sqitch reads it, with change and tag ids computed as
sqitch computes them (App::Sqitch::Plan, ::Plan::Change, ::Plan::Tag, sqitch 1.3).

Pure: reads the plan file and checks which scripts exist; never touches a database. The
importer orders a runbook by it; engine/ledgers/sqitch.py writes sqitch's registry from it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

_TS = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z"
_LINE = re.compile(
    rf"^\s*(?P<tag>@)?(?:\s*[+-]\s*)?(?P<name>[^\s:@#\\\[\]]+)\s*(?:\[(?P<deps>[^\]]+)\]\s*)?"
    rf"(?P<ts>{_TS})\s+(?P<planner>[^<]+?)\s+<(?P<email>[^>]+)>\s*$"
)
_UNESCAPE = {"\\\\": "\\", "\\n": "\n", "\\r": "\r"}


class PlanError(ValueError):
    """The plan cannot be read; the message says which line and what was expected."""


@dataclass
class Tag:
    name: str  # without the @
    planned_at: str
    planner_name: str
    planner_email: str
    note: str
    change: Change  # the change it follows in the plan
    id: str = ""


@dataclass
class Change:
    name: str
    planned_at: str
    planner_name: str
    planner_email: str
    note: str
    requires: list[str]
    conflicts: list[str]
    parent: Change | None = None
    tags: list[Tag] = field(default_factory=list)
    rework_tags: list[Tag] = field(
        default_factory=list
    )  # set when a later change of the same name reworks it
    script: str = ""  # e.g. "users.sql" or "users@v1.0.sql" (sqitch's path_segments)
    id: str = ""
    resolved: dict[str, str] = field(default_factory=dict)  # requires -> the change id it names

    @property
    def key(self) -> str:
        """How the runbook names this change: `name`, or `name@tag` for a reworked one."""
        return self.script[:-4] if self.script.endswith(".sql") else self.name


@dataclass
class Plan:
    project: str
    uri: str | None
    changes: list[Change]
    path: Path

    def change(self, key: str) -> Change:
        return next(c for c in self.changes if c.key == key)


def load_plan(path: Path | str) -> Plan:
    """Parse `path`; raises PlanError naming the line that does not read."""
    path = Path(path)
    pragmas: dict[str, str] = {}
    changes: list[Change] = []
    by_name: dict[str, Change] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.rstrip("\r")
        if line.startswith("%"):
            key, _, value = line[1:].partition("=")
            pragmas[key.strip()] = value.strip()
            continue
        body, note = _split_note(line)
        if not body.strip():
            continue
        match = _LINE.match(body)
        if not match:
            raise PlanError(
                f"{path.name}:{number}: expected `name [deps] YYYY-MM-DDTHH:MM:SSZ planner <email> # note`"
            )
        who = (match["ts"], match["planner"].strip(), match["email"].strip(), note)
        if match["tag"]:
            if not changes:
                raise PlanError(
                    f"{path.name}:{number}: tag @{match['name']} before any change — expected a change line above it"
                )
            tag = Tag(match["name"], *who, change=changes[-1])
            changes[-1].tags.append(tag)
            continue
        requires, conflicts = _dependencies(match["deps"] or "")
        change = Change(match["name"], *who, requires, conflicts, parent=changes[-1] if changes else None)
        if change.name in by_name:  # a rework: the earlier one's scripts carry a tag in their name
            earlier = by_name[change.name]
            since = changes[changes.index(earlier) + 1 :]
            earlier.rework_tags = [t for c in reversed(since) for t in c.tags] + earlier.tags
        by_name[change.name] = change
        changes.append(change)
    if "project" not in pragmas:
        raise PlanError(f"{path.name}: missing %project pragma — expected a `%project=<name>` line")
    plan = Plan(pragmas["project"], pragmas.get("uri"), changes, path)
    _finish(plan)
    return plan


def _split_note(line: str) -> tuple[str, str]:
    body, hash_, note = line.partition("#")
    if not hash_:
        return line, ""
    note = note.strip()
    for escaped, char in _UNESCAPE.items():
        note = note.replace(escaped, char)
    return body, note


def _dependencies(text: str) -> tuple[list[str], list[str]]:
    requires: list[str] = []
    conflicts: list[str] = []
    for dep in text.split():
        (conflicts if dep.startswith("!") else requires).append(dep.lstrip("!"))
    return requires, conflicts


def _finish(plan: Plan) -> None:
    """Scripts, ids and resolved dependencies, in plan order (a change's id needs its parent's)."""
    deploy = plan.path.parent / "deploy"
    seen: dict[str, Change] = {}
    for change in plan.changes:
        change.script = _script(change, deploy)
        for dep in change.requires:
            target = _resolve(plan, seen, dep)
            if target is None:
                raise PlanError(
                    f"{plan.path.name}: {change.name} requires {dep}, which is not earlier in the plan — expected "
                    f"`requires` to name a change above it"
                )
            change.resolved[dep] = target.id
        change.id = _sha1("change", change_info(plan, change))
        for tag in change.tags:
            tag.id = _sha1("tag", tag_info(plan, tag))
            seen[f"{change.name}@{tag.name}"] = change
            seen[f"@{tag.name}"] = change
        seen[change.name] = change
    _check_conflicts(plan)


def _check_conflicts(plan: Plan) -> None:
    """sqitch refuses to deploy a change whose conflict names no change of the plan ("Unable to
    find change") or one deployed before it ("Conflicts with previously deployed change"): a
    plan deployed in order cannot get past either, so neither may the bot."""
    position: dict[str, int] = {}
    for index, change in enumerate(plan.changes):
        position.setdefault(change.name, index)
    for index, change in enumerate(plan.changes):
        for dep in change.conflicts:
            project, _, key = dep.rpartition(":")
            if project and project != plan.project:
                continue  # another project's change: not knowable from this plan
            name = key.partition("@")[0]
            if name not in position:
                raise PlanError(
                    f"{plan.path.name}: {change.name} conflicts with {dep}, which the plan does not name — "
                    "sqitch refuses to deploy it (expected `!name` of a change in the plan)"
                )
            if position[name] < index:
                raise PlanError(
                    f"{plan.path.name}: {change.name} conflicts with {dep}, which is deployed before it — "
                    f"sqitch refuses to deploy {change.name} while {name} is deployed (expected a conflict "
                    "with a change that comes later in the plan, or revert it first)"
                )


def _script(change: Change, deploy: Path) -> str:
    if not change.rework_tags:
        return f"{change.name}.sql"
    names = [f"{change.name}@{t.name}.sql" for t in change.rework_tags]
    return next((n for n in names if (deploy / n).exists()), names[0])


def _resolve(plan: Plan, seen: dict[str, Change], dep: str) -> Change | None:
    project, _, key = dep.rpartition(":")
    if project and project != plan.project:
        return None  # another project's change: not resolvable from this plan
    return seen.get(key)


def change_info(plan: Plan, change: Change) -> str:
    """The text sqitch hashes into a change id (Plan/Change.pm `info`)."""
    lines = [
        f"project {plan.project}",
        *([f"uri {plan.uri}"] if plan.uri else []),
        f"change {change.name}",
        *([f"parent {change.parent.id}"] if change.parent else []),
        f"planner {change.planner_name} <{change.planner_email}>",
        f"date {change.planned_at}",
    ]
    if change.requires:
        lines.append("requires\n  + " + "\n  + ".join(change.requires))
    if change.conflicts:
        lines.append("conflicts\n  - " + "\n  - ".join(change.conflicts))
    if change.note:
        lines += ["", change.note]
    return "\n".join(lines)


def tag_info(plan: Plan, tag: Tag) -> str:
    """The text sqitch hashes into a tag id (Plan/Tag.pm `info`)."""
    lines = [
        f"project {plan.project}",
        *([f"uri {plan.uri}"] if plan.uri else []),
        f"tag @{tag.name}",
        f"change {tag.change.id}",
        f"planner {tag.planner_name} <{tag.planner_email}>",
        f"date {tag.planned_at}",
    ]
    if tag.note:
        lines += ["", tag.note]
    return "\n".join(lines)


def _sha1(kind: str, info: str) -> str:
    content = info.encode("utf-8")
    return hashlib.sha1(f"{kind} {len(content)}\0".encode() + content).hexdigest()


def script_hash(path: Path) -> str | None:
    """sqitch's `script_hash`: SHA-1 of the deploy script's bytes (None when it is missing)."""
    return hashlib.sha1(path.read_bytes()).hexdigest() if path.is_file() else None
