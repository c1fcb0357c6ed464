-- Migration 007: restrictive RLS policies (owner: Sergei Ivanov, security-specialist)
--
-- Deploy : sql/007/runbook.toml phase 2, step 2.1, after phase 1 (007_session_helpers.sql)
--          and the middleware release (pre-flight's declared precondition).
-- Revert : 007_rollback_restrictive_rls.sql (phase 2 rollback: back to the 006 policies,
--          permissive SELECT/INSERT only; the helpers stay until phase 1 is rolled back)
-- Verify : SELECT count(*) FROM pg_policies WHERE schemaname = 'platform' AND permissive = 'RESTRICTIVE';  -- 23
--          SELECT count(*) FROM pg_policies WHERE schemaname = 'platform';                                 -- 48 + 23 + 48 = 119
--
-- Builds on 006: the permissive SELECT/INSERT policies stay; a RESTRICTIVE policy per
-- tenant-scoped table is AND-ed with them, so a row is visible or writable only inside the
-- current user's organizations (projects: through their organization; per-user tables: the
-- user's own rows). It also adds the UPDATE and DELETE permissive policies 006 lacks (the
-- known flaw of 006: without them non-owner roles can update or delete nothing), now safe
-- because the restrictive policy bounds them. billing_plans is a public price list: no
-- tenant column, no restrictive policy.
-- Roles with BYPASSRLS (service role, the migration user) and table owners are unaffected.
--
-- Plain statements, no BEGIN/COMMIT: run inside one transaction.

-- 23 restrictive policies: one per tenant-scoped table
CREATE POLICY organizations_tenant_isolation ON platform.organizations AS RESTRICTIVE FOR ALL
    USING (id IN (SELECT platform.user_organization_ids()))
    WITH CHECK (id IN (SELECT platform.user_organization_ids()));
CREATE POLICY organization_members_tenant_isolation ON platform.organization_members AS RESTRICTIVE FOR ALL
    USING (organization_id IN (SELECT platform.user_organization_ids()))
    WITH CHECK (organization_id IN (SELECT platform.user_organization_ids()));
CREATE POLICY organization_invitations_tenant_isolation ON platform.organization_invitations AS RESTRICTIVE FOR ALL
    USING (organization_id IN (SELECT platform.user_organization_ids()))
    WITH CHECK (organization_id IN (SELECT platform.user_organization_ids()));
CREATE POLICY projects_tenant_isolation ON platform.projects AS RESTRICTIVE FOR ALL
    USING (organization_id IN (SELECT platform.user_organization_ids()))
    WITH CHECK (organization_id IN (SELECT platform.user_organization_ids()));
CREATE POLICY oauth_apps_tenant_isolation ON platform.oauth_apps AS RESTRICTIVE FOR ALL
    USING (organization_id IN (SELECT platform.user_organization_ids()))
    WITH CHECK (organization_id IN (SELECT platform.user_organization_ids()));
CREATE POLICY subscriptions_tenant_isolation ON platform.subscriptions AS RESTRICTIVE FOR ALL
    USING (organization_id IN (SELECT platform.user_organization_ids()))
    WITH CHECK (organization_id IN (SELECT platform.user_organization_ids()));
CREATE POLICY invoices_tenant_isolation ON platform.invoices AS RESTRICTIVE FOR ALL
    USING (organization_id IN (SELECT platform.user_organization_ids()))
    WITH CHECK (organization_id IN (SELECT platform.user_organization_ids()));
CREATE POLICY invoice_line_items_tenant_isolation ON platform.invoice_line_items AS RESTRICTIVE FOR ALL
    USING (invoice_id IN (SELECT i.id FROM platform.invoices i WHERE i.organization_id IN (SELECT platform.user_organization_ids())))
    WITH CHECK (invoice_id IN (SELECT i.id FROM platform.invoices i WHERE i.organization_id IN (SELECT platform.user_organization_ids())));
CREATE POLICY payment_methods_tenant_isolation ON platform.payment_methods AS RESTRICTIVE FOR ALL
    USING (organization_id IN (SELECT platform.user_organization_ids()))
    WITH CHECK (organization_id IN (SELECT platform.user_organization_ids()));
CREATE POLICY audit_logs_tenant_isolation ON platform.audit_logs AS RESTRICTIVE FOR ALL
    USING (organization_id IN (SELECT platform.user_organization_ids()))
    WITH CHECK (organization_id IN (SELECT platform.user_organization_ids()));
