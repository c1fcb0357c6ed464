"""The owned-key helper (state/owned.py) on the real Redis: only the owner extends or deletes,
TTLs in seconds become milliseconds, and a renewal that finds the key gone tells the work."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import redis as redis_lib
from redis.backoff import NoBackoff
from redis.retry import Retry

from core import clock
from state.owned import OwnedKey, Renewal, ttl_ms
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def key(redis_prefix):
    return f"{redis_prefix}:owned"


def test_a_non_owner_can_neither_delete_nor_extend_the_key(redis_client, key):
    mine, theirs = OwnedKey(redis_client, key, "mine"), OwnedKey(redis_client, key, "theirs")
    assert mine.claim(10) and not theirs.claim(10)
    before = redis_client.pttl(key)
    assert theirs.delete() is False and theirs.extend(60) is False
    assert redis_client.get(key) == b"mine" and redis_client.pttl(key) <= before
    assert mine.delete() is True and redis_client.get(key) is None
    assert mine.delete() is False  # gone: nothing to delete


def test_a_json_value_is_owned_through_its_token_field(redis_client, key):
    value = json.dumps({"token": "t-1", "owner": "run by U0LIU"})
    owner, other = (
        OwnedKey(redis_client, key, "t-1", field="token"),
        OwnedKey(redis_client, key, "t-2", field="token"),
    )
    assert owner.claim(10, value)
    assert other.extend(60) is False and other.delete() is False
    assert redis_client.get(key) == value.encode()
    assert owner.extend(60) is True and redis_client.pttl(key) > 10_000
    redis_client.set(key, "not json", px=10_000)  # someone else's value: no script error, just not ours
    assert owner.extend(60) is False and owner.delete() is False
    with pytest.raises(ValueError):
        owner.take_or_extend(10)


@pytest.mark.alone  # a sub-second TTL kept alive by a heartbeat thread: tests/support/alone.py
def test_ttls_are_seconds_written_as_milliseconds(redis_client, key):
    owned = OwnedKey(redis_client, key, "me")
    assert owned.claim(1.5)
    assert 1000 < redis_client.pttl(key) <= 1500  # 1.5 s, not rounded to 1 or 2 s
    assert owned.extend(0.25) and 0 < redis_client.pttl(key) <= 250
    assert owned.extend(20) and 15_000 < redis_client.pttl(key) <= 20_000
    assert ttl_ms(15) == 15_000 and ttl_ms(0.0001) == 1  # never 0 (PEXPIRE 0 deletes)


def test_take_or_extend_takes_a_free_key_extends_our_own_and_leaves_another_s(redis_client, key):
    mine, theirs = OwnedKey(redis_client, key, "mine"), OwnedKey(redis_client, key, "theirs")
    assert mine.take_or_extend(1) and redis_client.get(key) == b"mine"
    assert mine.take_or_extend(30) and redis_client.pttl(key) > 20_000
    assert theirs.take_or_extend(60) is False
    assert redis_client.get(key) == b"mine" and redis_client.pttl(key) <= 30_000


@pytest.mark.alone  # a sub-second TTL kept alive by a heartbeat thread: tests/support/alone.py
def test_a_renewal_keeps_the_key_past_its_ttl(redis_client, key):
    owned = OwnedKey(redis_client, key, "me")
    assert owned.claim(0.6)
    with owned.renewal(0.6) as renewal:
        threading.Event().wait(1.5)  # more than two TTLs with only the renewal extending it
        assert redis_client.get(key) == b"me" and not renewal.lost.is_set()
    assert owned.delete()


def test_ownership_lost_stops_the_renewal_and_tells_the_work(redis_client, key):
    owned = OwnedKey(redis_client, key, "me")
    assert owned.claim(5)
    told: list[Exception | None] = []
    renewal = owned.renewal(5, every=0.05, on_lost=told.append).start()
    redis_client.set(key, "new owner", px=2_000)  # as if ours had expired and been taken
    # the work checks `lost` between its steps and stops there
    steps = 0
    while not renewal.lost.wait(0.01):
        steps += 1
        assert steps < 1000, "the work was never told"
    assert told == [None]
    wait_until(lambda: not renewal._thread.is_alive(), timeout=5, what="the renewal thread to end")
    assert redis_client.get(key) == b"new owner" and redis_client.pttl(key) <= 2_000  # never extended by us
    renewal.stop()


def _unreachable() -> redis_lib.Redis:
    """A client whose server is not there (nothing listens on port 1); no client-side retries,
    so each renewal attempt fails at once and the renewal's own retrying is what is tested."""
    return redis_lib.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))


