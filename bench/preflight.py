"""Preflight speed, measured on this machine's PostgreSQL (figures printed, nothing asserted).

1. Wall time of `run_preflight` (every check, backup, proof, rehearsal) on a demo 005
   database, with a local 200 deployment, a TCP listener for MongoDB and the local Redis.
2. On a generated database (the 005 baseline plus one big table, `--size-mb`, default
   1024), the time of preflight's backup + verified restore (dump streamed into a
   verifying restore, then every comparison, exact row counts included) against the
   report's method (`pg_dump > file.sql`, `createdb backup_test`, `psql backup_test <
   file.sql`), both in the same run, and their ratio (target ≤ 0.70).
   Each method runs `--repeat` times, interleaved; min and median are printed with the
   machine's load, since other work on a shared machine skews both.
   `--variants` also times other -Z levels and dump-then-restore without overlap.
   Each run also prints the CPU time the whole machine spent (all processes, both servers'
   backends included), and once the time of a bare `pg_restore` of the same archive from
   a file into an empty database: that restore is inside every pg_restore-verified method,
   so its ratio to the report's method is the lowest ratio such a method can reach here.
   `--ideal` also times an idealised lower bound that no verified backup can beat on this
   machine: the dump written to a file while the big table's rows, already split into
   files beforehand (free input), are loaded by `--sessions` concurrent COPY sessions into
   an UNLOGGED table (no WAL), then its primary key is built. No pg_restore, no hashing, no
   comparison: if even this is above the target, the target is below the machine's floor.

Usage: python bench/preflight.py [--size-mb 1024] [--variants] [--server postgresql://postgres@127.0.0.1:5432/postgres]
       [--database-url URL]  (reuse an already generated database instead of generating one)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402

from core.config import Settings  # noqa: E402
from preflight import Timeouts, backup, proof, run_preflight, scratch  # noqa: E402
from runbook.model import load_runbook  # noqa: E402
from sql import DEFAULT_RUNBOOK  # noqa: E402
from tests.support import fakes_net, pg  # noqa: E402

RB = load_runbook(DEFAULT_RUNBOOK)


def demo_wall_time(workdir: Path, runs: int) -> None:
    name = pg.new_name("bench_demo")
    url = pg.create_database(name)
    try:
        pg.apply_baseline(url)
        times = []
        with fakes_net.http_server(200) as deployment, fakes_net.silent_listener() as (host, port):
            settings = Settings(
                database_url=url,
                deployment_url=deployment,
                backup_dir=workdir / "demo",
                register_mongodb_url=f"mongodb://mongo:BenchPw91@{host}:{port}/lancio",
                register_redis_url="redis://127.0.0.1:6379/0",
                encryption_key="bench-key-0123456789",
            )
            for _ in range(runs):
                start = time.monotonic()
                report = run_preflight(settings, RB, incident=None, timeouts=Timeouts(network=2))
                times.append(time.monotonic() - start)
                if not report.go:
                    print("  demo preflight was NO-GO:", report.nogo_reasons)
        print(
            f"demo 005 database: run_preflight wall time median {statistics.median(times):.2f} s "
            f"over {runs} runs (min {min(times):.2f}, max {max(times):.2f}); GO={report.go}"
        )
        print(f"  {report.rehearsal.summary if report.rehearsal else 'no rehearsal'}")
    finally:
        pg.drop_database(name)


def generate(size_mb: int) -> tuple[str, str]:
    """A 005 database plus `bench.events` of about `size_mb` MB (heap + primary key)."""
    name = pg.new_name("bench_big")
    url = pg.create_database(name)
    try:
        _fill(url, size_mb)
    except BaseException:
        pg.drop_database(name)
        raise
    return name, url


def _fill(url: str, size_mb: int) -> None:
    pg.apply_baseline(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA bench")
        conn.execute("""CREATE TABLE bench.events (id bigint PRIMARY KEY, org_id uuid NOT NULL, kind text NOT NULL,
                         payload text NOT NULL, created_at timestamptz NOT NULL)""")
        insert = """INSERT INTO bench.events SELECT g, md5(g::text)::uuid, 'kind_' || (g %% 17),
                    repeat(md5(g::text), 2), now() - g * interval '1 second' FROM generate_series(%s::bigint, %s::bigint) g"""
        conn.execute(insert, (1, 100_000))
        per_row = conn.execute("SELECT pg_total_relation_size('bench.events') / 100000.0").fetchone()[0]
        total = int(size_mb * 1024 * 1024 / float(per_row))
        step = 1_000_000
        for first in range(100_001, total + 1, step):
            conn.execute(insert, (first, min(first + step - 1, total)))
        conn.execute("VACUUM ANALYZE bench.events")
        size = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()[0]
    print(f"generated: {total} rows in bench.events, database size {size}")


def report_method(url: str, workdir: Path) -> float:
    """`pg_dump > file.sql` + `createdb backup_test` + `psql backup_test < file.sql`, timed."""
    target = pg.new_name("backup_test")
    sql_file = workdir / "backup_pre_migration_006.sql"
    start = time.monotonic()
    with open(sql_file, "wb") as out:
        subprocess.run(["pg_dump", "--dbname", url], stdout=out, check=True)
    dumped = time.monotonic()
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", target], check=True)
    with open(sql_file, "rb") as src:
        subprocess.run(
            ["psql", "-X", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", target],
            stdin=src,
            stdout=subprocess.DEVNULL,
            check=True,
        )
    end = time.monotonic()
    pg.drop_database(target)
    print(
        f"report's method: pg_dump > file.sql {dumped - start:.1f} s + createdb + psql < file.sql {end - dumped:.1f} s "
        f"= {end - start:.1f} s ({sql_file.stat().st_size / 1e6:.0f} MB file)"
    )
    sql_file.unlink()
    return end - start


def preflight_method(url: str, workdir: Path, compress: int = backup.COMPRESS, overlap: bool = True) -> float:
    """Preflight's backup + verified restore (scratch db, dump, restore, every comparison), timed."""
    settings = Settings(database_url=url, backup_dir=workdir / f"z{compress}{'o' if overlap else 's'}")
    start = time.monotonic()
    with scratch.scratch_database(settings) as copy:
        d = backup.dump(
            settings,
            RB.backup_prefix,
            datetime.now(UTC),
            restore_into=copy if overlap else None,
            compress=compress,
        )
        dumped = time.monotonic()
        info = proof.verify(settings, d, copy)
        end = time.monotonic()  # the scratch drop is not part of either method's time
    label = f"-Z{compress} {'streamed into the restore' if overlap else 'then pg_restore (no overlap)'}"
    print(
        f"preflight backup {label}: dump{'+restore' if overlap else ''} {dumped - start:.1f} s, "
        f"verify {end - dumped:.1f} s = {end - start:.1f} s ({info.size / 1e6:.0f} MB file, verified={info.verified})"
    )
    if not info.verified:
        print("  NOT verified:", info.problem)
    Path(info.path).unlink()
    return end - start


