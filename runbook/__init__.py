"""The runbook: what a migration is, as data. Loading and validating runbook.toml (model,
validate), parsing SQL files (sqlfile, pglast), lock-safety rules (safety), sqitch plans and
the importers that write a runbook for an existing migration folder (runbook.importers).
Pure: no database connection, no Redis, no Slack.

May import: core (and sql's paths). Never engine or state: engine depends on runbook, not
the reverse (the Flyway file-name grammar both need is runbook.flywaynames), and nothing
above. Checked by lint-imports.
"""
