-- Migration 003: pgcrypto, project secrets, custom domains, network restrictions
--
-- Deploy : psql -X -v ON_ERROR_STOP=1 -f 003_pgcrypto_and_project_secrets.sql
-- Revert : none (baseline; restore from backup)
-- Verify : SELECT extname FROM pg_extension WHERE extname = 'pgcrypto';   -- 1 row
--          SELECT count(*) FROM pg_tables WHERE schemaname = 'platform';   -- 15
--
-- One transaction; records its own schema_migrations row. pgcrypto is installed here,
-- once, for the whole platform (Migration 006 encrypts connection strings with it and
-- its rollback leaves it in place: it belongs to 003).

BEGIN;

CREATE EXTENSION IF NOT EXISTS pgcrypto;

CREATE TABLE platform.project_secrets (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id        uuid NOT NULL REFERENCES platform.projects (id) ON DELETE CASCADE,
    name              text NOT NULL CHECK (name ~ '^[A-Z_][A-Z0-9_]*$'),
    value_encrypted   bytea NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (project_id, name)
);

CREATE TABLE platform.custom_domains (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id        uuid NOT NULL REFERENCES platform.projects (id) ON DELETE CASCADE,
    hostname          text NOT NULL UNIQUE,
    status            text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'verifying', 'active', 'failed')),
    verified_at       timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE platform.network_restrictions (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id        uuid NOT NULL REFERENCES platform.projects (id) ON DELETE CASCADE,
    cidr              cidr NOT NULL,
    description       text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (project_id, cidr)
);

INSERT INTO platform.network_restrictions (project_id, cidr, description)
SELECT id, '0.0.0.0/0', 'allow all (default)' FROM platform.projects WHERE ref = 'lancio-prod';

INSERT INTO public.schema_migrations (version, description)
VALUES ('003', 'pgcrypto, project secrets, custom domains, network restrictions');

COMMIT;