CREATE POLICY project_members_tenant_isolation ON platform.project_members AS RESTRICTIVE FOR ALL
    USING (project_id IN (SELECT platform.user_project_ids()))
    WITH CHECK (project_id IN (SELECT platform.user_project_ids()));
CREATE POLICY project_settings_tenant_isolation ON platform.project_settings AS RESTRICTIVE FOR ALL
    USING (project_id IN (SELECT platform.user_project_ids()))
    WITH CHECK (project_id IN (SELECT platform.user_project_ids()));
CREATE POLICY api_keys_tenant_isolation ON platform.api_keys AS RESTRICTIVE FOR ALL
    USING (project_id IN (SELECT platform.user_project_ids()))
    WITH CHECK (project_id IN (SELECT platform.user_project_ids()));
CREATE POLICY project_secrets_tenant_isolation ON platform.project_secrets AS RESTRICTIVE FOR ALL
    USING (project_id IN (SELECT platform.user_project_ids()))
    WITH CHECK (project_id IN (SELECT platform.user_project_ids()));
CREATE POLICY custom_domains_tenant_isolation ON platform.custom_domains AS RESTRICTIVE FOR ALL
    USING (project_id IN (SELECT platform.user_project_ids()))
    WITH CHECK (project_id IN (SELECT platform.user_project_ids()));
CREATE POLICY network_restrictions_tenant_isolation ON platform.network_restrictions AS RESTRICTIVE FOR ALL
    USING (project_id IN (SELECT platform.user_project_ids()))
    WITH CHECK (project_id IN (SELECT platform.user_project_ids()));
CREATE POLICY usage_records_tenant_isolation ON platform.usage_records AS RESTRICTIVE FOR ALL
    USING (project_id IN (SELECT platform.user_project_ids()))
    WITH CHECK (project_id IN (SELECT platform.user_project_ids()));
CREATE POLICY databases_tenant_isolation ON platform.databases AS RESTRICTIVE FOR ALL
    USING (project_id IN (SELECT platform.user_project_ids()))
    WITH CHECK (project_id IN (SELECT platform.user_project_ids()));
CREATE POLICY users_tenant_isolation ON platform.users AS RESTRICTIVE FOR ALL
    USING (id = platform.current_user_id() OR id IN (SELECT m.user_id FROM platform.organization_members m WHERE m.organization_id IN (SELECT platform.user_organization_ids())))
    WITH CHECK (id = platform.current_user_id() OR id IN (SELECT m.user_id FROM platform.organization_members m WHERE m.organization_id IN (SELECT platform.user_organization_ids())));
CREATE POLICY user_sessions_tenant_isolation ON platform.user_sessions AS RESTRICTIVE FOR ALL
    USING (user_id = platform.current_user_id())
    WITH CHECK (user_id = platform.current_user_id());
CREATE POLICY user_mfa_factors_tenant_isolation ON platform.user_mfa_factors AS RESTRICTIVE FOR ALL
    USING (user_id = platform.current_user_id())
    WITH CHECK (user_id = platform.current_user_id());
CREATE POLICY access_tokens_tenant_isolation ON platform.access_tokens AS RESTRICTIVE FOR ALL
    USING (user_id = platform.current_user_id())
    WITH CHECK (user_id = platform.current_user_id());
CREATE POLICY notifications_tenant_isolation ON platform.notifications AS RESTRICTIVE FOR ALL
    USING (user_id = platform.current_user_id())
    WITH CHECK (user_id = platform.current_user_id());

