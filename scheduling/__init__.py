"""Time-driven work (issue 7): GO scheduled, post-execution follow-ups, health checks.

`Scheduler` (scheduling.scheduler) is the API the adapters and commands use; the job
functions (scheduling.jobs) are what APScheduler stores in Redis; `capture_baseline`
times the representative queries the follow-ups compare against.

A workflow layer (APScheduler with its job store in Redis, several bot processes sharing it;
once-only firing through state.owned claims).

May import: core, state, runbook, engine, preflight.
Known violations (next session's work, issue 17): scheduling.go runs the `run` verb
(commands.run), and its modules use commands.result (Post, Reporter), commands.work and
commands.templates: imports upwards, closing a cycle with the command core's lazy imports
of scheduling; scheduling/__main__.py imports bot.console (an adapter) inside a function.
"""

from scheduling.baseline import baseline_of, capture_baseline, store_baseline
from scheduling.scheduler import Scheduler, label_of, schedule_lines

__all__ = ["Scheduler", "capture_baseline", "store_baseline", "baseline_of", "label_of", "schedule_lines"]
