"""What a migration waiting for a lock does to production traffic: executor vs plain psql.

pgbench clients run SELECT/INSERT traffic on platform-like tables in a scratch database.
A long-running transaction (a report, say) holds ACCESS SHARE on platform.projects for
--hold seconds. Meanwhile an RLS migration (ENABLE ROW LEVEL SECURITY + policies, the shape
of phase 2) is applied once by the executor (lock_timeout, retries with back-off) and once
by plain `psql -f` (no lock_timeout: its ALTER TABLE waits in the lock queue, and every
client queues behind it). A third run without migration is the reference. Prints the
worst latency any client saw and the throughput of each run.

    .venv/bin/python bench/lock_stall.py [--hold 30] [--clients 4] [--lock-timeout 2]

`--case index`: the same traffic while the bot builds an index on the busy, pre-filled
platform.audit_logs (--rows) — once with CREATE INDEX CONCURRENTLY (the executor's concurrent
level: it waits for older transactions, writes go on), once with the same CREATE INDEX without
CONCURRENTLY (SHARE lock: every INSERT waits for the whole build).

    .venv/bin/python bench/lock_stall.py --case index [--rows 2000000] [--clients 4]
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402
from psycopg import sql as pgsql  # noqa: E402
from psycopg.conninfo import conninfo_to_dict, make_conninfo  # noqa: E402

from engine.executor import Executor  # noqa: E402
from runbook.model import Defaults  # noqa: E402
from runbook.safety import CONCURRENT, LevelTimeouts, LockTimeouts  # noqa: E402

SERVER = os.environ.get("MIGRATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
TABLES = ("organizations", "projects", "audit_logs")
WARMUP = 1.0  # seconds of traffic before anything happens; left out of every run's figures

SCHEMA = """
CREATE SCHEMA platform;
CREATE TABLE platform.organizations (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE platform.projects (id int PRIMARY KEY, organization_id int NOT NULL REFERENCES platform.organizations,
                                name text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE platform.audit_logs (id bigserial PRIMARY KEY, project_id int NOT NULL REFERENCES platform.projects,
                                  action text NOT NULL, at timestamptz NOT NULL DEFAULT now());
INSERT INTO platform.organizations SELECT g, 'org ' || g FROM generate_series(1, 100) g;
INSERT INTO platform.projects SELECT g, 1 + g % 100, 'project ' || g FROM generate_series(1, 1000) g;
"""

TRAFFIC = """\\set id random(1, 1000)
SELECT p.name, o.name FROM platform.projects p JOIN platform.organizations o ON o.id = p.organization_id WHERE p.id = :id;
INSERT INTO platform.audit_logs (project_id, action) VALUES (:id, 'view');
"""


INDEX_SQL = "CREATE INDEX {concurrently}audit_logs_project_at_idx ON platform.audit_logs (project_id, at);\n"
FILL = """INSERT INTO platform.audit_logs (project_id, action, at)
SELECT 1 + g %% 1000, 'view', now() - g * interval '1 second' FROM generate_series(1, %s) g"""


def migration_sql() -> str:
    """Phase 2's shape: RLS on each table, a permissive SELECT and INSERT policy each."""
    out = []
    for t in TABLES:
        out += [
            f"ALTER TABLE platform.{t} ENABLE ROW LEVEL SECURITY;",
            f"CREATE POLICY {t}_select ON platform.{t} FOR SELECT USING (true);",
            f"CREATE POLICY {t}_insert ON platform.{t} FOR INSERT WITH CHECK (true);",
        ]
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ databases


def dsn_for(name: str) -> str:
    params = conninfo_to_dict(SERVER)
    params["dbname"] = name
    return make_conninfo(**params)


def admin(statement: pgsql.Composable) -> None:
    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(statement)


def create_db(template: str | None = None) -> str:
    name = f"bench_{uuid.uuid4().hex[:10]}"
    stmt = pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name))
    if template:
        stmt = pgsql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            pgsql.Identifier(name), pgsql.Identifier(template)
        )
    admin(stmt)
    return name


def drop_db(name: str) -> None:
    admin(pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(name)))


# ------------------------------------------------------------------ one run


def hold_lock(dsn: str, seconds: float, ready: threading.Event) -> None:
    """A long report: ACCESS SHARE on platform.projects for `seconds` (blocks DDL, not DML)."""
    with psycopg.connect(dsn) as conn:
        conn.execute("SELECT count(*) FROM platform.projects")
        ready.set()
        time.sleep(seconds)
        conn.rollback()


