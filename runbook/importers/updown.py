"""Up/down pairs: `<version><sep><name>.up.sql` / `.down.sql` (golang-migrate's
`0001_create_users.up.sql`, `V0001.Name.up.sql`, dbmate-style split files), ledger golang-migrate's
`schema_migrations (version bigint, dirty boolean)`. Versions are integers."""

from __future__ import annotations

import re
from pathlib import Path

from runbook.importers.found import Found, ImportRefused, Migration, check_versions

NAME = re.compile(r"^V?(?P<version>\d+)(?:[._-](?P<name>.+?))?\.(?P<direction>up|down)\.sql$", re.I)


def detect(folder: Path) -> bool:
    return any(NAME.match(p.name) for p in folder.glob("*.sql"))


def scan(folder: Path) -> Found:
    files: dict[str, dict[str, list[str]]] = {"up": {}, "down": {}}
    names: dict[str, str] = {}
    ignored: list[tuple[str, str]] = []
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        match = NAME.match(path.name)
        if not match:
            if path.name != "runbook.toml":
                ignored.append((path.name, "not <version>_<name>.up.sql / .down.sql"))
            continue
        key = str(int(match["version"]))
        files[match["direction"].lower()].setdefault(key, []).append(path.name)
        names.setdefault(key, (match["name"] or f"version {key}").replace("_", " "))
    ups, downs = files["up"], files["down"]
    check_versions("version", ups, {k: (int(k),) for k in ups})
    check_versions("down version", downs, {})
    for key, down in downs.items():
        if key not in ups:
            raise ImportRefused(
                f"{down[0]} has no up file for version {key} — expected <version>_<name>.up.sql next to it"
            )
    migrations = [
        Migration(key, names[key], ups[key][0], next(iter(downs.get(key) or ()), None))
        for key in sorted(ups, key=int)
    ]
    return Found("updown", {"kind": "golang-migrate"}, migrations, ignored)
