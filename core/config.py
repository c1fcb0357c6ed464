"""Settings from the environment, as documented in the README's Configuration table.

Everything the bot reads from `os.environ` is read here, once; the rest of the code takes
a `Settings`. `secrets()` lists every value that must never be shown, for `core.redact`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, overload

from core.errors import ConfigError
from core.targets import Fleet, load_fleet, single_fleet
from core.urls import credentials_problem, url_secrets
from sql import DEFAULT_RUNBOOK

__all__ = ["ConfigError", "Settings", "env_secrets"]


def _opt(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


# Every numeric setting is a duration (seconds, minutes or hours). A finite but huge one
# (1e308) passed the check and then overflowed a Redis PX or a timedelta in the middle of a
# command ("`preflight` failed: OverflowError"): a million of any unit is far beyond a useful one.
MAX_DURATION = 1_000_000


def _number(name: str, raw: str, minimum: float, inclusive: bool) -> float:
    """`raw` as a finite number not below `minimum` (or above it, when not `inclusive`), at
    most MAX_DURATION."""
    bound = f"at least {minimum:g}" if inclusive else f"greater than {minimum:g}"
    bound += f" and at most {MAX_DURATION:,}"
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number {bound} (got {raw[:40]!r})") from None
    if (
        not math.isfinite(value)
        or value < minimum
        or (value == minimum and not inclusive)
        or value > MAX_DURATION
    ):
        raise ConfigError(f"{name} must be a number {bound} (got {raw[:40]!r})")
    return value


def _float(env: Mapping[str, str], name: str, default: float, *, zero_ok: bool = False) -> float:
    """A positive number (0 allowed where it means "off"); nan, inf and negatives are refused."""
    raw = _opt(env, name)
    return default if raw is None else _number(name, raw, 0.0, inclusive=zero_ok)


def _floats(env: Mapping[str, str], name: str, default: tuple[float, ...]) -> tuple[float, ...]:
    raw = _opt(env, name)
    if raw is None:
        return default
    try:
        return tuple(_number(name, x.strip(), 0.0, inclusive=False) for x in raw.split(",") if x.strip())
    except ConfigError:
        raise ConfigError(
            f"{name} must be comma-separated positive numbers, e.g. 1,24 (got {raw[:40]!r})"
        ) from None


REDIS_SCHEMES = ("redis", "rediss", "unix")


def _redis_url(env: Mapping[str, str]) -> str:
    """REDIS_URL, checked for a scheme redis-py accepts. Never quoted: it may hold a password."""
    url = _opt(env, "REDIS_URL") or "redis://localhost:6379/0"
    scheme, sep, _ = url.partition("://")
    if not sep or scheme.lower() not in REDIS_SCHEMES:
        raise ConfigError(
            "REDIS_URL must be a redis://, rediss:// or unix:// URL, e.g. redis://localhost:6379/0"
        )
    return _parseable("REDIS_URL", url)


@overload
def _parseable(name: str, url: str) -> str: ...
@overload
def _parseable(name: str, url: str | None) -> str | None: ...
def _parseable(name: str, url: str | None) -> str | None:
    """`url` when a parser will read its user and password as such; else ConfigError."""
    problem = credentials_problem(name, url)
    if problem:
        raise ConfigError(problem)
    return url


def env_secrets(env: Mapping[str, str]) -> tuple[str, ...]:
    """The password of every URL in the environment (…_URL variables, a runbook's inputs
    among them), taken before anything parses those URLs."""
    return url_secrets(value for name, value in env.items() if name.endswith("_URL"))


@dataclass(frozen=True)
class Settings:
    database_url: str | None
    redis_url: str = "redis://localhost:6379/0"
    slack_bot_token: str | None = None
    slack_signing_secret: str | None = None
    slack_app_token: str | None = None
    slack_api_url: str = "https://slack.com/api/"
    channel: str | None = None
    roster_path: Path = Path("roster.toml")
    runbook_path: Path = DEFAULT_RUNBOOK
    deployment_url: str | None = None
    register_mongodb_url: str | None = None
    register_redis_url: str | None = None
    encryption_key: str | None = None
    backup_dir: Path = Path("backups")
    scratch_url: str | None = None
    window: str | None = None
    min_window_hours: float = 2.0
    # Not in the contract's table: operational knobs with safe defaults (README documents them).
    redis_prefix: str = "migrate"
    approval_ttl_hours: float = 12.0
    preflight_ttl_hours: float = 12.0
    lock_ttl_seconds: float = 15.0
    reminder_minutes: float = 15.0
    followup_hours: tuple[float, ...] = (1.0, 24.0)
    followup_reminder_hours: float = 168.0
    health_interval_seconds: float = 300.0
    schedule_late_minutes: float = 10.0
    restore_request_minutes: float = 30.0
    extra_secrets: tuple[str, ...] = field(default_factory=tuple)
    # MIGRATE_TARGETS, read and checked (core/targets.py); None: the single DATABASE_URL.
    targets: Fleet | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        database_url = _parseable("DATABASE_URL", _opt(env, "DATABASE_URL"))
        targets_path = _opt(env, "MIGRATE_TARGETS")
        targets = load_fleet(targets_path, env) if targets_path else None
        if database_url is None and targets is not None:
            # A fleet needs no DATABASE_URL: the bot's own records (the fleet's audit mirror, the
            # incident flag) live with the canary, the first database of wave 0.
            database_url = targets.canary()[0].url
        api_url = _opt(env, "SLACK_API_URL") or "https://slack.com/api/"
        if not api_url.endswith("/"):
            api_url += "/"  # WebClient joins with urljoin: without the slash the last segment is lost
        return cls(
            database_url=database_url,
            redis_url=_redis_url(env),
            slack_bot_token=_opt(env, "SLACK_BOT_TOKEN"),
            slack_signing_secret=_opt(env, "SLACK_SIGNING_SECRET"),
            slack_app_token=_opt(env, "SLACK_APP_TOKEN"),
            slack_api_url=api_url,
            channel=_opt(env, "MIGRATE_CHANNEL"),
            roster_path=Path(_opt(env, "MIGRATE_ROSTER") or "roster.toml"),
            runbook_path=Path(_opt(env, "MIGRATE_RUNBOOK") or DEFAULT_RUNBOOK),
            deployment_url=_opt(env, "DEPLOYMENT_URL"),
            register_mongodb_url=_opt(env, "REGISTER_MONGODB_URL"),
            register_redis_url=_opt(env, "REGISTER_REDIS_URL"),
            encryption_key=_opt(env, "MIGRATE_ENCRYPTION_KEY"),
            backup_dir=Path(_opt(env, "BACKUP_DIR") or "backups"),
            scratch_url=_parseable("MIGRATE_SCRATCH_URL", _opt(env, "MIGRATE_SCRATCH_URL")),
            window=_opt(env, "MIGRATE_WINDOW"),
            min_window_hours=_float(env, "MIGRATE_MIN_WINDOW_HOURS", 2.0, zero_ok=True),
            redis_prefix=_opt(env, "MIGRATE_REDIS_PREFIX") or "migrate",
            approval_ttl_hours=_float(env, "MIGRATE_APPROVAL_TTL_HOURS", 12.0),
            preflight_ttl_hours=_float(env, "MIGRATE_PREFLIGHT_TTL_HOURS", 12.0),
            lock_ttl_seconds=_float(env, "MIGRATE_LOCK_TTL_SECONDS", 15.0),
            reminder_minutes=_float(env, "MIGRATE_REMINDER_MINUTES", 15.0),
            followup_hours=_floats(env, "MIGRATE_FOLLOWUP_HOURS", (1.0, 24.0)),
            followup_reminder_hours=_float(env, "MIGRATE_FOLLOWUP_REMINDER_HOURS", 168.0, zero_ok=True),
            health_interval_seconds=_float(env, "MIGRATE_HEALTH_INTERVAL_SECONDS", 300.0, zero_ok=True),
            schedule_late_minutes=_float(env, "MIGRATE_SCHEDULE_LATE_MINUTES", 10.0),
            restore_request_minutes=_float(env, "MIGRATE_RESTORE_REQUEST_MINUTES", 30.0),
            extra_secrets=env_secrets(env),
            targets=targets,
        )

    def require(self, *names: str) -> None:
        """Raise ConfigError naming every listed setting that is unset."""
        env_names = {
            "database_url": "DATABASE_URL",
            "slack_bot_token": "SLACK_BOT_TOKEN",
            "slack_signing_secret": "SLACK_SIGNING_SECRET",
            "channel": "MIGRATE_CHANNEL",
        }
        missing = [env_names.get(n, n) for n in names if not getattr(self, n)]
        if missing:
            raise ConfigError("set " + ", ".join(missing) + " (see README, Configuration)")

    def required_database_url(self) -> str:
        """DATABASE_URL where work needs it (a Core requires it at start-up); ConfigError if unset."""
        self.require("database_url")
        assert self.database_url is not None  # require() raised otherwise
        return self.database_url

    def secrets(self) -> tuple[str, ...]:
        """Every literal secret value the bot knows of, for redaction."""
        values = [
            self.slack_bot_token,
            self.slack_signing_secret,
            self.slack_app_token,
            self.encryption_key,
            self.register_mongodb_url,
            self.register_redis_url,
            *url_secrets(
                [
                    self.database_url,
                    self.redis_url,
                    self.scratch_url,
                    self.deployment_url,
                    self.register_mongodb_url,
                    self.register_redis_url,
                ]
            ),
            *self.extra_secrets,
            *(self.targets.secrets() if self.targets else ()),
        ]
        return tuple(v for v in values if v)

    def fleet(self) -> Fleet:
        """The databases a run goes to: MIGRATE_TARGETS's, or the single DATABASE_URL."""
        return self.targets if self.targets is not None else single_fleet(self.database_url)

    def with_(self, **changes: Any) -> Settings:
        """A copy with some fields changed (tests and the console use it)."""
        return replace(self, **changes)
