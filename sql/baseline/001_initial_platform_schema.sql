-- Migration 001: initial platform schema (organizations, users, projects, membership)
--
-- Deploy : psql -X -v ON_ERROR_STOP=1 -f 001_initial_platform_schema.sql
-- Revert : none (baseline; restore from backup)
-- Verify : SELECT count(*) FROM pg_tables WHERE schemaname = 'platform';   -- 8
--          SELECT version FROM schema_migrations WHERE version = '001';
--
-- Part of the version-005 baseline the bot migrates from. Every baseline file is one
-- transaction (BEGIN … COMMIT) and records its own row in public.schema_migrations, so a
-- database is either at a version or not. schema_migrations lives in `public` (the report
-- queries it unqualified); the `platform` schema holds the product's tables only.

BEGIN;

CREATE TABLE public.schema_migrations (
    version     text PRIMARY KEY,
    description text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

CREATE SCHEMA platform;

CREATE TABLE platform.organizations (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name              text NOT NULL,
    slug              text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]*$'),
    billing_email     text,
    kind              text NOT NULL DEFAULT 'company' CHECK (kind IN ('personal', 'company', 'education')),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE platform.users (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email             text NOT NULL UNIQUE,
    username          text UNIQUE,
    full_name         text,
    avatar_url        text,
    is_active         boolean NOT NULL DEFAULT true,
    last_sign_in_at   timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE platform.organization_members (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id   uuid NOT NULL REFERENCES platform.organizations (id) ON DELETE CASCADE,
    user_id           uuid NOT NULL REFERENCES platform.users (id) ON DELETE CASCADE,
    role              text NOT NULL DEFAULT 'developer' CHECK (role IN ('owner', 'administrator', 'developer', 'read_only')),
    created_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (organization_id, user_id)
);
CREATE INDEX idx_organization_members_user_id ON platform.organization_members (user_id);

CREATE TABLE platform.organization_invitations (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id   uuid NOT NULL REFERENCES platform.organizations (id) ON DELETE CASCADE,
    invited_email     text NOT NULL,
    role              text NOT NULL DEFAULT 'developer',
    invited_by        uuid REFERENCES platform.users (id) ON DELETE SET NULL,
    token_hash        text NOT NULL UNIQUE,
    expires_at        timestamptz NOT NULL,
    accepted_at       timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE platform.projects (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id   uuid NOT NULL REFERENCES platform.organizations (id) ON DELETE CASCADE,
    ref               text NOT NULL UNIQUE,
    name              text NOT NULL,
    region            text NOT NULL DEFAULT 'us-east-1',
    status            text NOT NULL DEFAULT 'ACTIVE_HEALTHY'
                      CHECK (status IN ('COMING_UP', 'ACTIVE_HEALTHY', 'INACTIVE', 'PAUSED', 'REMOVED')),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (organization_id, name)
);

CREATE TABLE platform.project_members (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id        uuid NOT NULL REFERENCES platform.projects (id) ON DELETE CASCADE,
    user_id           uuid NOT NULL REFERENCES platform.users (id) ON DELETE CASCADE,
    role              text NOT NULL DEFAULT 'developer' CHECK (role IN ('owner', 'administrator', 'developer', 'read_only')),
    created_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (project_id, user_id)
);
CREATE INDEX idx_project_members_user_id ON platform.project_members (user_id);

CREATE TABLE platform.project_settings (
    project_id        uuid PRIMARY KEY REFERENCES platform.projects (id) ON DELETE CASCADE,
    db_host           text,
    db_port           integer NOT NULL DEFAULT 5432,
    db_name           text NOT NULL DEFAULT 'postgres',
    pooler_enabled    boolean NOT NULL DEFAULT true,
    settings          jsonb NOT NULL DEFAULT '{}'::jsonb,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE platform.user_sessions (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id           uuid NOT NULL REFERENCES platform.users (id) ON DELETE CASCADE,
    token_hash        text NOT NULL UNIQUE,
    ip_address        inet,
    user_agent        text,
    expires_at        timestamptz NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_user_sessions_user_id ON platform.user_sessions (user_id);

-- Seed: the Lancio organization, its production project and its team.
INSERT INTO platform.organizations (name, slug, billing_email)
VALUES ('Lancio', 'lancio', 'billing@lancio.example');

INSERT INTO platform.users (email, username, full_name) VALUES
    ('dylan.torres@lancio.example',  'dylan',  'Dylan Torres'),
    ('rafael.santos@lancio.example', 'rafael', 'Rafael Santos'),
    ('liu.ming@lancio.example',      'liu',    'Liu Ming'),
    ('sergei.ivanov@lancio.example', 'sergei', 'Sergei Ivanov'),
    ('yasmin.chen@lancio.example',   'yasmin', 'Yasmin Chen');

INSERT INTO platform.organization_members (organization_id, user_id, role)
SELECT o.id, u.id, CASE u.username WHEN 'dylan' THEN 'owner' WHEN 'rafael' THEN 'administrator' ELSE 'developer' END
FROM platform.organizations o CROSS JOIN platform.users u
WHERE o.slug = 'lancio';

INSERT INTO platform.projects (organization_id, ref, name, region)
SELECT id, 'lancio-prod', 'Lancio Production', 'us-west-2' FROM platform.organizations WHERE slug = 'lancio';

INSERT INTO platform.project_members (project_id, user_id, role)
SELECT p.id, u.id, CASE u.username WHEN 'rafael' THEN 'owner' ELSE 'developer' END
FROM platform.projects p CROSS JOIN platform.users u
WHERE p.ref = 'lancio-prod';

INSERT INTO platform.project_settings (project_id, db_host)
SELECT id, 'db.railway.internal' FROM platform.projects WHERE ref = 'lancio-prod';

INSERT INTO public.schema_migrations (version, description)
VALUES ('001', 'initial platform schema: organizations, users, projects, membership');

COMMIT;
