"""Between Slack and the command core: run a command, send its posts, start its work.

The listeners ack, then call `Bridge.execute`; it calls the command core as the user,
queues the outcome's posts for the channel (through the outbox) and runs the long work in a
background thread that reports through the Slack reporter. Only the reply to the invoker is
left to the listener, which knows how to answer privately in its context.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from slack_sdk import WebClient

from bot.slack.fleet_feed import FleetFeed
from bot.slack.outbox import Delivery, Outbox, OutboxWorker, RunThreads, web_client
from bot.slack.reporter import SlackReporter, card_renderer
from bot.terminal import terminal_safe
from commands import handle
from commands.fleetcore import store as fleet_store
from commands.result import FAILED, OK, REFUSED, Outcome, Post, Progress
from core.redact import redact
from workflows.core import Core

log = logging.getLogger(__name__)

COMMAND_THREADS = 4
OUTCOME_WORDS = {OK: "ok", FAILED: "failed", REFUSED: "refused"}
Handle = Callable[..., Outcome]  # handle(core, user, text, *, request_id=None) -> Outcome


def request_id(*parts: str) -> str:
    """A stable id for one Slack request (slash commands carry none: their trigger_id)."""
    return "slack:" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def default_handle() -> Handle:
    return handle


class RunReporter:
    """The Slack reporter for one run's work: posts that name no run go into its thread."""

    def __init__(
        self, inner: SlackReporter, run_id: str | None, before_post: Callable[[Post], None] | None = None
    ) -> None:
        self.inner = inner
        self.run_id = run_id
        self.before_post = before_post

    def post(self, post: Post) -> None:
        if post.run_id is None and self.run_id is not None:
            post = replace(post, run_id=self.run_id)
        if self.before_post is not None:
            self.before_post(post)
        self.inner.post(post)

    def progress(self, progress: Progress) -> None:
        self.inner.progress(progress)


@dataclass
class Bridge:
    core: Core  # settings, roster, runbook, redis, keys, store
    handle: Handle
    client: WebClient
    outbox: Outbox
    threads: RunThreads
    reporter: SlackReporter
    worker: OutboxWorker
    # Commands run here after their ack, a few at a time: a burst of commands must not starve
    # the listener threads that ack the next requests (they share one interpreter lock).
    jobs: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(COMMAND_THREADS, "migrate-command")
    )
    _work: list[threading.Thread] = field(default_factory=list)
    _work_guard: threading.Lock = field(default_factory=threading.Lock)  # listeners run on a pool

    @classmethod
    def create(cls, core, handle: Handle | None = None, client: WebClient | None = None) -> Bridge:
        """Wire the outbox, its worker (not started) and the reporter for MIGRATE_CHANNEL."""
        settings = core.settings
        settings.require("channel")
        client = client or web_client(settings)
        outbox = Outbox(core.redis, core.keys, settings.channel)
        threads = RunThreads(core.redis, core.keys)
        delivery = Delivery(client, threads, settings.channel, card_renderer(core))
        worker = OutboxWorker(outbox, delivery, settings.secrets())
        reporter = SlackReporter(outbox, threads, settings.secrets())
        if settings.targets is not None:  # a fleet: its transitions become thread lines
            worker.pump = FleetFeed(fleet_store(core), core.keys, outbox, reporter).pump
        return cls(core, handle or default_handle(), client, outbox, threads, reporter, worker)

    @property
    def secrets(self) -> tuple[str, ...]:
        return self.core.settings.secrets()

    def redact(self, text: str) -> str:
        return redact(text, self.secrets)

    def submit(self, fn: Callable[[], None]) -> None:
        """Run `fn` (an acked request's handling) on the command pool; errors are logged redacted."""

        def guarded() -> None:
            try:
                fn()
            except Exception as exc:
                log.error("handling a Slack request failed: %s", self.redact(repr(exc)))

        self.jobs.submit(guarded)

    def execute(self, user: str, text: str, request: str | None) -> Outcome:
        """Run `/migrate TEXT` as `user`; posts go to the outbox, work to a background thread."""
        outcome = self.handle(self.core, user, text, request_id=request)
        log.info(
            "command by %s: %s -> %s%s",
            user,
            terminal_safe(self.redact(" ".join(text.split())))[:200] or "help",
            OUTCOME_WORDS.get(outcome.code, outcome.code),
            " (work started)" if outcome.work else "",
        )
        reporter = RunReporter(self.reporter, outcome.run_id, self._lines_first)
        for post in outcome.posts:
            reporter.post(post)
        if outcome.work is not None:
            thread = threading.Thread(
                target=self._run_work, args=(outcome,), name="migrate-work", daemon=True
            )
            with self._work_guard:
                self._work = [t for t in self._work if t.is_alive()] + [thread]
            thread.start()
        return outcome

    def _lines_first(self, post: Post) -> None:
        """A post in a fleet run's thread (the pre-flight's summary, the run's result) goes after
        the lines of the transitions that led to it: the feed is read first, when this process
        delivers the channel (else the process that does reads it on its own pace)."""
        if self.worker.pump is None or not (post.run_id or "").startswith("fleet-"):
            return
        if self.worker.holds_channel():
            self.worker.pump(force=True)

    def _run_work(self, outcome: Outcome) -> None:
        assert outcome.work is not None  # started only for an outcome with work
        try:
            outcome.work(RunReporter(self.reporter, outcome.run_id, self._lines_first))
            if outcome.run_id:  # the state the work ended in
                self.reporter.refresh(outcome.run_id)
        except Exception as exc:  # the work's own failure paths post; this is a crash: say so in the thread
            log.exception("background work crashed: %s", self.redact(repr(exc)))
            try:
                self.reporter.post(
                    Post(
                        kind="failure",
                        title="The background work stopped on an error",
                        lines=[self.redact(str(exc))[:1000]],
                        run_id=outcome.run_id,
                        final=True,
                    )
                )
            except Exception as again:  # Redis away too: the log is all that is left (never a raw trace)
                log.error("could not queue the crash notice: %s", self.redact(repr(again)))

    def wait_work(self, timeout: float = 60.0) -> bool:
        """Wait (bounded) for the commands and background work started so far; True when all finished."""
        self.jobs.submit(lambda: None).result(timeout)  # FIFO: commands queued before have started
        with self._work_guard:
            started = list(self._work)
        for thread in started:
            thread.join(timeout)
        return not any(t.is_alive() for t in started)

    def close(self) -> None:
        self.jobs.shutdown(wait=True, cancel_futures=False)
        self.worker.close()
