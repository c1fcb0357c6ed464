-- Migration 006, Phase 2, Step 2.1 (option A, RECOMMENDED): RLS with permissive policies,
-- with pre-flight checks (owner: Sergei Ivanov, security-specialist)
--
-- Deploy : runbook step 2.1 (`choose = "A"`); the bot runs it inside one transaction.
--          By hand: psql -X -1 -v ON_ERROR_STOP=1 -f 006_enable_rls_IMPROVED.sql
-- Revert : 006_rollback.sql (drops the 48 policies, disables RLS on the 24 tables)
-- Verify : SELECT count(*) FROM pg_tables WHERE schemaname = 'platform' AND rowsecurity;   -- 24
--          SELECT count(*) FROM pg_policies WHERE schemaname = 'platform';                 -- 48
--          test_006_permissive_policies.sql (phase 3)
--
-- Enables ROW LEVEL SECURITY on all 24 platform tables (the 23 of version 005 and
-- platform.databases from phase 1) and creates 48 permissive policies, one
-- FOR SELECT USING (true) and one FOR INSERT WITH CHECK (true) per table: zero behaviour
-- change for reads and inserts, and the foundation Migration 007 builds on.
-- Same end state as option B (006_enable_rls_with_permissive_policies.sql); this version adds:
--   * pre-flight: the platform schema holds exactly the 24 expected tables (phase 1 done,
--     nothing unexpected), none has RLS enabled yet and no platform policy exists;
--   * post-condition: 24 tables with RLS and 48 permissive policies, counted from the
--     catalog, or the transaction fails (and nothing of this file remains).
--
-- Known flaw of the plan (kept as the report specifies, documented here): only SELECT and
-- INSERT policies are created. With RLS enabled and no UPDATE/DELETE policy, a role that is
-- neither the table owner nor BYPASSRLS (nor superuser) can no longer UPDATE or DELETE any
-- row: those commands silently affect 0 rows. The table owner is unaffected because RLS is
-- ENABLEd, not FORCEd. Before any non-owner application role writes to these tables, add
-- UPDATE/DELETE policies (Migration 007 replaces all of this with org-based policies).
--
-- Plain statements, no BEGIN/COMMIT: the bot runs the file inside its own transaction.
-- Tables are listed explicitly, in alphabetical order, so reviewers can read them.

DO $$
DECLARE
    v_expected text[] := ARRAY[
        'access_tokens', 'api_keys', 'audit_logs', 'billing_plans', 'custom_domains', 'databases',
        'invoice_line_items', 'invoices', 'network_restrictions', 'notifications', 'oauth_apps',
        'organization_invitations', 'organization_members', 'organizations', 'payment_methods',
        'project_members', 'project_secrets', 'project_settings', 'projects', 'subscriptions',
        'usage_records', 'user_mfa_factors', 'user_sessions', 'users'
    ];
    v_missing    text;
    v_unexpected text;
    v_rls        text;
    v_policies   int;
BEGIN
    IF to_regnamespace('platform') IS NULL THEN
        RAISE EXCEPTION 'pre-flight: schema platform does not exist';
    END IF;
    IF to_regclass('platform.databases') IS NULL THEN
        RAISE EXCEPTION 'pre-flight: platform.databases does not exist: run phase 1 first';
    END IF;
    SELECT string_agg(t, ', ') INTO v_missing
    FROM unnest(v_expected) AS t
    WHERE to_regclass(format('platform.%I', t)) IS NULL;
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'pre-flight: platform tables missing: %', v_missing;
    END IF;
    SELECT string_agg(tablename, ', ' ORDER BY tablename) INTO v_unexpected
    FROM pg_tables WHERE schemaname = 'platform' AND tablename <> ALL (v_expected);
    IF v_unexpected IS NOT NULL THEN
        RAISE EXCEPTION 'pre-flight: unexpected platform tables (not covered by this migration): %', v_unexpected;
    END IF;
    SELECT string_agg(tablename, ', ' ORDER BY tablename) INTO v_rls
    FROM pg_tables WHERE schemaname = 'platform' AND rowsecurity;
    IF v_rls IS NOT NULL THEN
        RAISE EXCEPTION 'pre-flight: RLS already enabled on: % (run 006_rollback.sql first?)', v_rls;
    END IF;
    SELECT count(*) INTO v_policies FROM pg_policies WHERE schemaname = 'platform';
    IF v_policies > 0 THEN
        RAISE EXCEPTION 'pre-flight: % policies already exist in schema platform', v_policies;
    END IF;
    RAISE NOTICE '✅ Pre-flight: 24 platform tables present, no RLS, no policies';
