"""GO scheduled (issue 7): a persisted job starts the runbook at its time, once, after a
restart, with several bot processes; a NO-GO appearing before the time cancels the start.

Real PostgreSQL and Redis; the deployment and MongoDB are local stand-ins. The first test
runs the whole runbook from a job (preflight → approve at → start → success template).
"""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, timedelta
from pathlib import Path

import pytest

from bot.console import run_command
from commands import Core
from core import clock
from scheduling import context, go, jobs, once
from scheduling.scheduler import Scheduler, for_core, label_of
from state.machine import PhaseStatus, Status
from tests.conftest import PLANTED
from tests.support import pg
from tests.support.deployment import Deployment
from tests.support.state import force, make_run
from tests.support.waiting import wait_until
from tests.test_health import Collect, Port

COORDINATOR, TPM = "U0RAFAEL", "U0DYLAN"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def services():
    deployment, mongo = Deployment(), Port()  # Port: a MongoDB stand-in that can really stop listening
    yield deployment, mongo
    deployment.close()
    mongo.close()


@pytest.fixture
def ready(settings, services):
    deployment, mongo = services
    return settings.with_(
        deployment_url=deployment.url,
        register_mongodb_url=f"mongodb://lancio:S3cretMongoPw42@127.0.0.1:{mongo.port}/lancio",
    )


def console(core, user, text) -> tuple[int, str]:
    out = io.StringIO()
    code = run_command(core, user, text, out)
    return code, out.getvalue()


def go_scheduled(core, seconds: float):
    """Preflight (GO) and the TPM's `approve at` a few seconds ahead: (run id, time)."""
    code, out = console(core, COORDINATOR, "preflight")
    assert code == 0, out
    at = (clock.now() + timedelta(seconds=seconds)).replace(microsecond=0)
    code, out = console(core, TPM, f"approve at {at.isoformat()}")
    assert code == 0 and "GO scheduled" in out, out
    run = core.store.current()
    assert run.status == Status.SCHEDULED
    return run.id, at


def env_of(settings) -> dict[str, str]:
    """The environment a second bot process reads its Settings from."""
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "MIGRATE_ROSTER": str(settings.roster_path),
        "MIGRATE_REDIS_PREFIX": settings.redis_prefix,
        "DEPLOYMENT_URL": settings.deployment_url,
        "REGISTER_MONGODB_URL": settings.register_mongodb_url,
        "REGISTER_REDIS_URL": settings.register_redis_url,
        "MIGRATE_ENCRYPTION_KEY": settings.encryption_key,
        "BACKUP_DIR": str(settings.backup_dir),
        "MIGRATE_CHANNEL": settings.channel,
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("MIGRATE_WINDOW", None)
    return env


