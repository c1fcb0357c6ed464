"""Health checks of the registered databases (issue 7), against real PostgreSQL and Redis.

A MongoDB stand-in is a local TCP listener that the test closes and reopens on the same
port; Redis is the real local server (a real PING). The results land in platform.databases
through update_database_health(); the channel hears about each change once.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from datetime import UTC, timedelta

import pytest

from commands import Core
from scheduling import health
from scheduling.scheduler import Scheduler
from sql import DEFAULT_RUNBOOK
from tests.conftest import PLANTED
from tests.support import pg
from tests.support.waiting import wait_until

SQL_DIR = DEFAULT_RUNBOOK.parent
REDIS_PORT = 6379


class Port:
    """A TCP service on a fixed local port that can go away and come back."""

    def __init__(self):
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.sock = None
        self.open()

    def open(self):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(16)
        self.sock = sock
        threading.Thread(target=self._accept, args=(sock,), daemon=True).start()

    def _accept(self, sock):
        while True:
            try:
                conn, _ = sock.accept()
                conn.close()
            except OSError:
                return

    def close(self):
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(): else the port stays open
            except OSError:
                pass
            self.sock.close()
            self.sock = None


class Collect:
    def __init__(self):
        self.posts = []
        self.guard = threading.Lock()

    def post(self, post):
        with self.guard:
            self.posts.append(post)

    def progress(self, progress):
        pass

    def titles(self, kind=None):
        with self.guard:
            return [p.title for p in self.posts if kind is None or p.kind == kind]


def register(url: str, mongodb_url: str, redis_url: str) -> None:
    """Phase 1 of 006 by hand (table, then the registration with its settings), as psql would."""
    assert pg.psql_file(url, SQL_DIR / "006_add_platform_databases_table.sql", "-1").returncode == 0
    options = (
        f"-c migrate.register_mongodb_url={mongodb_url} -c migrate.register_redis_url={redis_url} "
        f"-c app.encryption_key={PLANTED['key']}"
    )
    result = pg.psql_file(
        url, SQL_DIR / "006_register_railway_databases_production.sql", "-1", env={"PGOPTIONS": options}
    )
    assert result.returncode == 0, result.stderr


def states(url: str) -> dict[str, tuple[str, str | None]]:
    with pg_connect(url) as conn:
        rows = conn.execute(
            "SELECT name, health_check_status, metadata->>'last_health_check_error' FROM platform.databases"
        ).fetchall()
    return {name: (status, error) for name, status, error in rows}


def pg_connect(url):
    import psycopg

    return psycopg.connect(url, autocommit=True)


@pytest.fixture
def mongo():
    port = Port()
    yield port
    port.close()


@pytest.fixture
def registered(settings, mongo):
    mongodb_url = f"mongodb://lancio:S3cretMongoPw42@127.0.0.1:{mongo.port}/lancio"
    redis_url = f"redis://default:S3cretRedisPw42@127.0.0.1:{REDIS_PORT}/0"
    register(settings.database_url, mongodb_url, redis_url)
    return settings.with_(register_mongodb_url=mongodb_url, register_redis_url=redis_url)


def _no_secrets(texts):
    everything = "\n".join(texts)
    for secret in (PLANTED["key"], "S3cretMongoPw42", "S3cretRedisPw42"):
        assert secret not in everything


def test_unhealthy_once_then_recovered_once(registered, mongo, caplog):
    caplog.set_level(logging.DEBUG)
    core = Core.from_settings(registered)
    out = Collect()

    probes = health.check_all(core, out)
    assert {p.name: p.healthy for p in probes} == {"railway-mongodb": True, "railway-redis": True}
    assert all(p.recorded for p in probes)
    redis_probe = next(p for p in probes if p.type == "redis")
    assert "PONG" in redis_probe.message  # a real PING, not only a TCP connect
    assert states(registered.database_url) == {
        "railway-mongodb": ("healthy", None),
        "railway-redis": ("healthy", None),
    }
    assert out.posts == []  # healthy from the start: nothing to announce

    mongo.close()
    health.check_all(core, out)
    health.check_all(core, out)
    status, error = states(registered.database_url)["railway-mongodb"]
    assert status == "unhealthy" and f"127.0.0.1:{mongo.port}" in error
    assert states(registered.database_url)["railway-redis"] == ("healthy", None)
    alerts = out.titles("health_alert")
    assert len(alerts) == 1 and "railway-mongodb" in alerts[0] and "UNHEALTHY" in alerts[0]
    assert "<@U0RAFAEL>" in out.posts[0].text() and out.posts[0].mentions == ["U0RAFAEL"]

    mongo.open()
    health.check_all(core, out)
    health.check_all(core, out)
    assert states(registered.database_url)["railway-mongodb"] == ("healthy", None)
    alerts = out.titles("health_alert")
    assert len(alerts) == 2 and "recovered" in alerts[1] and "railway-mongodb" in alerts[1]

    _no_secrets([p.text() for p in out.posts] + [r.getMessage() for r in caplog.records])


def test_redis_that_accepts_tcp_but_does_not_answer_ping_is_unhealthy(settings, mongo):
    """The Redis entry points at a port that accepts and hangs up: TCP alone would say healthy."""
    register(
        settings.database_url,
        f"mongodb://lancio:S3cretMongoPw42@127.0.0.1:{mongo.port}/lancio",
        f"redis://default:S3cretRedisPw42@127.0.0.1:{mongo.port}/0",
    )
    core = Core.from_settings(settings)
    out = Collect()
    probes = {p.name: p for p in health.check_all(core, out)}
    assert probes["railway-mongodb"].healthy
    assert not probes["railway-redis"].healthy and "PING failed" in probes["railway-redis"].message
    assert states(settings.database_url)["railway-redis"][0] == "unhealthy"
    assert (
        out.titles("health_alert") == [t for t in out.titles() if "railway-redis" in t]
        and len(out.posts) == 1
    )
    _no_secrets([p.text() for p in out.posts])


def test_without_the_key_nothing_is_decrypted_and_the_reason_is_recorded(registered):
    core = Core.from_settings(registered.with_(encryption_key=None))
    out = Collect()
    probes = health.check_all(core, out)
    assert all(not p.healthy and "MIGRATE_ENCRYPTION_KEY is not set" in p.message for p in probes)
    assert {s for s, _ in states(registered.database_url).values()} == {"unhealthy"}


def test_before_006_there_is_nothing_to_check(settings):
    assert health.check_all(Core.from_settings(settings), Collect()) == []


def test_periodic_job_two_schedulers_announce_each_change_once(registered, mongo):
    """The interval job on a compressed clock (1 s), run by two schedulers sharing Redis."""
    core = Core.from_settings(registered)
    out = Collect()  # the one channel both processes post to
    a = Scheduler(core, lambda: out, poll=0.5)
    b = Scheduler(Core.from_settings(registered), lambda: out, poll=0.5)
    try:
        a.start_health_checks(timedelta(seconds=1))
        b.start_health_checks(timedelta(seconds=1))  # the second process: same job, replaced, not doubled
        assert [j["id"] for j in a.jobs()] == ["health"]

        def checked_at(name):
            with pg_connect(registered.database_url) as conn:
                return conn.execute(
                    "SELECT last_health_check_at FROM platform.databases WHERE name = %s", (name,)
                ).fetchone()[0]

        wait_until(lambda: states(registered.database_url)["railway-mongodb"][0] == "healthy")
        mongo.close()
        wait_until(lambda: states(registered.database_url)["railway-mongodb"][0] == "unhealthy")
        first = checked_at("railway-mongodb")
        wait_until(lambda: checked_at("railway-mongodb") > first)  # checked again, still down
        second = checked_at("railway-mongodb")
        wait_until(lambda: checked_at("railway-mongodb") > second)
        alerts = out.titles("health_alert")
        assert len(alerts) == 1 and "UNHEALTHY" in alerts[0]

        mongo.open()
        wait_until(lambda: states(registered.database_url)["railway-mongodb"][0] == "healthy")
        again = checked_at("railway-mongodb")
        wait_until(lambda: checked_at("railway-mongodb") > again)
        alerts = out.titles("health_alert")
        assert len(alerts) == 2 and "recovered" in alerts[1]
    finally:
        a.shutdown()
        b.shutdown()


def test_fire_times_are_multiples_of_the_interval(settings):
    from datetime import datetime

    from scheduling.scheduler import for_core

    client = for_core(Core.from_settings(settings))  # store-only: nothing fires
    try:
        for seconds in (300, 7, 1):
            assert client.start_health_checks(timedelta(seconds=seconds))
            (job,) = client.jobs()
            assert job["next_run_at"].timestamp() % seconds == 0 and job["next_run_at"] > datetime.now(UTC)
    finally:
        client.stop_health_checks()


def test_the_claim_is_on_the_scheduled_fire_time_not_the_wall_clock(settings, caplog):
    """Two processes firing the same time on either side of a second boundary: one probes."""
    from datetime import datetime

    from scheduling import context, jobs, once

    caplog.set_level(logging.DEBUG, logger="migrate.scheduling")
    core = Core.from_settings(settings)
    a = Scheduler(core, lambda: Collect(), start=False)
    b = Scheduler(Core.from_settings(settings), lambda: Collect(), start=False)
    fired_for = jobs.grid_point(datetime.now(UTC), 1.0).isoformat()
    try:
        context.bind(a.name)
        jobs.health_check(1.0, fired_for)
        time.sleep(1.1)  # the wall clock is in the next 1 s bucket now
        context.bind(b.name)
        jobs.health_check(1.0, fired_for)
    finally:
        context.bind("")
        a.shutdown()
        b.shutdown()
    assert once.claimed_by(core, jobs.HEALTH_ID, fired_for)["scheduler"] == a.name
    assert any("already done by another process" in r.getMessage() for r in caplog.records)


def test_the_executor_passes_the_scheduled_fire_time(settings, monkeypatch):
    from datetime import datetime

    from scheduling import jobs, once

    core = Core.from_settings(settings)
    sched = Scheduler(core, lambda: Collect(), poll=0.3)
    start = jobs.grid_point(datetime.now(UTC), 1.0)
    try:
        sched.start_health_checks(timedelta(seconds=1))
        # From here a job that fell back on the wall clock would claim 2000-01-01: only the
        # fire time the executor passes can name a grid point.
        monkeypatch.setattr(jobs, "grid_point", lambda *_a, **_k: datetime(2000, 1, 1, tzinfo=UTC))
        grid = [(start + timedelta(seconds=k)).isoformat() for k in range(1, 30)]
        claimed = wait_until(
            lambda: [t for t in grid if once.claimed_by(core, jobs.HEALTH_ID, t)], timeout=30
        )
        assert once.claimed_by(core, jobs.HEALTH_ID, claimed[0])["scheduler"] == sched.name
        stored = sched._aps.get_job(jobs.HEALTH_ID)
        assert stored.next_run_time.microsecond == 0  # the stored job keeps its grid...
        assert "fired_for" not in stored.kwargs  # ...and not the per-firing argument
    finally:
        sched.shutdown()
    assert once.claimed_by(core, jobs.HEALTH_ID, datetime(2000, 1, 1, tzinfo=UTC).isoformat()) is None
