"""`/healthz`: whether Redis and the database answer, never how to reach them."""

from __future__ import annotations

import psycopg

CONNECT_TIMEOUT = 2  # seconds: a health check must answer quickly


def check(core) -> tuple[bool, dict[str, str]]:
    """(healthy, {"redis": "ok"|"unreachable", "database": "ok"|"unreachable"})."""
    status = {
        "redis": _probe(lambda: core.redis.ping()),
        "database": _probe(lambda: _select_one(core.settings.database_url)),
    }
    return all(v == "ok" for v in status.values()), status


def _select_one(url: str) -> None:
    with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT, autocommit=True) as conn:
        conn.execute("SELECT 1")


def _probe(call) -> str:
    try:
        call()
        return "ok"
    except Exception:  # the error text may hold a URL: report only that it failed
        return "unreachable"
