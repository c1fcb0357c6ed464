"""Watching pg_locks while the rehearsal runs, to confirm the locks read from the parse tree.

The parse tree says which lock each statement asks for; sampling `pg_locks` of the
rehearsal's own sessions shows which the server actually granted. Sampling can miss a lock
held for less than an interval, so a lock not seen is "not observed", never "not taken".
"""

from __future__ import annotations

import re
import threading

import psycopg

INTERVAL = 0.005  # seconds between samples: locks of a 20 ms transaction are still caught
_QUERY = """SELECT l.mode, l.relation::regclass::text
            FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE l.locktype = 'relation' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND a.application_name = %s"""


def level(mode: str) -> str:
    """`AccessExclusiveLock` -> `ACCESS EXCLUSIVE` (the parse tree's spelling)."""
    return " ".join(re.findall(r"[A-Z][a-z]+", mode.removesuffix("Lock"))).upper()


def qualified(relation: str) -> str:
    # regclass text omits schemas on the search_path (public); the parse tree names them.
    return relation if "." in relation else f"public.{relation}"


class LockWatch(threading.Thread):
    """Samples the granted relation locks of sessions named `application_name` in `dsn`'s
    database until stopped; `seen` holds (level, schema.relation) pairs."""

    def __init__(self, dsn: str, application_name: str):
        super().__init__(daemon=True, name="rehearsal-lockwatch")
        self.dsn, self.app = dsn, application_name
        self.seen: set[tuple[str, str]] = set()
        self.error: str | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True, application_name="migrate-bot-lockwatch") as conn:
                while not self._halt.wait(INTERVAL):
                    self.seen.update((level(m), qualified(r)) for m, r in conn.execute(_QUERY, (self.app,)))
        except psycopg.Error as exc:  # no confirmation then; the parsed locks still stand
            self.error = str(exc)

    def stop(self) -> set[tuple[str, str]]:
        self._halt.set()
        self.join(timeout=5)
        return self.seen

    def __enter__(self) -> LockWatch:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