END;
$$;

-- 24 tables
ALTER TABLE platform.access_tokens            ENABLE ROW LEVEL SECURITY;
ALTER TABLE platform.api_keys                 ENABLE ROW LEVEL SECURITY;
ALTER TABLE platform.audit_logs               ENABLE ROW LEVEL SECURITY;
ALTER TABLE platform.billing_plans            ENABLE ROW LEVEL SECURITY;
ALTER TABLE platform.custom_domains           ENABLE ROW LEVEL SECURITY;
ALTER TABLE platform.databases                ENABLE ROW LEVEL SECURITY;
ALTER TABLE platform.invoice_line_items       ENABLE ROW LEVEL SECURITY;
ALTER TABLE platform.invoices                 ENABLE ROW LEVEL SECURITY;
ALTER TABLE platform.network_restrictions     ENABLE ROW LEVEL SECURITY;
ALTER TABLE platform.notifications            ENABLE ROW LEVEL SECURITY;
ALTER TABLE platform.oauth_apps               ENABLE ROW LEVEL SECURITY;
ALTER TABLE platform.organization_invitations ENABLE ROW LEVEL SECURITY;
ALTER TABLE platform.organization_members     ENABLE ROW LEVEL SECURITY;
ALTER TABLE platform.organizations            ENABLE ROW LEVEL SECURITY;
ALTER TABLE platform.payment_methods          ENABLE ROW LEVEL SECURITY;
ALTER TABLE platform.project_members          ENABLE ROW LEVEL SECURITY;
ALTER TABLE platform.project_secrets          ENABLE ROW LEVEL SECURITY;
ALTER TABLE platform.project_settings         ENABLE ROW LEVEL SECURITY;
ALTER TABLE platform.projects                 ENABLE ROW LEVEL SECURITY;
ALTER TABLE platform.subscriptions            ENABLE ROW LEVEL SECURITY;
ALTER TABLE platform.usage_records            ENABLE ROW LEVEL SECURITY;
ALTER TABLE platform.user_mfa_factors         ENABLE ROW LEVEL SECURITY;
ALTER TABLE platform.user_sessions            ENABLE ROW LEVEL SECURITY;
ALTER TABLE platform.users                    ENABLE ROW LEVEL SECURITY;

