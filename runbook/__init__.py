"""The runbook: what a migration is, as data. Loading and validating runbook.toml (model,
validate), parsing SQL files (sqlfile, pglast), lock-safety rules (safety), sqitch plans and
the importers that write a runbook for an existing migration folder (runbook.importers).
Pure: no database connection, no Redis, no Slack.

May import: core. Known violation (next session's work, issue 17): runbook/importers/flyway.py
imports `engine.ledgers.flyway.parse_name` (the flyway file-name grammar), while engine
imports runbook.model; the grammar belongs in runbook so that engine depends on runbook
only.
"""
