-- Migration 007, phase 1, step 1.1: session helper functions (owner: Sergei Ivanov, security-specialist)
--
-- Deploy : sql/007/runbook.toml phase 1, after the application's session middleware ships
--          (pre-flight checks it: the runbook's [[preflight.http]] precondition).
-- Revert : 007_rollback_session_helpers.sql (phase 1 rollback)
-- Verify : SELECT platform.current_user_id();   -- NULL outside a request, the user inside one
--
-- The application's middleware calls platform.set_session_context(user, org) at the start
-- of each request's transaction; the restrictive policies of 007_restrictive_rls_policies.sql
-- read the context through these functions. Settings are transaction-local, so a pooled
-- connection never carries one request's identity into the next.
-- user_organization_ids() and user_project_ids() are SECURITY DEFINER with an empty
-- search_path: policies on organization_members would otherwise recurse into themselves.

CREATE FUNCTION platform.current_user_id() RETURNS uuid
LANGUAGE sql STABLE AS $$
    SELECT nullif(current_setting('app.current_user_id', true), '')::uuid;
$$;
COMMENT ON FUNCTION platform.current_user_id() IS 'The request''s user (app.current_user_id), or NULL.';

CREATE FUNCTION platform.current_org_id() RETURNS uuid
LANGUAGE sql STABLE AS $$
    SELECT nullif(current_setting('app.current_org_id', true), '')::uuid;
$$;
COMMENT ON FUNCTION platform.current_org_id() IS 'The organization selected in the request (app.current_org_id), or NULL.';

CREATE FUNCTION platform.set_session_context(p_user_id uuid, p_org_id uuid DEFAULT NULL) RETURNS void
LANGUAGE sql AS $$
    SELECT set_config('app.current_user_id', coalesce(p_user_id::text, ''), true),
           set_config('app.current_org_id', coalesce(p_org_id::text, ''), true);
$$;
COMMENT ON FUNCTION platform.set_session_context(uuid, uuid) IS
    'Called by the session middleware at the start of each request transaction (transaction-local).';

CREATE FUNCTION platform.user_organization_ids() RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
    SELECT m.organization_id
    FROM platform.organization_members m
    WHERE m.user_id = platform.current_user_id();
$$;
COMMENT ON FUNCTION platform.user_organization_ids() IS 'Organizations the current user belongs to.';

CREATE FUNCTION platform.user_project_ids() RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
    SELECT p.id
    FROM platform.projects p
    JOIN platform.organization_members m ON m.organization_id = p.organization_id
    WHERE m.user_id = platform.current_user_id();
$$;
COMMENT ON FUNCTION platform.user_project_ids() IS 'Projects of the organizations the current user belongs to.';

CREATE FUNCTION platform.is_org_member(p_org_id uuid) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT p_org_id IN (SELECT platform.user_organization_ids());
$$;

CREATE FUNCTION platform.has_org_role(p_org_id uuid, p_roles text[]) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
    SELECT EXISTS (
        SELECT 1 FROM platform.organization_members m
        WHERE m.organization_id = p_org_id
          AND m.user_id = platform.current_user_id()
          AND m.role = ANY (p_roles));
$$;
COMMENT ON FUNCTION platform.has_org_role(uuid, text[]) IS
    'Whether the current user holds one of p_roles in the organization (e.g. owner, administrator).';
