"""`python -m bot scheduler`: a process that only runs the scheduled jobs, printing its posts.

For deployments (and tests) where the jobs must fire without the Slack server: it reads the
same environment as `python -m bot serve`, runs until SIGTERM or SIGINT, and prints what it
would post to the channel (as the console does).
"""

from __future__ import annotations

import signal
import sys
import threading
from datetime import timedelta

from bot.console import ConsoleReporter
from commands import Core
from core.config import Settings
from scheduling.hooks import ProcessSchedule
from scheduling.scheduler import Scheduler


def run_scheduler(settings: Settings, *, poll: float, health_every: float | None) -> int:
    """Run this target's scheduled jobs until SIGTERM or SIGINT; 0."""
    core = Core.from_settings(settings, schedule=ProcessSchedule)
    reporter = ConsoleReporter(sys.stdout)
    scheduler = Scheduler(core, lambda: reporter, poll=poll)
    if health_every:
        scheduler.start_health_checks(timedelta(seconds=health_every))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"scheduler {scheduler.name} running", flush=True)
    stop.wait()
    scheduler.shutdown(wait=True)
    return 0
