"""Lock safety as the runbook declares it: squawk's settings, size thresholds, waivers, and
timeouts per lock level (format: sql/README.md, `[lock_safety]`, `[[waivers]]`, `[lock_timeouts]`).

Pure data, read with the rest of the runbook. Pre-flight (preflight/lint.py) judges squawk's
findings with these thresholds and waivers; the executor takes each file's lock_timeout and
retries from the level of the strongest lock it needs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runbook.sqlfile import LOCK_STRENGTH, ParsedFile

CONCURRENT = "concurrent"  # CREATE INDEX CONCURRENTLY / REINDEX CONCURRENTLY
LEVELS = (*LOCK_STRENGTH, CONCURRENT)
# The executor sets lock_timeout and statement_timeout on every file's session itself, so
# squawk's rules asking the file to SET them would flag every file.
DEFAULT_EXCLUDE = ("require-lock-timeout", "require-statement-timeout")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|kB|KB|MB|GB|TB)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {None: 1, "b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4}


class SafetyError(ValueError):
    """A malformed lock-safety table; the message names the file and the key."""


def parse_size(value: Any, where: str) -> int:
    """Bytes from 10485760, "10MB", "300 MB", "1GB" (powers of 1024, as pg_size_pretty)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _SIZE.match(str(value))
    if not match:
        raise SafetyError(f'{where}: {value!r} is not a size (use e.g. "10MB", "300MB", "1GB")')
    return int(float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "").lower() or None])


@dataclass(frozen=True)
class Waiver:
    """A squawk finding the team accepts, with its reason and the roster role who answers for it."""

    rule: str
    file: str
    reason: str
    who: str  # a roster role
    statement: str | None = None  # text the statement contains; None: every statement of the file

    def covers(self, rule: str, file: str, statement: str) -> bool:
        if rule != self.rule or file != self.file:
            return False
        return self.statement is None or _words(self.statement) in _words(statement)

    def describe(self) -> str:
        where = self.file + (f" (`{self.statement}`)" if self.statement else "")
        return f"{self.rule} in {where}: {self.reason} — {self.who}"


@dataclass(frozen=True)
class LockSafety:
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE  # squawk rules not run
    include: tuple[str, ...] = ()  # squawk's opt-in rules to run
    block_bytes: int = 10 * 1024**2  # an existing table at least this big makes any finding block
    block_rows: int = 100_000  # … or with at least this many rows (estimate)
    high_risk_bytes: int = 300 * 1024**2  # ACCESS EXCLUSIVE on a table this big: high risk
    auto_analyze: bool = False  # ANALYZE a table after an index was built on it


@dataclass(frozen=True)
class LevelTimeouts:
    lock_timeout: float
    lock_retries: int
    statement_timeout: float | None = None  # None: the step's (or the default)


@dataclass(frozen=True)
class LockTimeouts:
    """lock_timeout and retries per lock level; levels not listed use [defaults]."""

    levels: dict[str, LevelTimeouts] = field(default_factory=dict)

    def for_level(self, level: str) -> LevelTimeouts | None:
        return self.levels.get(level)

    def for_file(self, parsed: ParsedFile) -> LevelTimeouts | None:
        """The setting of the strongest table lock the file takes (a transactional file holds
        them all until it commits), or None when no level it takes is listed."""
        taken = [level for s in parsed.body for level, _ in s.locks]
        listed = [level for level in taken if level in self.levels]
        if not listed:
            return None
        return self.levels[max(listed, key=LOCK_STRENGTH.__getitem__)]


def load(
    data: dict[str, Any],
    where: str,
    known_files: Callable[[], list[str]],
    parse_duration: Callable[[Any, str], float],
) -> tuple[LockSafety, tuple[Waiver, ...], LockTimeouts]:
    """The `[lock_safety]`, `[[waivers]]` and `[lock_timeouts]` tables of a runbook."""
    return (
        _lock_safety(data.get("lock_safety", {}), f"{where} [lock_safety]"),
        tuple(
            _waiver(w, f"{where} waiver #{i + 1}", known_files) for i, w in enumerate(data.get("waivers", ()))
        ),
        _timeouts(
            data.get("lock_timeouts", {}),
            data.get("defaults", {}),
            f"{where} [lock_timeouts]",
            parse_duration,
        ),
    )


def _lock_safety(raw: dict[str, Any], where: str) -> LockSafety:
    d = LockSafety()
    return LockSafety(
        exclude=tuple(str(r) for r in raw.get("exclude", d.exclude)),
        include=tuple(str(r) for r in raw.get("include", d.include)),
        block_bytes=parse_size(raw.get("block_bytes", d.block_bytes), f"{where} block_bytes"),
        block_rows=int(raw.get("block_rows", d.block_rows)),
        high_risk_bytes=parse_size(raw.get("high_risk_bytes", d.high_risk_bytes), f"{where} high_risk_bytes"),
        auto_analyze=bool(raw.get("auto_analyze", d.auto_analyze)),
    )


def _waiver(raw: dict[str, Any], where: str, known_files: Callable[[], list[str]]) -> Waiver:
    missing = [k for k in ("rule", "file", "reason", "who") if not str(raw.get(k, "")).strip()]
    if missing:
        raise SafetyError(
            f"{where}: missing {', '.join(f'`{k}`' for k in missing)} (a waiver names the rule, the "
            "file, the reason and who answers for it, a roster role)"
        )
    if raw["file"] not in known_files():
        raise SafetyError(f"{where}: file {raw['file']!r} is not a file of this runbook")
    statement = raw.get("statement")
    return Waiver(
        rule=str(raw["rule"]),
        file=str(raw["file"]),
        reason=str(raw["reason"]).strip(),
        who=str(raw["who"]),
        statement=str(statement) if statement else None,
    )


def _timeouts(
    raw: dict[str, Any], defaults: dict[str, Any], where: str, parse_duration: Callable[[Any, str], float]
) -> LockTimeouts:
    levels: dict[str, LevelTimeouts] = {}
    for level, spec in raw.items():
        if level not in LEVELS:
            raise SafetyError(f"{where}: {level!r} is not a lock level ({', '.join(LEVELS)})")
        levels[level] = LevelTimeouts(
            lock_timeout=parse_duration(
                spec.get("lock_timeout", defaults.get("lock_timeout", "2s")), f"{where}.{level}"
            ),
            lock_retries=int(
                spec.get("lock_retries", 0 if level == CONCURRENT else defaults.get("lock_retries", 3))
            ),
            statement_timeout=(
                parse_duration(spec["statement_timeout"], f"{where}.{level}")
                if "statement_timeout" in spec
                else None
            ),
        )
    if CONCURRENT not in levels:  # a short lock_timeout cancels a concurrent build half-way
        levels[CONCURRENT] = LevelTimeouts(lock_timeout=600.0, lock_retries=0, statement_timeout=3600.0)
    return LockTimeouts(levels)


def _words(text: str) -> str:
    return " ".join(text.lower().replace(";", " ").split())
