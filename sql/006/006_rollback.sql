-- Migration 006, Phase 2 rollback: drop the 48 permissive policies, disable RLS
-- (owner: Sergei Ivanov, security-specialist)
--
-- Deploy : the bot runs it (inside one transaction) for `rollback phase 2`, or when step 2.1
--          fails (on_failure = "rollback"). By hand: psql -X -1 -v ON_ERROR_STOP=1 -f 006_rollback.sql
-- Revert : re-apply phase 2 (006_enable_rls_IMPROVED.sql)
-- Verify : SELECT count(*) FROM pg_policies WHERE schemaname = 'platform';                 -- 0
--          SELECT count(*) FROM pg_tables WHERE schemaname = 'platform' AND rowsecurity;   -- 0
--
-- Undoes 006_enable_rls_IMPROVED.sql and 006_enable_rls_with_permissive_policies.sql (same end
-- state). Idempotent: every statement uses IF EXISTS, so it can run twice, after a partial
-- phase 2, or after rollback-006.sql has already dropped platform.databases. Removes the 006
-- row from schema_migrations if the bot had recorded one: 006 is no longer fully applied.
--
-- Plain statements, no BEGIN/COMMIT: the bot runs the file inside its own transaction.

-- 48 policies
DROP POLICY IF EXISTS access_tokens_select_permissive ON platform.access_tokens;
DROP POLICY IF EXISTS access_tokens_insert_permissive ON platform.access_tokens;
DROP POLICY IF EXISTS api_keys_select_permissive ON platform.api_keys;
DROP POLICY IF EXISTS api_keys_insert_permissive ON platform.api_keys;
DROP POLICY IF EXISTS audit_logs_select_permissive ON platform.audit_logs;
DROP POLICY IF EXISTS audit_logs_insert_permissive ON platform.audit_logs;
DROP POLICY IF EXISTS billing_plans_select_permissive ON platform.billing_plans;
DROP POLICY IF EXISTS billing_plans_insert_permissive ON platform.billing_plans;
DROP POLICY IF EXISTS custom_domains_select_permissive ON platform.custom_domains;
DROP POLICY IF EXISTS custom_domains_insert_permissive ON platform.custom_domains;
DROP POLICY IF EXISTS databases_select_permissive ON platform.databases;
DROP POLICY IF EXISTS databases_insert_permissive ON platform.databases;
DROP POLICY IF EXISTS invoice_line_items_select_permissive ON platform.invoice_line_items;
DROP POLICY IF EXISTS invoice_line_items_insert_permissive ON platform.invoice_line_items;
DROP POLICY IF EXISTS invoices_select_permissive ON platform.invoices;
DROP POLICY IF EXISTS invoices_insert_permissive ON platform.invoices;
DROP POLICY IF EXISTS network_restrictions_select_permissive ON platform.network_restrictions;
DROP POLICY IF EXISTS network_restrictions_insert_permissive ON platform.network_restrictions;
DROP POLICY IF EXISTS notifications_select_permissive ON platform.notifications;
DROP POLICY IF EXISTS notifications_insert_permissive ON platform.notifications;
DROP POLICY IF EXISTS oauth_apps_select_permissive ON platform.oauth_apps;
DROP POLICY IF EXISTS oauth_apps_insert_permissive ON platform.oauth_apps;
DROP POLICY IF EXISTS organization_invitations_select_permissive ON platform.organization_invitations;
DROP POLICY IF EXISTS organization_invitations_insert_permissive ON platform.organization_invitations;
DROP POLICY IF EXISTS organization_members_select_permissive ON platform.organization_members;
DROP POLICY IF EXISTS organization_members_insert_permissive ON platform.organization_members;
DROP POLICY IF EXISTS organizations_select_permissive ON platform.organizations;
DROP POLICY IF EXISTS organizations_insert_permissive ON platform.organizations;
DROP POLICY IF EXISTS payment_methods_select_permissive ON platform.payment_methods;
DROP POLICY IF EXISTS payment_methods_insert_permissive ON platform.payment_methods;
DROP POLICY IF EXISTS project_members_select_permissive ON platform.project_members;
DROP POLICY IF EXISTS project_members_insert_permissive ON platform.project_members;
DROP POLICY IF EXISTS project_secrets_select_permissive ON platform.project_secrets;
DROP POLICY IF EXISTS project_secrets_insert_permissive ON platform.project_secrets;
DROP POLICY IF EXISTS project_settings_select_permissive ON platform.project_settings;
DROP POLICY IF EXISTS project_settings_insert_permissive ON platform.project_settings;
DROP POLICY IF EXISTS projects_select_permissive ON platform.projects;
DROP POLICY IF EXISTS projects_insert_permissive ON platform.projects;
DROP POLICY IF EXISTS subscriptions_select_permissive ON platform.subscriptions;
DROP POLICY IF EXISTS subscriptions_insert_permissive ON platform.subscriptions;
DROP POLICY IF EXISTS usage_records_select_permissive ON platform.usage_records;
DROP POLICY IF EXISTS usage_records_insert_permissive ON platform.usage_records;
DROP POLICY IF EXISTS user_mfa_factors_select_permissive ON platform.user_mfa_factors;
DROP POLICY IF EXISTS user_mfa_factors_insert_permissive ON platform.user_mfa_factors;
DROP POLICY IF EXISTS user_sessions_select_permissive ON platform.user_sessions;
DROP POLICY IF EXISTS user_sessions_insert_permissive ON platform.user_sessions;
DROP POLICY IF EXISTS users_select_permissive ON platform.users;
DROP POLICY IF EXISTS users_insert_permissive ON platform.users;

