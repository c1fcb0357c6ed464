"""Shared fixtures: real PostgreSQL scratch databases and real Redis key spaces.

Nothing here mocks PostgreSQL or Redis; each test gets its own database (cloned from a
version-005 template built once per session from sql/baseline/) and its own Redis key
prefix, both removed afterwards.
"""

from __future__ import annotations

import os
import uuid

import pytest
import redis as redis_lib

from core.config import Settings
from scheduling.hooks import ProcessSchedule
from tests.support import pg
from tests.support.alone import AlonePlugin
from tests.support.deployment import Deployment, TcpListener
from workflows.schedule import use_by_default

# Every Core a test builds is wired as `python -m bot serve` wires its own (workflows/schedule.py):
# its scheduling is the process's running Scheduler for the target, store-only when none runs.
use_by_default(ProcessSchedule)


def pytest_configure(config):
    # `@pytest.mark.alone`: the test runs while no other runs, also under pytest-xdist (tests/support/alone.py)
    config.pluginmanager.register(AlonePlugin(config), "migrate-alone")


REDIS_URL = os.environ.get("MIGRATE_TEST_REDIS", "redis://127.0.0.1:6379/0")

# Planted in every test's settings so that tests can search all output for them.
PLANTED = {
    "mongodb": "mongodb://mongo:S3cretMongoPw42@127.0.0.1:27017/lancio",
    "redis": "redis://default:S3cretRedisPw42@127.0.0.1:6379",
    "key": "k3y-Zq9vT2hS8wX4",
    "bot_token": "xoxb-111-222-S3cretBotToken",
    "signing": "s1gn1ngS3cret0123456789",
}


@pytest.fixture(scope="session")
def baseline_template():
    """A database at version 005, built once; tests clone it (CREATE DATABASE … TEMPLATE)."""
    name = pg.new_name("mt_tpl")
    url = pg.create_database(name)
    try:
        pg.apply_baseline(url)
        yield name
    finally:
        pg.drop_database(name)


@pytest.fixture
def scratch_db():
    """Factory for empty scratch databases; every one is dropped after the test."""
    made: list[str] = []

    def make(template: str | None = None) -> str:
        name = pg.new_name()
        made.append(name)
        return pg.create_database(name, template)

    yield make
    for name in made:
        pg.drop_database(name)


@pytest.fixture
def db_005(scratch_db, baseline_template) -> str:
    """URL of a fresh database at version 005."""
    return scratch_db(baseline_template)


@pytest.fixture
def redis_client():
    client = redis_lib.Redis.from_url(REDIS_URL)
    client.ping()
    yield client
    client.close()


@pytest.fixture
def redis_prefix(redis_client):
    """A key space of its own (`test:<uuid>`), deleted after the test."""
    prefix = f"test:{uuid.uuid4().hex[:12]}"
    yield prefix
    keys = list(redis_client.scan_iter(match=f"{prefix}*", count=500))
    if keys:
        redis_client.delete(*keys)


@pytest.fixture
def settings(db_005, redis_prefix, tmp_path) -> Settings:
    """Settings for a healthy 005 database with every input set (secrets planted)."""
    return Settings(
        database_url=db_005,
        redis_url=REDIS_URL,
        slack_bot_token=PLANTED["bot_token"],
        slack_signing_secret=PLANTED["signing"],
        channel="C0MIGRATE",
        roster_path=_roster_file(tmp_path),
        register_mongodb_url=PLANTED["mongodb"],
        register_redis_url=PLANTED["redis"],
        encryption_key=PLANTED["key"],
        backup_dir=tmp_path / "backups",
        redis_prefix=redis_prefix,
    )


def _roster_file(tmp_path):
    from pathlib import Path

    source = Path(__file__).resolve().parent.parent / "roster.toml"
    target = tmp_path / "roster.toml"
    target.write_text(source.read_text())
    return target


@pytest.fixture
def services():
    """A live deployment stand-in (HTTP) and a MongoDB host that accepts TCP, on loopback."""
    deployment, mongo = Deployment(), TcpListener()
    yield deployment, mongo
    deployment.close()
    mongo.close()


@pytest.fixture
def ready(settings, services) -> Settings:
    """Settings under which the fresh 005 database is GO: deployment up, private network reachable."""
    deployment, mongo = services
    return settings.with_(
        deployment_url=deployment.url,
        register_mongodb_url=f"mongodb://lancio:{PLANTED_MONGO_PASSWORD}@127.0.0.1:{mongo.port}/lancio",
    )


PLANTED_MONGO_PASSWORD = "S3cretMongoPw42"


@pytest.fixture(autouse=True)
def quick_slack_pacing(request, monkeypatch):
    """The outbox spaces channel posts 1 s apart as Slack asks; tests that post dozens of
    messages would spend minutes waiting, so they space them 20 ms apart instead. A test
    marked `slack_pacing` keeps the real interval (and checks it)."""
    if request.node.get_closest_marker("slack_pacing") is None:
        import bot.slack.outbox as outbox_module

        monkeypatch.setattr(outbox_module, "POST_INTERVAL", 0.02)
