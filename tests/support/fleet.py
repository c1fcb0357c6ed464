"""Fleets of scratch databases for the fleet tests and bench/fleet.py: the databases, their
targets file and environment, a small runbook, the process Core the verbs run on, and worker
processes (`python -m bot fleet-worker`)."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bot.console import run_command
from commands import Core
from commands.fleetcore import close_target_cores, store
from core.config import Settings
from core.targets import load_fleet
from tests.support import pg
from tests.support.migration_folders import Folder, Migration
from tests.support.runbooks import bot_env

ROOT = Path(__file__).resolve().parents[2]
COORDINATOR, TPM = "U0RAFAEL", "U0DYLAN"
FAIL_MARK = "-- fail on: "


def small_runbook(folder: Path, *, sleep: float = 0.0, fail_on: tuple[str, ...] = ()) -> Path:
    """Two phases, one file each; each file sleeps `sleep` seconds inside its transaction. The
    second raises on the databases named in `fail_on` (the rehearsal's copy has another name,
    so pre-flight passes there)."""
    pause = f"SELECT pg_sleep({sleep});\n" if sleep else ""
    failing = ""
    if fail_on:
        names = ", ".join(f"'{n}'" for n in fail_on)
        failing = (
            f"DO $$ BEGIN IF current_database() IN ({names}) THEN "
            "RAISE EXCEPTION 'planted failure on %', current_database(); END IF; END $$;\n"
        )
    migrations = [
        Migration(
            "001_items",
            f"CREATE TABLE items (id bigint PRIMARY KEY, label text);\n{pause}",
            "DROP TABLE items;\n",
        ),
        Migration(
            "002_label_index",
            f"{failing}CREATE INDEX items_label ON items (label);\n{pause}",
            "DROP INDEX items_label;\n",
        ),
    ]
    return Folder(folder, migrations).write()


@dataclass
class ScratchFleet:
    """`n` scratch databases named t0..t{n-1} with their waves, a targets file, settings."""

    settings: Settings
    names: list[str]
    dbnames: dict[str, str]  # target name -> database name
    env: dict[str, str]  # the target URL variables
    path: Path
    made: list[str] = field(default_factory=list)

    def url(self, name: str) -> str:
        return self.env[f"FLEET_{name.upper()}_URL"]

    def drop(self) -> None:
        for db in self.made:
            pg.drop_database(db)

    def process_env(self) -> dict[str, str]:
        """The environment of a `python -m bot …` process seeing this fleet."""
        return {**bot_env(self.settings), **self.env, "MIGRATE_TARGETS": str(self.path)}


def scratch_fleet(
    base: Settings, tmp_path: Path, waves: list[int], *, parallel: int = 4, stop_after_failures: int = 1
) -> ScratchFleet:
    """Databases t0.. in `waves` (waves[i] is t{i}'s wave), empty, with a targets file."""
    names = [f"t{i}" for i in range(len(waves))]
    dbnames = {name: pg.new_name("fl") for name in names}
    made = []
    env = {}
    for name in names:
        env[f"FLEET_{name.upper()}_URL"] = pg.create_database(dbnames[name])
        made.append(dbnames[name])
    lines = [f"[fleet]\nparallel = {parallel}\nstop_after_failures = {stop_after_failures}\n"]
    for name, wave in zip(names, waves):
        lines.append(f'[[targets]]\nname = "{name}"\nurl_env = "FLEET_{name.upper()}_URL"\nwave = {wave}\n')
    path = tmp_path / "targets.toml"
    path.write_text("\n".join(lines))
    settings = base.with_(
        database_url=env["FLEET_T0_URL"],
        targets=load_fleet(path, env),
        deployment_url=None,
        register_mongodb_url=None,
        register_redis_url=None,
        encryption_key=None,
    )
    return ScratchFleet(settings, names, dbnames, env, path, made)


def console(core, user: str, text: str) -> tuple[int, str]:
    """One command through the console's entry point, in-process: (exit code, what it printed)."""
    out = io.StringIO()
    code = run_command(core, user, text, out)
    return code, out.getvalue()


def process_core(fleet: ScratchFleet) -> Core:
    """The bot process's Core (DATABASE_URL: the canary's), MIGRATE_TARGETS set."""
    return Core.from_settings(fleet.settings)


def preflight_and_approve(core: Core) -> str:
    """The fleet's `preflight` (every target, one summary) and the TPM's one `approve`."""
    code, out = console(core, COORDINATOR, "preflight")
    assert code == 0, out[-3000:]
    code, out = console(core, TPM, "approve")
    assert code == 0, out[-3000:]
    return store(core).current().id


def close(core: Core) -> None:
    close_target_cores(core)
    core.events.close()


def start_worker_process(env: dict[str, str], log_path: Path, threads: int | None = None) -> subprocess.Popen:
    """`python -m bot fleet-worker` in its own process; returns once it says it is ready."""
    args = [sys.executable, "-m", "bot", "fleet-worker"] + (["--threads", str(threads)] if threads else [])
    log = open(log_path, "ab")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(args, env={**env, "PYTHONUNBUFFERED": "1"}, cwd=ROOT, stdout=log, stderr=log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if b"ready" in log_path.read_bytes():
            return proc
        if proc.poll() is not None:
            raise RuntimeError(f"fleet-worker exited {proc.returncode}: {log_path.read_text()[-2000:]}")
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"fleet-worker not ready: {log_path.read_text()[-2000:]}")


def applied_files(url: str) -> list[tuple[str, str]]:
    """(file, run id) of every row of the bot's ledger in that database, in order."""
    return [
        (r[0], r[1]) for r in _rows(url, "SELECT file, run_id FROM migrate_bot.applied_files ORDER BY id")
    ]


def run_events(url: str, run_id: str | None = None) -> list[tuple[str, str]]:
    """(action, actor) of the bot's audit trail in that database (of one run, if given), in order."""
    query = "SELECT action, actor FROM migrate_bot.run_events"
    if run_id is not None:
        query += " WHERE run_id = %s"
    return [(r[0], r[1]) for r in _rows(url, query + " ORDER BY at, id", (run_id,) if run_id else None)]


def _rows(url: str, query: str, params=None) -> list[tuple]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()
