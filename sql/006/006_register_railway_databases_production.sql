-- Migration 006, Phase 1, Step 1.2: register the Railway MongoDB and Redis (owner: Liu Ming)
--
-- Deploy : run by the bot as runbook step 1.2, inside one transaction, with three
--          transaction-local settings it takes from the environment:
--            migrate.register_mongodb_url  <- REGISTER_MONGODB_URL
--            migrate.register_redis_url    <- REGISTER_REDIS_URL
--            app.encryption_key            <- MIGRATE_ENCRYPTION_KEY
--          By hand: PGOPTIONS='-c migrate.register_mongodb_url=… -c migrate.register_redis_url=…
--          -c app.encryption_key=…' psql -X -1 -v ON_ERROR_STOP=1 -f <this file>
-- Revert : none needed: safe to re-run (upsert on (project_id, name) updates, never duplicates);
--          rollback-006.sql drops the whole table with phase 1.
-- Verify : SELECT name, type, host, port, status, connection_string_encrypted IS NOT NULL
--          FROM platform.databases;     -- 2 rows (mongodb, redis), active, encrypted
--
-- NO credentials in this file. The URLs come from the settings above; host, port, database
-- and user are parsed from them for display; the full URL goes into
-- connection_string_encrypted as plaintext bytes and the table's trigger encrypts it before
-- it is stored (see 006_add_platform_databases_table.sql). Messages name settings, never
-- print their values; no NOTICE ever shows a connection string.
--
-- Plain statements, no BEGIN/COMMIT: the bot runs the file inside its own transaction.

DO $$
DECLARE
    v_org_id      uuid;
    v_project_id  uuid;
    v_database_id uuid;
    v_setting     text;
    v_url         text;
    v_authority   text;  -- user:password@host:port (first host of a multi-host URL)
    v_userinfo    text;
    v_hostport    text;
    v_port        text;
    v_dbname      text;
    -- one entry per database to register: label, name, type, setting, default port
    v_labels      text[] := ARRAY['MongoDB', 'Redis'];
    v_names       text[] := ARRAY['railway-mongodb', 'railway-redis'];
    v_types       text[] := ARRAY['mongodb', 'redis'];
    v_settings    text[] := ARRAY['migrate.register_mongodb_url', 'migrate.register_redis_url'];
    v_ports       int[]  := ARRAY[27017, 6379];
BEGIN
    -- Inputs first: fail before touching anything, naming the setting and never its value.
    FOREACH v_setting IN ARRAY v_settings || 'app.encryption_key'::text LOOP
        IF coalesce(current_setting(v_setting, true), '') = '' THEN
            RAISE EXCEPTION 'setting % is not set or empty', v_setting
                USING HINT = 'the bot sets it from REGISTER_MONGODB_URL / REGISTER_REDIS_URL / MIGRATE_ENCRYPTION_KEY';
        END IF;
    END LOOP;

    RAISE NOTICE 'Step 1: Locating Lancio project...';
    SELECT id INTO v_org_id FROM platform.organizations WHERE slug = 'lancio';
    IF v_org_id IS NULL THEN
        RAISE EXCEPTION 'organization with slug ''lancio'' not found in platform.organizations';
    END IF;
    RAISE NOTICE '✅ Found Lancio organization: %', v_org_id;

    SELECT id INTO v_project_id FROM platform.projects
    WHERE organization_id = v_org_id ORDER BY created_at, id LIMIT 1;
    IF v_project_id IS NULL THEN
        INSERT INTO platform.projects (organization_id, ref, name)
        VALUES (v_org_id, 'lancio-prod', 'Lancio Production')
        RETURNING id INTO v_project_id;
    END IF;
    RAISE NOTICE '✅ Found/Created project: %', v_project_id;

    FOR i IN 1 .. array_length(v_types, 1) LOOP
        RAISE NOTICE 'Step %: Registering %...', i + 1, v_labels[i];
        v_url := current_setting(v_settings[i]);
        IF v_url !~* ('^' || v_types[i] || '(\+srv|s)?://') THEN
            RAISE EXCEPTION 'setting % is not a % URL (expected %://…)', v_settings[i], v_labels[i], v_types[i];
        END IF;
        -- scheme://[user[:password]@]host[:port][,host2…][/database][?options]
        v_authority := substring(v_url FROM '^[^:]+://([^/?#]*)');
        v_userinfo  := substring(v_authority FROM '^(.*)@');
        v_hostport  := split_part(regexp_replace(v_authority, '^.*@', ''), ',', 1);
        v_port      := substring(v_hostport FROM ':([0-9]+)$');
        v_dbname    := nullif(substring(v_url FROM '^[^:]+://[^/?#]*/([^?#]*)'), '');
        IF split_part(regexp_replace(v_hostport, ':[0-9]*$', ''), ':', 1) = '' THEN
            RAISE EXCEPTION 'setting % has no host', v_settings[i];
        END IF;
        IF length(v_port) > 5 OR v_port::int NOT BETWEEN 1 AND 65535 THEN
            RAISE EXCEPTION 'setting % has an invalid port', v_settings[i];
        END IF;

        INSERT INTO platform.databases AS d
            (project_id, name, type, host, port, database_name, username, status,
             connection_string_encrypted, metadata)
        VALUES
            (v_project_id, v_names[i], v_types[i],
             regexp_replace(v_hostport, ':[0-9]*$', ''),
             coalesce(v_port::int, v_ports[i]),
             v_dbname,
             nullif(split_part(v_userinfo, ':', 1), ''),
             'active',
             convert_to(v_url, 'UTF8'),  -- plaintext bytes: the trigger encrypts them before storage
             jsonb_build_object('provider', 'railway', 'registered_by', 'migration_006'))
        ON CONFLICT (project_id, name) DO UPDATE
        SET type                        = EXCLUDED.type,
            host                        = EXCLUDED.host,
            port                        = EXCLUDED.port,
            database_name               = EXCLUDED.database_name,
            username                    = EXCLUDED.username,
            status                      = 'active',
            connection_string_encrypted = EXCLUDED.connection_string_encrypted,  -- already encrypted
            metadata                    = d.metadata || EXCLUDED.metadata
        RETURNING id INTO v_database_id;

        RAISE NOTICE '✅ % registered: %', v_labels[i], v_database_id;
    END LOOP;
END;
$$;
