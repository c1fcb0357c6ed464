"""The fleet: which databases one runbook goes to, in which waves (MIGRATE_TARGETS).

`MIGRATE_TARGETS` names a TOML file (README, "Many databases (fleet)"):

    [fleet]
    parallel = 4               # databases at once within a wave (default 4)
    stop_after_failures = 1    # after this many failed databases nothing new starts (default 1)

    [[targets]]
    name = "eu-1"              # how commands and the card name it: letters, digits, . _ -
    url_env = "EU1_DATABASE_URL"  # the environment variable holding its URL (never the URL itself)
    wave = 0                   # 0 = the canary; then 1, 2, ...

Unset, the fleet is the single `DATABASE_URL` as one target in wave 0, so everything that
works on a fleet works on one database unchanged.

`load_fleet(path, env)` reads and checks the file; any problem raises `ConfigError` with one
line saying what to type instead (the CLI prints it and exits 2, like every configuration
error). URLs are read from the environment by name and are secrets: `Fleet.secrets()` gives
their passwords for `core.redact`, and no message here ever quotes a URL.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from core.errors import ConfigError
from core.urls import credentials_problem, url_secrets

DEFAULT_PARALLEL = 4
DEFAULT_STOP_AFTER_FAILURES = 1
MAX_PARALLEL = 64  # a wave's databases at once; each holds connections (README: scale on paper)
MAX_TARGETS = 1000
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SINGLE_NAME = "default"  # the one target when MIGRATE_TARGETS is unset

EXAMPLE = '[[targets]] name = "eu-1", url_env = "EU1_DATABASE_URL", wave = 0'
_TARGET_KEYS = ("name", "url_env", "wave")
_FLEET_KEYS = ("parallel", "stop_after_failures")


@dataclass(frozen=True)
class Target:
    """One database of the fleet. `url` is a secret: show `name`, never `url`."""

    name: str
    url_env: str
    wave: int
    url: str

    def __repr__(self) -> str:  # never the URL, even in a traceback or a test failure
        return f"Target(name={self.name!r}, url_env={self.url_env!r}, wave={self.wave})"


@dataclass(frozen=True)
class Fleet:
    """The databases and the rules of a fleet run; targets in file order."""

    targets: tuple[Target, ...]
    parallel: int = DEFAULT_PARALLEL
    stop_after_failures: int = DEFAULT_STOP_AFTER_FAILURES
    path: Path | None = None  # None: the single DATABASE_URL

    @property
    def single(self) -> bool:
        """True when MIGRATE_TARGETS is unset (the one DATABASE_URL)."""
        return self.path is None

    def waves(self) -> list[tuple[int, tuple[Target, ...]]]:
        """(wave number, its targets in file order), lowest wave (the canary) first."""
        numbers = sorted({t.wave for t in self.targets})
        return [(n, tuple(t for t in self.targets if t.wave == n)) for n in numbers]

    def canary(self) -> tuple[Target, ...]:
        return self.waves()[0][1]

    def get(self, name: str) -> Target | None:
        return next((t for t in self.targets if t.name == name), None)

    def names(self) -> list[str]:
        return [t.name for t in self.targets]

    def secrets(self) -> tuple[str, ...]:
        """The password of every target's URL (as written and decoded), for redaction."""
        return url_secrets(t.url for t in self.targets)


def single_fleet(database_url: str | None) -> Fleet:
    """The fleet of one: DATABASE_URL as target `default`, wave 0."""
    if not database_url:
        raise ConfigError(
            "set DATABASE_URL, or MIGRATE_TARGETS to a targets file (see README, Configuration)"
        )
    return Fleet(targets=(Target(SINGLE_NAME, "DATABASE_URL", 0, database_url),))


def load_fleet(path: str | Path | None, env: Mapping[str, str], *, database_url: str | None = None) -> Fleet:
    """The fleet `path` describes (None or "": the single `database_url`). ConfigError, one
    line saying what to write instead, when the file is missing, not TOML, or wrong."""
    if path is None or not str(path).strip():
        return single_fleet(database_url)
    path = Path(str(path).strip())
    where = f"MIGRATE_TARGETS ({path})"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file: create it ({EXAMPLE}) or unset MIGRATE_TARGETS") from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot be read ({exc.strerror}): make it a readable file") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: not UTF-8 text: save it as UTF-8 TOML") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML ({exc}): write e.g. {EXAMPLE}") from None
    return _fleet(where, path, data, env)


