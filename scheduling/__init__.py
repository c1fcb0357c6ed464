"""Time-driven work (issue 7): GO scheduled, post-execution follow-ups, health checks.

`Scheduler` (scheduling.scheduler) is the API the adapters and commands use; the job
functions (scheduling.jobs) are what APScheduler stores in Redis; `capture_baseline`
times the representative queries the follow-ups compare against.
"""
from scheduling.baseline import baseline_of, capture_baseline, store_baseline
from scheduling.scheduler import Scheduler, label_of, schedule_lines

__all__ = ["Scheduler", "capture_baseline", "store_baseline", "baseline_of", "label_of", "schedule_lines"]
