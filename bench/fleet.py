"""A fleet run of 50 small databases by 1 and by 2 fleet worker processes vs a shell loop of
`psql -X -1 -f` per database, and the Slack Web API calls it costs per database.

    .venv/bin/python bench/fleet.py [--databases 50] [--workers 1,2] [--threads 4] [--parallel 8]
                                    [--quick-slack] [--server URL]

Each round gets fresh empty scratch databases (canary `t0` in wave 0, the rest in wave 1), a
targets file, and the real bot against the Slack stand-in (tests/support/slack_standin.py):
`/migrate preflight` (every target, one summary) and the TPM's one `/migrate approve` go through
Slack, untimed. Then K `python -m bot fleet-worker --threads T` processes are started, and the
clock runs from the fleet run's start (workflows/fleet/waves.start: the canary's job on the
queue) until the fleet run has ended. The runbook is tests/support/fleet.py's small one: two
phases of one file each (a table, an index), then the final checks.

psql's side: the same two up files, `psql -X -q -1 -v ON_ERROR_STOP=1 -f` each, database after
database, in one bash loop, on fresh twins.

Also printed: the peak number of server connections to the fleet's databases during the run
(pg_stat_activity, sampled every 50 ms), the backups' disk (BACKUP_DIR after pre-flight, per
database), the Slack calls (chat.postMessage, chat.update, ...) of pre-flight + approval and of
the run, per database, and how long the outbox took after the run ended to deliver the thread
(the outbox spaces channel posts 1 s apart as Slack asks; --quick-slack spaces them 20 ms apart
to count faster).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
import redis  # noqa: E402

from commands.fleet_run import fleet_context, release_idle_connections  # noqa: E402
from commands.fleetcore import close_target_cores, store  # noqa: E402
from core.config import Settings  # noqa: E402
from state.fleet import FleetStatus  # noqa: E402
from tests.support import pg  # noqa: E402
from tests.support.fleet import COORDINATOR, TPM, scratch_fleet, small_runbook, start_worker_process  # noqa: E402
from tests.support.slack_standin import RunningBot, SlackStandIn  # noqa: E402
from workflows.fleet import waves  # noqa: E402
from workflows.fleet.queue import FleetQueue  # noqa: E402

REDIS_URL = os.environ.get("MIGRATE_TEST_REDIS", "redis://127.0.0.1:6379/0")
FILES = ["001_items.up.sql", "002_label_index.up.sql"]


def base_settings(work: Path, prefix: str) -> Settings:
    roster = work / "roster.toml"
    shutil.copy(ROOT / "roster.toml", roster)
    return Settings(
        database_url=None,
        redis_url=REDIS_URL,
        slack_bot_token="xoxb-111-222-benchfleet",
        slack_signing_secret="s1gn1ngS3cret0123456789",
        channel="C0MIGRATE",
        roster_path=roster,
        backup_dir=work / "backups",
        redis_prefix=prefix,
    )


class PeakConnections:
    """Samples pg_stat_activity for the given databases every 50 ms; keeps the peak."""

    def __init__(self, dbnames: list[str]):
        self.dbnames = dbnames
        self.peak = 0
        self.peak_per_db = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakConnections:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with psycopg.connect(pg.SERVER_URL, autocommit=True) as conn:
            while not self._stop.wait(0.05):
                rows = conn.execute(
                    "SELECT datname, count(*) FROM pg_stat_activity WHERE datname = ANY(%s) GROUP BY 1",
                    (self.dbnames,),
                ).fetchall()
                self.peak = max(self.peak, sum(n for _, n in rows))
                self.peak_per_db = max([self.peak_per_db, *(n for _, n in rows)])


def wait_for(what: str, predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def drained(bot: RunningBot, fleet_id: str, timeout: float) -> float:
    """Seconds until the outbox delivered the fleet's whole event stream and emptied."""
    started = time.monotonic()
    fleets = store(bot.core)

    def done() -> bool:
        last = fleets.events(fleet_id)[-1].id
        cursor = bot.core.redis.get(bot.core.keys.fleet_feed(fleet_id))
        return bool(cursor) and cursor.decode() == last and not len(bot.bridge.outbox)

    wait_for("the Slack thread to be delivered", done, timeout)
    return time.monotonic() - started


