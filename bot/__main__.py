"""`python -m bot serve` (the Slack bot), `python -m bot console` (the same commands in a terminal),
`python -m bot scheduler` (only the scheduled jobs, printing their posts) and
`python -m bot import DIR` (a runbook for an existing migration folder)."""

from __future__ import annotations

import argparse
import os
import sys

import psycopg
from redis.exceptions import RedisError

from bot.console import interactive, run_command
from bot.fleet import worker_main
from bot.scheduler import run_scheduler
from commands import Core
from commands.importing import import_runbook
from core import logs
from core.config import ConfigError, Settings, env_secrets
from core.redact import redact
from runbook.model import RunbookError
from scheduling.hooks import StoredForServe

EXIT_FAILED, EXIT_REFUSED = 1, 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot", description="Migration runbook bot (see README)")
    sub = parser.add_subparsers(dest="mode", required=True)
    sub.add_parser("serve", help="run the Slack bot (HTTP on $PORT, or Socket Mode with SLACK_APP_TOKEN)")
    console = sub.add_parser("console", help="run /migrate commands in a terminal")
    console.add_argument(
        "--user", required=True, help="the Slack user ID to act as (roles come from the roster)"
    )
    console.add_argument("text", nargs="*", help='one command, e.g. "run phase 1"; none: interactive prompt')
    worker = sub.add_parser(
        "fleet-worker", help="work on fleet runs' databases beside serve (README, Many databases)"
    )
    worker.add_argument("--threads", type=int, help="databases at once here (default: [fleet] parallel)")
    jobs = sub.add_parser("scheduler", help="run only the scheduled jobs, printing their posts (no Slack)")
    jobs.add_argument(
        "--poll", type=float, default=5.0, help="seconds between looks for jobs added elsewhere"
    )
    jobs.add_argument(
        "--health-every", type=float, default=None, help="also run the health checks every N seconds"
    )
    imp = sub.add_parser("import", help="write a runbook for an existing migration folder")
    imp.add_argument("dir", help="the migration folder")
    imp.add_argument(
        "--layout", choices=["flyway", "updown", "sqitch", "plain"], help="default: detected from the files"
    )
    imp.add_argument("--out", help="where to write the runbook (default DIR/runbook.toml)")
    imp.add_argument("--group", type=int, default=1, help="migrations per phase (default 1)")
    imp.add_argument(
        "--owner", default="coordinator", help="roster role owning every phase (default coordinator)"
    )
    args = parser.parse_args(argv)
    if args.mode == "import":  # reads and writes files only: no settings, database or Redis
        outcome = import_runbook(
            args.dir, layout=args.layout, out=args.out, group=args.group, owner=args.owner
        )
        print("\n".join(outcome.lines), file=sys.stdout if outcome.code == 0 else sys.stderr)
        return outcome.code

    # Every URL's password is a secret before any setting is parsed: a parse error must not show it.
    secrets: tuple[str, ...] = env_secrets(os.environ)
    try:
        settings = Settings.from_env()
        secrets = settings.secrets()
        logs.configure(secrets)
        if args.mode == "fleet-worker":
            return worker_main(settings, threads=args.threads)
        if args.mode == "serve":
            # Slack (slack_bolt, waitress: a third of a second) is loaded by `serve` only: the
            # console, run once per command by scripts and tests, and `import` never need it.
            from bot.slack.server import serve

            serve(settings)
            return 0
        if args.mode == "scheduler":
            return run_scheduler(settings, poll=args.poll, health_every=args.health_every)
        # No scheduler runs in a console: `approve at` stores the start for `serve` to fire.
        core = Core.from_settings(settings, schedule=StoredForServe)
        if args.text:
            return run_command(core, args.user, " ".join(args.text))
        return interactive(core, args.user)
    except (ConfigError, RunbookError) as exc:
        print(f"configuration error: {redact(str(exc), secrets)}", file=sys.stderr)
        return EXIT_REFUSED
    except psycopg.ProgrammingError as exc:  # e.g. a DATABASE_URL libpq cannot parse
        print(f"configuration error: {redact(str(exc), secrets)}", file=sys.stderr)
        return EXIT_REFUSED
    except (RedisError, psycopg.OperationalError) as exc:
        print(f"unreachable: {redact(f'{type(exc).__name__}: {exc}', secrets)}", file=sys.stderr)
        return EXIT_FAILED
    except ConnectionError as exc:  # Slack's API at start (bot.slack.server.SlackUnreachable)
        print(f"unreachable: {redact(str(exc), secrets)}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
