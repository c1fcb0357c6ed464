"""The quick checks: each a function returning its line(s), run concurrently by the runner.

Every network-facing check has its own timeout; none of them writes anything.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Mapping

from core.config import Settings
from preflight import database, inputs, net
from preflight.lines import Spec, line, run_probe
from preflight.report import PENDING, CheckLine
from preflight.window import window_check
from runbook.model import Runbook
from runbook.validate import checksums, validate_runbook


@dataclass(frozen=True)
class Timeouts:
    """Seconds each kind of probe may take (tests shorten them)."""

    network: float = 5.0
    database: float = 10.0


Check = Callable[[], list[CheckLine]]
DB_KEYS = ("database", "server_version", "migrations", "extensions")


def checks(settings: Settings, runbook: Runbook, incident: Mapping | None, at: datetime,
           timeouts: Timeouts) -> list[tuple[tuple[str, ...], float, Check]]:
    """(keys of the lines it returns, deadline in seconds, check) for every quick check, in
    report order. The deadline is a backstop: each probe has its own, shorter timeout."""
    secrets = settings.secrets()
    net_t, db_t = timeouts.network, timeouts.database
    return [
        (DB_KEYS, db_t * 2, lambda: database.database_lines(settings.database_url, runbook, db_t, secrets)),
        (("deployment",), net_t * 2, lambda: [deployment_line(settings, net_t)]),
        (("network:mongodb",), net_t * 3, lambda: [network_line(settings, "mongodb", net_t)]),
        (("network:redis",), net_t * 4, lambda: [network_line(settings, "redis", net_t)]),
        (("runbook_files",), db_t, lambda: [files_line(runbook)]),
        (("inputs",), db_t, lambda: [inputs_line(settings, runbook)]),
        (("incident",), db_t, lambda: [incident_line(incident)]),
        (("window",), db_t, lambda: [window_check(settings.window, settings.min_window_hours, at)]),
        (("approval",), db_t, lambda: [approval_line()]),
    ]


def deployment_line(settings: Settings, timeout: float) -> CheckLine:
    url = settings.deployment_url
    spec = Spec("deployment", "Deployment live and healthy", f"GET {url or 'DEPLOYMENT_URL'} (timeout {timeout:g} s)",
                "HTTP 200")
    if not url:
        return line(spec, False, "not configured (DEPLOYMENT_URL unset)")
    return run_probe(spec, lambda: net.http_probe(url, timeout), settings.secrets())


def network_line(settings: Settings, kind: str, timeout: float) -> CheckLine:
    """TCP to the host:port the registration will use (+ a real PING for Redis)."""
    env = f"REGISTER_{kind.upper()}_URL"
    url = inputs.setting_value(settings, env)
    try:
        target, problem = ", ".join(f"{h}:{p}" for h, p in net.endpoints(url or "")) + f" from {env}", None
    except ValueError as exc:
        target, problem = f"the host:port of {env}", f"{env}: {exc}"
    how = f"TCP connect to {target}" + (" + PING" if kind == "redis" else "") + f" (timeout {timeout:g} s)"
    spec = Spec(f"network:{kind}", f"Private network: {kind} reachable", how,
                "TCP connect" + (" and PONG" if kind == "redis" else ""))
    if not url or problem:
        return line(spec, False, problem or f"{env} is not set", settings.secrets())
    probe = (lambda: net.redis_probe(url, timeout)) if kind == "redis" else (lambda: net.tcp_all(url, timeout))
    return run_probe(spec, probe, settings.secrets())


def files_line(runbook: Runbook) -> CheckLine:
    """Every file parses, none is DO NOT RUN, checksums recorded (the approval binds to them)."""
    spec = Spec("runbook_files", "Runbook files parse, none DO NOT RUN, checksums recorded",
                f"pglast parse + sha256 of the {len(runbook.files())} files of runbook {runbook.id}",
                "all parse, none DO NOT RUN")

    def probe() -> tuple[bool, str]:
        results = validate_runbook(runbook)
        bad = [c.problem or c.name for c in results if not c.ok]
        if bad:
            return False, "; ".join(bad)
        return True, f"{len(results)} files parse, {sum(c.statements for c in results)} statements, {len(checksums(runbook))} checksums"

    return run_probe(spec, probe)


def inputs_line(settings: Settings, runbook: Runbook) -> CheckLine:
    spec = Spec("inputs", "Registration inputs present, not placeholders",
                "REGISTER_* URLs parsed (user, password, host), MIGRATE_ENCRYPTION_KEY presence and length",
                "real URLs and a key")
    return run_probe(spec, lambda: inputs.inputs_probe(settings, runbook), settings.secrets())


def incident_line(incident: Mapping | None) -> CheckLine:
    spec = Spec("incident", "No critical production incident in progress", "incident flag in the bot's state",
                "no incident")
    if not incident:
        return line(spec, True, "none declared")
    who = incident.get("by", "someone")
    since = f" at {incident['at']}" if incident.get("at") else ""
    return line(spec, False, f"incident declared by {who}{since}: {incident.get('text', '(no text)')}")


def approval_line() -> CheckLine:
    spec = Spec("approval", "TPM approval obtained", "/migrate approve by a tpm of the roster", "approved")
    return CheckLine(spec.key, spec.title, spec.how, "pending: awaiting the TPM's decision", spec.required, PENDING)
