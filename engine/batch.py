"""Many statements per round trip, each one still accounted for.

A chunk of statements goes to the server as one simple-query message: one round trip for
many statements, which is why the executor keeps pace with `psql -1 -f` (one round trip
per statement). The server answers one result per statement, in order, and stops at the
first error, so the results say exactly which statement failed and how far the file got.
"""

from __future__ import annotations

import select
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg import pq

from runbook.sqlfile import Statement

CHUNK = 50  # statements per message: few round trips, progress still fine-grained
SEPARATOR = ";\n"
_OK = (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK, pq.ExecStatus.EMPTY_QUERY)


class ChunkError(Exception):
    """A statement of a chunk failed: the server's error, which statement it was, and where
    that statement starts in the message (server error positions count from there)."""

    def __init__(self, error: psycopg.Error, statement: Statement, position_base: int):
        super().__init__(str(error))
        self.error, self.statement, self.position_base = error, statement, position_base


def chunks(items: Sequence[Statement], size: int = CHUNK) -> Iterator[list[Statement]]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


def run_chunk(conn: psycopg.Connection, chunk: list[Statement], done: Callable[[Statement], None]) -> None:
    """Run a chunk in the connection's transaction; `done(statement)` after each statement
    that succeeded, in order; raises ChunkError for the one that failed."""
    results: list[Any] = []
    try:
        _simple_query(conn.pgconn, SEPARATOR.join(s.sql for s in chunk).encode(conn.info.encoding), results)
    except psycopg.OperationalError as exc:  # connection lost: blame the statement that was running
        running = sum(1 for r in results if r.status in _OK)
        raise ChunkError(exc, chunk[min(running, len(chunk) - 1)], 0) from None
    for i, res in enumerate(results):
        if res.status not in _OK:
            base = sum(len(s.sql) + len(SEPARATOR) for s in chunk[:i])
            raise ChunkError(
                psycopg.errors.error_from_result(res, encoding=conn.info.encoding), chunk[i], base
            )
        done(chunk[i])


def _simple_query(pgconn: pq.abc.PGconn, query: bytes, results: list[Any]) -> None:
    """Send one simple-query message and collect every result into `results`. Waits with
    select() (which releases the GIL) so cancel() and the blocker watch keep running."""
    pgconn.send_query(query)
    while True:
        while pgconn.is_busy():
            select.select([pgconn.socket], [], [])
            pgconn.consume_input()
        res = pgconn.get_result()
        if res is None:
            return
        results.append(res)


def line_offset(sql: str, position: str | None, base: int = 0) -> int:
    """Lines between a statement's start and the server's error position (1-based chars,
    counted from the start of the message: `base` is where the statement starts in it)."""
    if position is None:
        return 0
    try:
        return sql.count("\n", 0, max(0, int(position) - 1 - base))
    except (TypeError, ValueError):
        return 0
