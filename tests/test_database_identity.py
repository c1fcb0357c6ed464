"""The run lock and the run state belong to the database as its server identifies it, not to
how DATABASE_URL spells the way there (issue 11 defect 10): `localhost` and `127.0.0.1` gave
two locks, so two runs could migrate one database at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

from commands import Core
from state.keys import database_identity
from tests.support.runbooks import bot_env

ROOT = Path(__file__).resolve().parent.parent


def spellings(url: str) -> list[str]:
    """Three ways to write the way to one database: 127.0.0.1, localhost, a keyword DSN."""
    params = conninfo_to_dict(url)
    assert params["host"] == "127.0.0.1"
    return [
        url,
        url.replace("127.0.0.1", "localhost", 1),
        f"host=localhost port={params.get('port', 5432)} dbname={params['dbname']} user={params.get('user', 'postgres')}",
    ]


def test_every_spelling_of_one_database_gives_one_lock_and_one_run_state(settings):
    cores = [Core.from_settings(settings.with_(database_url=url)) for url in spellings(settings.database_url)]
    assert len({core.keys.lock() for core in cores}) == 1
    held = cores[0].lock.acquire("preflight by U0RAFAEL")
    assert held is not None
    try:
        assert all(core.lock.acquire("preflight by U0DYLAN") is None for core in cores[1:])
    finally:
        held.release()
    run = cores[0].store.create("U0RAFAEL", "006")
    assert all(core.store.current().id == run.id for core in cores[1:])


def test_the_identity_is_the_servers_system_identifier_and_database_name(settings, scratch_db):
    identity = database_identity(settings.database_url)
    system, name = identity.split("/")
    assert system.isdigit() and name == conninfo_to_dict(settings.database_url)["dbname"]
    other = scratch_db()
    assert database_identity(other).split("/") == [system, conninfo_to_dict(other)["dbname"]]


def test_a_console_using_localhost_is_refused_while_a_run_holds_the_lock_through_127_0_0_1(settings):
    holder = Core.from_settings(settings).lock.acquire("preflight by U0RAFAEL")
    assert holder is not None
    try:
        env = {**bot_env(settings), "DATABASE_URL": spellings(settings.database_url)[1]}
        p = subprocess.run(
            [sys.executable, "-m", "bot", "console", "--user", "U0RAFAEL", "preflight"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        holder.release()
    assert p.returncode == 2, p.stdout[-2000:] + p.stderr[-2000:]
    assert "another run holds the lock" in p.stdout
