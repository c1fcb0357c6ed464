"""The fleet's thread: one line per target transition, from the fleet's event stream.

The lines read at one pass (every EVERY seconds) go out as one message (up to
LINES_PER_MESSAGE lines): a wave of 50 databases starting at once is a few messages, not 50 —
Slack takes one message a second per channel, and the thread would otherwise trail the work by
minutes.

Whichever `serve` process moves a target (its worker ran it, took it over, rolled it back), the
move is one entry of the fleet run's stream (state/fleet.py). The outbox worker that holds the
channel's delivery lock — one process at a time — reads the streams of the recent fleet runs
after the last entry it turned into lines (a cursor in Redis), queues one thread line per
target transition and one refresh of the run's parent message (the table, edited in place;
phase changes only refresh it), then moves the cursor. A crash between the two can repeat a
line, never lose one (the outbox's own at-least-once).
"""

from __future__ import annotations

import logging
import threading
import time

import redis as redis_lib

from bot.slack import fleet_blocks
from bot.slack.outbox import RUN_KEYS_TTL, Outbox
from bot.slack.reporter import SlackReporter
from commands import fleet_templates
from state.codec import as_text
from state.fleet import FleetStore
from state.keys import Keys

log = logging.getLogger(__name__)

RECENT = 3  # fleet runs whose streams are followed (the current one and the ones it replaced)
EVERY = 0.5  # seconds between two reads of the streams


class FleetFeed:
    def __init__(self, fleets: FleetStore, keys: Keys, outbox: Outbox, reporter: SlackReporter) -> None:
        self.fleets = fleets
        self.keys = keys
        self.outbox = outbox
        self.reporter = reporter
        self._last = float("-inf")
        self._guard = threading.Lock()  # the worker's thread and a drain() in another one

    def pump(self, force: bool = False) -> int:
        """Queue the lines of every unread target transition; how many were queued."""
        with self._guard:
            if not force and time.monotonic() - self._last < EVERY:
                return 0
            self._last = time.monotonic()
            return sum(self._follow(run.id) for run in self.fleets.history(RECENT))

    def _follow(self, fleet_id: str) -> int:
        key = self.keys.fleet_feed(fleet_id)
        cursor = as_text(self.outbox.redis.get(key) or b"0-0")
        events = self.fleets.events(fleet_id, after=cursor)
        if not events:
            return 0
        lines = [line for line in map(fleet_templates.transition_line, events) if line]
        step = fleet_blocks.LINES_PER_MESSAGE
        for start in range(0, len(lines), step):  # what came together goes out together
            rendered = fleet_blocks.transition_message(lines[start : start + step])
            self.outbox.put(
                "post", message=rendered.payload(), run_id=fleet_id, broadcast=False, fallback=rendered.text
            )
        self.reporter.refresh(fleet_id)
        try:
            self.outbox.redis.set(key, events[-1].id, ex=RUN_KEYS_TTL)
        except redis_lib.RedisError as exc:  # the lines are queued; the next pump may repeat them
            log.warning("fleet feed: cursor of %s not stored: %s", fleet_id, type(exc).__name__)
        return len(lines)
