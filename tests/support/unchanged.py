""" "Nothing changed": the bot's whole state before and after a refused command, compared.

A refusal may add audit events whose outcome is "refused" (the audit trail records who tried
what) and nothing else: every other Redis key of the test's prefix holds exactly what it held,
the bot's PostgreSQL history gains only refused events, and the target database's schema and
row counts are untouched.
"""

from __future__ import annotations

import psycopg

from state.audit import redis_events
from tests.support import pg
from workflows import facts

AUDIT_KEYS = (":audit", ":audit:mirror-pending", ":audit:mirror-failed")


def _value(client, key: bytes):
    kind = client.type(key).decode()
    read = {
        "string": client.get,
        "hash": client.hgetall,
        "list": lambda k: client.lrange(k, 0, -1),
        "set": client.smembers,
        "zset": lambda k: client.zrange(k, 0, -1, withscores=True),
        "stream": lambda k: client.xrange(k),
    }
    return kind, read[kind](key)


def redis_state(client, prefix: str) -> dict:
    """Every key of `prefix` but the audit ones, with its type and value."""
    keys = [k for k in client.scan_iter(match=f"{prefix}*", count=500) if not k.decode().endswith(AUDIT_KEYS)]
    return {k.decode(): _value(client, k) for k in sorted(keys)}


def pg_events(url: str) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('migrate_bot.run_events')").fetchone()[0] is None:
            return []
        return conn.execute(
            "SELECT event_id, action, outcome FROM migrate_bot.run_events ORDER BY id"
        ).fetchall()


class Snapshot:
    """The state of the bot and its database at one moment (`core` is a commands.Core)."""

    def __init__(self, core):
        self.core = core
        self.redis = redis_state(core.redis, core.settings.redis_prefix)
        self.audit = redis_events(core.redis, core.keys, count=10_000)
        self.events = pg_events(core.settings.database_url)
        self.schema = pg.schema_dump(core.settings.database_url)
        self.rows = facts.row_counts(core.settings.database_url)

    def assert_unchanged(self, what: str = "", *, ignore: tuple[str, ...] = ()) -> None:
        """Raise unless only refused audit events were added since this snapshot. Keys holding
        one of `ignore` (e.g. the Slack adapter's ":slack:" and ":request:") are not compared."""
        self.core.store.flush_mirror()
        now = Snapshot(self.core)
        before, after = _without(self.redis, ignore), _without(now.redis, ignore)
        assert after == before, f"{what}: Redis keys changed: {_changed(before, after)}"
        added = now.audit[len(self.audit) :]
        assert now.audit[: len(self.audit)] == self.audit, f"{what}: audit stream rewritten"
        assert all(e["outcome"] == "refused" for e in added), (
            f"{what}: audit gained {[(e['action'], e['outcome']) for e in added]}"
        )
        new_rows = now.events[len(self.events) :]
        assert now.events[: len(self.events)] == self.events, f"{what}: PostgreSQL history rewritten"
        assert all(outcome == "refused" for _, _, outcome in new_rows), f"{what}: history gained {new_rows}"
        assert now.schema == self.schema, f"{what}: the database's schema changed"
        assert now.rows == self.rows, f"{what}: row counts changed"


def _without(keys: dict, ignore: tuple[str, ...]) -> dict:
    return {k: v for k, v in keys.items() if not any(part in k for part in ignore)}


def _changed(before: dict, after: dict) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
