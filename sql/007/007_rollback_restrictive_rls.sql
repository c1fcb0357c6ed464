-- Migration 007, phase 2 rollback: restrictive RLS (owner: Sergei Ivanov, security-specialist)
--
-- Deploy : `rollback phase 2` / `rollback all` of sql/007/runbook.toml
-- Revert : re-apply 007_restrictive_rls_policies.sql
-- Verify : SELECT count(*) FROM pg_policies WHERE schemaname = 'platform';   -- 48 (006 state)
--
-- Drops the 23 restrictive policies and the 48 UPDATE/DELETE permissive policies of phase 2.
-- Leaves the 006 state (RLS enabled, 48 permissive SELECT/INSERT policies) and the session
-- helpers of phase 1 in place. Idempotent. Plain statements, no BEGIN/COMMIT: run inside one
-- transaction.

-- 23 restrictive policies
DROP POLICY IF EXISTS organizations_tenant_isolation ON platform.organizations;
DROP POLICY IF EXISTS organization_members_tenant_isolation ON platform.organization_members;
DROP POLICY IF EXISTS organization_invitations_tenant_isolation ON platform.organization_invitations;
DROP POLICY IF EXISTS projects_tenant_isolation ON platform.projects;
DROP POLICY IF EXISTS oauth_apps_tenant_isolation ON platform.oauth_apps;
DROP POLICY IF EXISTS subscriptions_tenant_isolation ON platform.subscriptions;
DROP POLICY IF EXISTS invoices_tenant_isolation ON platform.invoices;
DROP POLICY IF EXISTS invoice_line_items_tenant_isolation ON platform.invoice_line_items;
DROP POLICY IF EXISTS payment_methods_tenant_isolation ON platform.payment_methods;
DROP POLICY IF EXISTS audit_logs_tenant_isolation ON platform.audit_logs;
DROP POLICY IF EXISTS project_members_tenant_isolation ON platform.project_members;
DROP POLICY IF EXISTS project_settings_tenant_isolation ON platform.project_settings;
DROP POLICY IF EXISTS api_keys_tenant_isolation ON platform.api_keys;
DROP POLICY IF EXISTS project_secrets_tenant_isolation ON platform.project_secrets;
DROP POLICY IF EXISTS custom_domains_tenant_isolation ON platform.custom_domains;
DROP POLICY IF EXISTS network_restrictions_tenant_isolation ON platform.network_restrictions;
DROP POLICY IF EXISTS usage_records_tenant_isolation ON platform.usage_records;
DROP POLICY IF EXISTS databases_tenant_isolation ON platform.databases;
DROP POLICY IF EXISTS users_tenant_isolation ON platform.users;
DROP POLICY IF EXISTS user_sessions_tenant_isolation ON platform.user_sessions;
DROP POLICY IF EXISTS user_mfa_factors_tenant_isolation ON platform.user_mfa_factors;
DROP POLICY IF EXISTS access_tokens_tenant_isolation ON platform.access_tokens;
DROP POLICY IF EXISTS notifications_tenant_isolation ON platform.notifications;

-- 48 UPDATE/DELETE policies
DROP POLICY IF EXISTS organizations_update_permissive ON platform.organizations;
DROP POLICY IF EXISTS organizations_delete_permissive ON platform.organizations;
DROP POLICY IF EXISTS organization_members_update_permissive ON platform.organization_members;
DROP POLICY IF EXISTS organization_members_delete_permissive ON platform.organization_members;
DROP POLICY IF EXISTS organization_invitations_update_permissive ON platform.organization_invitations;
DROP POLICY IF EXISTS organization_invitations_delete_permissive ON platform.organization_invitations;
DROP POLICY IF EXISTS projects_update_permissive ON platform.projects;
DROP POLICY IF EXISTS projects_delete_permissive ON platform.projects;
DROP POLICY IF EXISTS oauth_apps_update_permissive ON platform.oauth_apps;
DROP POLICY IF EXISTS oauth_apps_delete_permissive ON platform.oauth_apps;
DROP POLICY IF EXISTS subscriptions_update_permissive ON platform.subscriptions;
DROP POLICY IF EXISTS subscriptions_delete_permissive ON platform.subscriptions;
DROP POLICY IF EXISTS invoices_update_permissive ON platform.invoices;
DROP POLICY IF EXISTS invoices_delete_permissive ON platform.invoices;
DROP POLICY IF EXISTS invoice_line_items_update_permissive ON platform.invoice_line_items;
DROP POLICY IF EXISTS invoice_line_items_delete_permissive ON platform.invoice_line_items;
DROP POLICY IF EXISTS payment_methods_update_permissive ON platform.payment_methods;
DROP POLICY IF EXISTS payment_methods_delete_permissive ON platform.payment_methods;
DROP POLICY IF EXISTS audit_logs_update_permissive ON platform.audit_logs;
DROP POLICY IF EXISTS audit_logs_delete_permissive ON platform.audit_logs;
DROP POLICY IF EXISTS project_members_update_permissive ON platform.project_members;
DROP POLICY IF EXISTS project_members_delete_permissive ON platform.project_members;
DROP POLICY IF EXISTS project_settings_update_permissive ON platform.project_settings;
DROP POLICY IF EXISTS project_settings_delete_permissive ON platform.project_settings;
DROP POLICY IF EXISTS api_keys_update_permissive ON platform.api_keys;
DROP POLICY IF EXISTS api_keys_delete_permissive ON platform.api_keys;
DROP POLICY IF EXISTS project_secrets_update_permissive ON platform.project_secrets;
DROP POLICY IF EXISTS project_secrets_delete_permissive ON platform.project_secrets;
DROP POLICY IF EXISTS custom_domains_update_permissive ON platform.custom_domains;
DROP POLICY IF EXISTS custom_domains_delete_permissive ON platform.custom_domains;
DROP POLICY IF EXISTS network_restrictions_update_permissive ON platform.network_restrictions;
DROP POLICY IF EXISTS network_restrictions_delete_permissive ON platform.network_restrictions;
DROP POLICY IF EXISTS usage_records_update_permissive ON platform.usage_records;
DROP POLICY IF EXISTS usage_records_delete_permissive ON platform.usage_records;
DROP POLICY IF EXISTS databases_update_permissive ON platform.databases;
DROP POLICY IF EXISTS databases_delete_permissive ON platform.databases;
DROP POLICY IF EXISTS users_update_permissive ON platform.users;
DROP POLICY IF EXISTS users_delete_permissive ON platform.users;
DROP POLICY IF EXISTS user_sessions_update_permissive ON platform.user_sessions;
DROP POLICY IF EXISTS user_sessions_delete_permissive ON platform.user_sessions;
DROP POLICY IF EXISTS user_mfa_factors_update_permissive ON platform.user_mfa_factors;
DROP POLICY IF EXISTS user_mfa_factors_delete_permissive ON platform.user_mfa_factors;
DROP POLICY IF EXISTS access_tokens_update_permissive ON platform.access_tokens;
DROP POLICY IF EXISTS access_tokens_delete_permissive ON platform.access_tokens;
DROP POLICY IF EXISTS notifications_update_permissive ON platform.notifications;
DROP POLICY IF EXISTS notifications_delete_permissive ON platform.notifications;
DROP POLICY IF EXISTS billing_plans_update_permissive ON platform.billing_plans;
DROP POLICY IF EXISTS billing_plans_delete_permissive ON platform.billing_plans;
