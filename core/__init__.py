"""Core utilities every layer may use: settings from the environment (config), the clock, the
roster, secret redaction, URL handling, logging set-up and child processes of client tools.
No run state, no database work, no Slack.

May import: only the standard library, third-party libraries and `sql` (config's default
runbook path). Imports no other package of the project. Checked by lint-imports.
"""