def load() -> str:
    """Load average and CPU pressure: other work on the machine skews every figure."""
    avg = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    try:
        psi = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except OSError:
        psi = "n/a"
    return f"load average {avg}; cpu pressure {psi}"


def cpu_seconds() -> float:
    """CPU time the whole machine has spent (user, nice, system, irq; not idle, iowait, steal) since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, irq, softirq = fields[0], fields[1], fields[2], fields[5], fields[6]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def with_cpu(label: str, run) -> float:
    """Run `run()` (which returns its wall time) and print the machine's CPU time it took."""
    before = cpu_seconds()
    wall = run()
    used = cpu_seconds() - before
    print(f"  {label}: {used:.1f} CPU-s on the machine during {wall:.1f} s ({used / wall:.2f} cores busy)")
    return wall


def restore_floor(url: str, workdir: Path) -> float:
    """A bare `pg_restore` of the -Fc -Z0 archive from a file into an empty database (the
    restore session settings of the backup's own restore), timed: the part of any
    pg_restore-verified method that overlapping cannot hide."""
    archive = workdir / "floor.dump"
    subprocess.run(
        [
            "pg_dump",
            "--format=custom",
            f"--compress={backup.COMPRESS}",
            "--file",
            str(archive),
            "--dbname",
            url,
        ],
        check=True,
    )
    target = pg.new_name("restore_floor")
    target_url = pg.create_database(target)
    try:
        env = {**os.environ, "PGOPTIONS": backup.RESTORE_OPTIONS}
        start = time.monotonic()
        subprocess.run(
            ["pg_restore", "--exit-on-error", "--dbname", target_url, str(archive)], env=env, check=True
        )
        took = time.monotonic() - start
    finally:
        pg.drop_database(target)
        archive.unlink()
    print(f"bare pg_restore of the archive file into an empty database: {took:.1f} s")
    return took