def apply_migration(mode: str, dsn: str, path: Path, args, report: dict) -> None:
    start = time.monotonic()
    if mode in ("concurrent", "plain"):
        levels = LockTimeouts(
            {CONCURRENT: LevelTimeouts(lock_timeout=600.0, lock_retries=0, statement_timeout=3600.0)}
        )
        result = Executor(dsn).run_file(
            path,
            lock_timeout=args.lock_timeout,
            lock_retries=args.lock_retries,
            retry_backoff=args.retry_backoff,
            statement_timeout=3600.0,
            by_level=levels,
        )
        report["outcome"] = "built" if result.ok else f"failed: {result.error.message}"
        report["attempts"] = result.attempts
    elif mode == "executor":
        d = Defaults()
        result = Executor(dsn).run_file(
            path,
            lock_timeout=args.lock_timeout,
            lock_retries=args.lock_retries,
            retry_backoff=args.retry_backoff,
            statement_timeout=d.statement_timeout,
        )
        report["outcome"] = (
            "applied" if result.ok else f"refused after {result.attempts} attempts: {result.error.message}"
        )
        report["attempts"] = result.attempts
        report["blocker"] = result.blockers[0].describe() if result.blockers else "-"
    else:
        done = subprocess.run(
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(path), "-d", dsn],
            capture_output=True,
            text=True,
        )
        report["outcome"] = "applied" if done.returncode == 0 else f"failed: {done.stderr.strip()[:120]}"
    report["took"] = time.monotonic() - start


def run(mode: str, template: str, args, tmp: Path) -> dict:
    name = create_db(template)
    dsn = dsn_for(name)
    report: dict = {"mode": mode}
    try:
        logdir = tmp / f"{mode}-{uuid.uuid4().hex[:6]}"
        logdir.mkdir()
        script = tmp / "traffic.sql"
        duration = int(args.hold + args.margin)
        started = time.time()
        # Output to a file, not a pipe: an unread pipe that fills up stalls pgbench itself.
        output = open(logdir / "pgbench.out", "w+")
        pgbench = subprocess.Popen(
            [
                "pgbench",
                "-n",
                "-c",
                str(args.clients),
                "-j",
                "2",
                "-T",
                str(duration),
                "-f",
                str(script),
                "--log",
                f"--log-prefix={logdir}/pb",
                "-d",
                dsn,
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )
        workers = []
        if mode in ("concurrent", "plain"):
            time.sleep(WARMUP)
            workers.append(
                threading.Thread(target=apply_migration, args=(mode, dsn, tmp / f"{mode}.sql", args, report))
            )
            workers[-1].start()
        elif mode != "none":
            time.sleep(WARMUP)  # traffic warmed up
            ready = threading.Event()
            workers.append(threading.Thread(target=hold_lock, args=(dsn, args.hold, ready)))
            workers[-1].start()
            ready.wait()
            time.sleep(0.5)
            workers.append(
                threading.Thread(
                    target=apply_migration, args=(mode, dsn, tmp / "migration.sql", args, report)
                )
            )
            workers[-1].start()
        pgbench.wait()
        output.seek(0)
        err = output.read()
        output.close()
        report["pgbench_errors"] = sorted(
            {l.split("ERROR:")[-1].strip() for l in err.splitlines() if "ERROR" in l}
        )[:3]
        for w in workers:
            w.join()
        if pgbench.returncode != 0:
            raise SystemExit(f"pgbench failed: {err[-500:]}")
        report.update(latencies(logdir, started + WARMUP, duration - WARMUP))
        return report
    finally:
        drop_db(name)


def latencies(logdir: Path, since: float, duration: float) -> dict:
    """Worst latency and throughput from pgbench's per-transaction logs (3rd field: latency
    in µs; 5th and 6th: when it ended), counting transactions that ended after `since`."""
    worst, count, failed = 0, 0, 0
    for path in glob.glob(f"{logdir}/pb.*"):
        for line in open(path):
            fields = line.split()
            if int(fields[4]) + int(fields[5]) / 1e6 < since:
                continue
            if not fields[2].isdigit():  # "failed" (e.g. a deadlock) or "skipped"
                failed += 1
                continue
            worst = max(worst, int(fields[2]))
            count += 1
    return {"worst_ms": worst / 1000, "tps": count / duration, "transactions": count, "failed": failed}


# ------------------------------------------------------------------ main


def main() -> None:
    d = Defaults()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--hold", type=float, default=30.0, help="seconds the blocking transaction holds its lock"
    )
    parser.add_argument("--margin", type=float, default=6.0, help="seconds of traffic after the hold")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--lock-timeout", type=float, default=d.lock_timeout)
    parser.add_argument("--lock-retries", type=int, default=d.lock_retries)
    parser.add_argument("--retry-backoff", type=float, default=d.retry_backoff)
    parser.add_argument("--case", choices=("lock", "index"), default="lock")
    parser.add_argument(
        "--rows", type=int, default=2_000_000, help="--case index: rows in platform.audit_logs"
    )
    args = parser.parse_args()
    if args.case == "index":
        return index_case(args)
    template = create_db()
    try:
        with psycopg.connect(dsn_for(template), autocommit=True) as conn:
            conn.execute(SCHEMA)
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            (tmp / "traffic.sql").write_text(TRAFFIC)
            (tmp / "migration.sql").write_text(migration_sql())
            # The reference runs first and last: on a shared machine, their mean is the fairer baseline.
            reports = [run(mode, template, args, tmp) for mode in ("none", "executor", "psql", "none")]
    finally:
        drop_db(template)
    show(reports, args)


