"""Tests marked `alone` run while no other test runs, also under pytest-xdist.

Most tests only need their own scratch database and Redis prefix to run beside others. A few
assert a bound on elapsed time that the product promises (Slack's 3 s acknowledgement, a lock
wait that ends at its timeout): with a second worker loading the same two cores, PostgreSQL and
Redis, such a bound measures the neighbour rather than the code. Widening the bound would hide a
real regression, and xdist's own `xdist_group` only keeps tests on one worker (the other worker
goes on), so the workers of one run share a readers-writer lock instead: every test holds it
shared from its setup to its teardown, an `alone` test holds it exclusively. A waiting `alone`
test closes the gate to tests that have not started yet, so it waits for the tests under way
only, never for ever. The wait comes before pytest-timeout's timer starts.

Without xdist (`-n 0`) nothing is locked: one test runs at a time anyway.
"""

from __future__ import annotations

import fcntl
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

KEY = "migrate_alone_dir"


class Turnstile:
    """A readers-writer lock on two files (flock): `room` is held shared by tests running side by
    side, exclusively by an `alone` test; `gate` is held by whoever is about to enter `room`, so
    that a waiting writer is not overtaken by readers that arrive after it."""

    def __init__(self, directory: Path):
        self._gate = open(directory / "gate", "a+")  # noqa: SIM115 - held for the worker's life
        self._room = open(directory / "room", "a+")  # noqa: SIM115

    @contextmanager
    def shared(self) -> Iterator[None]:
        fcntl.flock(self._gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(self._room, fcntl.LOCK_SH)
        finally:
            fcntl.flock(self._gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(self._room, fcntl.LOCK_UN)

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        fcntl.flock(self._gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(self._room, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._room, fcntl.LOCK_UN)
        finally:
            fcntl.flock(self._gate, fcntl.LOCK_UN)

    def close(self) -> None:
        self._gate.close()
        self._room.close()


class AlonePlugin:
    """Registered by tests/conftest.py. The controller makes the lock's directory and hands it to
    each worker; a worker wraps every test's whole protocol (setup, call, teardown) in the lock."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.own_dir: Path | None = None
        self.turnstile: Turnstile | None = None
        workerinput = getattr(config, "workerinput", None)
        if workerinput is not None and workerinput.get(KEY):
            self.turnstile = Turnstile(Path(workerinput[KEY]))

    # on the controller (xdist calls this hook once per worker it starts)
    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node) -> None:
        if self.own_dir is None:
            self.own_dir = Path(tempfile.mkdtemp(prefix="migrate-tests-alone-"))
        node.workerinput[KEY] = str(self.own_dir)

    def pytest_unconfigure(self) -> None:
        if self.turnstile is not None:
            self.turnstile.close()
        if self.own_dir is not None:
            shutil.rmtree(self.own_dir, ignore_errors=True)

    # on a worker; tryfirst: outside pytest-timeout's wrapper, so waiting is not the test's time
    @pytest.hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item):
        if self.turnstile is None:
            yield
            return
        lock = self.turnstile.exclusive if item.get_closest_marker("alone") else self.turnstile.shared
        with lock():
            yield
