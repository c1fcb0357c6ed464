"""Two `run` commands at the same time: exactly one executes, the other is refused clearly.

Threads share one process (two Slack requests served concurrently); processes are two
console invocations on two machines' worth of bot, sharing only Redis and PostgreSQL.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from commands import Core, handle
from tests.support import pg
from tests.support.flow import COORDINATOR, Console

ROOT = Path(__file__).resolve().parent.parent


def test_two_threads_run_at_once_one_executes_one_is_refused(ready):
    core = Core.from_settings(ready)
    Console(core).approved()
    barrier = threading.Barrier(2)
    outcomes = []

    def attempt():
        barrier.wait()
        outcomes.append(handle(core, COORDINATOR, "run"))

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    started = [o for o in outcomes if o.work is not None]
    refused = [o for o in outcomes if o.code == 2]
    assert len(started) == 1 and len(refused) == 1
    assert "another run holds the lock" in refused[0].reply[0]
    posts = []

    class Collect:
        def post(self, post):
            posts.append(post)

        def progress(self, progress):
            pass

    assert started[0].work(Collect()) == 0
    assert sum(p.kind == "success" for p in posts) == 1
    assert pg.scalar(ready.database_url, "SELECT count(*) FROM migrate_bot.applied_files") == 3


def env_for(settings) -> dict:
    """The environment a console process gets for `settings` (the contract's variables)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MIGRATE_", "REGISTER_", "SLACK_"))}
    env.update(
        {
            "DATABASE_URL": settings.database_url,
            "REDIS_URL": settings.redis_url,
            "MIGRATE_REDIS_PREFIX": settings.redis_prefix,
            "MIGRATE_ROSTER": str(settings.roster_path),
            "MIGRATE_RUNBOOK": str(settings.runbook_path),
            "DEPLOYMENT_URL": settings.deployment_url or "",
            "REGISTER_MONGODB_URL": settings.register_mongodb_url or "",
            "REGISTER_REDIS_URL": settings.register_redis_url or "",
            "MIGRATE_ENCRYPTION_KEY": settings.encryption_key or "",
            "BACKUP_DIR": str(settings.backup_dir),
            "PYTHONPATH": str(ROOT),
        }
    )
    return env


def test_two_console_processes_run_at_once_one_executes_one_is_refused(ready):
    Console(Core.from_settings(ready)).approved()
    env = env_for(ready)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bot", "console", "--user", COORDINATOR, "run"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    results = [(p.wait(timeout=120), p.stdout.read()) for p in procs]

    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(out for code, out in results if code == 2)
    # Depending on who got there first, the loser meets the lock or the running phase.
    assert "another run holds the lock" in refused or "is running right now" in refused, refused
    succeeded = next(out for code, out in results if code == 0)
    assert "Migration 006 SUCCESSFUL ✅" in succeeded
    assert pg.scalar(ready.database_url, "SELECT count(*) FROM migrate_bot.applied_files") == 3


def test_console_process_exit_codes_and_no_secret_in_its_output(ready):
    """The contract's exit codes from a real process, with a password planted in DATABASE_URL."""
    url = ready.database_url.replace("postgres@", "postgres:S3cretDbPassw0rd@")  # trust auth ignores it
    env = env_for(ready.with_(database_url=url))

    def console(user, text):
        p = subprocess.run(
            [sys.executable, "-m", "bot", "console", "--user", user, text],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return p.returncode, p.stdout + p.stderr

    outputs = []
    for user, text, expected in [
        ("U0LIU", "approve", 2),
        ("U0RAFAEL", "run", 2),
        ("U0RAFAEL", "bogus", 2),
        ("U0RAFAEL", "preflight", 0),
        ("U0DYLAN", "approve", 0),
        ("U0RAFAEL", "status", 0),
    ]:
        code, out = console(user, text)
        outputs.append(out)
        assert code == expected, (text, out)
    everything = "\n".join(outputs)
    assert "S3cretDbPassw0rd" not in everything
    assert "postgres:***@" in everything  # status shows the database, redacted
    for secret in (ready.encryption_key, "S3cretMongoPw42", "S3cretRedisPw42"):
        assert secret not in everything


def test_the_same_request_delivered_twice_runs_once(ready):
    """The same Slack request delivered again (a slash command Slack re-sends with
    X-Slack-Retry-Num, an interaction payload delivered twice) carries the same request id, its
    trigger_id: executed once. A double click is not this case: two clicks are two requests with
    two trigger_ids; the second is refused by the run's state (e.g. "already approved") and the
    first decision takes the buttons off the message."""
    core = Core.from_settings(ready)
    first = handle(core, COORDINATOR, "incident start db cpu at 100%", request_id="slack:abc123")
    second = handle(core, COORDINATOR, "incident start db cpu at 100%", request_id="slack:abc123")
    assert first.code == 0 and second.code == 2
    assert "delivered twice and ran once" in second.reply[0]
    events = [e for e in core.events.events() if e["action"] == "incident start"]
    assert len(events) == 1


def test_redis_unreachable_is_a_short_answer_not_a_trace(ready):
    """Exit 1 with one line naming what is down; no traceback, no password."""
    env = env_for(ready)
    env["REDIS_URL"] = "redis://:S3cretRedisPw42@127.0.0.1:1/0"
    p = subprocess.run(
        [sys.executable, "-m", "bot", "console", "--user", COORDINATOR, "status"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 1
    assert "Redis (the bot's state) is unreachable" in p.stdout
    assert "Traceback" not in p.stdout + p.stderr and "S3cretRedisPw42" not in p.stdout + p.stderr


def test_a_malformed_setting_is_a_configuration_error_exit_2(ready):
    env = env_for(ready)
    env["MIGRATE_LOCK_TTL_SECONDS"] = "fifteen"
    p = subprocess.run(
        [sys.executable, "-m", "bot", "console", "--user", COORDINATOR, "status"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 2 and "MIGRATE_LOCK_TTL_SECONDS must be a number" in p.stderr
    assert "Traceback" not in p.stderr


def test_a_run_command_waits_for_the_last_bookkeeping_of_the_work_before_it(ready):
    """The post offering the next phase goes out while the finished phase's work still holds
    the lock; a click at that moment is served once the lock is let go, not refused."""
    core = Core.from_settings(ready)
    Console(core).approved()
    epilogue = core.lock.acquire("run phase 0 by U0TEST (finishing)")  # the run rests: APPROVED
    releaser = threading.Timer(1.0, epilogue.release)
    releaser.start()
    try:
        outcome = handle(core, COORDINATOR, "run phase 1")
    finally:
        releaser.join()
    assert outcome.code == 0 and outcome.work is not None, outcome.reply
    assert outcome.work(_Silent()) == 0


class _Silent:
    def post(self, post) -> None:
        pass

    def progress(self, progress) -> None:
        pass
