"""The quick checks: each a function returning its line(s), run concurrently by the runner.

Every network-facing check has its own timeout; none of them writes anything.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from core.config import Settings
from engine.verify import run_smoke
from preflight import database, inputs, net
from preflight.lines import Spec, line, run_probe
from preflight.report import PENDING, CheckLine
from preflight.window import window_check
from runbook.model import HttpProbe, Reach, Runbook
from runbook.validate import checksums, validate_runbook


@dataclass(frozen=True)
class Timeouts:
    """Seconds each kind of probe may take (tests shorten them)."""

    network: float = 5.0
    database: float = 10.0


Check = Callable[[], list[CheckLine]]


def _listed(check: Callable[[], CheckLine]) -> Check:
    """A check of one line."""
    return lambda: [check()]


def checks(
    settings: Settings, runbook: Runbook, incident: Mapping[str, Any] | None, at: datetime, timeouts: Timeouts
) -> list[tuple[tuple[str, ...], float, Check]]:
    """(keys of the lines it returns, deadline in seconds, check) for every quick check, in
    report order. The deadline is a backstop: each probe has its own, shorter timeout.

    Besides the database, the files, the incident flag and the window, only what the runbook
    declares is checked ([preflight.*] and [inputs]): a runbook that asks for nothing gets
    nothing asked of it."""
    secrets = settings.secrets()
    net_t, db_t = timeouts.network, timeouts.database
    declared = runbook.preflight
    todo: list[tuple[tuple[str, ...], float, Check]] = [
        (
            database.keys(runbook),
            db_t * 2,
            lambda: database.database_lines(settings.database_url, runbook, db_t, secrets),
        )
    ]
    deployment = declared.deployment
    if deployment:
        todo.append((("deployment",), net_t * 2, lambda: [deployment_line(settings, net_t, deployment)]))
    todo += [
        ((f"network:{r.name}",), net_t * 4, _listed(partial(reach_line, settings, r, net_t)))
        for r in declared.reach
    ]
    todo += [
        (
            (f"sql:{c.name}",),
            db_t * 2,
            _listed(partial(database.precondition_line, settings.database_url, c, db_t, secrets)),
        )
        for c in declared.sql
    ]
    todo += [
        ((f"http:{h.name}",), net_t * 2, _listed(partial(http_line, settings, h, net_t)))
        for h in declared.http
    ]
    todo.append((("runbook_files",), db_t, lambda: [files_line(runbook)]))
    if runbook.inputs:
        todo.append((("inputs",), db_t, lambda: [inputs_line(settings, runbook)]))
    return todo + [
        (("incident",), db_t, lambda: [incident_line(incident)]),
        (("window",), db_t, lambda: [window_check(settings.window, settings.min_window_hours, at)]),
        (("approval",), db_t, lambda: [approval_line()]),
    ]


DEPLOYMENT = HttpProbe("deployment", "DEPLOYMENT_URL")  # the contract's DEPLOYMENT_URL, expecting 200


def deployment_line(settings: Settings, timeout: float, probe: HttpProbe = DEPLOYMENT) -> CheckLine:
    """The deployment answers the declared status (the report's `curl -I`)."""
    url = inputs.setting_value(settings, probe.url_env)
    target = _join(url, probe.path) if url else probe.url_env + (f"/{probe.path}" if probe.path else "")
    wanted = " or ".join(str(s) for s in probe.expect_status)
    spec = Spec(
        "deployment",
        "Deployment live and healthy",
        f"{probe.method} {target} (timeout {timeout:g} s)",
        f"HTTP {wanted}",
    )
    if not url:
        return line(spec, False, f"not configured ({probe.url_env} unset)")
    return run_probe(
        spec, lambda: net.http_probe(_join(url, probe.path), timeout, probe.expect_status), settings.secrets()
    )


def http_line(settings: Settings, probe: HttpProbe, timeout: float) -> CheckLine:
    """A declared smoke test: the request answers the status (and body) the runbook expects."""
    base = inputs.setting_value(settings, probe.url_env)
    wanted = " or ".join(str(s) for s in probe.expect_status) + (
        f" {probe.expect_body}" if probe.expect_body else ""
    )
    target = _join(base, probe.path) if base else f"{probe.url_env}/{probe.path.lstrip('/')}"
    spec = Spec(
        f"http:{probe.name}",
        f"HTTP: {probe.name}",
        f"{probe.method} {target} (timeout {timeout:g} s)",
        f"HTTP {wanted}",
    )
    if not base:
        return line(spec, False, f"not configured ({probe.url_env} unset)")
    evidence = run_smoke(base, probe.as_smoke(), timeout)
    return line(spec, evidence.ok, evidence.observed, settings.secrets())


def _join(base: str, path: str) -> str:
    return base if not path else base.rstrip("/") + "/" + path.lstrip("/")


def reach_line(settings: Settings, reach: Reach, timeout: float) -> CheckLine:
    """TCP to every host:port of the URL in `reach.url_env` (+ a real PING for Redis URLs)."""
    env = reach.url_env
    url = inputs.setting_value(settings, env)
    redis = urlsplit(url or "").scheme in net.REDIS_SCHEMES
    try:
        target, problem = ", ".join(f"{h}:{p}" for h, p in net.endpoints(url or "")) + f" from {env}", None
    except ValueError as exc:
        target, problem = f"the host:port of {env}", f"{env}: {exc}"
    how = f"TCP connect to {target}" + (" + PING" if redis else "") + f" (timeout {timeout:g} s)"
    spec = Spec(
        f"network:{reach.name}",
        f"Private network: {reach.name} reachable",
        how,
        "TCP connect" + (" and PONG" if redis else ""),
    )
    if not url or problem:
        return line(spec, False, problem or f"{env} is not set", settings.secrets())
    probe = (lambda: net.redis_probe(url, timeout)) if redis else (lambda: net.tcp_all(url, timeout))
    return run_probe(spec, probe, settings.secrets())


def files_line(runbook: Runbook) -> CheckLine:
    """Every file parses, none is DO NOT RUN, checksums recorded (the approval binds to them)."""
    spec = Spec(
        "runbook_files",
        "Runbook files parse, none DO NOT RUN, checksums recorded",
        f"pglast parse + sha256 of the {len(runbook.files())} files of runbook {runbook.id}",
        "all parse, none DO NOT RUN",
    )

    def probe() -> tuple[bool, str]:
        results = validate_runbook(runbook)
        bad = [c.problem or c.name for c in results if not c.ok]
        if bad:
            return False, "; ".join(bad)
        return (
            True,
            f"{len(results)} files parse, {sum(c.statements for c in results)} statements, {len(checksums(runbook))} checksums",
        )

    return run_probe(spec, probe)


def inputs_line(settings: Settings, runbook: Runbook) -> CheckLine:
    envs = ", ".join(i.env for i in runbook.inputs.values())
    spec = Spec(
        "inputs",
        "Runbook inputs present, not placeholders",
        f"{envs}: URLs parsed (scheme, user, password, host), other values by presence and length",
        "real values, no placeholder",
    )
    return run_probe(spec, lambda: inputs.inputs_probe(settings, runbook), settings.secrets())


def incident_line(incident: Mapping[str, Any] | None) -> CheckLine:
    spec = Spec(
        "incident",
        "No critical production incident in progress",
        "incident flag in the bot's state",
        "no incident",
    )
    if not incident:
        return line(spec, True, "none declared")
    who = incident.get("by", "someone")
    since = f" at {incident['at']}" if incident.get("at") else ""
    return line(spec, False, f"incident declared by {who}{since}: {incident.get('text', '(no text)')}")


def approval_line() -> CheckLine:
    spec = Spec("approval", "TPM approval obtained", "/migrate approve by a tpm of the roster", "approved")
    return CheckLine(
        spec.key, spec.title, spec.how, "pending: awaiting the TPM's decision", spec.required, PENDING
    )
