"""Executor vs `psql -1 -f`: the same generated 5,000-statement migration, each run on a
fresh scratch database, several repetitions; prints median wall times and the ratio.

    .venv/bin/python bench/executor_vs_psql.py [--statements 5000] [--reps 5] [--server URL]

Target: ratio ≤ 1.00 (the executor, pipelined, as fast as psql or faster).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402
from psycopg import sql as pgsql  # noqa: E402
from psycopg.conninfo import conninfo_to_dict, make_conninfo  # noqa: E402

from engine.executor import Executor  # noqa: E402

SERVER = os.environ.get("MIGRATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
PER_TABLE = 20  # statements generated per table


def generate(statements: int) -> str:
    """CREATE TABLE, INSERTs, ALTERs, COMMENTs and an index per table: a DDL-heavy migration."""
    out = []
    for t in range(statements // PER_TABLE):
        name = f"bench.t{t:05d}"
        out.append(
            f"CREATE TABLE {name} (id bigint PRIMARY KEY, name text NOT NULL, created_at timestamptz DEFAULT now())"
        )
        out += [f"INSERT INTO {name} (id, name) VALUES ({i}, 'row {i} of table {t}')" for i in range(14)]
        out.append(f"ALTER TABLE {name} ADD COLUMN status text DEFAULT 'active'")
        out.append(f"ALTER TABLE {name} ALTER COLUMN name SET DEFAULT ''")
        out.append(f"COMMENT ON TABLE {name} IS 'generated table {t}'")
        out.append(f"COMMENT ON COLUMN {name}.status IS 'lifecycle'")
        out.append(f"CREATE INDEX ON {name} (status)")
    return "CREATE SCHEMA bench;\n" + ";\n".join(out) + ";\n"


def create_db(server: str) -> tuple[str, str]:
    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name)))
    params = conninfo_to_dict(server)
    params["dbname"] = name
    return name, make_conninfo(**params)


def drop_db(server: str, name: str) -> None:
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(name)))


def time_executor(dsn: str, path: Path) -> float:
    start = time.perf_counter()
    result = Executor(dsn).run_file(path)
    elapsed = time.perf_counter() - start
    if not result.ok:
        raise SystemExit(f"executor failed: {result.error}")
    return elapsed


def time_psql(dsn: str, path: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        ["psql", "-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", "-f", str(path), "-d", dsn],
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"psql failed: {done.stderr[-500:]}")
    return elapsed


def one_run(server: str, path: Path, runner) -> float:
    name, dsn = create_db(server)
    try:
        return runner(dsn, path)
    finally:
        drop_db(server, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--statements", type=int, default=5000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument(
        "--server", default=SERVER, help="URL of a database on the server (scratch dbs are made there)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "generated_migration.sql"
        path.write_text(generate(args.statements))
        times: dict[str, list[float]] = {"executor": [], "psql -1 -f": []}
        for rep in range(args.reps):  # alternate, so drift on a shared machine hits both alike
            order = [("executor", time_executor), ("psql -1 -f", time_psql)]
            for label, runner in order if rep % 2 == 0 else order[::-1]:
                times[label].append(one_run(args.server, path, runner))
    n = args.statements // PER_TABLE * PER_TABLE + 1
    print(f"{n} statements, {args.reps} repetitions, fresh database each run")
    for label, values in times.items():
        print(
            f"  {label:<12} median {statistics.median(values):.3f} s   runs: "
            + " ".join(f"{v:.3f}" for v in values)
        )
    ex, ps = times["executor"], times["psql -1 -f"]
    ratio = statistics.median(ex) / statistics.median(ps)
    print(f"ratio executor / psql = {ratio:.2f} (medians; target ≤ 1.00)")
    # On a shared machine the load drifts: each repetition's pair ran back to back, so the
    # median of the paired ratios and the ratio of the best runs are steadier figures.
    paired = statistics.median(e / p for e, p in zip(ex, ps))
    print(
        f"  median of paired ratios {paired:.2f}; best runs {min(ex):.3f} s vs {min(ps):.3f} s = {min(ex) / min(ps):.2f}"
    )


if __name__ == "__main__":
    main()