-- 24 tables
ALTER TABLE IF EXISTS platform.access_tokens            DISABLE ROW LEVEL SECURITY;
ALTER TABLE IF EXISTS platform.api_keys                 DISABLE ROW LEVEL SECURITY;
ALTER TABLE IF EXISTS platform.audit_logs               DISABLE ROW LEVEL SECURITY;
ALTER TABLE IF EXISTS platform.billing_plans            DISABLE ROW LEVEL SECURITY;
ALTER TABLE IF EXISTS platform.custom_domains           DISABLE ROW LEVEL SECURITY;
ALTER TABLE IF EXISTS platform.databases                DISABLE ROW LEVEL SECURITY;
ALTER TABLE IF EXISTS platform.invoice_line_items       DISABLE ROW LEVEL SECURITY;
ALTER TABLE IF EXISTS platform.invoices                 DISABLE ROW LEVEL SECURITY;
ALTER TABLE IF EXISTS platform.network_restrictions     DISABLE ROW LEVEL SECURITY;
ALTER TABLE IF EXISTS platform.notifications            DISABLE ROW LEVEL SECURITY;
ALTER TABLE IF EXISTS platform.oauth_apps               DISABLE ROW LEVEL SECURITY;
ALTER TABLE IF EXISTS platform.organization_invitations DISABLE ROW LEVEL SECURITY;
ALTER TABLE IF EXISTS platform.organization_members     DISABLE ROW LEVEL SECURITY;
ALTER TABLE IF EXISTS platform.organizations            DISABLE ROW LEVEL SECURITY;
ALTER TABLE IF EXISTS platform.payment_methods          DISABLE ROW LEVEL SECURITY;
ALTER TABLE IF EXISTS platform.project_members          DISABLE ROW LEVEL SECURITY;
ALTER TABLE IF EXISTS platform.project_secrets          DISABLE ROW LEVEL SECURITY;
ALTER TABLE IF EXISTS platform.project_settings         DISABLE ROW LEVEL SECURITY;
ALTER TABLE IF EXISTS platform.projects                 DISABLE ROW LEVEL SECURITY;
ALTER TABLE IF EXISTS platform.subscriptions            DISABLE ROW LEVEL SECURITY;
ALTER TABLE IF EXISTS platform.usage_records            DISABLE ROW LEVEL SECURITY;
ALTER TABLE IF EXISTS platform.user_mfa_factors         DISABLE ROW LEVEL SECURITY;
ALTER TABLE IF EXISTS platform.user_sessions            DISABLE ROW LEVEL SECURITY;
ALTER TABLE IF EXISTS platform.users                    DISABLE ROW LEVEL SECURITY;

DELETE FROM public.schema_migrations WHERE version = '006';

DO $$
DECLARE
    v_policies int;
    v_tables   int;
BEGIN
    SELECT count(*) INTO v_policies FROM pg_policies WHERE schemaname = 'platform';
    SELECT count(*) INTO v_tables FROM pg_tables WHERE schemaname = 'platform' AND rowsecurity;
    IF v_policies > 0 OR v_tables > 0 THEN
        RAISE EXCEPTION 'rollback incomplete: % policies and % tables with RLS remain in schema platform',
            v_policies, v_tables;
    END IF;
    RAISE NOTICE '✅ Rollback complete';
END;
$$;
