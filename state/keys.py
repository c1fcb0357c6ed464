"""Every Redis key of the project, built here and nowhere else.

Keys live under `<prefix>:<target>:` so that two bots driving two databases (or two test
runs) never share state, and a run's lock is per target database. The target is the
database's identity as its server reports it (`database_identity`), never how DATABASE_URL
spells the way there, and never a password.
"""

from __future__ import annotations

from functools import lru_cache

import psycopg

IDENTITY_CONNECT_TIMEOUT = 10  # seconds


@lru_cache(maxsize=64)
def database_identity(dsn: str) -> str:
    """`<system identifier>/<database name>` of the database `dsn` reaches, as its server says.

    `localhost` and `127.0.0.1`, a second DNS name, another port forwarded to the same server,
    a keyword DSN or a URL: every spelling of the way to one database gives one identity, so
    one run lock and one run state. The system identifier is unique per cluster (initdb), the
    name per cluster. Asked once per process and DSN (cached); an unreachable server raises
    psycopg.OperationalError, and nothing is cached."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=IDENTITY_CONNECT_TIMEOUT) as conn:
        row = conn.execute("SELECT system_identifier, current_database() FROM pg_control_system()").fetchone()
    assert row is not None  # pg_control_system() is always one row
    system, name = row
    return f"{system}/{name}"


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

    def fleet_feed(self, fleet_id: str) -> str:
        """String: the last event of a fleet run's stream already turned into thread lines."""
        return self._k("slack", "fleetfeed", fleet_id)

    # --- APScheduler's Redis job store
    def schedule_jobs(self) -> str:
        return self._k("schedule", "jobs")

    def schedule_run_times(self) -> str:
        return self._k("schedule", "run_times")

    def schedule_fired(self, job_id: str, due: str) -> str:
        """The once-only claim of one firing of a scheduled job (several bot processes share the store)."""
        return f"{self.schedule_jobs()}:fired:{job_id}:{due}"


class FleetKeys:
    """Key names of the fleet runs of one bot prefix (state/fleet.py): `<prefix>:fleet:…`.

    Not under a target: a fleet spans databases. (A target's identity is `<system id>/<name>`,
    so `fleet` can never be one.) Each target's own run keeps its `Keys(prefix, identity)`."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self._base = f"{prefix}:fleet"

    def _k(self, *parts: object) -> str:
        return ":".join([self._base, *(str(p) for p in parts)])

    def current(self) -> str:
        """String: the id of the current fleet run."""
        return self._k("current")

    def index(self) -> str:
        """Sorted set: fleet run ids scored by creation time."""
        return self._k("index")

    def fleet(self, fleet_id: str) -> str:
        """Hash: the fleet run's fields (JSON values)."""
        return self._k("run", fleet_id)

    def targets(self, fleet_id: str) -> str:
        """Hash: target name -> JSON TargetState."""
        return self._k("run", fleet_id, "targets")

    def events(self, fleet_id: str) -> str:
        """Stream: every change of the fleet run and its targets, in order (the reporting hook)."""
        return self._k("run", fleet_id, "events")

    def audit_stream(self) -> str:
        """Stream: the audit events of every fleet run (state.audit's event shape)."""
        return self._k("audit")

    def mirror_pending(self) -> str:
        """List: fleet audit events not yet written to PostgreSQL."""
        return self._k("audit", "mirror-pending")

    def job_lock(self, fleet_id: str, target: str) -> str:
        """String + TTL: the worker working on one target of a fleet run (workflows/fleet)."""
        return self._k("run", fleet_id, "working", target)

    def job_erring_since(self, fleet_id: str, target: str) -> str:
        """String + TTL: when a target's job first failed with an error (its database unreachable,
        say) and has erred on every try since (workflows/fleet/worker.py gives up after a while)."""
        return self._k("run", fleet_id, "erring", target)

    def queue_namespace(self) -> str:
        """Prefix of the job queue's own keys (dramatiq's Redis broker: queue, acks, heartbeats)."""
        return self._k("queue")

    def sent(self, fleet_id: str) -> str:
        """Hash: target name -> JSON {message, at}: a job was sent for it (workflows/fleet/waves.py)."""
        return self._k("run", fleet_id, "sent")