def index_case(args) -> None:
    """pgbench while the bot builds an index on the busy table: CONCURRENTLY vs plain."""
    template = create_db()
    try:
        with psycopg.connect(dsn_for(template), autocommit=True) as conn:
            conn.execute(SCHEMA)
            conn.execute(FILL % int(args.rows))
            conn.execute("VACUUM ANALYZE platform.audit_logs")
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            (tmp / "traffic.sql").write_text(TRAFFIC)
            (tmp / "concurrent.sql").write_text(INDEX_SQL.format(concurrently="CONCURRENTLY "))
            (tmp / "plain.sql").write_text(INDEX_SQL.format(concurrently=""))
            reports = [run(mode, template, args, tmp) for mode in ("none", "concurrent", "plain", "none")]
    finally:
        drop_db(template)
    refs = [r for r in reports if r["mode"] == "none"]
    base = sum(r["tps"] for r in refs) / len(refs)
    print(
        f"pgbench: {args.clients} clients, {args.hold + args.margin:.0f} s each run; the bot builds an index on "
        f"platform.audit_logs ({args.rows:,} rows, INSERTed into by every client transaction)"
    )
    for r in reports:
        line = (
            f"  {r['mode']:<10} worst latency {r['worst_ms']:9.1f} ms   throughput {r['tps']:8.1f} tps "
            f"({r['tps'] / base * 100 if base else 0:5.1f}% of no-migration)"
        )
        if r["mode"] != "none":
            line += f"   index: {r['outcome']} in {r['took']:.1f} s"
        print(line)
    conc, plain = (next(r for r in reports if r["mode"] == m) for m in ("concurrent", "plain"))
    if conc["worst_ms"]:
        print(f"worst latency plain / concurrent: {plain['worst_ms'] / conc['worst_ms']:.1f}x")


def show(reports: list[dict], args) -> None:
    refs = [r for r in reports if r["mode"] == "none"]
    base = {"tps": sum(r["tps"] for r in refs) / len(refs)}
    print(
        f"pgbench: {args.clients} clients, {args.hold + args.margin:.0f} s each run (first {WARMUP:.0f} s warm-up "
        f"not counted); blocker holds ACCESS SHARE "
        f"on platform.projects for {args.hold:.0f} s; executor lock_timeout {args.lock_timeout:.1f} s, "
        f"{args.lock_retries} retries, back-off {args.retry_backoff:.1f} s doubling"
    )
    for r in reports:
        rel = r["tps"] / base["tps"] * 100 if base["tps"] else 0
        line = f"  {r['mode']:<9} worst latency {r['worst_ms']:9.1f} ms   throughput {r['tps']:8.1f} tps ({rel:5.1f}% of no-migration)"
        if r["mode"] != "none":
            line += f"   migration: {r['outcome']} in {r['took']:.1f} s"
        print(line)
        if r["failed"]:
            print(f"            {r['failed']} client transactions failed: {'; '.join(r['pgbench_errors'])}")
        if r.get("blocker"):
            print(f"            blocker reported: {r['blocker']}")
    spread = (
        (max(r["tps"] for r in refs) - min(r["tps"] for r in refs)) / base["tps"] * 100 if base["tps"] else 0
    )
    if spread > 10:
        print(
            f"note: the two no-migration runs differ by {spread:.0f}%: the machine is busy, throughput "
            "comparisons are within that noise"
        )
    ex = next(r for r in reports if r["mode"] == "executor")
    limit = args.lock_timeout * 1000 + 100
    print(
        f"executor worst latency ≤ lock_timeout + 100 ms ({limit:.0f} ms): {'yes' if ex['worst_ms'] <= limit else 'no'}; "
        f"throughput within 5% of no-migration: {'yes' if ex['tps'] >= 0.95 * base['tps'] else 'no'}"
    )


if __name__ == "__main__":
    main()