def test_job_survives_a_restart_and_two_processes_run_it_once(ready, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="migrate.scheduling")
    core = Core.from_settings(ready)
    run_id, at = go_scheduled(core, 8)

    first = Scheduler(core, lambda: Collect(), poll=0.5)
    first.schedule_run(run_id, at, reminder_before=timedelta(seconds=4))
    assert {j["id"] for j in first.jobs()} == {f"start:{run_id}", f"reminder:{run_id}"}
    first.shutdown()  # the bot restarts before the time: the jobs stay in Redis

    here = Collect()
    second = Scheduler(Core.from_settings(ready), lambda: here, poll=0.5)
    log_path = tmp_path / "other-process.log"
    with log_path.open("w") as log_file:
        other = subprocess.Popen(
            [sys.executable, "-m", "bot", "scheduler", "--poll", "0.5"],
            cwd=ROOT,
            env=env_of(ready),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        assert {j["id"] for j in second.jobs()} == {f"start:{run_id}", f"reminder:{run_id}"}

        def successes():
            return here.titles().count("Migration 006 SUCCESSFUL ✅") + log_path.read_text().count(
                "[channel] Migration 006 SUCCESSFUL ✅"
            )

        wait_until(lambda: successes() >= 1, timeout=180)
        assert core.store.get(run_id).status == Status.SUCCEEDED
    finally:
        other.send_signal(signal.SIGTERM)
        other.wait(timeout=60)
        second.shutdown()
    other_output = log_path.read_text()
    assert successes() == 1
    reminders = [t for t in here.titles() if t.startswith("⏰")] + [
        l for l in other_output.splitlines() if "[channel] ⏰" in l
    ]
    assert len(reminders) == 1 and "Migration 006 starts at" in reminders[0]
    assert (
        other_output.count("Phase 1 started")
        + here.titles().count("Phase 1 started: Database infrastructure")
        == 1
    )
    fired = once.claimed_by(core, jobs.start_id(run_id), at.isoformat())
    assert fired is not None and fired["process"]  # who fired it is on record
    versions = pg.scalar(ready.database_url, "SELECT count(*) FROM schema_migrations WHERE version = '006'")
    assert versions == 1
    # The start and its reminder are gone; the success scheduled the +1 h, +24 h and +1 week
    # follow-ups. Read from the job store itself: a scheduler that was shut down lists no job.
    stored = sorted(k.decode() for k in core.redis.hkeys(core.keys.schedule_jobs()))
    assert stored == [f"followup:{run_id}:{n}" for n in ("1", "2", "week")]

    # A third process that sees the same job late (as if it fetched it before it was removed) does nothing.
    third = Scheduler(Core.from_settings(ready), lambda: here, start=False)
    context.bind(third.name)  # this thread runs jobs as that process would
    try:
        jobs.start_run(run_id, at.isoformat(), at.isoformat())
    finally:
        context.bind("")
        third.shutdown()
    assert any("already fired by another process" in r.getMessage() for r in caplog.records)
    assert core.store.get(run_id).status == Status.SUCCEEDED

    everything = "\n".join([other_output, *(p.text() for p in here.posts)])
    for secret in (PLANTED["key"], "S3cretMongoPw42", "S3cretRedisPw42"):
        assert secret not in everything


@pytest.mark.parametrize("trouble", ["incident", "closed port"])
def test_nogo_before_the_time_cancels_the_start(ready, services, trouble):
    core = Core.from_settings(ready)
    run_id, at = go_scheduled(core, 5)
    out = Collect()
    scheduler = Scheduler(core, lambda: out, poll=0.5)
    try:
        scheduler.schedule_run(run_id, at, reminder_before=timedelta(0))
        if trouble == "incident":
            core.store.set_incident(TPM, "payments API down, SEV-1")
        else:
            services[1].close()  # the private-network MongoDB stops accepting connections
        wait_until(lambda: core.store.get(run_id).status == Status.DEFERRED, timeout=120)
        wait_until(lambda: out.titles("schedule_cancelled"))
    finally:
        scheduler.shutdown()
    post = next(p for p in out.posts if p.kind == "schedule_cancelled")
    reason = post.fields["NO-GO because"]
    if trouble == "incident":
        assert "payments API down, SEV-1" in reason and "incident" in reason.lower()
    else:
        assert "mongodb reachable" in reason and str(services[1].port) in reason
    assert "CANCELLED" in post.title and set(post.mentions) == {TPM, COORDINATOR}
    run = core.store.get(run_id)
    assert run.decision["what"] == "no-go" and "scheduled start cancelled" in run.decision["reason"]
    assert all(p.status == PhaseStatus.PENDING for p in run.phases.values())
    assert pg.scalar(ready.database_url, "SELECT to_regclass('platform.databases')::text") is None
    assert not [p for p in out.posts if p.kind in ("phase_started", "schedule_start")]


# ------------------------------------------------------------------ without a preflight: forged runs


def scheduled_run(core, at, status=Status.SCHEDULED):
    run = make_run(status, run_id="006-forged")
    run.approval = {"mode": "scheduled", "scheduled_for": at.isoformat(), "by": TPM}
    force(core.store, run)
    return run


def test_reminder_names_the_tpm_the_coordinator_and_the_phase_owners(settings):
    core = Core.from_settings(settings)
    at = (clock.now() + timedelta(minutes=15)).replace(microsecond=0)
    run = scheduled_run(core, at)
    out = Collect()
    assert go.remind(core, out, run.id, at)
    post = out.posts[0]
    assert "starts at" in post.title and post.run_id == run.id
    text = post.text()
    for who in ("<@U0DYLAN>", "<@U0RAFAEL>", "<@U0LIU>", "<@U0SERGEI>"):
        assert who in text
    assert set(post.mentions) == {"U0DYLAN", "U0RAFAEL", "U0LIU", "U0SERGEI"}


def test_a_moved_or_cancelled_start_does_nothing(settings):
    core = Core.from_settings(settings)
    at = (clock.now() + timedelta(minutes=5)).replace(microsecond=0)
    run = scheduled_run(core, at)
    out = Collect()
    assert go.start(core, out, run.id, at + timedelta(minutes=1)) == 2  # moved: this job is stale
    assert go.remind(core, out, run.id, at - timedelta(minutes=1)) is False
    force(core.store, make_run(Status.DEFERRED, run_id=run.id))
    assert go.start(core, out, run.id, at) == 2  # deferred meanwhile
    assert out.posts == [] and core.store.get(run.id).status == Status.DEFERRED


def test_a_start_found_late_is_cancelled_not_run(settings):
    core = Core.from_settings(settings)
    at = (clock.now() - timedelta(hours=3)).replace(microsecond=0)  # the bot was down at the time
    run = scheduled_run(core, at)
    out = Collect()
    assert go.start(core, out, run.id, at) == 1
    assert core.store.get(run.id).status == Status.DEFERRED
    assert "min late" in out.posts[0].fields["NO-GO because"]


def test_schedule_move_cancel_and_store_only_clients(settings):
    core = Core.from_settings(settings)
    at = (clock.now() + timedelta(hours=2)).replace(microsecond=0)
    client = for_core(core)  # no scheduler runs in this process: a store-only one
    assert client.running is False
    client.schedule_run("006-x", at)
    client.schedule_run("006-x", at + timedelta(hours=1))  # moved: replaced, not doubled
    running = Scheduler(Core.from_settings(settings), lambda: Collect(), poll=0.5)
    try:
        assert for_core(core) is running
        starts = [j for j in running.jobs() if j["kind"] == "start"]
        assert len(starts) == 1 and starts[0]["next_run_at"] == at + timedelta(hours=1)
        reminder = next(j for j in running.jobs() if j["kind"] == "reminder")
        assert reminder["next_run_at"] == at + timedelta(hours=1) - timedelta(minutes=15)
        assert running.cancel_run("006-x") is True
        assert running.jobs() == [] and running.cancel_run("006-x") is False
        running.schedule_followups("006-x")
        assert [(j["id"], j["name"].split(" ")[0]) for j in running.jobs()] == [
            ("followup:006-x:1", "+1"),
            ("followup:006-x:2", "+24"),
            ("followup:006-x:week", "+1"),
        ]
        assert running.cancel_followups("006-x") == 3
    finally:
        running.shutdown()


def test_labels():
    assert [
        label_of(timedelta(hours=1)),
        label_of(timedelta(hours=24)),
        label_of(timedelta(days=7)),
        label_of(timedelta(seconds=2)),
        label_of(timedelta(minutes=5)),
    ] == ["+1 h", "+24 h", "+1 week", "+2 s", "+5 min"]


def test_hooks_for_the_command_layer(settings):
    from scheduling import hooks

    core = Core.from_settings(settings.with_(channel="C0MIGRATE"))
    at = (clock.now() + timedelta(hours=3)).replace(microsecond=0)
    assert hooks.scheduled(core, "006-h", at) is None
    lines = hooks.status_lines(core)
    assert len(lines) == 2 and any(
        "scheduled start of run 006-h" in l and f"{at:%Y-%m-%d %H:%M:%S}" in l for l in lines
    )
    assert hooks.cancelled(core, "006-h") is True and hooks.cancelled(core, "006-h") is False
    assert hooks.succeeded(core, "006-h") == [
        "+1 h follow-up of run 006-h",
        "+24 h follow-up of run 006-h",
        "+1 week reminder of run 006-h",
    ]
    broken = Core.from_settings(
        settings.with_(redis_url="redis://127.0.0.1:1/0", redis_prefix=settings.redis_prefix + "x")
    )
    assert "will NOT start by itself" in hooks.scheduled(broken, "006-h", at)
    for_core(core).cancel_followups("006-h")


def test_suggested_start_is_the_low_traffic_window(settings):
    from datetime import datetime

    from scheduling.hooks import suggested_start

    evening = datetime(2026, 11, 24, 21, 30, tzinfo=UTC)
    assert suggested_start(settings, evening) == datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
    night = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)
    assert suggested_start(settings, night) == datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
    assert suggested_start(settings.with_(window="03:30-06:00"), evening) == datetime(
        2026, 11, 25, 3, 30, tzinfo=UTC
    )


