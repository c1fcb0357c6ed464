"""What an importer found in a folder: migrations in order, what it ignored and why."""

from __future__ import annotations

import re
from dataclasses import dataclass, field


class ImportRefused(ValueError):
    """The folder holds nothing recognisable or is inconsistent; the message is one line that
    says what was expected."""


@dataclass(frozen=True)
class Migration:
    key: str  # the ledger's name for it: a version, a sqitch change (name or name@tag), a file name
    name: str  # what it does, from the file name or the plan's note
    up: str  # path relative to the folder
    down: str | None = None
    verify: str | None = None


@dataclass
class Found:
    layout: str
    ledger: dict[str, str]  # the runbook's [ledger] table
    migrations: list[Migration]
    ignored: list[tuple[str, str]] = field(default_factory=list)  # (file, why)


_SEQUENTIAL_MAX = 10**6  # bigger integer versions are timestamps (20240101120000): gaps are normal


def check_versions(label: str, versions: dict[str, list[str]], numbers: dict[str, tuple[int, ...]]) -> None:
    """Two files for one version, or a gap in plain sequential versions: ImportRefused."""
    for version, files in versions.items():
        if len(files) > 1:
            raise ImportRefused(
                f"two files for {label} {version}: {', '.join(sorted(files))} — expected one per version"
            )
    plain = sorted(n[0] for n in numbers.values() if len(n) == 1)
    if plain and len(plain) == len(numbers) and plain[-1] < _SEQUENTIAL_MAX:
        missing = sorted(set(range(plain[0], plain[-1] + 1)) - set(plain))
        if missing:
            raise ImportRefused(
                f"a gap in {label}s: {', '.join(map(str, missing[:5]))} missing between {plain[0]} and "
                f"{plain[-1]} — expected consecutive versions (or name the missing file)"
            )


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.split(r"[._]", version) if p != "")
