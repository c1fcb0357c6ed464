"""Scratch databases for the backup proof and the rehearsal.

Created on `MIGRATE_SCRATCH_URL`'s server when set (production roles often lack CREATEDB),
else on the server of `DATABASE_URL`; always dropped afterwards (`WITH (FORCE)`, so a
connection left open by a failed step cannot keep it alive).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from core.config import Settings


class ScratchError(RuntimeError):
    """No scratch database could be created; the message says why and what to set."""


def server_url(settings: Settings) -> tuple[str, str]:
    """(URL of a database on the scratch server, where it comes from)."""
    if settings.scratch_url:
        return settings.scratch_url, "MIGRATE_SCRATCH_URL"
    if settings.database_url:
        return settings.database_url, "the server of DATABASE_URL"
    raise ScratchError("no scratch server: DATABASE_URL and MIGRATE_SCRATCH_URL are unset")


def same_server(a: str, b: str) -> bool:
    pa, pb = conninfo_to_dict(a), conninfo_to_dict(b)
    key = ("host", "port", "user")
    return tuple(pa.get(k) for k in key) == tuple(pb.get(k) for k in key)


def with_dbname(url: str, dbname: str) -> str:
    """A conninfo for database `dbname` on the server of `url` (libpq keyword form)."""
    params = conninfo_to_dict(url)
    params["dbname"] = dbname
    return make_conninfo("", **params)


def create(settings: Settings, prefix: str = "migrate_scratch") -> str:
    """Create an empty scratch database; return its conninfo."""
    url, origin = server_url(settings)
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    except psycopg.errors.InsufficientPrivilege as exc:
        hint = "" if settings.scratch_url else " (set MIGRATE_SCRATCH_URL to a server where it may)"
        raise ScratchError(
            f"cannot create a scratch database on {origin}: {exc.diag.message_primary}{hint}"
        ) from None
    except psycopg.Error as exc:
        raise ScratchError(f"cannot create a scratch database on {origin}: {exc}") from None
    return with_dbname(url, name)


def drop(settings: Settings, scratch: str) -> None:
    """Drop a scratch database made by `create`, whatever is connected to it."""
    name = str(conninfo_to_dict(scratch)["dbname"])  # conninfo values are text
    with psycopg.connect(server_url(settings)[0], autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def scratch_database(settings: Settings, prefix: str = "migrate_scratch") -> Iterator[str]:
    """A scratch database for the `with` block, dropped in every case."""
    url = create(settings, prefix)
    try:
        yield url
    finally:
        drop(settings, url)
