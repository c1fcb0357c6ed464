-- Migration 005: audit logs and notifications
--
-- Deploy : psql -X -v ON_ERROR_STOP=1 -f 005_audit_logs_and_notifications.sql
-- Revert : none (baseline; restore from backup)
-- Verify : SELECT count(*) FROM pg_tables WHERE schemaname = 'platform';   -- 23
--          SELECT max(version) FROM schema_migrations;                      -- 005
--
-- One transaction; records its own schema_migrations row. After this file the database
-- is at version 005: the state Migration 006 starts from.

BEGIN;

CREATE TABLE platform.audit_logs (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id   uuid REFERENCES platform.organizations (id) ON DELETE CASCADE,
    project_id        uuid REFERENCES platform.projects (id) ON DELETE SET NULL,
    actor_id          uuid REFERENCES platform.users (id) ON DELETE SET NULL,
    action            text NOT NULL,
    target_type       text,
    target_id         text,
    details           jsonb NOT NULL DEFAULT '{}'::jsonb,
    ip_address        inet,
    occurred_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_audit_logs_organization_occurred ON platform.audit_logs (organization_id, occurred_at DESC);

CREATE TABLE platform.notifications (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id           uuid NOT NULL REFERENCES platform.users (id) ON DELETE CASCADE,
    project_id        uuid REFERENCES platform.projects (id) ON DELETE CASCADE,
    kind              text NOT NULL,
    payload           jsonb NOT NULL DEFAULT '{}'::jsonb,
    read_at           timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_notifications_user_unread ON platform.notifications (user_id) WHERE read_at IS NULL;

INSERT INTO platform.audit_logs (organization_id, project_id, actor_id, action, target_type, target_id)
SELECT o.id, p.id, u.id, 'project.create', 'project', p.ref
FROM platform.organizations o
JOIN platform.projects p ON p.organization_id = o.id
JOIN platform.users u ON u.username = 'rafael'
WHERE o.slug = 'lancio';

INSERT INTO platform.notifications (user_id, project_id, kind, payload)
SELECT u.id, p.id, 'maintenance.scheduled', '{"title": "Migration 006 scheduled"}'
FROM platform.users u CROSS JOIN platform.projects p
WHERE u.username IN ('liu', 'sergei') AND p.ref = 'lancio-prod';

INSERT INTO public.schema_migrations (version, description)
VALUES ('005', 'audit logs and notifications');

COMMIT;
