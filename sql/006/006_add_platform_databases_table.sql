-- Migration 006, Phase 1, Step 1.1: platform.databases (owner: Liu Ming, database-engineer)
--
-- Deploy : run by the bot as runbook step 1.1, inside one transaction it manages.
--          By hand: psql -X -1 -v ON_ERROR_STOP=1 -f 006_add_platform_databases_table.sql
-- Revert : rollback-006.sql (drops everything below; pgcrypto stays, it belongs to 003)
-- Verify : \d platform.databases          -- 15 columns
--          runbook.toml [[phases.checks]] of phase 1; test_database_health.sql (phase 3)
--
-- Creates (Appendix B of the coordination report):
--   table    platform.databases                      15 columns
--   indexes  8 besides the primary key               one UNIQUE (project_id, name): registration upserts on it
--   function platform.encrypt_database_connection_string()         trigger function
--   function platform.decrypt_database_connection_string(UUID)     -> text
--   function platform.get_project_databases(UUID, TEXT)            -> SETOF platform.databases_safe
--   function platform.update_database_health(UUID, TEXT, TEXT)    -> boolean
--   function platform.set_databases_updated_at()                   trigger function: a 5th
--            function; Appendix B and the runbook check count the 4 named above.
--   views    platform.databases_safe (no credential column)
--            platform.databases_with_connection_strings (decrypted; internal use only)
--   triggers encrypt_database_connection_string_trigger, update_databases_updated_at
--
-- Plain statements, no BEGIN/COMMIT: every 006 file is executed inside ONE transaction that
-- the bot opens (or `psql -1` by hand), so a failure leaves nothing behind.
--
-- How a connection string is encrypted
--   The key never sits in SQL: it is the session setting app.encryption_key
--   (current_setting('app.encryption_key', true)); the bot sets it transaction-locally from
--   MIGRATE_ENCRYPTION_KEY. Writers put the PLAINTEXT bytes of the connection string into
--   connection_string_encrypted (convert_to(url, 'UTF8')); the BEFORE trigger replaces them
--   with pgp_sym_encrypt(url, key) before the row is stored, so plaintext never reaches the
--   table, a WAL record or an index. A value that is already a PGP message is kept as is (an
--   upsert's EXCLUDED row was encrypted by the INSERT trigger; re-encrypting would nest).
--   "Already a PGP message" = first byte has its high bit set: every OpenPGP packet header
--   does (RFC 4880 §4.2), while a connection string starts with an ASCII scheme letter.
--   A missing key raises an error naming the setting, never a value.

CREATE TABLE platform.databases (
    id                          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id                  uuid NOT NULL REFERENCES platform.projects (id) ON DELETE CASCADE,
    name                        text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    type                        text NOT NULL CHECK (type IN ('postgresql', 'mongodb', 'redis', 'mysql')),
    host                        text NOT NULL,
    port                        integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
    database_name               text,
    username                    text,
    status                      text NOT NULL DEFAULT 'inactive'
                                CHECK (status IN ('active', 'inactive', 'maintenance', 'error')),
    connection_string_encrypted bytea,
    health_check_status         text NOT NULL DEFAULT 'unknown'
                                CHECK (health_check_status IN ('unknown', 'healthy', 'degraded', 'unhealthy')),
    last_health_check_at        timestamptz,
    metadata                    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE platform.databases IS
    'External databases (MongoDB, Redis, ...) attached to a project. Connection strings are stored '
    'pgp_sym_encrypt-ed with the key in app.encryption_key; read them through '
    'platform.decrypt_database_connection_string(id), never directly.';
COMMENT ON COLUMN platform.databases.connection_string_encrypted IS
    'PGP message (pgcrypto). Write plaintext bytes: the trigger encrypts them before storage.';

-- 8 indexes besides the primary key.
CREATE UNIQUE INDEX idx_databases_project_id_name ON platform.databases (project_id, name);
CREATE INDEX idx_databases_project_id_type ON platform.databases (project_id, type);
CREATE INDEX idx_databases_type ON platform.databases (type);
CREATE INDEX idx_databases_status ON platform.databases (status);
CREATE INDEX idx_databases_health_check_status ON platform.databases (health_check_status);
CREATE INDEX idx_databases_last_health_check_at ON platform.databases (last_health_check_at);
CREATE INDEX idx_databases_created_at ON platform.databases (created_at);
CREATE INDEX idx_databases_metadata ON platform.databases USING gin (metadata);

-- Encrypts plaintext written to connection_string_encrypted; no key: an error naming the
-- setting (never a value).
CREATE FUNCTION platform.encrypt_database_connection_string() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_key text := nullif(current_setting('app.encryption_key', true), '');
BEGIN
    IF length(NEW.connection_string_encrypted) = 0 THEN
        NEW.connection_string_encrypted := NULL;  -- no connection string: store none, not empty bytes
    END IF;
    IF NEW.connection_string_encrypted IS NULL
       OR get_byte(NEW.connection_string_encrypted, 0) >= 128 THEN  -- none, or already a PGP message
        RETURN NEW;
    END IF;
    IF v_key IS NULL THEN
        RAISE EXCEPTION 'app.encryption_key is not set: cannot encrypt the connection string of database %', NEW.name
            USING HINT = 'SET LOCAL app.encryption_key (the bot sets it from MIGRATE_ENCRYPTION_KEY)';
    END IF;
    NEW.connection_string_encrypted :=
        pgp_sym_encrypt(convert_from(NEW.connection_string_encrypted, 'UTF8'), v_key, 'cipher-algo=aes256');
    RETURN NEW;
END;
$$;
COMMENT ON FUNCTION platform.encrypt_database_connection_string() IS
    'Trigger: encrypts plaintext written to connection_string_encrypted with app.encryption_key.';

CREATE FUNCTION platform.decrypt_database_connection_string(p_database_id uuid) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_key       text := nullif(current_setting('app.encryption_key', true), '');
    v_encrypted bytea;
BEGIN
    IF v_key IS NULL THEN
        RAISE EXCEPTION 'app.encryption_key is not set: cannot decrypt connection strings'
            USING HINT = 'SET app.encryption_key for this session or transaction';
    END IF;
    SELECT connection_string_encrypted INTO v_encrypted FROM platform.databases WHERE id = p_database_id;
    IF v_encrypted IS NULL THEN
        RETURN NULL;  -- unknown id, or no connection string stored
    END IF;
    RETURN pgp_sym_decrypt(v_encrypted, v_key);
END;
$$;
COMMENT ON FUNCTION platform.decrypt_database_connection_string(uuid) IS
    'The connection string of one database, decrypted with app.encryption_key. Internal use only.';

CREATE FUNCTION platform.set_databases_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

CREATE VIEW platform.databases_safe AS
SELECT id, project_id, name, type, host, port, database_name, username, status,
       connection_string_encrypted IS NOT NULL AS has_connection_string,
       health_check_status, last_health_check_at, metadata, created_at, updated_at
FROM platform.databases;
COMMENT ON VIEW platform.databases_safe IS
    'platform.databases without any credential: what the API and dashboards read.';

CREATE VIEW platform.databases_with_connection_strings AS
SELECT id, project_id, name, type, host, port, database_name, username, status,
       platform.decrypt_database_connection_string(id) AS connection_string,
       health_check_status, last_health_check_at, metadata, created_at, updated_at
FROM platform.databases;
COMMENT ON VIEW platform.databases_with_connection_strings IS
    'INTERNAL: decrypted connection strings (needs app.encryption_key). Never expose to clients.';
-- No grant exists by default; the REVOKE also removes any that ALTER DEFAULT PRIVILEGES added.
REVOKE ALL ON platform.databases_with_connection_strings FROM PUBLIC;

CREATE FUNCTION platform.get_project_databases(p_project_id uuid, p_type text DEFAULT NULL)
RETURNS SETOF platform.databases_safe
LANGUAGE sql STABLE AS $$
    SELECT *
    FROM platform.databases_safe
    WHERE project_id = p_project_id
      AND (p_type IS NULL OR type = p_type)
    ORDER BY type, name;
$$;
COMMENT ON FUNCTION platform.get_project_databases(uuid, text) IS
    'The databases of a project, optionally of one type, without credentials.';

CREATE FUNCTION platform.update_database_health(p_database_id uuid, p_health_status text, p_error text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE platform.databases
    SET health_check_status  = p_health_status,
        last_health_check_at = now(),
        metadata = CASE WHEN p_error IS NULL THEN metadata - 'last_health_check_error'
                        ELSE metadata || jsonb_build_object('last_health_check_error', p_error) END
    WHERE id = p_database_id;
    RETURN FOUND;
END;
$$;
COMMENT ON FUNCTION platform.update_database_health(uuid, text, text) IS
    'Records a health check result (healthy/degraded/unhealthy/unknown) and its error, if any. '
    'Returns false when the database id is unknown.';

-- Triggers fire in name order: encrypt_… runs before update_…, both BEFORE the row is stored.
CREATE TRIGGER encrypt_database_connection_string_trigger
    BEFORE INSERT OR UPDATE OF connection_string_encrypted ON platform.databases
    FOR EACH ROW EXECUTE FUNCTION platform.encrypt_database_connection_string();

CREATE TRIGGER update_databases_updated_at
    BEFORE UPDATE ON platform.databases
    FOR EACH ROW EXECUTE FUNCTION platform.set_databases_updated_at();
