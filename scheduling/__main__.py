"""`python -m scheduling`: a process that only runs the scheduled jobs, printing its posts.

For deployments (and tests) where the jobs must fire without the Slack server: it reads the
same environment as `python -m bot`, runs until SIGTERM or SIGINT, and prints what it would
post to the channel.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from datetime import timedelta

from core import logs
from core.config import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scheduling")
    parser.add_argument(
        "--poll", type=float, default=5.0, help="seconds between looks for jobs added elsewhere"
    )
    parser.add_argument(
        "--health-every", type=float, default=None, help="also run the health checks every N seconds"
    )
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    logs.configure(settings.secrets())

    from bot.console import ConsoleReporter
    from commands.core import Core
    from scheduling.scheduler import Scheduler

    core = Core.from_settings(settings)
    reporter = ConsoleReporter(sys.stdout)
    scheduler = Scheduler(core, lambda: reporter, poll=args.poll)
    if args.health_every:
        scheduler.start_health_checks(timedelta(seconds=args.health_every))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"scheduler {scheduler.name} running", flush=True)
    stop.wait()
    scheduler.shutdown(wait=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
