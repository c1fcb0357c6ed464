"""Workflows: the long-running work the verbs start (running phases and verification, rollback,
restore, abort, renewal, a fleet of databases), each holding the run lock and reporting through
the Reporter it is handed, never through Slack.

May import: preflight, engine, state, runbook, core. Never commands (the verbs), scheduling's
entry points or bot (the adapters).
"""