-- 48 permissive UPDATE and DELETE policies (fixes 006's known flaw; bounded by the above)
CREATE POLICY organizations_update_permissive ON platform.organizations FOR UPDATE USING (true) WITH CHECK (true);
CREATE POLICY organizations_delete_permissive ON platform.organizations FOR DELETE USING (true);
CREATE POLICY organization_members_update_permissive ON platform.organization_members FOR UPDATE USING (true) WITH CHECK (true);
CREATE POLICY organization_members_delete_permissive ON platform.organization_members FOR DELETE USING (true);
CREATE POLICY organization_invitations_update_permissive ON platform.organization_invitations FOR UPDATE USING (true) WITH CHECK (true);
CREATE POLICY organization_invitations_delete_permissive ON platform.organization_invitations FOR DELETE USING (true);
CREATE POLICY projects_update_permissive ON platform.projects FOR UPDATE USING (true) WITH CHECK (true);
CREATE POLICY projects_delete_permissive ON platform.projects FOR DELETE USING (true);
CREATE POLICY oauth_apps_update_permissive ON platform.oauth_apps FOR UPDATE USING (true) WITH CHECK (true);
CREATE POLICY oauth_apps_delete_permissive ON platform.oauth_apps FOR DELETE USING (true);
CREATE POLICY subscriptions_update_permissive ON platform.subscriptions FOR UPDATE USING (true) WITH CHECK (true);
CREATE POLICY subscriptions_delete_permissive ON platform.subscriptions FOR DELETE USING (true);
CREATE POLICY invoices_update_permissive ON platform.invoices FOR UPDATE USING (true) WITH CHECK (true);
CREATE POLICY invoices_delete_permissive ON platform.invoices FOR DELETE USING (true);
CREATE POLICY invoice_line_items_update_permissive ON platform.invoice_line_items FOR UPDATE USING (true) WITH CHECK (true);
CREATE POLICY invoice_line_items_delete_permissive ON platform.invoice_line_items FOR DELETE USING (true);
CREATE POLICY payment_methods_update_permissive ON platform.payment_methods FOR UPDATE USING (true) WITH CHECK (true);
CREATE POLICY payment_methods_delete_permissive ON platform.payment_methods FOR DELETE USING (true);
CREATE POLICY audit_logs_update_permissive ON platform.audit_logs FOR UPDATE USING (true) WITH CHECK (true);
CREATE POLICY audit_logs_delete_permissive ON platform.audit_logs FOR DELETE USING (true);
CREATE POLICY project_members_update_permissive ON platform.project_members FOR UPDATE USING (true) WITH CHECK (true);
CREATE POLICY project_members_delete_permissive ON platform.project_members FOR DELETE USING (true);
CREATE POLICY project_settings_update_permissive ON platform.project_settings FOR UPDATE USING (true) WITH CHECK (true);
CREATE POLICY project_settings_delete_permissive ON platform.project_settings FOR DELETE USING (true);
CREATE POLICY api_keys_update_permissive ON platform.api_keys FOR UPDATE USING (true) WITH CHECK (true);
CREATE POLICY api_keys_delete_permissive ON platform.api_keys FOR DELETE USING (true);
CREATE POLICY project_secrets_update_permissive ON platform.project_secrets FOR UPDATE USING (true) WITH CHECK (true);
CREATE POLICY project_secrets_delete_permissive ON platform.project_secrets FOR DELETE USING (true);
CREATE POLICY custom_domains_update_permissive ON platform.custom_domains FOR UPDATE USING (true) WITH CHECK (true);
CREATE POLICY custom_domains_delete_permissive ON platform.custom_domains FOR DELETE USING (true);
CREATE POLICY network_restrictions_update_permissive ON platform.network_restrictions FOR UPDATE USING (true) WITH CHECK (true);
CREATE POLICY network_restrictions_delete_permissive ON platform.network_restrictions FOR DELETE USING (true);
CREATE POLICY usage_records_update_permissive ON platform.usage_records FOR UPDATE USING (true) WITH CHECK (true);
CREATE POLICY usage_records_delete_permissive ON platform.usage_records FOR DELETE USING (true);
CREATE POLICY databases_update_permissive ON platform.databases FOR UPDATE USING (true) WITH CHECK (true);
CREATE POLICY databases_delete_permissive ON platform.databases FOR DELETE USING (true);
CREATE POLICY users_update_permissive ON platform.users FOR UPDATE USING (true) WITH CHECK (true);
CREATE POLICY users_delete_permissive ON platform.users FOR DELETE USING (true);
CREATE POLICY user_sessions_update_permissive ON platform.user_sessions FOR UPDATE USING (true) WITH CHECK (true);
CREATE POLICY user_sessions_delete_permissive ON platform.user_sessions FOR DELETE USING (true);
CREATE POLICY user_mfa_factors_update_permissive ON platform.user_mfa_factors FOR UPDATE USING (true) WITH CHECK (true);
CREATE POLICY user_mfa_factors_delete_permissive ON platform.user_mfa_factors FOR DELETE USING (true);
CREATE POLICY access_tokens_update_permissive ON platform.access_tokens FOR UPDATE USING (true) WITH CHECK (true);
CREATE POLICY access_tokens_delete_permissive ON platform.access_tokens FOR DELETE USING (true);
CREATE POLICY notifications_update_permissive ON platform.notifications FOR UPDATE USING (true) WITH CHECK (true);
CREATE POLICY notifications_delete_permissive ON platform.notifications FOR DELETE USING (true);
CREATE POLICY billing_plans_update_permissive ON platform.billing_plans FOR UPDATE USING (true) WITH CHECK (true);
CREATE POLICY billing_plans_delete_permissive ON platform.billing_plans FOR DELETE USING (true);