# ------------------------------------------------------------------ a start lost with the process that fired it


def _die_after_claiming(core, client, run_id, at):
    """What a process dying mid-start leaves: APScheduler already removed the date job, and
    the firing is claimed by a claimant that no longer renews it (live TTL: 1 s here)."""
    assert once.hold(core, jobs.start_id(run_id), at.isoformat(), who="dead#1", live_ttl=1) is not None
    assert client._remove(jobs.start_id(run_id)) is True
    assert client.recover_start() is False  # the claim is still live: nobody re-fires yet
    assert [j for j in client.jobs() if j["kind"] == "start"] == []


def test_a_start_lost_with_its_process_is_recovered_and_cancelled_when_late(settings):
    core = Core.from_settings(settings)
    at = (clock.now() - timedelta(minutes=20)).replace(microsecond=0)
    run = scheduled_run(core, at)
    client = Scheduler(core, lambda: Collect(), start=False)
    out = Collect()
    new = None
    try:
        client.schedule_run(run.id, at, reminder_before=timedelta(0))
        _die_after_claiming(core, client, run.id, at)
        new = Scheduler(Core.from_settings(settings), lambda: out, poll=0.3)  # the restarted bot
        wait_until(lambda: out.titles("schedule_cancelled"), timeout=30)
    finally:
        if new is not None:
            new.shutdown()
        client.shutdown()
    post = next(p for p in out.posts if p.kind == "schedule_cancelled")
    assert "min late" in post.fields["NO-GO because"] and set(post.mentions) == {TPM, COORDINATOR}
    assert core.store.get(run.id).status == Status.DEFERRED
    assert once.claimed_by(core, jobs.start_id(run.id), at.isoformat())["scheduler"] == new.name
    assert len(out.posts) == 1


