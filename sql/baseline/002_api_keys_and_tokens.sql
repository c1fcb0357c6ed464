-- Migration 002: API keys, personal access tokens, OAuth apps, MFA factors
--
-- Deploy : psql -X -v ON_ERROR_STOP=1 -f 002_api_keys_and_tokens.sql
-- Revert : none (baseline; restore from backup)
-- Verify : SELECT count(*) FROM pg_tables WHERE schemaname = 'platform';   -- 12
--          SELECT version FROM schema_migrations WHERE version = '002';
--
-- One transaction; records its own schema_migrations row. Secrets are stored hashed
-- (token_hash), never in clear: only a short prefix is kept for display.

BEGIN;

CREATE TABLE platform.api_keys (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id        uuid NOT NULL REFERENCES platform.projects (id) ON DELETE CASCADE,
    name              text NOT NULL,
    key_type          text NOT NULL CHECK (key_type IN ('anon', 'service_role', 'publishable', 'secret')),
    key_prefix        text NOT NULL,
    key_hash          text NOT NULL UNIQUE,
    created_by        uuid REFERENCES platform.users (id) ON DELETE SET NULL,
    last_used_at      timestamptz,
    revoked_at        timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (project_id, name)
);

CREATE TABLE platform.access_tokens (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id           uuid NOT NULL REFERENCES platform.users (id) ON DELETE CASCADE,
    name              text NOT NULL,
    token_prefix      text NOT NULL,
    token_hash        text NOT NULL UNIQUE,
    scopes            text[] NOT NULL DEFAULT '{}',
    expires_at        timestamptz,
    last_used_at      timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_access_tokens_user_id ON platform.access_tokens (user_id);

CREATE TABLE platform.oauth_apps (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id   uuid NOT NULL REFERENCES platform.organizations (id) ON DELETE CASCADE,
    name              text NOT NULL,
    client_id         text NOT NULL UNIQUE,
    client_secret_hash text NOT NULL,
    redirect_uris     text[] NOT NULL DEFAULT '{}',
    website           text,
    created_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE platform.user_mfa_factors (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id           uuid NOT NULL REFERENCES platform.users (id) ON DELETE CASCADE,
    factor_type       text NOT NULL CHECK (factor_type IN ('totp', 'webauthn', 'phone')),
    friendly_name     text,
    status            text NOT NULL DEFAULT 'unverified' CHECK (status IN ('unverified', 'verified')),
    created_at        timestamptz NOT NULL DEFAULT now()
);

-- Seed: the production project's two standard keys (hashes only).
INSERT INTO platform.api_keys (project_id, name, key_type, key_prefix, key_hash)
SELECT p.id, k.name, k.key_type, k.prefix, md5(p.ref || ':' || k.name)
FROM platform.projects p
CROSS JOIN (VALUES ('anon', 'anon', 'eyJhbGci'), ('service_role', 'service_role', 'eyJhbGci')) AS k (name, key_type, prefix)
WHERE p.ref = 'lancio-prod';

INSERT INTO platform.access_tokens (user_id, name, token_prefix, token_hash, scopes)
SELECT id, 'ci-deploy', 'sbp_3f9a', md5('ci-deploy:' || id::text), ARRAY['projects:read', 'projects:write']
FROM platform.users WHERE username = 'rafael';

INSERT INTO public.schema_migrations (version, description)
VALUES ('002', 'API keys, access tokens, OAuth apps, MFA factors');

COMMIT;