def _fleet(where: str, path: Path, data: dict[str, Any], env: Mapping[str, str]) -> Fleet:
    unknown = sorted(set(data) - {"targets", "fleet"})
    if unknown:
        raise ConfigError(
            f"{where}: unknown table or key {unknown[0]!r}: only [fleet] and [[targets]] belong here"
        )
    settings = data.get("fleet", {})
    if not isinstance(settings, dict):
        raise ConfigError(f"{where}: fleet must be a table: write [fleet] then parallel = 4")
    unknown = sorted(set(settings) - set(_FLEET_KEYS))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {unknown[0]!r} in [fleet]: the keys are parallel and stop_after_failures"
        )
    parallel = _count(where, "[fleet] parallel", settings.get("parallel", DEFAULT_PARALLEL), MAX_PARALLEL)
    stop = _count(
        where,
        "[fleet] stop_after_failures",
        settings.get("stop_after_failures", DEFAULT_STOP_AFTER_FAILURES),
        MAX_TARGETS,
    )
    entries = data.get("targets")
    if entries is None or entries == []:
        raise ConfigError(f"{where}: names no database: add one {EXAMPLE}")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f"{where}: targets must be an array of tables: write each as {EXAMPLE}")
    if len(entries) > MAX_TARGETS:
        raise ConfigError(f"{where}: {len(entries)} targets, at most {MAX_TARGETS}: split the fleet")
    targets = [_target(where, n, entry, env) for n, entry in enumerate(entries, 1)]
    _no_duplicates(where, targets)
    if not any(t.wave == 0 for t in targets):
        first = min(t.wave for t in targets)
        raise ConfigError(
            f"{where}: no canary: the first wave is {first}; give the canary database(s) wave = 0"
        )
    return Fleet(targets=tuple(targets), parallel=parallel, stop_after_failures=stop, path=path)


def _count(where: str, what: str, value: object, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise ConfigError(f"{where}: {what} must be a whole number from 1 to {maximum} (got {value!r:.40})")
    return value


def _target(where: str, n: int, entry: dict[str, Any], env: Mapping[str, str]) -> Target:
    label = f"[[targets]] #{n}"
    unknown = sorted(set(entry) - set(_TARGET_KEYS))
    if unknown:
        hint = (
            " (put the URL in an environment variable and name it in url_env)" if unknown[0] == "url" else ""
        )
        raise ConfigError(
            f"{where}: unknown key {unknown[0]!r} in {label}: the keys are name, url_env, wave{hint}"
        )
    missing = [k for k in _TARGET_KEYS if k not in entry]
    if missing:
        raise ConfigError(f"{where}: {label} has no {missing[0]}: write it as {EXAMPLE}")
    name = entry["name"]
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ConfigError(
            f"{where}: {label} name must be 1-63 letters, digits, '.', '_' or '-' starting with a "
            f'letter or digit (e.g. name = "eu-1")'
        )
    label = f"target {name!r}"
    url_env = entry["url_env"]
    if not isinstance(url_env, str) or not ENV_NAME.fullmatch(url_env):
        raise ConfigError(
            f"{where}: {label}: url_env must name an environment variable (e.g. url_env = "
            '"EU1_DATABASE_URL"), not hold the URL itself'
        )
    wave = entry["wave"]
    if isinstance(wave, bool) or not isinstance(wave, int) or not 0 <= wave <= 1000:
        raise ConfigError(f"{where}: {label}: wave must be a whole number, 0 for the canary, then 1, 2, ...")
    url = (env.get(url_env) or "").strip()
    if not url:
        raise ConfigError(
            f"{where}: {label}: {url_env} is not set: export {url_env}=postgresql://user@host/db"
        )
    problem = credentials_problem(url_env, url)
    if problem:
        raise ConfigError(f"{where}: {label}: {problem}")
    try:
        conninfo_to_dict(url)
    except psycopg.ProgrammingError:  # its message quotes the URL: never shown
        raise ConfigError(
            f"{where}: {label}: {url_env} is not a PostgreSQL URL: export {url_env}=postgresql://user@host/db"
        ) from None
    return Target(name=name, url_env=url_env, wave=wave, url=url)


def _no_duplicates(where: str, targets: list[Target]) -> None:
    seen: dict[str, Target] = {}
    for t in targets:
        if t.name in seen:
            raise ConfigError(f"{where}: two targets are named {t.name!r}: give each a name of its own")
        seen[t.name] = t
    by_url: dict[str, Target] = {}
    for t in targets:
        other = by_url.get(t.url)
        if other is not None:
            raise ConfigError(
                f"{where}: targets {other.name!r} ({other.url_env}) and {t.name!r} ({t.url_env}) are the "
                "same URL: list each database once"
            )
        by_url[t.url] = t
