-- Migration 006, Phase 1 rollback: remove platform.databases and everything around it
-- (owner: Liu Ming, database-engineer)
--
-- Deploy : the bot runs it (inside one transaction) for `rollback phase 1`, or when step 1.1
--          fails (on_failure = "rollback"). By hand: psql -X -1 -v ON_ERROR_STOP=1 -f rollback-006.sql
--          Roll phase 2 back first (006_rollback.sql): newest phase first.
-- Revert : re-apply 006_add_platform_databases_table.sql, then the registration
-- Verify : SELECT to_regclass('platform.databases');       -- NULL
--          pg_dump --schema-only equals the version-005 dump (tests/test_sql_006.py)
--
-- Drops, in dependency order, what 006_add_platform_databases_table.sql created: the 2 views,
-- the 2 triggers, the table (its 8 indexes, constraints and the 2 registered rows go with
-- it), the 4 helper functions and the updated_at trigger function. No CASCADE: if something
-- outside Migration 006 came to depend on these objects the rollback stops and says so,
-- instead of silently dropping it. pgcrypto stays: it belongs to Migration 003.
-- Idempotent (IF EXISTS everywhere). Removes the 006 row from schema_migrations if the bot
-- had recorded one.
--
-- Plain statements, no BEGIN/COMMIT: the bot runs the file inside its own transaction.

DROP VIEW IF EXISTS platform.databases_with_connection_strings;
DROP FUNCTION IF EXISTS platform.get_project_databases(uuid, text);
DROP VIEW IF EXISTS platform.databases_safe;

DROP TRIGGER IF EXISTS encrypt_database_connection_string_trigger ON platform.databases;
DROP TRIGGER IF EXISTS update_databases_updated_at ON platform.databases;

DROP TABLE IF EXISTS platform.databases;

DROP FUNCTION IF EXISTS platform.encrypt_database_connection_string();
DROP FUNCTION IF EXISTS platform.decrypt_database_connection_string(uuid);
DROP FUNCTION IF EXISTS platform.update_database_health(uuid, text, text);
DROP FUNCTION IF EXISTS platform.set_databases_updated_at();

DELETE FROM public.schema_migrations WHERE version = '006';

DO $$
BEGIN
    RAISE NOTICE '✅ Phase 1 rolled back: platform.databases, its views, triggers and functions removed';
END;
$$;
