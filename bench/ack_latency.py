"""Ack latency of `/migrate` under 50 concurrent signed slash commands, and the bot's memory.

Starts `python -m bot serve` as a subprocess against the Slack stand-in (tests/support), the
local Redis (own key prefix, deleted afterwards) and a scratch PostgreSQL database (dropped
afterwards); sends 50 concurrent signed `/migrate help` / `status` commands and prints the
p50/p99 time until the bot answered HTTP 200 (target p99 ≤ 100 ms; Slack allows 3 s), how
many replies reached the response_url, and the bot's resident memory (VmRSS). Then the same
bursts with an unsigned 1 MB body sent among them (text that made redaction quadratic): the
signed acks' p99 beside it and the time until the unsigned body is refused (targets ≤ 100 ms).

    .venv/bin/python bench/ack_latency.py [--concurrency 50] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import pg  # noqa: E402
from tests.support.slack_standin import SlackSender, SlackStandIn  # noqa: E402

SECRET = "bench-signing-secret-0123456789"
REDIS_URL = os.environ.get("MIGRATE_TEST_REDIS", "redis://127.0.0.1:6379/0")
USERS = ["U0RAFAEL", "U0DYLAN", "U0LIU", "U0SERGEI", "U0YASMIN"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the bot exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the bot did not become healthy")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def one(sender: SlackSender, i: int) -> float:
    text = "help" if i % 2 else "status"
    start = time.perf_counter()
    reply = sender.slash(USERS[i % len(USERS)], text)
    took = time.perf_counter() - start
    if reply.status != 200:
        raise SystemExit(f"request {i} answered {reply.status}")
    return took


def unsigned_megabyte(url: str) -> tuple[int, float]:
    """POST a 1 MB body with a bad signature, made of the text that made redaction quadratic
    (`a://u:` repeated, no `@`); (status, seconds until the answer)."""
    body = ("command=%2Fmigrate&text=" + "a://u:" * 200_000)[:1_000_000].encode()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Signature": "v0=" + "0" * 64,
        "X-Slack-Request-Timestamp": str(int(time.time())),
    }
    request = urllib.request.Request(url + "/slack/events", data=body, headers=headers, method="POST")
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            status = resp.status
    except urllib.error.HTTPError as err:
        status = err.code
    return status, time.perf_counter() - start


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    db_name, prefix, port = pg.new_name("bench"), f"bench:{uuid.uuid4().hex[:10]}", free_port()
    database_url = pg.create_database(db_name)
    with SlackStandIn() as standin:
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": REDIS_URL,
            "PORT": str(port),
            "SLACK_BOT_TOKEN": "xoxb-bench-token",
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": standin.base_url,
            "MIGRATE_CHANNEL": "C0BENCH",
            "MIGRATE_REDIS_PREFIX": prefix,
            "MIGRATE_ROSTER": str(ROOT / "roster.toml"),
        }
        env.pop("SLACK_APP_TOKEN", None)
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_healthy(url, proc)
            sender = SlackSender(url, SECRET, standin)
            rss_idle = rss_kib(proc.pid)
            with ThreadPoolExecutor(args.concurrency) as pool:
                list(pool.map(lambda i: one(sender, i), range(10)))  # warm-up
                latencies: list[float] = []
                for _ in range(args.rounds):
                    latencies += pool.map(lambda i: one(sender, i), range(args.concurrency))
                # The same bursts again, each with an unsigned 1 MB body sent among the signed commands.
                beside: list[float] = []
                unsigned: list[tuple[int, float]] = []
                with ThreadPoolExecutor(1) as side:
                    for _ in range(args.rounds):
                        pending = side.submit(unsigned_megabyte, url)
                        beside += pool.map(lambda i: one(sender, i), range(args.concurrency))
                        unsigned.append(pending.result())
            sent = 10 + 2 * args.rounds * args.concurrency
            standin.wait_for(lambda c: c.method == "response_url", count=sent, timeout=60)
            ms = [t * 1000 for t in latencies]
            print(
                f"{len(ms)} acks ({args.rounds} rounds of {args.concurrency} concurrent signed /migrate help|status)"
            )
            print(
                f"ack latency: p50 {statistics.median(ms):.1f} ms  p99 {percentile(ms, 0.99):.1f} ms  "
                f"max {max(ms):.1f} ms  (target p99 <= 100 ms)"
            )
            ms_beside = [t * 1000 for t in beside]
            print(
                f"with an unsigned 1 MB body sent during each burst: signed ack p50 {statistics.median(ms_beside):.1f} ms  "
                f"p99 {percentile(ms_beside, 0.99):.1f} ms  max {max(ms_beside):.1f} ms  (target p99 <= 100 ms; "
                f"{percentile(ms_beside, 0.99) / percentile(ms, 0.99):.2f} x the p99 without it)"
            )
            print(
                f"the unsigned 1 MB body: answered {sorted({s for s, _ in unsigned})} in "
                f"{', '.join(f'{t * 1000:.1f}' for _, t in unsigned)} ms  (target <= 100 ms, status 401)"
            )
            print(
                f"replies delivered to response_url: {len([c for c in standin.calls if c.method == 'response_url'])}/{sent}"
            )
            print(
                f"bot resident memory: {rss_idle / 1024:.1f} MiB idle, {rss_kib(proc.pid) / 1024:.1f} MiB after the burst"
            )
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
            client = redis.Redis.from_url(REDIS_URL)
            keys = list(client.scan_iter(match=f"{prefix}*", count=500))
            if keys:
                client.delete(*keys)
            pg.drop_database(db_name)


if __name__ == "__main__":
    main()
