"""Plain SQL files: every `*.sql` of the folder in name order, no rollback, the bot's own ledger."""

from __future__ import annotations

import re
from pathlib import Path

from runbook.importers.found import Found, ImportRefused, Migration

DBMATE_DOWN = re.compile(r"^\s*--\s*migrate:down", re.M)


def detect(folder: Path) -> bool:
    return any(folder.glob("*.sql"))


def scan(folder: Path) -> Found:
    files = sorted(p.name for p in folder.glob("*.sql"))
    if not files:
        raise ImportRefused(f"no *.sql file in {folder} — expected the migration files themselves")
    ignored = [
        (p.name, "not a .sql file")
        for p in sorted(folder.iterdir())
        if p.is_file() and p.suffix != ".sql" and p.name != "runbook.toml"
    ]
    ignored += [
        (p.name + "/", "subfolder: a plain folder is read flat")
        for p in sorted(folder.iterdir())
        if p.is_dir()
    ]
    for name in files:  # dbmate keeps up and down in one file: run whole, it would undo itself
        if DBMATE_DOWN.search((folder / name).read_text(encoding="utf-8", errors="replace")):
            raise ImportRefused(
                f"{name} holds dbmate's `-- migrate:up` / `-- migrate:down` sections — expected one "
                "migration per file (split it into <version>_<name>.up.sql and .down.sql)"
            )
    migrations = [Migration(name, Path(name).stem.replace("_", " "), name) for name in files]
    return Found("plain", {"kind": "bot"}, migrations, ignored)