def test_a_start_lost_with_its_process_still_runs_when_on_time(ready):
    core = Core.from_settings(ready)
    run_id, at = go_scheduled(core, 2)
    client = for_core(core)  # where `approve at` stored the job
    assert [j["id"] for j in client.jobs() if j["kind"] == "start"] == [f"start:{run_id}"]
    wait_until(lambda: clock.now() >= at, timeout=10)
    _die_after_claiming(core, client, run_id, at)
    out = Collect()
    new = Scheduler(Core.from_settings(ready), lambda: out, poll=0.3)
    try:
        wait_until(
            lambda: "Migration 006 SUCCESSFUL ✅" in out.titles() or out.titles("schedule_cancelled"),
            timeout=180,
        )
    finally:
        new.shutdown()
    assert core.store.get(run_id).status == Status.SUCCEEDED, [p.text() for p in out.posts]
    assert out.titles("schedule_start") and not out.titles("schedule_cancelled")
    assert pg.scalar(ready.database_url, "SELECT count(*) FROM schema_migrations WHERE version = '006'") == 1


def test_a_held_claim_is_renewed_while_its_job_runs_then_kept(settings):
    core = Core.from_settings(settings)
    held = once.hold(core, "start:006-held", "2026-11-24T02:00:00+00:00", who="a", live_ttl=1)
    assert held is not None
    key = once.firing_key(core.keys, "start:006-held", "2026-11-24T02:00:00+00:00")
    with held:
        time.sleep(2.5)  # longer than the live TTL: only the renewal keeps it
        assert once.claimed_by(core, "start:006-held", "2026-11-24T02:00:00+00:00")["scheduler"] == "a"
        assert once.hold(core, "start:006-held", "2026-11-24T02:00:00+00:00", who="b", live_ttl=1) is None
    assert core.redis.ttl(key) > 86400  # the start is over: kept as evidence, never re-fired


def test_a_start_that_raises_before_the_run_begins_is_cancelled_with_the_error_posted(settings, monkeypatch):
    """A bug or a check that raises at the scheduled time must not leave the run SCHEDULED
    forever with nothing said: the start is cancelled, the reason posted (redacted)."""
    core = Core.from_settings(settings)
    at = clock.now().replace(microsecond=0)
    run = scheduled_run(core, at)

    def broken_checks(*args, **kwargs):
        raise RuntimeError(
            f"could not read postgresql://bot:DbPassw0rd-in-error@db.internal/prod with {PLANTED['key']}"
        )

    monkeypatch.setattr(go, "fast_checks", broken_checks)  # an unexpected error inside the start
    out = Collect()
    assert go.start(core, out, run.id, at) == 1
    assert core.store.get(run.id).status == Status.DEFERRED
    post = next(p for p in out.posts if p.kind == "schedule_cancelled")
    reason = post.fields["NO-GO because"]
    assert "the scheduled start failed before the run began (RuntimeError: could not read" in reason
    everything = "\n".join(p.text() for p in out.posts)
    assert "DbPassw0rd-in-error" not in everything and PLANTED["key"] not in everything
    assert set(post.mentions) == {TPM, COORDINATOR}
