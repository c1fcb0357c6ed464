"""What a database holds, in comparable form: its objects by kind and its exact row counts.

Used to prove a restored backup equals its source (every table, the same row counts, the
same functions, views, policies, extensions, triggers, indexes, schema_migrations) and that
a rehearsed rollback returns the schema to where it was. The bot's own bookkeeping schema
(`migrate_bot`) is excluded everywhere: it legitimately differs.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

SKIP_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast", "migrate_bot")
_USER_NS = "n.nspname <> ALL(%(skip)s) AND n.nspname NOT LIKE 'pg_temp%%' AND n.nspname NOT LIKE 'pg_toast%%'"

# Each kind: one query returning (identity, definition) rows; two databases match on a
# kind when they return the same set of rows.
QUERIES: dict[str, str] = {
    "tables": f"""SELECT n.nspname || '.' || c.relname,
                         c.relkind::text || ' rls=' || c.relrowsecurity || ' cols=' ||
                         (SELECT string_agg(a.attname || ':' || format_type(a.atttypid, a.atttypmod), ',' ORDER BY a.attnum)
                            FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)
                  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.relkind IN ('r', 'p') AND {_USER_NS}""",
    "functions": f"""SELECT n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
                            md5(coalesce(p.prosrc, '') || p.prokind::text || pg_get_function_result(p.oid))
                     FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                     WHERE {_USER_NS} AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')""",
    "views": f"""SELECT n.nspname || '.' || c.relname, md5(pg_get_viewdef(c.oid))
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE c.relkind IN ('v', 'm') AND {_USER_NS}""",
    "policies": """SELECT schemaname || '.' || tablename || '.' || policyname,
                          permissive || ' ' || cmd || ' ' || roles::text || ' ' || coalesce(qual, '') || ' ' || coalesce(with_check, '')
                   FROM pg_policies WHERE schemaname <> ALL(%(skip)s)""",
    "extensions": "SELECT extname, extversion FROM pg_extension",
    "triggers": f"""SELECT n.nspname || '.' || c.relname || '.' || t.tgname, pg_get_triggerdef(t.oid)
                    FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE NOT t.tgisinternal AND {_USER_NS}""",
    "indexes": "SELECT schemaname || '.' || indexname, indexdef FROM pg_indexes WHERE schemaname <> ALL(%(skip)s)",
}
KINDS = (*QUERIES, "schema_migrations")


def objects(conn: psycopg.Connection) -> dict[str, dict[str, str]]:
    """Kind -> {identity: definition} for every kind in QUERIES, plus schema_migrations rows."""
    found: dict[str, dict[str, str]] = {
        kind: dict(conn.execute(query, {"skip": list(SKIP_SCHEMAS)}).fetchall())
        for kind, query in QUERIES.items()
    }
    found["schema_migrations"] = _schema_migrations(conn)
    return found


def _schema_migrations(conn: psycopg.Connection) -> dict[str, str]:
    row = conn.execute("SELECT to_regclass('schema_migrations')").fetchone()
    assert row is not None  # a SELECT without FROM is one row
    if row[0] is None:
        return {}
    rows = conn.execute("SELECT version::text, row_to_json(m)::text FROM schema_migrations m").fetchall()
    return dict(rows)


def row_counts(conn: psycopg.Connection, tables: list[str]) -> dict[str, int]:
    """Exact `count(*)` of each `schema.table` (estimates would hide a lost row), up to 100 tables
    per statement (one round trip each, not one per table)."""
    counts: dict[str, int] = {}
    names = sorted(tables)
    for start in range(0, len(names), 100):
        chunk = names[start : start + 100]
        query = sql.SQL(" UNION ALL ").join(
            sql.SQL("SELECT {}::int, count(*) FROM {}.{}").format(
                sql.Literal(k), *(sql.Identifier(part) for part in name.split(".", 1))
            )
            for k, name in enumerate(chunk)
        )
        for k, count in conn.execute(query).fetchall():
            counts[chunk[k]] = count
    return counts


def write_counters(conn: psycopg.Connection) -> dict[str, Any]:
    """Rows inserted/updated/deleted since stats reset, outside `migrate_bot`, in total and per
    table (`tables`: {schema.table: [ins, upd, del]}): a later restore compares them to say
    what was written since the backup, table by table."""
    rows = conn.execute(
        """SELECT schemaname || '.' || relname, n_tup_ins, n_tup_upd, n_tup_del
                           FROM pg_stat_user_tables WHERE schemaname <> ALL(%(skip)s)""",
        {"skip": list(SKIP_SCHEMAS)},
    ).fetchall()
    tables = {name: [int(i), int(u), int(d)] for name, i, u, d in rows}
    return {
        "n_tup_ins": sum(t[0] for t in tables.values()),
        "n_tup_upd": sum(t[1] for t in tables.values()),
        "n_tup_del": sum(t[2] for t in tables.values()),
        "tables": tables,
    }


def differences(source: dict[str, str], copy: dict[str, str]) -> list[str]:
    """Readable differences between two {identity: definition} maps (first few)."""
    missing = sorted(set(source) - set(copy))
    extra = sorted(set(copy) - set(source))
    changed = sorted(k for k in set(source) & set(copy) if source[k] != copy[k])
    out = (
        [f"missing {k}" for k in missing]
        + [f"unexpected {k}" for k in extra]
        + [f"differs {k}" for k in changed]
    )
    return out
