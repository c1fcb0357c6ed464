"""Every Redis key of the project, built here and nowhere else.

Keys live under `<prefix>:<target>:` so that two bots driving two databases (or two test
runs) never share state, and a run's lock is per target database. The target is the
database's identity (`host:port/dbname`), never its password.
"""
from __future__ import annotations

from psycopg.conninfo import conninfo_to_dict


def target_identity(dsn: str) -> str:
    """`host:port/dbname` of a PostgreSQL URL or keyword DSN; no user, no password."""
    params = conninfo_to_dict(dsn)
    host = params.get("host") or "localhost"
    port = params.get("port") or "5432"
    dbname = params.get("dbname") or params.get("user") or "postgres"
    return f"{host}:{port}/{dbname}"


class Keys:
    """Key names for one bot prefix and one target database."""

    def __init__(self, prefix: str, target: str):
        self.prefix = prefix
        self.target = target
        self._base = f"{prefix}:{target}"

    def _k(self, *parts: object) -> str:
        return ":".join([self._base, *(str(p) for p in parts)])

    # --- runs
    def run(self, run_id: str) -> str:
        """Hash: the run's fields, each a JSON value."""
        return self._k("run", run_id)

    def run_phases(self, run_id: str) -> str:
        """Hash: phase number -> JSON PhaseState."""
        return self._k("run", run_id, "phases")

    def current(self) -> str:
        """String: the id of the current run."""
        return self._k("current")

    def runs_index(self) -> str:
        """Sorted set: run ids scored by creation time."""
        return self._k("runs")

    def lock(self) -> str:
        """String: the run lock (JSON: token, owner, since), with a TTL."""
        return self._k("lock")

    # --- audit
    def audit_stream(self) -> str:
        """Stream: every event, append-only."""
        return self._k("audit")

    def mirror_pending(self) -> str:
        """List: audit events not yet written to PostgreSQL."""
        return self._k("audit", "mirror-pending")

    def mirror_failed(self) -> str:
        """List: audit events PostgreSQL refused (bad data, not a lost connection), kept here."""
        return self._k("audit", "mirror-failed")

    # --- misc state
    def incident(self) -> str:
        """String: JSON {by, at, text} of the incident in progress."""
        return self._k("incident")

    def request_seen(self, request_id: str) -> str:
        """String with a TTL: a request already delivered (idempotency)."""
        return self._k("request", request_id)

    def health(self, db_id: str) -> str:
        """Hash: last health check of one database."""
        return self._k("health", db_id)

    # --- Slack adapter
    def outbox(self, channel: str) -> str:
        return self._k("slack", "outbox", channel)

    def outbox_lock(self, channel: str) -> str:
        return self._k("slack", "outbox", channel, "lock")

    def thread(self, run_id: str) -> str:
        return self._k("slack", "thread", run_id)

    def slack_meta(self, run_id: str) -> str:
        return self._k("slack", "meta", run_id)

    # --- APScheduler's Redis job store
    def schedule_jobs(self) -> str:
        return self._k("schedule", "jobs")

    def schedule_run_times(self) -> str:
        return self._k("schedule", "run_times")

    def schedule_fired(self, job_id: str, due: str) -> str:
        """The once-only claim of one firing of a scheduled job (several bot processes share the store)."""
        return f"{self.schedule_jobs()}:fired:{job_id}:{due}"
