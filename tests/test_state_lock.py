"""The run lock on the real Redis: one holder, heartbeat, expiry of a dead holder's lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis as redis_lib
from redis.backoff import NoBackoff
from redis.retry import Retry

from state.lock import LockHandle, RunLock
from state.machine import PhaseStatus as P
from state.machine import Status as S
from tests.conftest import REDIS_URL
from tests.support.state import TARGET, new_store
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
TTL = 1.0


@pytest.fixture
def store(redis_client, redis_prefix):
    return new_store(redis_client, redis_prefix)


@pytest.fixture
def lock(redis_client, store):
    return RunLock(redis_client, store.keys, ttl=TTL)


def child(prefix: str, mode: str, ttl: float = TTL) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.lock_holder", REDIS_URL, prefix, TARGET, str(ttl), mode],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_concurrent_acquires_in_threads_give_exactly_one_handle(lock):
    barrier = threading.Barrier(8)
    handles = []

    def take(i: int) -> None:
        barrier.wait()
        handles.append(lock.acquire(f"thread-{i}"))

    threads = [threading.Thread(target=take, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [h for h in handles if h is not None]
    assert len(winners) == 1
    assert lock.holder()["owner"] == winners[0].owner
    assert "token" not in lock.holder()


def test_concurrent_acquires_in_two_processes_give_exactly_one_handle(lock, redis_client, redis_prefix):
    # The race is about who gets the lock, not its expiry: a TTL long enough that the winner's
    # lock is still there when both children have exited, however slowly a loaded machine runs them.
    procs = [child(redis_prefix, "race", ttl=60), child(redis_prefix, "race", ttl=60)]
    gate = lock.key + ":test-gate"
    # both children block on the gate; releasing it lets them race for the lock
    assert wait_until(lambda: _waiting_at_gate(redis_client, redis_prefix) == 2)
    redis_client.rpush(gate, "go", "go")
    outputs = sorted(p.communicate(timeout=30)[0].strip() for p in procs)
    assert outputs == ["acquired", "refused"]
    assert lock.held()


def _waiting_at_gate(redis_client, prefix: str) -> int:
    return sum(
        1
        for c in redis_client.client_list()
        if c.get("name") == f"lock-race-{prefix}" and c.get("cmd") == "blpop"
    )


def test_a_released_lock_can_be_taken_again(lock):
    first = lock.acquire("a")
    assert lock.acquire("b") is None
    assert first.release() is True
    assert lock.acquire("b") is not None


@pytest.mark.alone  # a sub-second TTL kept alive by a heartbeat thread: tests/support/alone.py
def test_heartbeat_keeps_the_lock_past_its_ttl(lock):
    handle = lock.acquire("worker")
    handle.start_heartbeat()
    try:
        time.sleep(TTL * 2.5)  # more than two TTLs without any renewal but the heartbeat's
        assert lock.held() and lock.holder()["owner"] == "worker"
        assert not handle.lost.is_set()
    finally:
        handle.release()
    assert not lock.held()


def test_a_lock_taken_over_is_neither_released_nor_renewed_by_the_old_owner(lock, redis_client):
    old = lock.acquire("old")
    redis_client.delete(lock.key)  # as if it had expired
    new = lock.acquire("new")
    assert old.release() is False and old.renew() is False
    assert lock.holder()["owner"] == "new"
    old.start_heartbeat(interval=0.01)
    assert old.lost.wait(5)  # the heartbeat notices that the lock is no longer ours
    assert lock.holder()["owner"] == "new"
    assert new.release() is True


def test_a_killed_holder_s_lock_expires_and_its_run_is_interrupted(lock, store, redis_prefix):
    run = store.create("U0RAFAEL", "006", phases=[1, 2], verification=[3])
    store.transition(run.id, S.GO, actor="bot", action="preflight", fields={"preflight": {"outcome": "GO"}})
    store.transition(
        run.id, S.APPROVED, actor="U0DYLAN", action="approve", fields={"approval": {"by": "U0DYLAN"}}
    )
    store.transition(run.id, S.RUNNING, actor="U0LIU", action="run phase 1", phase=1)
    holder = child(redis_prefix, "hold")
    try:
        assert holder.stdout.readline().strip() == "acquired"
        assert store.detect_interrupted(lock) is None  # a live owner: nothing to report
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
        assert wait_until(lambda: not lock.held())  # nobody renews it: it expires after the TTL
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    interrupted = store.detect_interrupted(lock)
    assert interrupted is not None and interrupted.status is S.INTERRUPTED
    assert interrupted.phases[1].status is P.FAILED and interrupted.phases[1].error == "interrupted"
    assert store.current().status is S.INTERRUPTED
    assert store.detect_interrupted(lock) is None  # reported once; nothing resumed
    store.transition(run.id, S.RUNNING, actor="U0LIU", action="run phase 1", phase=1)  # the owner decides


def test_an_active_run_is_not_interrupted_while_the_lock_is_held(lock, store):
    run = store.create("U0RAFAEL", "006")
    handle = lock.acquire("preflight")
    assert store.detect_interrupted(lock) is None
    handle.release()
    assert store.detect_interrupted(lock).id == run.id


@pytest.mark.alone  # a sub-second TTL kept alive by a heartbeat thread: tests/support/alone.py
def test_the_heartbeat_renews_every_third_of_the_ttl_and_keeps_the_key_alive(redis_client, store):
    lock = RunLock(redis_client, store.keys, ttl=0.6)
    handle = lock.acquire("worker")
    handle.start_heartbeat()
    try:
        assert handle._renewal.every == pytest.approx(0.2) and handle._renewal.give_up_after == 0.6
        handle.start_heartbeat()  # a second start keeps the one heartbeat
        lowest = 600
        for _ in range(60):  # ~1.2 s, two TTLs
            time.sleep(0.02)
            lowest = min(lowest, redis_client.pttl(lock.key))
        assert lowest > 0 and not handle.lost.is_set()
    finally:
        handle.release()
    assert not lock.held() and handle._renewal is None


def test_a_lock_whose_redis_is_unreachable_is_lost_after_its_ttl_not_before(store, caplog):
    unreachable = redis_lib.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )
    lock = RunLock(unreachable, store.keys, ttl=0.6)
    handle = LockHandle(lock, "token", "worker")  # as if acquired before Redis went away
    started = time.monotonic()
    handle.start_heartbeat()
    try:
        assert not handle.lost.wait(0.45)  # renewals fail from the first beat, but the TTL has not run out
        assert handle.lost.wait(10)
        assert time.monotonic() - started >= 0.6
    finally:
        handle.stop_heartbeat()
    assert "could not be renewed within its TTL" in caplog.text and "worker" in caplog.text
