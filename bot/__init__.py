"""Adapters: the ways in and out of the bot. Slack (`bot.slack`: listeners, the outbox, the
run card, App Home), the terminal console (`bot.console`) and the command line
(`python -m bot serve | console | scheduler | import`). An adapter turns a request into a
call of the command core (`commands.handle`) and renders its `Outcome`; it decides nothing
itself. At start-up it wires the core: `serve` and `scheduler` start a Scheduler and hand the
core `scheduling.hooks.ProcessSchedule`, the console hands it `StoredForServe`.

The top layer. May import every package of the project (commands, scheduling, workflows,
state… to wire the core and read run state for display), and slack_bolt / slack_sdk (only
here, in bot.slack; nowhere else in the project). Nothing imports bot. Checked by
lint-imports (pyproject.toml).
"""
