"""Scratch PostgreSQL databases for tests: created on the real server, dropped afterwards."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import psycopg
from psycopg import sql as pgsql
from psycopg.conninfo import conninfo_to_dict

from sql import BASELINE_DIR

SERVER_URL = os.environ.get("MIGRATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def url_for(dbname: str, server_url: str = SERVER_URL) -> str:
    """The URL of database `dbname` on the server of `server_url`."""
    params = conninfo_to_dict(server_url)
    params["dbname"] = dbname
    user = params.get("user", "")
    host = params.get("host", "127.0.0.1")
    port = params.get("port", "5432")
    auth = f"{user}:{params['password']}@" if params.get("password") else (f"{user}@" if user else "")
    return f"postgresql://{auth}{host}:{port}/{dbname}"


def new_name(prefix: str = "mt") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def create_database(name: str, template: str | None = None) -> str:
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        stmt = pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name))
        if template:
            stmt = pgsql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                pgsql.Identifier(name), pgsql.Identifier(template)
            )
        conn.execute(stmt)
    return url_for(name)


def drop_database(name: str) -> None:
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute(pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(name)))


def psql_file(url: str, path: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Apply one file the way the report does (`psql -v ON_ERROR_STOP=1 -f`)."""
    return subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", *extra, "-d", url, "-f", str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )


def apply_baseline(url: str) -> None:
    files = sorted(BASELINE_DIR.glob("*.sql"))
    if not files:
        raise RuntimeError(f"no baseline SQL in {BASELINE_DIR}")
    for path in files:
        result = psql_file(url, path)
        if result.returncode != 0:
            raise RuntimeError(f"baseline {path.name} failed: {result.stderr}")


def schema_dump(url: str, *exclude_schemas: str) -> str:
    """`pg_dump --schema-only`, without the bot's own schema, for exact schema comparisons."""
    args = ["pg_dump", "--schema-only", "--no-owner", "--no-privileges", "-d", url]
    for schema in ("migrate_bot", *exclude_schemas):
        args += ["--exclude-schema", schema]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    # pg_dump 15.x+ prints a per-run random \restrict key; it is not part of the schema.
    return "\n".join(l for l in out.splitlines() if not l.startswith(("\\restrict", "\\unrestrict")))


def scalar(url: str, query: str, params=None):
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()
        return row[0] if row else None
