"""Adapters: the ways in and out of the bot. Slack (`bot.slack`: listeners, the outbox, the
run card, App Home), the terminal console (`bot.console`) and the command line
(`python -m bot serve | console | import`). An adapter turns a request into a call of the
command core (`commands.handle`) and renders its `Outcome`; it decides nothing itself.

May import: commands, core, runbook, state (to wire the core and read run state for
display), and slack_bolt / slack_sdk (only here; nowhere else in the project). Nothing
imports bot.

Known violation (next session's work, issue 17): none from below, but bot/slack/home.py and
bot/slack/server.py import scheduling lazily inside functions (the App Home's schedule, the
scheduler started by `serve`); scheduling is a workflow the core should hand to the adapter.
"""
