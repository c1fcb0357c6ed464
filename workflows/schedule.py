"""Time-driven work as the command core sees it: a small interface handed to `Core` at start-up.

The verbs and the workflows need five things of the scheduler: store the start of a GO
scheduled (`approve at`), drop it (`defer`, GO now), schedule the follow-ups of a run that
succeeded, drop them when the run is undone (rollback, restore), and list what is scheduled
(`status`). They ask `core.schedule`, never the scheduler itself: scheduling/ stands beside
the verbs and runs the workflows (a scheduled start runs the phases), so importing it from
here would go up.

Who hands what: `python -m bot serve` gives `scheduling.hooks.ProcessSchedule` (the running
Scheduler of the process); `python -m bot console` gives `scheduling.hooks.StoredForServe`
(jobs stored in Redis for `serve` to fire: the console runs no scheduler, and says so); a Core
built without one gets `process_default()`, which is `Unscheduled` unless the process said
otherwise at start-up (`use_by_default`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol


class Schedule(Protocol):
    """Time-driven work of one Core (one target database). A failure to reach the job store
    never undoes a decision or fails a run: it comes back as a sentence, False, 0 or []."""

    def scheduled(self, run_id: str, at: datetime) -> str | None:
        """After `approve at`: the start and its reminder stored; None, or why the run will NOT start by itself."""

    def cancelled(self, run_id: str) -> bool:
        """After `defer` or GO now: the scheduled start removed; True when there was one."""

    def succeeded(self, run_id: str) -> list[str]:
        """After a run reached SUCCEEDED: its follow-ups scheduled; their labels."""

    def run_undone(self, run_id: str) -> int:
        """After a succeeded run was rolled back or restored: its follow-ups removed; how many."""

    def status_lines(self) -> list[str]:
        """What is scheduled for this target, one line each, for `status`."""


class Unscheduled:
    """No scheduler wired into this process: nothing time-driven is stored, and each answer says so."""

    def __init__(self, core: Any = None):
        self.core = core

    def scheduled(self, run_id: str, at: datetime) -> str | None:
        return "⚠ no scheduler in this process: the start will NOT happen by itself; run by hand at that time"

    def cancelled(self, run_id: str) -> bool:
        return False

    def succeeded(self, run_id: str) -> list[str]:
        return []

    def run_undone(self, run_id: str) -> int:
        return 0

    def status_lines(self) -> list[str]:
        return ["Schedule: none in this process (scheduling runs in `python -m bot serve`)"]


ScheduleFactory = Callable[[Any], Schedule]  # given the Core, its Schedule

_default: ScheduleFactory = Unscheduled


def use_by_default(factory: ScheduleFactory) -> None:
    """At a process's start-up: the Schedule of every Core built here without one (the test
    suite builds many Cores and wires them as `serve` does)."""
    global _default
    _default = factory


def process_default() -> ScheduleFactory:
    return _default
