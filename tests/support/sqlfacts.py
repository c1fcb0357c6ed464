"""Appendix B of the seed report, read from a real database: what Migration 006 left behind.

`appendix_b_facts(url)` answers every countable fact of Appendix B (and the version-005
baseline) in one dict, so tests of the SQL, the executor and the commands compare against
the same queries. It works on any database state (005, half-migrated, rolled back): a
missing object reads as 0 / empty, never as an error. It returns no secret;
`decrypted_connection_strings` is the one helper that does, for round-trip tests.
"""

from __future__ import annotations

import psycopg

APPENDIX_B_FUNCTIONS = (
    "encrypt_database_connection_string",
    "decrypt_database_connection_string",
    "get_project_databases",
    "update_database_health",
)
APPENDIX_B_VIEWS = ("databases_safe", "databases_with_connection_strings")
APPENDIX_B_TRIGGERS = ("encrypt_database_connection_string_trigger", "update_databases_updated_at")

_CATALOG = {
    "platform_tables": "SELECT count(*) FROM pg_tables WHERE schemaname = 'platform'",
    "databases_table": "SELECT to_regclass('platform.databases') IS NOT NULL",
    "columns": """SELECT count(*) FROM information_schema.columns
                  WHERE table_schema = 'platform' AND table_name = 'databases'""",
    "indexes": """SELECT count(*) FROM pg_index
                  WHERE indrelid = to_regclass('platform.databases') AND NOT indisprimary""",
    "triggers": """SELECT coalesce(array_agg(tgname::text ORDER BY tgname), '{}') FROM pg_trigger
                   WHERE tgrelid = to_regclass('platform.databases') AND NOT tgisinternal""",
    "functions": """SELECT coalesce(array_agg(p.proname::text ORDER BY p.proname), '{}')
                    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                    WHERE n.nspname = 'platform' AND p.proname = ANY(%(functions)s)""",
    "views": """SELECT coalesce(array_agg(viewname::text ORDER BY viewname), '{}') FROM pg_views
                WHERE schemaname = 'platform'""",
    "rls_tables": "SELECT count(*) FROM pg_tables WHERE schemaname = 'platform' AND rowsecurity",
    "policies": "SELECT count(*) FROM pg_policies WHERE schemaname = 'platform'",
    "permissive_policies": """SELECT count(*) FROM pg_policies
                              WHERE schemaname = 'platform' AND permissive = 'PERMISSIVE'""",
    "select_insert_tables": """SELECT count(*) FROM pg_tables t WHERE t.schemaname = 'platform' AND (
                                 SELECT count(*) FILTER (WHERE cmd = 'SELECT') = 1
                                    AND count(*) FILTER (WHERE cmd = 'INSERT') = 1
                                 FROM pg_policies p WHERE p.schemaname = 'platform' AND p.tablename = t.tablename)""",
    "migrations": """SELECT coalesce(array_agg(version ORDER BY version), '{}') FROM public.schema_migrations""",
    "pgcrypto": "SELECT count(*) = 1 FROM pg_extension WHERE extname = 'pgcrypto'",
}

# Only asked when platform.databases exists.
_DATA = {
    "registered": """SELECT coalesce(array_agg(type || ':' || status ORDER BY type, name), '{}')
                     FROM platform.databases""",
    "encrypted": """SELECT count(*) FROM platform.databases
                    WHERE connection_string_encrypted IS NOT NULL
                      AND pgp_key_id(connection_string_encrypted) = 'SYMKEY'""",
}


def appendix_b_facts(url: str) -> dict:
    """Every Appendix B fact of the database at `url`, e.g. {"columns": 15, "indexes": 8,
    "triggers": [...], "functions": [...], "views": [...], "rls_tables": 24,
    "permissive_policies": 48, "registered": ["mongodb:active", "redis:active"],
    "encrypted": 2, "migrations": ["001", …], "platform_tables": 24, "pgcrypto": True}."""
    params = {"functions": list(APPENDIX_B_FUNCTIONS)}
    with psycopg.connect(url, autocommit=True) as conn:
        facts = {
            name: conn.execute(sql, params if "%(" in sql else None).fetchone()[0]
            for name, sql in _CATALOG.items()
        }
        facts["views"] = [v for v in facts["views"] if v in APPENDIX_B_VIEWS]
        facts["triggers"] = [t for t in facts["triggers"] if t in APPENDIX_B_TRIGGERS]
        empty = {"registered": [], "encrypted": 0}
        facts.update(
            {name: conn.execute(sql).fetchone()[0] for name, sql in _DATA.items()}
            if facts["databases_table"]
            else empty
        )
    return facts


def decrypted_connection_strings(url: str, key: str) -> dict[str, str]:
    """{type: plaintext connection string} through platform.decrypt_database_connection_string,
    with `key` as app.encryption_key. Secrets: for assertions only, never print the result."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT set_config('app.encryption_key', %s, false)", (key,))
        rows = conn.execute(
            "SELECT type, platform.decrypt_database_connection_string(id) FROM platform.databases ORDER BY type"
        ).fetchall()
    return dict(rows)