def fleet_round(base: Settings, work: Path, n: int, workers: int, threads: int, parallel: int) -> dict:
    folder = work / f"round-{workers}-{uuid.uuid4().hex[:4]}"
    folder.mkdir()
    runbook = small_runbook(folder / "rb")
    fleet = scratch_fleet(
        # a Redis prefix of its own: no round sees another's fleet runs, queue or outbox
        base.with_(
            runbook_path=runbook,
            backup_dir=folder / "backups",
            redis_prefix=f"{base.redis_prefix}:{folder.name}",
        ),
        folder,
        [0] + [1] * (n - 1),
        parallel=parallel,
    )
    procs: list[subprocess.Popen] = []
    try:
        with SlackStandIn() as standin:
            bot = RunningBot(fleet.settings, standin)
            try:
                fleets = store(bot.core)
                t = time.monotonic()
                assert bot.slack.slash(COORDINATOR, "preflight").status == 200
                wait_for(
                    "pre-flight",
                    lambda: (fleets.current() or None) and fleets.current().status is FleetStatus.GO,
                    1800,
                )
                preflight_s = time.monotonic() - t
                fleet_id = fleets.current().id
                backups = sum(f.stat().st_size for f in (folder / "backups").rglob("*") if f.is_file())
                assert bot.slack.slash(TPM, "approve").status == 200
                wait_for("the approval", lambda: fleets.current().status is FleetStatus.APPROVED, 120)
                drained(bot, fleet_id, 1800)
                before = len(standin.calls)

                env = fleet.process_env()
                for k in range(workers):
                    procs.append(start_worker_process(env, folder / f"worker-{k}.log", threads=threads))
                ctx = fleet_context(bot.core)
                release_idle_connections(bot.core, fleets.get(fleet_id))  # as `run` does
                queue = FleetQueue(fleet.settings.redis_url, fleet.settings.redis_prefix)
                with PeakConnections(list(fleet.dbnames.values())) as peak:
                    t = time.monotonic()
                    waves.start(ctx, queue, fleet_id, COORDINATOR)
                    done = waves.wait(ctx, fleet_id, timeout=3600)
                    wall = time.monotonic() - t
                queue.close()
                if done.status is not FleetStatus.SUCCEEDED:
                    raise SystemExit(
                        f"fleet run {done.status}: { {k: v.error for k, v in done.targets.items() if v.error} }"
                    )
                drain = drained(bot, fleet_id, 3600)
                run_calls = Counter(c.method for c in standin.calls[before:])
                setup_calls = Counter(c.method for c in standin.calls[:before])
            finally:
                bot.close()
                close_target_cores(bot.core)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        fleet.drop()
    return {
        "workers": workers,
        "wall": wall,
        "preflight": preflight_s,
        "backups": backups,
        "peak": peak.peak,
        "peak_per_db": peak.peak_per_db,
        "run_calls": run_calls,
        "setup_calls": setup_calls,
        "drain": drain,
    }


def psql_loop(work: Path, n: int) -> float:
    runbook = small_runbook(work / "psql-rb")
    names = [pg.new_name("flpsql") for _ in range(n)]
    urls = [pg.create_database(name) for name in names]
    files = " ".join(str(runbook.parent / f) for f in FILES)
    script = (
        'for url in "$@"; do for f in '
        + files
        + '; do psql -X -q -1 -v ON_ERROR_STOP=1 -f "$f" -d "$url" || exit 1; done; done'
    )
    try:
        t = time.monotonic()
        subprocess.run(["bash", "-c", script, "loop", *urls], check=True, capture_output=True)
        return time.monotonic() - t
    finally:
        for name in names:
            pg.drop_database(name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", type=int, default=50)
    parser.add_argument("--workers", default="1,2", help="worker process counts, one round each")
    parser.add_argument("--threads", type=int, default=4, help="targets at once per worker process")
    parser.add_argument("--parallel", type=int, default=8, help="[fleet] parallel")
    parser.add_argument("--quick-slack", action="store_true", help="space channel posts 20 ms apart, not 1 s")
    args = parser.parse_args()
    if args.quick_slack:
        import bot.slack.outbox as outbox

        outbox.POST_INTERVAL = 0.02
    prefix = f"bench:fleet:{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    base = base_settings(work, prefix)
    n = args.databases
    try:
        print(f"load average before: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)", flush=True)
        psql_s = psql_loop(work, n)
        print(f"psql loop: {n} databases × {len(FILES)} files in {psql_s:.2f} s", flush=True)
        rounds = []
        for workers in (int(w) for w in args.workers.split(",")):
            r = fleet_round(base, work, n, workers, args.threads, args.parallel)
            rounds.append(r)
            run_total = sum(r["run_calls"].values())
            setup_total = sum(r["setup_calls"].values())
            print(
                f"fleet, {workers} worker process(es) × {args.threads} threads, parallel {args.parallel}: "
                f"run {r['wall']:.2f} s (ratio to psql {r['wall'] / psql_s:.2f}); "
                f"pre-flight {r['preflight']:.1f} s untimed; peak connections {r['peak']} "
                f"(at most {r['peak_per_db']} on one database); backups {r['backups'] / n / 1024:.1f} KiB per database",
                flush=True,
            )
            print(
                f"  Slack calls: pre-flight + approval {setup_total} ({dict(r['setup_calls'])}), "
                f"run {run_total} ({dict(r['run_calls'])}); per database {setup_total / n:.2f} + {run_total / n:.2f} "
                f"= {(setup_total + run_total) / n:.2f}; the thread was delivered {r['drain']:.1f} s after the run ended",
                flush=True,
            )
        by = {r["workers"]: r["wall"] for r in rounds}
        if 1 in by and 2 in by:
            print(f"2 worker processes vs 1: {by[2] / by[1]:.2f} of the wall time")
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
