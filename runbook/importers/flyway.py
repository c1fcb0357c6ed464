"""Flyway's layout: `V<version>__<description>.sql`, undo `U<version>__<description>.sql`, in DIR
and its subfolders (Flyway scans a location recursively). Repeatable `R__` migrations are not
imported: Flyway re-applies them whenever their checksum changes, after the versioned ones,
which a runbook that runs each migration once does not do; they are listed as ignored."""

from __future__ import annotations

import re
from pathlib import Path

from runbook.flywaynames import parse_name
from runbook.importers.found import Found, ImportRefused, Migration, check_versions, version_tuple

PLACEHOLDER = re.compile(r"\$\{[A-Za-z_:.][\w:.]*\}")  # ${name}, ${flyway:user}


def detect(folder: Path) -> bool:
    return any((parse_name(p.name) or ("",))[0] in ("V", "U") for p in folder.rglob("*.sql"))


def scan(folder: Path) -> Found:
    ups: dict[str, list[str]] = {}
    downs: dict[str, list[str]] = {}
    descriptions: dict[str, str] = {}
    ignored: list[tuple[str, str]] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        parsed = parse_name(path.name)
        if parsed is None:
            if path.name != "runbook.toml":
                ignored.append((rel, "not a Flyway migration name (V<version>__<description>.sql)"))
            continue
        prefix, version, description = parsed
        if prefix == "R":
            ignored.append(
                (
                    rel,
                    "repeatable migration: Flyway re-applies it whenever it changes, after the versioned "
                    "ones; the bot runs each migration once — keep applying it with Flyway",
                )
            )
            continue
        if not version or not all(p.isdigit() for p in version.split(".")):
            raise ImportRefused(
                f"{rel}: version {version!r} is not a Flyway version — expected digits separated by "
                "dots or underscores (V1__x.sql, V1_1__x.sql)"
            )
        parts = list(version_tuple(version))
        while len(parts) > 1 and parts[-1] == 0:  # Flyway: 1.0 and 1 are one version
            parts.pop()
        key = ".".join(map(str, parts))
        placeholder = PLACEHOLDER.search(path.read_text(encoding="utf-8", errors="replace"))
        if placeholder:
            raise ImportRefused(
                f"{rel} uses the Flyway placeholder {placeholder.group(0)}, which Flyway replaces before "
                "running — expected plain SQL (the bot runs each file as it is)"
            )
        (ups if prefix == "V" else downs).setdefault(key, []).append(rel)
        if prefix == "V":
            descriptions[key] = description
    check_versions("version", ups, {k: version_tuple(k) for k in ups})
    check_versions("undo version", downs, {})
    for key, files in downs.items():
        if key not in ups:
            raise ImportRefused(
                f"{files[0]} undoes version {key}, which has no V{key}__….sql — expected an undo "
                "file only next to its migration"
            )
    keys = sorted(ups, key=version_tuple)
    migrations = [
        Migration(_version_text(ups[k][0]), descriptions[k], ups[k][0], next(iter(downs.get(k) or ()), None))
        for k in keys
    ]
    return Found("flyway", {"kind": "flyway"}, migrations, ignored)


def _version_text(file: str) -> str:
    """The version as Flyway writes it in flyway_schema_history (underscores become dots)."""
    parsed = parse_name(Path(file).name)
    assert parsed is not None and parsed[1] is not None  # `ups` holds versioned (V…) scripts only
    return parsed[1]
