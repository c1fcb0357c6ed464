"""A database's own properties, which a pg_dump of that database does not carry.

`pg_dump DB` (without --create) holds what is *inside* the database; the database object's
settings (`ALTER DATABASE … SET …`, `ALTER ROLE … IN DATABASE … SET …`) and its grants
(CONNECT, CREATE, TEMPORARY) live in the cluster catalogs. A restore that swaps a new database
in must carry them over from the database it replaces, or an application that relies on a
database-level search_path, or a role that was the only one allowed to connect, breaks.

Values are copied without being re-typed as SQL: each is set in a session with set_config()
(which parses lists such as search_path the way the server stored them) and stored with
`SET … FROM CURRENT`, so no catalog text is ever interpolated into a statement.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from core.redact import first_line

_SETTINGS = """SELECT r.rolname, s.setconfig FROM pg_db_role_setting s
               LEFT JOIN pg_roles r ON r.oid = s.setrole
               WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = %s)"""
_GRANTS = """SELECT a.grantee = 0, coalesce(pg_get_userbyid(a.grantee), ''), a.privilege_type, a.is_grantable
             FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = %s"""
_HAS_ACL = "SELECT datacl IS NOT NULL FROM pg_database WHERE datname = %s"


def _guc(name: str) -> sql.Composable:
    """A setting's name as SQL: `work_mem`, or a custom `app.encryption_key` (two identifiers)."""
    return sql.SQL(".").join(sql.Identifier(part) for part in name.split("."))


PRIVILEGES = {"CREATE", "CONNECT", "TEMPORARY"}  # what a database ACL can grant


@dataclass
class Carried:
    settings: int = 0
    grants: int = 0
    missed: list[str] = field(default_factory=list)  # what could not be applied, as the SQL to run by hand


def carry(admin_url: str, source: str, target: str) -> Carried:
    """Apply `source`'s settings and grants to `target` (a database just created, with the
    default ACL and no settings). What cannot be applied (a setting only valid at connection
    start, a privilege the bot's role lacks) is listed, not fatal: the restore goes on and says so."""
    with psycopg.connect(admin_url, autocommit=True) as admin:
        rows = admin.execute(_SETTINGS, (source,)).fetchall()
        has_acl = admin.execute(_HAS_ACL, (source,)).fetchone()
        grants = admin.execute(_GRANTS, (source,)).fetchall()
    done = Carried()
    # Connected to the target itself: a value may name an object of that database (a text
    # search configuration, a schema) that set_config checks against the current database.
    target_url = make_conninfo(admin_url, dbname=target)
    for role, configs in rows:
        for item in configs or ():
            name, _, value = item.partition("=")
            try:
                _store_setting(target_url, target, role, name, value)
                done.settings += 1
            except psycopg.Error as exc:
                scope = f"ROLE {role} IN DATABASE {target}" if role else f"DATABASE {target}"
                # neither the value nor the server's message (which may quote it): it may be a secret
                done.missed.append(
                    f"ALTER {scope} SET {name} = (its value on {source}) ({type(exc).__name__})"
                )
    if has_acl and has_acl[0]:
        try:
            _copy_acl(admin_url, target, grants)
            done.grants = len(grants)
        except psycopg.Error as exc:
            done.missed.append(
                f"the grants on DATABASE {source} ({first_line(exc)}): compare "
                f"`\\l {source}` with `\\l {target}`"
            )
    return done


def _store_setting(target_url: str, target: str, role: str | None, name: str, value: str) -> None:
    """One setting, in one transaction: made this transaction's value (set_config … local), then
    stored FROM CURRENT — so a setting like default_transaction_read_only cannot affect the
    statement that stores it."""
    with psycopg.connect(target_url) as conn:
        conn.read_only = (
            False  # BEGIN READ WRITE: a default_transaction_read_only carried already does not apply
        )
        with conn.transaction():
            conn.execute("SELECT set_config(%s, %s, true)", (name, value))
            if role:
                stmt = sql.SQL("ALTER ROLE {} IN DATABASE {} SET {} FROM CURRENT").format(
                    sql.Identifier(role), sql.Identifier(target), _guc(name)
                )
            else:
                stmt = sql.SQL("ALTER DATABASE {} SET {} FROM CURRENT").format(
                    sql.Identifier(target), _guc(name)
                )
            conn.execute(stmt)


def _copy_acl(admin_url: str, target: str, grants: list[tuple[Any, ...]]) -> None:
    """The target's ACL made equal to the grants listed (it starts from the default); all or nothing."""
    db = sql.Identifier(target)
    with psycopg.connect(admin_url, autocommit=True) as conn, conn.transaction():
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))
        for public, grantee, privilege, grantable in grants:
            if privilege not in PRIVILEGES:
                raise psycopg.ProgrammingError(f"unexpected database privilege {privilege!r}")
            who = sql.SQL("PUBLIC") if public else sql.Identifier(grantee)
            option = sql.SQL(" WITH GRANT OPTION") if grantable else sql.SQL("")
            conn.execute(
                sql.SQL("GRANT {} ON DATABASE {} TO {}{}").format(sql.SQL(privilege), db, who, option)
            )
