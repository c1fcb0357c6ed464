-- Migration 007, phase 1 rollback: session helpers (owner: Sergei Ivanov, security-specialist)
--
-- Deploy : `rollback phase 1` / `rollback all` of sql/007/runbook.toml, after phase 2's
--          rollback (the restrictive policies call these functions)
-- Revert : re-apply 007_session_helpers.sql
-- Verify : SELECT to_regproc('platform.current_user_id');   -- NULL
--
-- Drops the seven functions of 007_session_helpers.sql, dependents first. Idempotent. Plain
-- statements, no BEGIN/COMMIT: run inside one transaction.

DROP FUNCTION IF EXISTS platform.has_org_role(uuid, text[]);
DROP FUNCTION IF EXISTS platform.is_org_member(uuid);
DROP FUNCTION IF EXISTS platform.user_project_ids();
DROP FUNCTION IF EXISTS platform.user_organization_ids();
DROP FUNCTION IF EXISTS platform.set_session_context(uuid, uuid);
DROP FUNCTION IF EXISTS platform.current_org_id();
DROP FUNCTION IF EXISTS platform.current_user_id();
