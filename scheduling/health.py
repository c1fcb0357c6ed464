"""The report's "cron job to test database connections", run by the scheduler.

Every registered database (platform.databases) is probed with its own connection string,
decrypted through the migration's function and key (`platform.decrypt_database_connection_string`
under a transaction-local `app.encryption_key`), never logged or posted. Redis gets a real
PING, PostgreSQL a `SELECT 1`, the others a TCP connect to every host. The result is recorded
with `platform.update_database_health()`; the last state is kept in Redis (state.keys.health)
and the channel hears about a change once: when a database turns unhealthy, when it recovers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import psycopg
from redis.client import Pipeline

from core import clock
from core.redact import first_line, redact
from core.urls import url_secrets
from preflight import net
from scheduling import posts
from state.codec import as_text
from workflows.core import Core
from workflows.reporting import RedactingReporter, Reporter

log = logging.getLogger("migrate.scheduling")

HEALTHY, UNHEALTHY = "healthy", "unhealthy"
PROBE_TIMEOUT = 5.0


@dataclass(frozen=True)
class Probe:
    id: str
    name: str
    type: str
    where: str  # host:port, never credentials
    healthy: bool
    message: str  # what was observed (redacted)
    changed_from: str | None = None  # the previous state when this probe changed it
    announced: bool = False
    recorded: bool = False  # update_database_health() found the row


def check_all(core: Core, reporter: Reporter, *, timeout: float = PROBE_TIMEOUT) -> list[Probe]:
    """Probe every registered database, record each result, announce the changes."""
    reporter = RedactingReporter(reporter, core.redact)
    dsn = core.settings.required_database_url()  # Core.from_settings required it
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        exists = conn.execute("SELECT to_regclass('platform.databases')").fetchone()
        assert exists is not None  # a SELECT without FROM is one row
        if exists[0] is None:
            log.debug("health checks: platform.databases does not exist yet")
            return []
        rows = conn.execute(
            "SELECT id::text, name, type, host, port FROM platform.databases ORDER BY name"
        ).fetchall()
        probes = []
        for db_id, name, kind, host, port in rows:
            url, problem = _decrypt(conn, db_id, core.settings.encryption_key)
            probe = _probe(db_id, name, kind, host, int(port), url, problem, timeout, core.settings.secrets())
            row = conn.execute(
                "SELECT platform.update_database_health(%s::uuid, %s, %s)",
                (db_id, HEALTHY if probe.healthy else UNHEALTHY, None if probe.healthy else probe.message),
            ).fetchone()
            assert row is not None  # a function call without FROM is one row
            recorded = row[0]
            if not recorded:  # e.g. RLS: 006's permissive policies cover SELECT and INSERT, not UPDATE
                log.warning("health of %s not recorded: update_database_health() updated no row", name)
            probes.append(_remember_and_announce(core, reporter, replace(probe, recorded=bool(recorded))))
    return probes


def _decrypt(conn: psycopg.Connection, db_id: str, key: str | None) -> tuple[str | None, str | None]:
    """(connection string, None) or (None, why not). The string is a secret: callers never show it."""
    if not key:
        return None, "MIGRATE_ENCRYPTION_KEY is not set: connection string not decrypted"
    try:
        with conn.transaction():
            conn.execute("SELECT set_config('app.encryption_key', %s, true)", (key,))
            row = conn.execute(
                "SELECT platform.decrypt_database_connection_string(%s::uuid)", (db_id,)
            ).fetchone()
            assert row is not None  # a function call without FROM is one row
            url = row[0]
    except psycopg.Error as exc:
        return None, f"connection string not decrypted: {exc.diag.message_primary or type(exc).__name__}"
    return (url, None) if url else (None, "no connection string stored")


def _probe(
    db_id: str,
    name: str,
    kind: str,
    host: str,
    port: int,
    url: str | None,
    problem: str | None,
    timeout: float,
    secrets: tuple[str, ...],
) -> Probe:
    where = f"{host}:{port}"
    secrets = (*secrets, *([url, *url_secrets([url])] if url else []))
    try:
        if url is None:  # still say whether the host answers, from the non-secret columns
            ok, observed = net.tcp_probe(host, port, timeout)
            ok, observed = False, f"{problem}; {observed}"
        elif kind == "redis":
            ok, observed = net.redis_probe(url, timeout)
        elif kind == "postgresql":
            ok, observed = _postgres_probe(url, timeout)
        else:
            ok, observed = net.tcp_all(url, timeout)
    except Exception as exc:  # noqa: BLE001 - a probe that crashes is an unhealthy observation
        ok, observed = False, f"probe failed: {type(exc).__name__}: {exc}"
    return Probe(db_id, name, kind, where, ok, redact(observed, secrets)[:500])


def _postgres_probe(url: str, timeout: float) -> tuple[bool, str]:
    try:
        with psycopg.connect(url, connect_timeout=max(int(timeout), 1), autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return False, f"connect failed: {first_line(exc)}"
    return True, "connected, SELECT 1 answered"


def _remember_and_announce(core: Core, reporter: Reporter, probe: Probe) -> Probe:
    """Store the state under state.keys.health(id); announce only a change (atomically: of
    several processes checking at once, exactly one sees the change)."""
    key = core.keys.health(probe.id)
    status = HEALTHY if probe.healthy else UNHEALTHY
    now = clock.now().isoformat()

    def txn(pipe: Pipeline) -> tuple[str | None, str | None]:
        previous = pipe.hgetall(key)
        before = _s(previous.get(b"status")) if previous else None
        since = _s(previous.get(b"since")) if previous else None
        pipe.multi()
        pipe.hset(
            key,
            mapping={
                "status": status,
                "at": now,
                "name": probe.name,
                "message": probe.message,
                "since": since if before == status and since else now,
            },
        )
        return before, since

    # redis-py types `func` as returning None and the result as EXEC's list; with
    # value_from_callable=True the result is what `func` returned.
    before, since = core.redis.transaction(txn, key, value_from_callable=True)  # type: ignore[arg-type,misc]
    turned_bad = not probe.healthy and before != UNHEALTHY
    recovered = probe.healthy and before == UNHEALTHY
    if not (turned_bad or recovered):
        return probe
    reporter.post(
        posts.health_change(
            probe.name,
            probe.type,
            probe.where,
            probe.healthy,
            probe.message,
            since if recovered else None,
            core.roster,
        )
    )
    core.store.record(
        "database health changed",
        actor="bot",
        outcome=status,
        evidence={
            "database": probe.name,
            "type": probe.type,
            "where": probe.where,
            "from": before,
            "to": status,
            "observed": probe.message,
        },
    )
    return replace(probe, changed_from=before or "unknown", announced=True)


def last_states(core: Core, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The remembered state of each database id (status, at, since, message)."""
    return {
        i: {as_text(k): as_text(v) for k, v in core.redis.hgetall(core.keys.health(i)).items()} for i in ids
    }


def _s(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value
