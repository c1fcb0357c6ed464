-- Migration 006, Phase 3: Liu's verification suite for phase 1 (10 checks)
--
-- Deploy : psql -X -f test_database_health.sql   (the bot runs it in phase 3, "verify")
--          The decrypt checks need the key: PGOPTIONS='-c app.encryption_key=…' (the bot
--          passes MIGRATE_ENCRYPTION_KEY that way; it never appears on a command line).
-- Revert : nothing to revert: everything runs in one transaction that is ROLLED BACK.
-- Verify : the last line reads `10/10 checks passed`; one line per check starts with
--          `PASS:` or `FAIL:`. Like any team's SQL test script it exits 0 even when a
--          check fails: read the output (runbook: fail_pattern "FAIL", expect_pattern
--          "10/10 checks passed").
--
-- A check that cannot even run (missing table, missing key) is a FAIL line, not a crash:
-- every query goes through pg_temp.try_scalar(), which turns an error into its message.
-- No line prints a connection string or the key; error messages of the 006 functions name
-- settings, never values.

\set ON_ERROR_STOP off
\set QUIET on
\set VERBOSITY terse
\pset format unaligned
\pset tuples_only on
\pset footer off

\set expected_columns 15
\set expected_indexes 8
\set expected_triggers 2
\set expected_functions 4
\set expected_views 2
\set expected_databases 'mongodb:active,redis:active'

BEGIN;

CREATE TEMP TABLE health_results (n int PRIMARY KEY, name text NOT NULL, ok boolean NOT NULL);

-- The single value of a query as text, or 'error: <message>' (the check then fails).
CREATE FUNCTION pg_temp.try_scalar(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v text;
BEGIN
    EXECUTE q INTO v;
    RETURN coalesce(v, 'null');
EXCEPTION WHEN others THEN
    RETURN 'error: ' || SQLERRM;
END;
$$;

-- Records one check and returns its output line, with the value found as evidence.
CREATE FUNCTION pg_temp.check(p_n int, p_name text, p_got text, p_expected text) RETURNS text
LANGUAGE sql AS $$
    INSERT INTO health_results VALUES (p_n, p_name, p_got = p_expected);
    SELECT CASE WHEN p_got = p_expected THEN format('PASS: %s. %s (%s)', p_n, p_name, p_got)
                ELSE format('FAIL: %s. %s (got %s, expected %s)', p_n, p_name, p_got, p_expected) END;
$$;

\echo '=== Migration 006 phase 1: platform.databases health (10 checks) ==='

SELECT pg_temp.check(1, 'platform.databases exists',
    pg_temp.try_scalar($q$SELECT to_regclass('platform.databases') IS NOT NULL$q$), 'true');

SELECT pg_temp.check(2, 'platform.databases has ' || :'expected_columns' || ' columns',
    pg_temp.try_scalar($q$SELECT count(*) FROM information_schema.columns
                          WHERE table_schema = 'platform' AND table_name = 'databases'$q$),
    :'expected_columns');

SELECT pg_temp.check(3, :'expected_indexes' || ' indexes besides the primary key',
    pg_temp.try_scalar($q$SELECT count(*) FROM pg_index
                          WHERE indrelid = to_regclass('platform.databases') AND NOT indisprimary$q$),
    :'expected_indexes');

SELECT pg_temp.check(4, :'expected_triggers' || ' triggers (encrypt connection string, updated_at)',
    pg_temp.try_scalar($q$SELECT count(*) FROM pg_trigger
                          WHERE tgrelid = to_regclass('platform.databases') AND NOT tgisinternal
                            AND tgname IN ('encrypt_database_connection_string_trigger',
                                           'update_databases_updated_at')$q$),
    :'expected_triggers');

SELECT pg_temp.check(5, :'expected_functions' || ' helper functions',
    pg_temp.try_scalar($q$SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                          WHERE n.nspname = 'platform'
                            AND p.proname IN ('encrypt_database_connection_string', 'decrypt_database_connection_string',
                                              'get_project_databases', 'update_database_health')$q$),
    :'expected_functions');

SELECT pg_temp.check(6, :'expected_views' || ' views (databases_safe, databases_with_connection_strings)',
    pg_temp.try_scalar($q$SELECT count(*) FROM pg_views WHERE schemaname = 'platform'
                            AND viewname IN ('databases_safe', 'databases_with_connection_strings')$q$),
    :'expected_views');

SELECT pg_temp.check(7, '2 databases registered and active (MongoDB + Redis)',
    pg_temp.try_scalar($q$SELECT string_agg(type || ':' || status, ',' ORDER BY type) FROM platform.databases$q$),
    :'expected_databases');

-- Encrypted = a PGP symmetric-key message, not merely non-null bytes.
SELECT pg_temp.check(8, 'connection strings stored encrypted (PGP messages, not null)',
    pg_temp.try_scalar($q$SELECT count(*) FILTER (WHERE connection_string_encrypted IS NOT NULL
                                                 AND pgp_key_id(connection_string_encrypted) = 'SYMKEY')
                                 || '/' || count(*)
                          FROM platform.databases$q$),
    '2/2');

-- No plaintext anywhere in the row: not the connection string (as text or as the hex of its
-- bytes) and not its password, compared against what the decrypt function returns.
SELECT pg_temp.check(9, 'no plaintext connection string or password stored in platform.databases',
    pg_temp.try_scalar($q$
        WITH r AS (
            SELECT d::text AS row_text, d.connection_string_encrypted AS stored,
                   platform.decrypt_database_connection_string(d.id) AS plain
            FROM platform.databases d)
        SELECT count(*) FILTER (WHERE plain IS NOT NULL
                   AND position(convert_to(plain, 'UTF8') IN stored) = 0
                   AND strpos(row_text, plain) = 0
                   AND strpos(row_text, encode(convert_to(plain, 'UTF8'), 'hex')) = 0
                   AND coalesce(strpos(row_text, substring(plain FROM '://[^:/@]*:([^@]+)@')), 0) = 0)
               || '/' || count(*)
        FROM r$q$),
    '2/2');

SELECT pg_temp.check(10, 'decrypt_database_connection_string() round-trips with app.encryption_key',
    pg_temp.try_scalar($q$SELECT count(*) FILTER (WHERE platform.decrypt_database_connection_string(id)
                                                        ~ ('^' || type || '(\+srv|s)?://'))
                                 || '/' || count(*)
                          FROM platform.databases$q$),
    '2/2');

SELECT count(*) FILTER (WHERE ok) AS passed, count(*) AS total FROM health_results \gset

ROLLBACK;

\echo
\echo :passed/:total checks passed
