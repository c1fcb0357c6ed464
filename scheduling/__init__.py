"""Time-driven work (issue 7): GO scheduled, post-execution follow-ups, health checks.

`Scheduler` (scheduling.scheduler) runs APScheduler with its job store in Redis, several bot
processes sharing it, each firing claimed once (state.owned). The job functions
(scheduling.jobs) are what APScheduler stores; a scheduled start runs the phase-running
workflow (workflows.run), a follow-up compares with the baseline (workflows.baseline).
`scheduling.hooks.ProcessSchedule` / `StoredForServe` are the scheduling interface
(workflows.schedule.Schedule) the adapters hand the command core at start-up.

Layer: beside the verbs (commands), above the workflows. May import: workflows, preflight,
engine, state, runbook, core. Never commands (the verbs reach it only through
`core.schedule`) nor bot (the adapters start it).
"""

from scheduling.scheduler import Scheduler, label_of, schedule_lines

__all__ = ["Scheduler", "label_of", "schedule_lines"]