def ideal_floor(url: str, workdir: Path, sessions: int) -> float:
    """The idealised lower bound described in the module docstring, timed."""
    bounds = pg.scalar(url, "SELECT array[min(id), max(id)] FROM bench.events")
    first, last = bounds
    step = (last - first) // sessions + 1
    parts = []
    with psycopg.connect(url) as conn:  # input prepared before the clock starts
        for k in range(sessions):
            part = workdir / f"events.{k}.txt"
            with (
                open(part, "wb") as out,
                conn.cursor().copy(
                    "COPY (SELECT * FROM bench.events WHERE id >= %s AND id < %s) TO STDOUT",
                    (first + k * step, first + (k + 1) * step),
                ) as copy,
            ):
                for block in copy:
                    out.write(block)
            parts.append(part)
    target = pg.new_name("ideal_floor")
    target_url = pg.create_database(target)
    archive = workdir / "ideal.dump"
    try:
        with psycopg.connect(target_url, autocommit=True) as conn:
            conn.execute(
                "CREATE UNLOGGED TABLE events (id bigint, org_id uuid NOT NULL, kind text NOT NULL, "
                "payload text NOT NULL, created_at timestamptz NOT NULL)"
            )
        start = time.monotonic()
        procs = [
            subprocess.Popen(
                ["pg_dump", "--format=custom", "--compress=0", "--file", str(archive), "--dbname", url]
            )
        ]
        procs += [
            subprocess.Popen(["psql", "-X", "-q", "-d", target_url, "-c", f"\\copy events from '{part}'"])
            for part in parts
        ]
        for proc in procs:
            if proc.wait() != 0:
                raise RuntimeError(f"{proc.args[0]} failed")
        loaded = time.monotonic()
        with psycopg.connect(target_url, autocommit=True, options="-c maintenance_work_mem=256MB") as conn:
            conn.execute("ALTER TABLE events ADD PRIMARY KEY (id)")
        took = time.monotonic() - start
    finally:
        pg.drop_database(target)
        archive.unlink(missing_ok=True)
        for part in parts:
            part.unlink()
    print(
        f"idealised lower bound (dump to a file || {sessions} COPY sessions into an UNLOGGED table from pre-split "
        f"files, then its primary key; no pg_restore, no verification): load {loaded - start:.1f} s + "
        f"key {took - (loaded - start):.1f} s = {took:.1f} s"
    )
    return took


def compare_methods(url: str, workdir: Path, repeat: int, variants: bool, ideal: int = 0) -> None:
    """Both methods `repeat` times, interleaved, so drifting load hits both alike."""
    theirs, ours = [], []
    for _ in range(repeat):
        theirs.append(with_cpu("report's method", lambda: report_method(url, workdir)))
        ours.append(with_cpu("preflight", lambda: preflight_method(url, workdir)))
    print(f"report's method: min {min(theirs):.1f} s, median {statistics.median(theirs):.1f} s")
    print(
        f"preflight backup + verified restore: min {min(ours):.1f} s, median {statistics.median(ours):.1f} s"
    )
    print(
        f"ratio preflight / report: {min(ours) / min(theirs):.2f} (min/min), "
        f"{statistics.median(ours) / statistics.median(theirs):.2f} (median/median); target ≤ 0.70"
    )
    floor = restore_floor(url, workdir)
    print(
        f"  lowest ratio a pg_restore-verified backup can reach here (bare restore / report's best): "
        f"{floor / min(theirs):.2f}; preflight spends {min(ours) - floor:.1f} s beyond the bare restore"
    )
    if ideal:
        bound = ideal_floor(url, workdir, ideal)
        print(f"  ratio of the idealised lower bound to the report's best: {bound / min(theirs):.2f}")
    if variants:
        for compress, overlap in ((1, True), (6, True), (backup.COMPRESS, False)):
            t = preflight_method(url, workdir, compress, overlap)
            print(f"  ratio to the report's best: {t / min(theirs):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--demo-runs", type=int, default=3)
    parser.add_argument(
        "--repeat", type=int, default=2, help="interleaved runs of each method on the big database"
    )
    parser.add_argument("--variants", action="store_true", help="also time other -Z levels and no overlap")
    parser.add_argument(
        "--ideal",
        type=int,
        default=0,
        metavar="SESSIONS",
        help="also time the idealised lower bound with this many COPY sessions (e.g. 2)",
    )
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument(
        "--database-url", default=None, help="an already generated big database to reuse (kept)"
    )
    parser.add_argument(
        "--server", default=None, help="PostgreSQL server URL (default MIGRATE_TEST_PG or local)"
    )
    args = parser.parse_args()
    if args.server:
        os.environ["MIGRATE_TEST_PG"] = args.server
        pg.SERVER_URL = args.server
    print(f"{os.cpu_count()} CPUs; PostgreSQL at {pg.SERVER_URL}; {load()}")
    with tempfile.TemporaryDirectory(prefix="bench_preflight_") as tmp:
        workdir = Path(tmp)
        demo_wall_time(workdir, args.demo_runs)
        if args.database_url:
            compare_methods(args.database_url, workdir, args.repeat, args.variants, args.ideal)
        elif not args.skip_big:
            name, url = generate(args.size_mb)
            try:
                compare_methods(url, workdir, args.repeat, args.variants, args.ideal)
            finally:
                pg.drop_database(name)
    print(f"done; {load()}")


if __name__ == "__main__":
    main()
