"""Flyway's script names, read as Flyway reads them (pure: the importer and the Flyway ledger share it)."""

from __future__ import annotations

import re
from pathlib import Path

NAME = re.compile(r"^(?P<prefix>[VUR])(?P<version>[^_]*(?:_[^_]+)*?)__(?P<description>.+)\.sql$")


def parse_name(file_name: str) -> tuple[str, str | None, str] | None:
    """(prefix, version, description) of a Flyway script name, as Flyway reads it: `V1_1__Add_x.sql`
    → ("V", "1.1", "Add x"); a repeatable (`R__…`) has no version. None: not a Flyway name."""
    match = NAME.match(Path(file_name).name)
    if not match:
        return None
    version = match["version"].replace("_", ".") or None
    return match["prefix"], version, match["description"].replace("_", " ")
