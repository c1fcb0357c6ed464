"""Run state in Redis: keys, lifecycle, runs, the run lock, approvals, the audit trail, and
recovery from the PostgreSQL history when Redis lost its state.

Every Redis key is named in state.keys; every change of a run's status goes through
state.machine (the transition table) and state.runs.RunStore; keys held by one owner (the
run lock, the outbox's delivery lock, the scheduler's claims) use state.owned. The audit
trail is mirrored to PostgreSQL (migrate_bot.run_events, state.audit).

May import: core. Nothing else of the project (no engine, runbook, workflows, commands or
Slack). Checked by lint-imports.
"""
