"""A folder of small migrations through the bot vs `psql -X -1 -f` of each file in order.

    .venv/bin/python bench/folder_vs_psql.py [--migrations 30] [--reps 3] [--server URL]

The folder is generated (tests/support/migration_folders.py: tables, indexes, DROP INDEX,
renames, sequences, functions, views, triggers…), one phase per migration, with a runbook that
asks for nothing. The bot's side is the console's `run` (every phase, then the final checks),
in-process, with its state under a scratch Redis prefix and a scratch database; pre-flight and
approval happen before the clock starts. psql's side applies the same up files, one
`psql -X -1 -f` per file, on a twin scratch database. Prints both medians and the ratio.

It also prints what the per-phase schema snapshot costs (the rollback proof compares it): the
catalog snapshot of engine/catalog_snapshot.py (one prepared query on a kept connection; pg_dump
only when the schema holds something that snapshot does not describe), as N × snapshot / psql,
next to what one `pg_dump --schema-only` per phase cost before (then the floor: the bot could not
beat (psql + N × pg_dump) / psql). Both are measured on the psql twin after all its files ran
(the largest schema of the run). And the load average, since the machine is shared: compare
ratios within one run, never absolute times across runs.

Target: ratio ≤ 1.5. Measured 2026-12-07 on the shared 2-core machine: 0.90 and 1.08 (load
average 4–6; the code before, in the same stretch: 4.14), 0.74–1.62 over earlier runs at load
6–15 (the code before: 4.2–6.9). README "Speed: a folder of small migrations" has the details.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
import redis  # noqa: E402
from psycopg import sql as pgsql  # noqa: E402
from psycopg.conninfo import conninfo_to_dict  # noqa: E402

from bot.console import run_command  # noqa: E402
from commands import Core  # noqa: E402
from core.config import Settings  # noqa: E402
from engine import schema  # noqa: E402
from tests.support.migration_folders import Folder, generated  # noqa: E402

SERVER = os.environ.get("MIGRATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("MIGRATE_TEST_REDIS", "redis://127.0.0.1:6379/0")
COORDINATOR, TPM = "U0RAFAEL", "U0DYLAN"


def create_db(server: str) -> tuple[str, str]:
    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name)))
    params = conninfo_to_dict(server)
    auth = params.get("user", "") + (f":{params['password']}" if params.get("password") else "")
    return name, f"postgresql://{auth}@{params.get('host', '127.0.0.1')}:{params.get('port', '5432')}/{name}"


def drop_db(server: str, name: str) -> None:
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(name)))


def command(core: Core, user: str, text: str) -> str:
    out = io.StringIO()
    code = run_command(core, user, text, out)
    if code != 0:
        raise SystemExit(f"`{text}` exited {code}:\n{out.getvalue()[-3000:]}")
    return out.getvalue()


def time_bot(server: str, folder: Folder, runbook: Path, work: Path) -> float:
    """Pre-flight and approval (untimed), then `run` timed."""
    name, dsn = create_db(server)
    prefix = f"bench:{uuid.uuid4().hex[:12]}"
    client = redis.Redis.from_url(REDIS_URL)
    try:
        roster = work / "roster.toml"
        shutil.copy(ROOT / "roster.toml", roster)
        settings = Settings(
            database_url=dsn,
            redis_url=REDIS_URL,
            roster_path=roster,
            runbook_path=runbook,
            backup_dir=work / f"backups-{name}",
            redis_prefix=prefix,
            channel="C0BENCH",
        )
        core = Core.from_settings(settings)
        command(core, COORDINATOR, "preflight")
        command(core, TPM, "approve")
        start = time.perf_counter()
        if os.environ.get("BENCH_PROFILE"):  # where the bot's time goes: BENCH_PROFILE=out.prof
            import cProfile

            with cProfile.Profile() as profile:
                out = command(core, COORDINATOR, "run")
            profile.dump_stats(os.environ["BENCH_PROFILE"])
        else:
            out = command(core, COORDINATOR, "run")
        elapsed = time.perf_counter() - start
        if "SUCCESSFUL" not in out:
            raise SystemExit(f"run did not succeed:\n{out[-3000:]}")
        return elapsed
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        if keys:
            client.delete(*keys)
        client.close()
        drop_db(server, name)


def time_psql(server: str, folder: Folder, dumps: list[float], catalogs: list[float]) -> float:
    """psql of every file (timed), then one pg_dump of the result (timed into `dumps`) and one
    catalog snapshot, as the bot takes it after a phase (a kept connection: timed into `catalogs`)."""
    name, dsn = create_db(server)
    try:
        start = time.perf_counter()
        folder.apply_with_psql(dsn)
        elapsed = time.perf_counter() - start
        start = time.perf_counter()
        schema.schema_dump(dsn)
        dumps.append(time.perf_counter() - start)
        with psycopg.connect(dsn, autocommit=True) as conn:
            schema.snapshot(dsn, conn=conn)  # the first one on a connection prepares the query
            start = time.perf_counter()
            schema.snapshot(dsn, conn=conn)
            catalogs.append(time.perf_counter() - start)
        return elapsed
    finally:
        drop_db(server, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--migrations", type=int, default=30)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--server", default=SERVER, help="URL of a database on the server (scratch dbs are made there)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-folder-") as tmp:
        work = Path(tmp)
        folder = Folder(work / "migrations", generated(args.migrations))
        runbook = folder.write()
        times: dict[str, list[float]] = {"bot run": [], "psql -X -1 -f": []}
        dumps: list[float] = []
        catalogs: list[float] = []
        load_before = os.getloadavg()
        for rep in range(args.reps):  # alternate, so drift on a shared machine hits both alike
            order = [
                ("bot run", lambda: time_bot(args.server, folder, runbook, work)),
                ("psql -X -1 -f", lambda: time_psql(args.server, folder, dumps, catalogs)),
            ]
            for label, runner in order if rep % 2 == 0 else order[::-1]:
                times[label].append(runner())
    print(f"{args.migrations} migrations, one phase each, {args.reps} repetitions, fresh database each run")
    for label, values in times.items():
        print(
            f"  {label:<14} median {statistics.median(values):.3f} s   runs: "
            + " ".join(f"{v:.3f}" for v in values)
        )
    bot, psql = times["bot run"], times["psql -X -1 -f"]
    print(
        f"ratio bot / psql = {statistics.median(bot) / statistics.median(psql):.2f} (medians; target ≤ 1.5)"
    )
    paired = statistics.median(b / p for b, p in zip(bot, psql))
    print(
        f"  median of paired ratios {paired:.2f}; best runs {min(bot):.3f} s vs {min(psql):.3f} s = "
        f"{min(bot) / min(psql):.2f}"
    )
    n, bot_m, psql_m, dump_m = (
        args.migrations,
        statistics.median(bot),
        statistics.median(psql),
        statistics.median(dumps),
    )
    print(
        f"  psql per file {psql_m / n * 1000:.0f} ms; one pg_dump --schema-only {dump_m * 1000:.0f} ms "
        f"(runs: " + " ".join(f"{d * 1000:.0f}" for d in dumps) + ")"
    )
    catalog_m = statistics.median(catalogs)
    print(
        f"  one catalog snapshot (engine/catalog_snapshot.py, what the bot takes after a phase) "
        f"{catalog_m * 1000:.0f} ms (runs: " + " ".join(f"{c * 1000:.0f}" for c in catalogs) + ")"
    )
    print(
        f"  bot per phase {bot_m / n * 1000:.0f} ms = psql's {psql_m / n * 1000:.0f} ms + "
        f"{(bot_m - psql_m) / n * 1000:.0f} ms overhead, of which the snapshot {catalog_m * 1000:.0f} ms"
    )
    print(
        f"the snapshots' share: {n} × snapshot / psql = {n * catalog_m / psql_m:.2f} of psql's time "
        f"(with one pg_dump per phase it was {n * dump_m / psql_m:.2f}: a floor of "
        f"(psql + {n} × pg_dump) / psql = {(psql_m + n * dump_m) / psql_m:.2f})"
    )
    print(
        "load average (1, 5, 15 min): before "
        + " ".join(f"{x:.2f}" for x in load_before)
        + ", after "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
        + f" on {os.cpu_count()} cores"
    )


if __name__ == "__main__":
    main()
