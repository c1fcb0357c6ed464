"""Which bot process a job runs in: the Core and the reporter its posts go to.

Jobs are stored in Redis as references to module-level functions with plain arguments
(run ids, ISO times), so any bot process can run them. Each `Scheduler` registers its
context under a name and binds that name to its executor's worker threads (the pool's
thread initializer); a job function asks `current()` for the context of the thread it runs
in. A thread with no context (a job run outside a Scheduler) builds one from the
environment, the way `python -m bot` does (its Core's scheduling interface is the process
default, workflows.schedule).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.config import Settings
from workflows.core import Core
from workflows.reporting import Post, Progress, Reporter

log = logging.getLogger("migrate.scheduling")


@dataclass
class JobContext:
    core: Core
    reporter_factory: Callable[[], Reporter]
    scheduler: Any = None  # the scheduling.Scheduler that runs the job, when there is one

    def reporter(self) -> Reporter:
        return self.reporter_factory()


class LogReporter:
    """Reporter of last resort (no adapter in this process): posts go to the log, redacted."""

    def __init__(self, redact: Callable[[str], str]):
        self.redact = redact

    def post(self, post: Post) -> None:
        log.warning("post (no adapter): %s", self.redact(post.text()))

    def progress(self, progress: Progress) -> None:
        pass


_contexts: dict[str, JobContext] = {}
_guard = threading.Lock()
_local = threading.local()
_env_context: JobContext | None = None


def register(name: str, context: JobContext) -> None:
    with _guard:
        _contexts[name] = context


def unregister(name: str) -> None:
    with _guard:
        _contexts.pop(name, None)


def bind(name: str) -> None:
    """Thread initializer of a Scheduler's executor: jobs in this thread use context `name`."""
    _local.name = name


def current() -> JobContext:
    """The context of the Scheduler whose worker thread this is, else one from the environment."""
    with _guard:
        context = _contexts.get(getattr(_local, "name", ""))
    return context or _from_environment()


def registered() -> list[JobContext]:
    with _guard:
        return list(_contexts.values())


def _from_environment() -> JobContext:
    global _env_context
    with _guard:
        if _env_context is None:
            core = Core.from_settings(Settings.from_env())
            _env_context = JobContext(core, lambda: LogReporter(core.redact))
        return _env_context
