"""A URL's password is a secret before anything parses the URL (issue 11 defect 6).

Passwords holding an unencoded `/`, `#`, `?` or an invalid `%` escape made URL parsers cut
them into a "host", a "port" or a "database name", and the parse error (`port 'pa…' … is not
a number`) reached the channel, stderr, Redis, `migrate_bot.run_events` and the next backup.
Each password below is made of distinct fragments, and no fragment may appear anywhere.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from core.config import ConfigError, Settings
from core.redact import redact
from core.urls import credentials_problem, url_secrets
from tests.support.runbooks import bot_env

ROOT = Path(__file__).resolve().parent.parent
COORDINATOR = "U0RAFAEL"

MONGO_FRAGMENTS = ["Fr4gMa", "Fr4gMb", "Fr4gMc", "Fr4gMd"]
REDIS_FRAGMENTS = ["Fr4gRa", "Fr4gRb", "Fr4gRc"]
MONGO_PASSWORD = "Fr4gMa/Fr4gMb#Fr4gMc?Fr4gMd"
REDIS_PASSWORD = "Fr4gRa%zzFr4gRb/Fr4gRc"


def run_bot(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def redis_dump(client, prefix: str) -> str:
    """Every key under `prefix` and every value it holds, as text."""
    parts = []
    for key in client.scan_iter(match=f"{prefix}*", count=500):
        parts.append(key.decode(errors="replace"))
        kind = client.type(key).decode()
        if kind == "string":
            parts.append(client.get(key).decode(errors="replace"))
        elif kind == "hash":
            parts += [f"{k!r}={v!r}" for k, v in client.hgetall(key).items()]
        elif kind == "list":
            parts += [repr(v) for v in client.lrange(key, 0, -1)]
        elif kind == "zset":
            parts += [repr(v) for v in client.zrange(key, 0, -1)]
        elif kind == "stream":
            parts += [repr(entry) for entry in client.xrange(key)]
    return "\n".join(parts)


def run_events(url: str) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('migrate_bot.run_events')").fetchone()[0]
        rows = conn.execute("SELECT * FROM migrate_bot.run_events").fetchall() if exists else []
    return "\n".join(repr(row) for row in rows)


def files_under(folder: Path) -> str:
    if not folder.exists():
        return ""
    return "\n".join(p.read_bytes().decode("latin-1") for p in folder.rglob("*") if p.is_file())


def test_planted_passwords_with_cutting_characters_appear_nowhere_after_a_console_preflight(
    ready, redis_client
):
    mongo_port = ready.register_mongodb_url.rsplit(":", 1)[1].split("/")[0]
    env = {
        **bot_env(ready),
        "REGISTER_MONGODB_URL": f"mongodb://lancio:{MONGO_PASSWORD}@127.0.0.1:{mongo_port}/lancio",
        "REGISTER_REDIS_URL": f"redis://default:{REDIS_PASSWORD}@127.0.0.1:6379",
    }
    p = run_bot(env, "console", "--user", COORDINATOR, "preflight")
    assert p.returncode == 1, p.stdout[-3000:] + p.stderr[-3000:]  # NO-GO, said plainly
    assert "REGISTER_MONGODB_URL: the user or password holds an unencoded '/', '?', '#' or '@'" in p.stdout
    assert "REGISTER_REDIS_URL: the user or password holds an unencoded" in p.stdout
    everything = "\n".join(
        [
            p.stdout,
            p.stderr,
            redis_dump(redis_client, ready.redis_prefix),
            run_events(ready.database_url),
            files_under(Path(ready.backup_dir)),
        ]
    )
    assert "Traceback" not in p.stderr
    for fragment in MONGO_FRAGMENTS + REDIS_FRAGMENTS:
        assert fragment not in everything, fragment


DATABASE_PASSWORDS = ["Fr4gDa%zzFr4gDb", "Fr4gDa/Fr4gDb", "Fr4gDa#Fr4gDb", "Fr4gDa?Fr4gDb", "Fr4gDa@Fr4gDb"]


@pytest.mark.parametrize("mode", ["console", "serve"])
@pytest.mark.parametrize("password", DATABASE_PASSWORDS)
def test_a_database_url_whose_password_a_parser_would_cut_is_refused_without_showing_it(
    settings, mode, password
):
    env = {
        **bot_env(settings),
        "DATABASE_URL": f"postgresql://postgres:{password}@127.0.0.1:5432/postgres",
        "PORT": "1",
    }
    p = run_bot(env, *(["console", "--user", COORDINATOR, "status"] if mode == "console" else ["serve"]))
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert p.returncode == 2 and len(lines) == 1 and "DATABASE_URL" in lines[0], p.stderr[-2000:]
    for fragment in ("Fr4gDa", "Fr4gDb"):
        assert fragment not in p.stdout + p.stderr


@pytest.mark.parametrize("name", ["REDIS_URL", "MIGRATE_SCRATCH_URL"])
def test_a_redis_or_scratch_url_whose_password_a_parser_would_cut_is_refused_without_showing_it(
    settings, name
):
    url = {
        "REDIS_URL": "redis://default:Fr4gQa#Fr4gQb@127.0.0.1:6379/0",
        "MIGRATE_SCRATCH_URL": "postgresql://postgres:Fr4gQa/Fr4gQb@127.0.0.1:5432/postgres",
    }[name]
    p = run_bot({**bot_env(settings), name: url}, "console", "--user", COORDINATOR, "status")
    assert p.returncode == 2 and name in p.stderr and "Traceback" not in p.stderr
    assert "Fr4gQa" not in p.stdout + p.stderr and "Fr4gQb" not in p.stdout + p.stderr


def test_every_url_password_is_a_secret_as_written_and_decoded_without_parsing():
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://u:Db%40Pass%2Fword@h/db",
            "REGISTER_MONGODB_URL": f"mongodb://u:{MONGO_PASSWORD}@h/db",
            "SOME_RUNBOOK_INPUT_URL": "redis://:Inp/ut#Pw@h:1",
        }
    )
    secrets = settings.secrets()
    for value in ("Db%40Pass%2Fword", "Db@Pass/word", MONGO_PASSWORD, "Inp/ut#Pw"):
        assert value in secrets
    assert redact("connecting as Db@Pass/word failed", secrets) == "connecting as *** failed"
    assert url_secrets(["redis://:p@ss@h:1"]) == ("p@ss",)


def test_a_credentials_problem_names_the_rule_not_the_url():
    for url in (f"mongodb://u:{MONGO_PASSWORD}@h/db", "redis://u:Fr4gRa%zz@h"):
        problem = credentials_problem("REGISTER_X_URL", url)
        assert problem and "Fr4g" not in problem and "REGISTER_X_URL" in problem
    assert credentials_problem("X", "postgresql://u:Good%2Fpw@h/db") is None
    assert credentials_problem("X", "postgresql://h/db") is None
    with pytest.raises(ConfigError, match="DATABASE_URL: the user or password holds"):
        Settings.from_env({"DATABASE_URL": "postgresql://u:Fr4g/x@h/db"})
