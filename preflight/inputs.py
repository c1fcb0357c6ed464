"""The values a runbook's steps receive, and the check that they are real (Known Issue 2).

The report warns that the Railway connection strings "may be placeholders". A placeholder
registered in production encrypts a useless connection string, so preflight refuses URLs
whose user, password or host look like a template (`password`, `changeme`, `<…>`, …) and a
missing or placeholder encryption key. Values are never shown: only which part is wrong.
"""
from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

from core.config import Settings
from runbook.model import Runbook

# Environment names that Settings reads itself; other input env names come from os.environ.
_SETTINGS_FIELDS = {
    "REGISTER_MONGODB_URL": "register_mongodb_url",
    "REGISTER_REDIS_URL": "register_redis_url",
    "MIGRATE_ENCRYPTION_KEY": "encryption_key",
}
# Expected URL schemes of the registered databases.
URL_SCHEMES = {
    "REGISTER_MONGODB_URL": ("mongodb", "mongodb+srv"),
    "REGISTER_REDIS_URL": ("redis", "rediss"),
}
_PLACEHOLDER = re.compile(
    r"password|passwd|changeme|change[-_]me|<[^>]*>|<|>|xxx|example|placeholder|your[-_]|todo|fixme|"
    r"replace[-_]?me|dummy|\.\.\.|\{\{|\$\{",
    re.IGNORECASE,
)


def setting_value(settings: Settings, env: str) -> str | None:
    """The value of environment variable `env` as the bot sees it (Settings first)."""
    attr = _SETTINGS_FIELDS.get(env)
    if attr is not None:
        return getattr(settings, attr)
    return os.environ.get(env) or None


def step_inputs(settings: Settings, runbook: Runbook) -> dict[str, str]:
    """Runbook input name -> value, for every input whose variable is set."""
    values = {name: setting_value(settings, spec.env) for name, spec in runbook.inputs.items()}
    return {name: value for name, value in values.items() if value}


def looks_placeholder(value: str) -> bool:
    return bool(_PLACEHOLDER.search(value))


def url_problem(env: str, url: str | None) -> str | None:
    """Why a REGISTER_* URL is unusable, or None. Never quotes the password."""
    if not url:
        return f"{env} is not set"
    parts = urlsplit(url)
    schemes = URL_SCHEMES.get(env)
    if schemes and parts.scheme not in schemes:
        return f"{env} scheme is {parts.scheme or 'missing'!s}, expected {' or '.join(schemes)}"
    from preflight.net import endpoints

    try:
        host = ",".join(h for h, _ in endpoints(url))
    except ValueError as exc:
        return f"{env}: {exc}"
    if not host:
        return f"{env} has no host"
    if looks_placeholder(host):
        return f"{env} host {host!r} is a placeholder"
    if parts.username and looks_placeholder(parts.username):
        return f"{env} user {parts.username!r} is a placeholder"
    if parts.password is not None and (not parts.password or looks_placeholder(parts.password)):
        return f"{env} password is a placeholder"
    return None


def _where(url: str) -> str:
    # Scheme and host:port only: the whole URL is a registered secret and would be masked.
    from preflight.net import endpoints

    return f"{urlsplit(url).scheme} " + ", ".join(f"{h}:{p}" for h, p in endpoints(url))


MIN_KEY_LENGTH = 16  # a short key is guessable, and too short for redaction to mask it safely


def key_problem(key: str | None) -> str | None:
    if not key:
        return "MIGRATE_ENCRYPTION_KEY is not set"
    if looks_placeholder(key):
        return "MIGRATE_ENCRYPTION_KEY is a placeholder"
    if len(key) < MIN_KEY_LENGTH:
        return f"MIGRATE_ENCRYPTION_KEY is too short ({len(key)} characters; use at least {MIN_KEY_LENGTH})"
    return None


def inputs_probe(settings: Settings, runbook: Runbook) -> tuple[bool, str]:
    """(ok, observed) for the inputs check line: each URL redacted, the key by its length."""
    envs = [spec.env for spec in runbook.inputs.values()]
    problems, seen = [], []
    for env in envs:
        value = setting_value(settings, env)
        if env == "MIGRATE_ENCRYPTION_KEY":
            problem = key_problem(value)
            seen.append(f"{env} set ({len(value)} characters)" if value else f"{env} unset")
        elif env in URL_SCHEMES or env.endswith("_URL"):
            problem = url_problem(env, value)
            seen.append(f"{env} → {_where(value)}" if not problem else problem)
        else:
            problem = None if value else f"{env} is not set"
            seen.append(f"{env} set" if value else f"{env} unset")
        if problem:
            problems.append(problem)
    if problems:
        return False, "; ".join(problems)
    return True, "; ".join(seen)
