"""The team's ledger of applied migrations, read and written the way its own tool does.

A runbook's `[ledger]` names the kind (runbook.model.Ledger); `for_runbook` returns the one
object that knows it. Every kind answers the same questions:

- `applied(conn)`: which migrations (the steps' `migration` names) the ledger shows applied;
- `problem(conn)`: a ledger state that forbids running (golang-migrate's dirty flag), or None;
- `before(conn, entry)`: what the tool commits before a migration runs (golang-migrate: dirty);
- `record(entry, duration_ms)`: statements run inside the migration's own transaction, so the
  row commits with the migration it records (None duration: measured by the server);
- `before_remove` / `remove(entry, revert, duration_ms)`: the same around a rollback;
- `failure_help(entry)`: what the failure template tells the operator about the ledger.

Statements are psycopg `sql.Composed` with their values inlined as literals, so the executor
can run them on its connection or append them to a psql run (-1 -f file -f ledger).
"""

from __future__ import annotations

import psycopg

from engine.ledgers.base import Entry, Ledger
from engine.ledgers.flyway import FlywayLedger
from engine.ledgers.golang import GolangLedger
from engine.ledgers.sqitch import SqitchLedger
from engine.ledgers.table import TableLedger
from runbook.model import Runbook

__all__ = ["Entry", "Ledger", "for_runbook", "applied"]
KINDS = {
    "bot": Ledger,
    "table": TableLedger,
    "flyway": FlywayLedger,
    "golang-migrate": GolangLedger,
    "sqitch": SqitchLedger,
}


def version_table(ledger: Ledger) -> TableLedger:
    """The ledger of a runbook whose `[ledger] kind` is "table", where the runbook's version is
    recorded; TypeError for any other kind."""
    if not isinstance(ledger, TableLedger):
        raise TypeError(f"a {ledger.kind} ledger has no version table")
    return ledger


def for_runbook(rb: Runbook) -> Ledger:
    """The ledger object of the runbook's `[ledger] kind`."""
    return KINDS[rb.ledger.kind](rb)


def applied(dsn: str, rb: Runbook) -> tuple[set[str], str | None]:
    """(migrations the ledger shows applied, a problem that forbids running or None)."""
    ledger = for_runbook(rb)
    with psycopg.connect(dsn, autocommit=True) as conn:
        return ledger.applied(conn), ledger.problem(conn)
