"""The engine: everything that touches the target database on a run's behalf. The executor
(the only code that runs migration SQL), lock timeouts and blockers, schema snapshots
(pg_dump), verification checks and smoke tests, and the migration ledgers (engine.ledgers:
the bot's migrate_bot.applied_files and the team's tool's table, read and written the way
that tool does). Knows nothing of commands, runs' lifecycle, Redis or Slack.

May import: runbook (the runbook model it executes), core. Never state (a sibling) nor
anything above. Checked by lint-imports.
"""
