"""Test runbooks: a copy of sql/006 in tmp_path with one step altered.

Use with `settings.with_(runbook_path=...)` (or MIGRATE_RUNBOOK for a subprocess). The
copy's checksums are its own, so preflight and approval bind to the altered files.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sql import DEFAULT_RUNBOOK
from tests.support.waiting import wait_until  # re-exported: tests use rbs.wait_until

STEP_1_1 = "006_add_platform_databases_table.sql"
# The step waits for this lock after all its CREATEs ran in its transaction. A test that
# holds ROW EXCLUSIVE on the table (LOCK … IN ROW EXCLUSIVE MODE, in an open transaction)
# blocks it, while pg_dump and count(*) (ACCESS SHARE) still read the table.
BLOCKING_TABLE = "platform.organizations"
BLOCKING_STATEMENT = f"LOCK TABLE {BLOCKING_TABLE} IN SHARE MODE;"


def copy_runbook(tmp_path: Path, name: str = "runbook006") -> Path:
    """A copy of the shipped 006 runbook folder; returns the copy's runbook.toml."""
    target = Path(tmp_path) / name
    shutil.copytree(DEFAULT_RUNBOOK.parent, target)
    return target / DEFAULT_RUNBOOK.name


def append_to_file(runbook: Path, file: str, sql: str) -> Path:
    path = runbook.parent / file
    path.write_text(path.read_text(encoding="utf-8").rstrip() + "\n\n" + sql.strip() + "\n", encoding="utf-8")
    return runbook


def set_step_option(runbook: Path, step_id: str, line: str) -> Path:
    """Add `line` (e.g. 'lock_timeout = "10m"') to step `step_id` of the runbook."""
    text = runbook.read_text(encoding="utf-8")
    anchor = f'id = "{step_id}"\n'
    assert anchor in text, f"no step {step_id} in {runbook}"
    runbook.write_text(text.replace(anchor, anchor + line + "\n", 1), encoding="utf-8")
    return runbook


def blocking_runbook(tmp_path: Path, lock_timeout: str = "10m") -> Path:
    """Step 1.1 runs all its statements, then waits for a SHARE lock on BLOCKING_TABLE,
    with a long lock_timeout: a phase that stays in the middle of its transaction for as long
    as the test holds ROW EXCLUSIVE on the table."""
    runbook = copy_runbook(tmp_path)
    append_to_file(runbook, STEP_1_1, BLOCKING_STATEMENT)
    return set_step_option(runbook, "1.1", f'lock_timeout = "{lock_timeout}"')


def failing_runbook(tmp_path: Path, file: str = STEP_1_1, sql: str = "SELECT 1/0;") -> Path:
    """`file` ends with a statement that fails (division by zero by default)."""
    return append_to_file(copy_runbook(tmp_path), file, sql)


# ------------------------------------------------------------------ driving a run in tests


class TableLock:
    """Holds ROW EXCLUSIVE on BLOCKING_TABLE in an open transaction until released."""

    def __init__(self, url: str, table: str = BLOCKING_TABLE):
        import psycopg

        self.conn = psycopg.connect(url)
        self.conn.execute(f"LOCK TABLE {table} IN ROW EXCLUSIVE MODE")
        self.pid = self.conn.info.backend_pid

    def release(self) -> None:
        if not self.conn.closed:
            self.conn.rollback()
            self.conn.close()

    def __enter__(self) -> TableLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def waiting_backends(url: str, holder_pid: int) -> list[int]:
    """Pids of the bot's backends blocked by `holder_pid`."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid)) "
            "AND application_name LIKE 'migrate-bot%%'",
            (holder_pid,),
        ).fetchall()
    return [r[0] for r in rows]


def backend_alive(url: str, pid: int) -> bool:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0] > 0


def bot_env(settings) -> dict:
    """The environment under which `python -m bot …` sees the same settings as `settings`."""
    import os

    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MIGRATE_", "REGISTER_", "SLACK_", "DATABASE_URL"))
    }
    values = {
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "MIGRATE_REDIS_PREFIX": settings.redis_prefix,
        "MIGRATE_ROSTER": str(settings.roster_path),
        "MIGRATE_RUNBOOK": str(settings.runbook_path),
        "DEPLOYMENT_URL": settings.deployment_url,
        "REGISTER_MONGODB_URL": settings.register_mongodb_url,
        "REGISTER_REDIS_URL": settings.register_redis_url,
        "MIGRATE_ENCRYPTION_KEY": settings.encryption_key,
        "BACKUP_DIR": str(settings.backup_dir),
        "SLACK_BOT_TOKEN": settings.slack_bot_token,
        "SLACK_SIGNING_SECRET": settings.slack_signing_secret,
        "MIGRATE_CHANNEL": settings.channel,
        "PYTHONUNBUFFERED": "1",
        "MIGRATE_LOCK_TTL_SECONDS": str(settings.lock_ttl_seconds),
    }
    env.update({k: v for k, v in values.items() if v})
    return env


def start_console(settings, user: str, text: str):
    """`python -m bot console --user USER TEXT` as a separate process (stdout+stderr piped together)."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    return subprocess.Popen(
        [sys.executable, "-m", "bot", "console", "--user", user, text],
        cwd=root,
        env=bot_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def sleeping_runbook(tmp_path: Path, dbname: str, seconds: int = 240) -> Path:
    """Step 1.1 runs all its statements, then sleeps `seconds` in its transaction, but only in
    database `dbname` (preflight's rehearsal on a scratch copy does not sleep)."""
    runbook = copy_runbook(tmp_path)
    append_to_file(
        runbook,
        STEP_1_1,
        f"SELECT pg_sleep(CASE WHEN current_database() = '{dbname}' THEN {seconds} ELSE 0 END);",
    )
    return set_step_option(runbook, "1.1", 'statement_timeout = "15m"')


def step_backend(core) -> int | None:
    """The pid the phase runner published for its executor's backend, once that backend is
    inside the step's transaction (waiting for a lock, sleeping, or between lock attempts)."""
    import psycopg

    run = core.store.current()
    pid = run.meta.get("backend_pid") if run else None
    if not pid:
        return None
    with psycopg.connect(core.settings.database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT xact_start IS NOT NULL FROM pg_stat_activity WHERE pid = %s", (int(pid),)
        ).fetchone()
    return int(pid) if row and row[0] else None


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_serve(settings, slack_api_url: str):
    """`python -m bot serve` (HTTP mode) as a separate process; returns (process, base URL)
    once GET /healthz answers 200."""
    import subprocess
    import sys
    import urllib.error
    import urllib.request

    port = free_port()
    env = {**bot_env(settings), "SLACK_API_URL": slack_api_url, "PORT": str(port)}
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited {proc.returncode}: {proc.stdout.read()}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, ConnectionError):
            return False

    wait_until(healthy, timeout=60, interval=0.2, what="serve to answer /healthz")
    return proc, url
