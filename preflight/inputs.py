"""The values a runbook's steps receive, and the check that they are real (Known Issue 2).

The report warns that the Railway connection strings "may be placeholders". A placeholder
registered in production encrypts a useless connection string, so preflight refuses URLs
whose user, password or host look like a template (`password`, `changeme`, `<…>`, …) and
missing or placeholder values. What else an input must be comes from the runbook: the URL
schemes it accepts (`schemes`), the shortest key (`min_length`). Values are never shown:
only which part is wrong.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

from core.config import Settings
from core.urls import credentials_problem
from preflight.net import endpoints
from runbook.model import Input, Runbook

# Environment names that Settings reads itself (the contract's table); other env names a
# runbook declares come from os.environ.
_SETTINGS_FIELDS = {
    "DEPLOYMENT_URL": "deployment_url",
    "REGISTER_MONGODB_URL": "register_mongodb_url",
    "REGISTER_REDIS_URL": "register_redis_url",
    "MIGRATE_ENCRYPTION_KEY": "encryption_key",
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
        value: str | None = getattr(settings, attr)
        return value
    return os.environ.get(env) or None


def step_inputs(settings: Settings, runbook: Runbook) -> dict[str, str]:
    """Runbook input name -> value, for every input whose variable is set."""
    values = {name: setting_value(settings, spec.env) for name, spec in runbook.inputs.items()}
    return {name: value for name, value in values.items() if value}


def looks_placeholder(value: str) -> bool:
    return bool(_PLACEHOLDER.search(value))


def url_problem(env: str, url: str | None, schemes: tuple[str, ...] = ()) -> str | None:
    """Why a URL input is unusable (unset, another scheme than `schemes`, no host, a
    placeholder part), or None. Never quotes the password."""
    if not url:
        return f"{env} is not set"
    problem = credentials_problem(env, url)  # before any parsing: a cut password would be shown in pieces
    if problem:
        return problem
    parts = urlsplit(url)
    if schemes and parts.scheme not in schemes:
        return f"{env} scheme is {parts.scheme or 'missing'!s}, expected {' or '.join(schemes)}"
    try:
        host = ",".join(h for h, _ in endpoints(url))
    except ValueError as exc:
        return f"{env}: {exc}"
    if not host:
        return f"{env} has no host"
    if looks_placeholder(host):
        return f"{env} host is a placeholder"
    if parts.username and looks_placeholder(parts.username):
        return f"{env} user is a placeholder"
    if parts.password is not None and (not parts.password or looks_placeholder(parts.password)):
        return f"{env} password is a placeholder"
    return None


def _where(url: str) -> str:
    # Scheme and host:port only: the whole URL is a registered secret and would be masked.
    return f"{urlsplit(url).scheme} " + ", ".join(f"{h}:{p}" for h, p in endpoints(url))


def value_problem(env: str, value: str | None, min_length: int = 0) -> str | None:
    """Why a plain (non-URL) input is unusable: unset, a placeholder, shorter than `min_length`."""
    if not value:
        return f"{env} is not set"
    if looks_placeholder(value):
        return f"{env} is a placeholder"
    if len(value) < min_length:
        return f"{env} is too short ({len(value)} characters; use at least {min_length})"
    return None


def _is_url(spec: Input) -> bool:
    return bool(spec.schemes) or spec.env.endswith("_URL")


def inputs_probe(settings: Settings, runbook: Runbook) -> tuple[bool, str]:
    """(ok, observed) for the inputs check line: each URL by scheme and host, other values by length."""
    problems, seen = [], []
    for spec in runbook.inputs.values():
        env, value = spec.env, setting_value(settings, spec.env)
        if _is_url(spec):
            problem = url_problem(env, value, spec.schemes)
            seen.append(
                f"{env} → {_where(value)}" if not problem and value else problem or f"{env} is not set"
            )
        else:
            problem = value_problem(env, value, spec.min_length)
            seen.append(f"{env} set ({len(value)} characters)" if value else f"{env} unset")
        if problem:
            problems.append(problem)
    if problems:
        return False, "; ".join(problems)
    return True, "; ".join(seen)