def test_redis_unreachable_longer_than_the_ttl_counts_as_lost(key):
    owned = OwnedKey(_unreachable(), key, "me")
    errors: list[Exception] = []
    told: list[Exception | None] = []
    renewal = owned.renewal(0.3, every=0.05, give_up_after=0.3, on_lost=told.append, on_error=errors.append)
    with renewal:
        assert renewal.lost.wait(10)
    assert errors and all(isinstance(e, redis_lib.ConnectionError) for e in errors)  # retried first
    assert len(told) == 1 and isinstance(told[0], redis_lib.ConnectionError)


def test_without_give_up_a_redis_error_is_reported_and_retried_not_lost(key):
    errors: list[Exception] = []
    renewal = OwnedKey(_unreachable(), key, "me").renewal(0.3, every=0.05, on_error=errors.append)
    with renewal:
        wait_until(lambda: len(errors) >= 3, timeout=10, what="three failed renewals")
        assert not renewal.lost.is_set()


@pytest.mark.alone  # a sub-second TTL kept alive by a heartbeat thread: tests/support/alone.py
def test_a_renewal_extends_every_third_of_the_ttl_by_default(redis_client, key):
    owned = OwnedKey(redis_client, key, "me")
    assert owned.renewal(0.6).every == pytest.approx(0.2)
    assert owned.renewal(lambda: 1.5).every == pytest.approx(0.5)  # a callable TTL is read at each beat
    assert owned.renewal(0.6, every=0.05).every == 0.05
    assert owned.claim(0.6)
    lowest = 600
    with owned.renewal(0.6) as renewal:
        for _ in range(60):  # ~1.2 s, two TTLs: the key never comes near expiring
            threading.Event().wait(0.02)
            lowest = min(lowest, redis_client.pttl(key))
        assert not renewal.lost.is_set()
    assert lowest > 0  # never gone (PTTL -2); generous: one beat late on a loaded machine is still fine
    assert owned.delete()


def test_redis_unreachable_is_lost_only_once_the_give_up_time_has_passed(key):
    owned = OwnedKey(_unreachable(), key, "me")
    renewal = owned.renewal(0.6, every=0.05, give_up_after=0.6)
    started = clock.monotonic()
    with renewal:
        assert not renewal.lost.wait(0.45)  # failing since the first beat, but not yet for the TTL
        assert renewal.lost.wait(10)
    assert clock.monotonic() - started >= 0.6


def test_stop_ends_the_thread_before_returning_and_the_key_then_expires(redis_client, key):
    owned = OwnedKey(redis_client, key, "me")
    owned.renewal(0.3).stop()  # never started: nothing to stop, no error
    assert owned.claim(0.3)
    renewal = owned.renewal(0.3, every=0.05).start()
    thread = renewal._thread
    renewal.stop()
    assert not thread.is_alive()  # joined: no extension can follow stop()
    wait_until(lambda: redis_client.exists(key) == 0, timeout=10, what="the key to expire once not renewed")


def test_the_work_may_stop_its_renewal_from_on_lost(redis_client, key, caplog):
    owned = OwnedKey(redis_client, key, "me")
    assert owned.claim(5)
    renewal = owned.renewal(
        5, every=0.05, on_lost=lambda _cause: renewal.stop()
    )  # from the renewal's own thread
    renewal.start()
    redis_client.set(key, "new owner", px=5_000)
    assert renewal.lost.wait(10)
    wait_until(lambda: renewal._thread is None, timeout=10, what="the renewal to stop itself")
    assert "on_lost callback failed" not in caplog.text  # it did not try to join its own thread


def test_a_failing_on_lost_callback_is_logged_and_the_key_still_counts_as_lost(redis_client, key, caplog):
    def on_lost(_cause):
        raise RuntimeError("the work's callback broke")

    owned = OwnedKey(redis_client, key, "me")
    assert owned.claim(5)
    with owned.renewal(5, every=0.05, on_lost=on_lost, name="test-renewal") as renewal:
        redis_client.set(key, "new owner", px=5_000)
        assert renewal.lost.wait(10)
        wait_until(
            lambda: "test-renewal: on_lost callback failed" in caplog.text,
            timeout=10,
            what="the callback's failure to be logged",
        )


def test_a_renewal_never_keeps_the_process_alive():
    """The thread is a daemon: a process whose work forgot to stop its renewal still exits."""
    program = (
        "import redis; from state.owned import OwnedKey; "
        "OwnedKey(redis.Redis(port=1), 'k', 't').renewal(5, every=0.05).start()"
    )
    done = subprocess.run([sys.executable, "-c", program], cwd=ROOT, timeout=60, capture_output=True)
    assert done.returncode == 0, done.stderr


def test_the_token_field_and_the_renewal_options_are_keyword_only(redis_client, key):
    """Four strings in a row are easy to swap: the field (and every option) must be named."""
    with pytest.raises(TypeError):
        OwnedKey(redis_client, key, "me", "token")
    with pytest.raises(TypeError):
        Renewal(OwnedKey(redis_client, key, "me"), 5, 0.05)