-- 48 policies (SELECT + INSERT per table)
CREATE POLICY access_tokens_select_permissive ON platform.access_tokens FOR SELECT USING (true);
CREATE POLICY access_tokens_insert_permissive ON platform.access_tokens FOR INSERT WITH CHECK (true);
CREATE POLICY api_keys_select_permissive ON platform.api_keys FOR SELECT USING (true);
CREATE POLICY api_keys_insert_permissive ON platform.api_keys FOR INSERT WITH CHECK (true);
CREATE POLICY audit_logs_select_permissive ON platform.audit_logs FOR SELECT USING (true);
CREATE POLICY audit_logs_insert_permissive ON platform.audit_logs FOR INSERT WITH CHECK (true);
CREATE POLICY billing_plans_select_permissive ON platform.billing_plans FOR SELECT USING (true);
CREATE POLICY billing_plans_insert_permissive ON platform.billing_plans FOR INSERT WITH CHECK (true);
CREATE POLICY custom_domains_select_permissive ON platform.custom_domains FOR SELECT USING (true);
CREATE POLICY custom_domains_insert_permissive ON platform.custom_domains FOR INSERT WITH CHECK (true);
CREATE POLICY databases_select_permissive ON platform.databases FOR SELECT USING (true);
CREATE POLICY databases_insert_permissive ON platform.databases FOR INSERT WITH CHECK (true);
CREATE POLICY invoice_line_items_select_permissive ON platform.invoice_line_items FOR SELECT USING (true);
CREATE POLICY invoice_line_items_insert_permissive ON platform.invoice_line_items FOR INSERT WITH CHECK (true);
CREATE POLICY invoices_select_permissive ON platform.invoices FOR SELECT USING (true);
CREATE POLICY invoices_insert_permissive ON platform.invoices FOR INSERT WITH CHECK (true);
CREATE POLICY network_restrictions_select_permissive ON platform.network_restrictions FOR SELECT USING (true);
CREATE POLICY network_restrictions_insert_permissive ON platform.network_restrictions FOR INSERT WITH CHECK (true);
CREATE POLICY notifications_select_permissive ON platform.notifications FOR SELECT USING (true);
CREATE POLICY notifications_insert_permissive ON platform.notifications FOR INSERT WITH CHECK (true);
CREATE POLICY oauth_apps_select_permissive ON platform.oauth_apps FOR SELECT USING (true);
CREATE POLICY oauth_apps_insert_permissive ON platform.oauth_apps FOR INSERT WITH CHECK (true);
CREATE POLICY organization_invitations_select_permissive ON platform.organization_invitations FOR SELECT USING (true);
CREATE POLICY organization_invitations_insert_permissive ON platform.organization_invitations FOR INSERT WITH CHECK (true);
CREATE POLICY organization_members_select_permissive ON platform.organization_members FOR SELECT USING (true);
CREATE POLICY organization_members_insert_permissive ON platform.organization_members FOR INSERT WITH CHECK (true);
CREATE POLICY organizations_select_permissive ON platform.organizations FOR SELECT USING (true);
CREATE POLICY organizations_insert_permissive ON platform.organizations FOR INSERT WITH CHECK (true);
CREATE POLICY payment_methods_select_permissive ON platform.payment_methods FOR SELECT USING (true);
CREATE POLICY payment_methods_insert_permissive ON platform.payment_methods FOR INSERT WITH CHECK (true);
CREATE POLICY project_members_select_permissive ON platform.project_members FOR SELECT USING (true);
CREATE POLICY project_members_insert_permissive ON platform.project_members FOR INSERT WITH CHECK (true);
CREATE POLICY project_secrets_select_permissive ON platform.project_secrets FOR SELECT USING (true);
CREATE POLICY project_secrets_insert_permissive ON platform.project_secrets FOR INSERT WITH CHECK (true);
CREATE POLICY project_settings_select_permissive ON platform.project_settings FOR SELECT USING (true);
CREATE POLICY project_settings_insert_permissive ON platform.project_settings FOR INSERT WITH CHECK (true);
CREATE POLICY projects_select_permissive ON platform.projects FOR SELECT USING (true);
CREATE POLICY projects_insert_permissive ON platform.projects FOR INSERT WITH CHECK (true);
CREATE POLICY subscriptions_select_permissive ON platform.subscriptions FOR SELECT USING (true);
CREATE POLICY subscriptions_insert_permissive ON platform.subscriptions FOR INSERT WITH CHECK (true);
CREATE POLICY usage_records_select_permissive ON platform.usage_records FOR SELECT USING (true);
CREATE POLICY usage_records_insert_permissive ON platform.usage_records FOR INSERT WITH CHECK (true);
CREATE POLICY user_mfa_factors_select_permissive ON platform.user_mfa_factors FOR SELECT USING (true);
CREATE POLICY user_mfa_factors_insert_permissive ON platform.user_mfa_factors FOR INSERT WITH CHECK (true);
CREATE POLICY user_sessions_select_permissive ON platform.user_sessions FOR SELECT USING (true);
CREATE POLICY user_sessions_insert_permissive ON platform.user_sessions FOR INSERT WITH CHECK (true);
CREATE POLICY users_select_permissive ON platform.users FOR SELECT USING (true);
CREATE POLICY users_insert_permissive ON platform.users FOR INSERT WITH CHECK (true);

DO $$
DECLARE
    v_tables   int;
    v_policies int;
BEGIN
    SELECT count(*) INTO v_tables FROM pg_tables WHERE schemaname = 'platform' AND rowsecurity;
    SELECT count(*) INTO v_policies FROM pg_policies WHERE schemaname = 'platform' AND permissive = 'PERMISSIVE';
    IF v_tables <> 24 OR v_policies <> 48 THEN
        RAISE EXCEPTION 'post-condition: expected RLS on 24 tables and 48 permissive policies, got % and %',
            v_tables, v_policies;
    END IF;
    RAISE NOTICE '✅ RLS enabled on % tables', v_tables;
    RAISE NOTICE '✅ % permissive policies created', v_policies;
END;
$$;
