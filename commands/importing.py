"""`python -m bot import DIR`: write a runbook for an existing migration folder (runbook.importers)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runbook.importers import ImportRefused, import_folder

EXIT_OK, EXIT_REFUSED = 0, 2


@dataclass(frozen=True)
class ImportOutcome:
    code: int
    lines: list[str]  # what to print: the path written and the summary, or the one-line refusal


def import_runbook(
    folder: str,
    *,
    layout: str | None = None,
    out: str | None = None,
    group: int = 1,
    owner: str = "coordinator",
) -> ImportOutcome:
    """Read `folder`, write its runbook (default `folder/runbook.toml`); refusals are one line."""
    target = Path(out) if out else Path(folder) / "runbook.toml"
    try:
        imported = import_folder(Path(folder), layout, group=group, owner=owner, out=target)
    except ImportRefused as exc:
        return ImportOutcome(EXIT_REFUSED, [f"import refused: {exc}"])
    replaced = target.exists()  # a re-import after new migrations: the reviewer diffs it like code
    try:
        target.write_text(imported.toml, encoding="utf-8")
    except OSError as exc:
        return ImportOutcome(
            EXIT_REFUSED,
            [f"import refused: cannot write {target}: {exc.strerror} — expected a writable path for --out"],
        )
    return ImportOutcome(
        EXIT_OK,
        [
            str(target),
            *(["  replaced the runbook that was there"] if replaced else []),
            *(f"  {line}" for line in imported.summary()),
            f"next: MIGRATE_RUNBOOK={target} python -m bot console --user <coordinator> preflight",
        ],
    )
