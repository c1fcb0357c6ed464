"""The Redis-backed outbox: every channel write, delivered in order, never lost.

Each write to the channel (a post, an edit, a file upload, a refresh of a run's parent
message) is an entry in a Redis list (`keys.outbox(channel)`). One worker per channel (a
Redis lock with an owner token, state/owned.py, so two bot processes never both deliver) takes the head,
calls Slack, and removes the entry only once Slack answered. The lock is renewed by a small
thread while a delivery is in Slack calls (retry handlers may sleep on Retry-After), and the
head is only removed, replaced or rotated by a Lua script that checks, atomically, that this
worker still holds the lock and that the head is still the entry it read: a worker that lost
its lock anyway (a paused process, Redis failover) does nothing to a queue that another
worker now owns, so no entry is skipped.

Rate limits, 5xx and broken connections are retried by slack_sdk's retry handlers and, past
those, by leaving the entry at the head and trying again later: a Slack outage delays
messages but loses none, and a restart resumes where delivery stopped. Errors about the
content itself (`invalid_blocks`, `msg_too_long`, …, `CONTENT_ERRORS`) are logged (redacted)
and the entry is replaced by a plain-text message. Every other ok:false (`invalid_auth`,
`token_revoked`, `not_in_channel`, `channel_not_found`, `missing_scope`, …) is a problem of
the installation, not of the message: the entry stays at the head, the worker backs off (up
to MAX_BACKOFF) and logs an ERROR on each attempt, and delivery resumes once it is fixed.

Delivery is AT-LEAST-ONCE. Slack's Web API has no idempotency key, so a message can be
posted twice when: the process dies (or loses its lock and another worker takes over)
between Slack's answer and the LPOP of the entry; a run's parent message is posted but the
process dies before its ts is stored in Redis (the next worker posts another parent); or
slack_sdk's retry handlers resend a request whose answer was lost (connection error, 5xx
after Slack acted). Ordering and "nothing lost" hold in every one of these cases.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import redis as redis_lib
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler
from slack_sdk.http_retry.builtin_handlers import ServerErrorRetryHandler

from bot.slack import blocks
from core.redact import redact
from state.codec import as_text
from state.keys import Keys
from state.owned import OwnedKey

log = logging.getLogger(__name__)

# ok:false errors that a later attempt can succeed with (warning, retried with backoff).
TRANSIENT_ERRORS = {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
# ok:false errors about the message itself: no retry helps, the entry becomes plain text.
CONTENT_ERRORS = {
    "invalid_blocks",
    "invalid_blocks_format",
    "msg_too_long",
    "msg_blocks_too_long",
    "no_text",
    "invalid_arguments",
    "invalid_attachments",
    "too_many_attachments",
    "markdown_text_conflict",
    "invalid_metadata_format",
    "invalid_metadata_schema",
    "metadata_too_large",
    # an edit whose message is gone or no longer editable: posting the text is all that is left
    "message_not_found",
    "cant_update_message",
    "edit_window_closed",
}
# Every other ok:false (invalid_auth, token_revoked, not_in_channel, channel_not_found,
# missing_scope, account_inactive, …) blocks the channel until someone fixes the app: the
# entry stays at the head and is retried with backoff, an ERROR logged on each attempt.
REFRESH_EVERY = 2.5  # seconds between edits of one parent message (chat.update is Tier 3)
# chat.postMessage allows about one message per second per channel: posts (and file shares,
# which appear as messages) are spaced by this much, so a run's burst of updates is paced
# rather than answered with 429s. Only the worker holding the channel's lock posts to it.
POST_INTERVAL = 1.0
# The channel's delivery lock: re-taken at every step, and renewed every TTL/3 while a delivery
# is in Slack calls (even through a long Retry-After) and while the worker backs off, so it
# only lapses when its holder is gone — and then another process delivers within this long.
LOCK_TTL_MS = 15_000
POLL = 0.5  # how often an idle worker looks for entries queued by other processes
MAX_BACKOFF = 30.0


def web_client(settings) -> WebClient:
    """The one WebClient shape the bot uses: SLACK_API_URL, bot token, Slack's retry handlers."""
    return WebClient(
        base_url=settings.slack_api_url,
        token=settings.slack_bot_token,
        retry_handlers=[
            RateLimitErrorRetryHandler(max_retry_count=2),
            ServerErrorRetryHandler(max_retry_count=2),
            ConnectionErrorRetryHandler(max_retry_count=2),
        ],
    )


# Head operations: only while KEYS[1] (the lock) holds ARGV[1] (our token) and the head of
# KEYS[2] is still ARGV[2] (the raw entry read when the step began); else nothing happens.
_GUARD = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('LINDEX', KEYS[2], 0) ~= ARGV[2] then return 0 end
"""
_POP = _GUARD + "redis.call('LPOP', KEYS[2]) return 1"
_REPLACE = _GUARD + "redis.call('LSET', KEYS[2], 0, ARGV[3]) return 1"
_ROTATE = _GUARD + "redis.call('LMOVE', KEYS[2], KEYS[2], 'LEFT', 'RIGHT') return 1"


def _lock_ttl() -> float:
    """LOCK_TTL_MS in seconds, read at each use (tests shorten it)."""
    return LOCK_TTL_MS / 1000


RUN_KEYS_TTL = 30 * 24 * 3600  # seconds: longer than the +1 week follow-up that posts in the thread


class Outbox:
    """The ordered list of pending channel writes for one channel."""

    def __init__(self, redis: redis_lib.Redis, keys: Keys, channel: str) -> None:
        self.redis = redis
        self.keys = keys
        self.channel = channel
        self.key = keys.outbox(channel)
        self.wake = threading.Event()  # set on every local put, so the worker need not poll

    def put(self, op: str, **fields) -> None:
        """Append one write; `op` is post | update | upload | refresh | plain."""
        self.redis.rpush(self.key, json.dumps({"id": uuid.uuid4().hex, "op": op, **fields}))
        self.wake.set()

    def head(self) -> dict | None:
        raw = self.head_raw()
        return json.loads(raw) if raw else None

    def head_raw(self) -> bytes | str | None:
        """The head entry as stored: what pop/replace_head/rotate compare against."""
        return self.redis.lindex(self.key, 0)

    # The head operations take the raw head read at the start of the step and the delivery
    # lock (key, owner token); they act only if both still hold, and say whether they did.
    def pop(self, expected: bytes | str, lock_key: str, token: str) -> bool:
        return bool(self.redis.eval(_POP, 2, lock_key, self.key, token, expected))

    def replace_head(self, expected: bytes | str, entry: dict, lock_key: str, token: str) -> bool:
        return bool(self.redis.eval(_REPLACE, 2, lock_key, self.key, token, expected, json.dumps(entry)))

    def rotate(self, expected: bytes | str, lock_key: str, token: str) -> bool:
        """Move the head to the tail (a refresh that is not due yet must not block posts)."""
        return bool(self.redis.eval(_ROTATE, 2, lock_key, self.key, token, expected))

    def __len__(self) -> int:
        return self.redis.llen(self.key)


class RunThreads:
    """A run's Slack side in Redis: its parent message ts, its latest progress and outcome.
    Both expire RUN_KEYS_TTL after their last write: a run's thread outlives any follow-up."""

    def __init__(self, redis: redis_lib.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    def parent(self, run_id: str) -> str | None:
        ts = self.redis.get(self.keys.thread(run_id))
        return as_text(ts) if ts else None

    def set_parent(self, run_id: str, ts: str) -> None:
        self.redis.set(self.keys.thread(run_id), ts, ex=RUN_KEYS_TTL)

    def meta(self, run_id: str) -> dict[str, str]:
        raw = self.redis.hgetall(self.keys.slack_meta(run_id))
        return {as_text(k): as_text(v) for k, v in raw.items()}

    def set_meta(self, run_id: str, **fields: str) -> None:
        key = self.keys.slack_meta(run_id)
        with self.redis.pipeline() as pipe:
            # redis-py wants a Mapping keyed by its whole union of field types (Mapping is
            # invariant in its key): a dict[str, str] is refused, hence the ignore.
            pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
            pipe.expire(key, RUN_KEYS_TTL)
            pipe.execute()

    def mark_dirty(self, run_id: str) -> bool:
        """True when no refresh of this run was pending (the caller then queues one)."""
        return bool(self.redis.hsetnx(self.keys.slack_meta(run_id), "pending", "1"))

    def clear_dirty(self, run_id: str) -> None:
        self.redis.hdel(self.keys.slack_meta(run_id), "pending")


class Delivery:
    """Performs one outbox entry against Slack."""

    def __init__(
        self,
        client: WebClient,
        threads: RunThreads,
        channel: str,
        card: Callable[[str, dict], blocks.Rendered],
    ):
        self.client = client
        self.threads = threads
        self.channel = channel
        self.card = card  # (run_id, meta) -> the parent message
        self._last_post = float("-inf")

    def __call__(self, entry: dict) -> None:
        getattr(self, "_" + entry["op"])(entry)

    def _paced(self) -> None:
        """Wait until POST_INTERVAL has passed since this channel's previous post."""
        wait = self._last_post + POST_INTERVAL - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._last_post = time.monotonic()

    def _thread_of(self, run_id: str | None) -> str | None:
        """The run's parent ts, posting the parent first if the run has none yet."""
        if not run_id:
            return None
        ts = self.threads.parent(run_id)
        if ts is None:
            self._paced()
            answer = self.client.chat_postMessage(
                channel=self.channel, **self.card(run_id, self.threads.meta(run_id)).payload()
            )
            ts = answer["ts"]
            self.threads.set_parent(run_id, ts)
        return ts

    def _post(self, entry: dict) -> None:
        thread = self._thread_of(entry.get("run_id"))
        extra: dict[str, Any] = (
            {"thread_ts": thread, "reply_broadcast": bool(entry.get("broadcast"))} if thread else {}
        )
        self._paced()
        self.client.chat_postMessage(channel=self.channel, **entry["message"], **extra)

    def _plain(self, entry: dict) -> None:
        thread = self._thread_of(entry.get("run_id"))
        self._paced()
        extra: dict[str, Any] = {"thread_ts": thread} if thread else {}
        self.client.chat_postMessage(channel=self.channel, text=entry["text"], **extra)

    def _update(self, entry: dict) -> None:
        self.client.chat_update(
            channel=entry.get("channel") or self.channel, ts=entry["ts"], **entry["message"]
        )

    def _upload(self, entry: dict) -> None:
        thread = self._thread_of(entry.get("run_id"))
        self._paced()
        self.client.files_upload_v2(
            channel=self.channel,
            thread_ts=thread,
            content=entry["content"],
            filename=entry["filename"],
            title=entry["title"],
        )

    def _refresh(self, entry: dict) -> None:
        run_id = entry["run_id"]
        had_parent = self.threads.parent(run_id) is not None
        ts = self._thread_of(run_id)
        if had_parent and ts is not None:  # a parent posted just now already shows the latest state
            self.client.chat_update(
                channel=self.channel, ts=ts, **self.card(run_id, self.threads.meta(run_id)).payload()
            )


def fallback_entry(entry: dict) -> dict:
    """The plain-text message that replaces an entry Slack rejected for good."""
    text = (
        entry.get("fallback")
        or entry.get("message", {}).get("text")
        or entry.get("title")
        or "(message could not be shown)"
    )
    return {"id": entry["id"], "op": "plain", "run_id": entry.get("run_id"), "text": text}


TRANSIENT, CONTENT, BLOCKED = "transient", "content", "blocked"


def classify(exc: Exception) -> str:
    """TRANSIENT (rate limit, 5xx, network: retry), CONTENT (Slack will never accept this
    message: fall back to plain text) or BLOCKED (auth, channel, scopes: keep it and retry)."""
    if isinstance(exc, SlackApiError):
        status = getattr(exc.response, "status_code", 200)
        error = exc.response.get("error")
        if status == 429 or status >= 500 or error in TRANSIENT_ERRORS:
            return TRANSIENT
        return CONTENT if error in CONTENT_ERRORS else BLOCKED
    if isinstance(exc, (SlackClientError, OSError)):
        return TRANSIENT
    return CONTENT  # a malformed entry or a bug in building the call: retrying cannot help


def is_transient(exc: Exception) -> bool:
    """Whether a failed call may succeed later (rate limit, 5xx, network)."""
    return classify(exc) == TRANSIENT


class OutboxWorker:
    """Delivers one channel's outbox in order, holding the channel's delivery lock."""

    def __init__(self, outbox: Outbox, delivery: Delivery, secrets: tuple[str, ...] = ()) -> None:
        self.outbox = outbox
        self.delivery = delivery
        self.secrets = secrets
        self.token = uuid.uuid4().hex
        self.lock_key = outbox.keys.outbox_lock(outbox.channel)
        # The channel's delivery lock, an owned key whose whole value is this worker's token.
        self._lock = OwnedKey(outbox.redis, self.lock_key, self.token)
        self.last_refresh: dict[str, float] = {}
        self.backoff = 0.0
        self.rotations = 0  # not-due refreshes moved to the tail since the last delivery
        self.stop = threading.Event()
        # Called at each step while this worker holds the channel (bot/slack/fleet_feed.py turns
        # the fleet runs' transitions into thread lines there: one process at a time).
        self.pump: Callable[..., object] | None = None
        self._stepping = threading.Lock()
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> OutboxWorker:
        self._thread = threading.Thread(target=self.run, name="slack-outbox", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Stop; release the lock unless a delivery is still in Slack calls (the worker thread
        then releases it itself when that delivery ends, and the lock keeps being renewed)."""
        self.stop.set()
        self.outbox.wake.set()
        if self._thread:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("outbox: worker still delivering after %.1f s; the lock stays with it", timeout)
                return
        if self._stepping.acquire(timeout=timeout):  # not while drain() delivers in another thread
            try:
                self._release()
            finally:
                self._stepping.release()

    def run(self) -> None:
        """Deliver until stopped; never dies on an error (it logs it redacted and goes on)."""
        while not self.stop.is_set():
            try:
                delay = self.step()
            except Exception as exc:  # Redis down, a bug: keep the thread, report, wait
                log.error("outbox: %s", redact(repr(exc), self.secrets))
                delay = POLL
            if delay and self.backoff:
                self._back_off(delay)  # a new entry must not cut the wait short
            elif delay:
                self.outbox.wake.wait(delay)
                self.outbox.wake.clear()
        self._release()  # stopped between two steps: nothing of ours is in flight

    def _back_off(self, seconds: float) -> None:
        """Wait `seconds` still holding the channel (renewed every TTL/3): backoff is longer than
        the lock's TTL, and another process taking the channel meanwhile would retry at once —
        defeating the backoff against a 429 or a revoked token, and the 1 s pacing."""
        deadline = time.monotonic() + seconds
        while not self.stop.wait(min(max(deadline - time.monotonic(), 0.0), LOCK_TTL_MS / 3000)):
            if time.monotonic() >= deadline:
                return
            try:
                self._hold_lock()
            except redis_lib.RedisError as exc:
                log.warning("outbox: lock not renewed during backoff: %s", redact(str(exc), self.secrets))

    # -- one step ----------------------------------------------------------------------------
    def holds_channel(self) -> bool:
        """Whether this worker delivers the channel now (its lock taken or renewed)."""
        try:
            return self._hold_lock()
        except redis_lib.RedisError:
            return False

    def _hold_lock(self) -> bool:
        """Take the channel's delivery lock, or renew it if this worker holds it (atomically)."""
        return self._lock.take_or_extend(_lock_ttl())

    @contextmanager
    def _renewing(self):
        """Keep the lock alive while a delivery is in Slack calls (they can outlast its TTL)."""
        renewal = self._lock.renewal(
            _lock_ttl,
            on_lost=self._lost_during_delivery,
            on_error=self._not_renewed,
            name="slack-outbox-lock",
        )
        with renewal:
            yield

    @staticmethod
    def _lost_during_delivery(_cause: Exception | None) -> None:
        # the guarded pop then leaves the head alone
        log.warning("outbox: delivery lock lost during a delivery; its entry is left to the new owner")

    def _not_renewed(self, exc: Exception) -> None:
        log.warning("outbox: lock not renewed: %s", redact(str(exc), self.secrets))

    def _guard(self) -> tuple[str, str]:
        return self.lock_key, self.token

    def _release(self) -> None:
        """Let another process deliver at once (else the lock's TTL frees it later)."""
        try:
            self._lock.delete()
        except redis_lib.RedisError as exc:
            log.warning("outbox: lock not released: %s", redact(str(exc), self.secrets))

    def step(self) -> float:
        """Deliver the head entry if possible; return how long to wait before the next step."""
        with self._stepping:  # drain() from another thread must not deliver the same head twice
            return self._step()

    def _step(self) -> float:
        if not self._hold_lock():
            return POLL
        if self.pump is not None:
            try:
                self.pump()
            except Exception as exc:  # a feed that cannot be read must not stop delivery
                log.error("outbox: pump failed: %s", redact(repr(exc), self.secrets))
        raw = self.outbox.head_raw()
        if raw is None:
            return POLL
        entry = json.loads(raw)
        if entry["op"] == "refresh" and not self._refresh_due(entry):
            self.rotations += 1
            if self.rotations < len(self.outbox):
                # let what is behind it go first
                return 0.0 if self.outbox.rotate(raw, *self._guard()) else POLL
            self.rotations = 0
            return 0.1  # only refreshes that are not due: wait a little
        self.rotations = 0
        return self._deliver(raw, entry)

    def _refresh_due(self, entry: dict) -> bool:
        last = self.last_refresh.get(entry["run_id"], 0.0)
        return time.monotonic() - last >= REFRESH_EVERY

    def _deliver(self, raw: bytes | str, entry: dict) -> float:
        if entry["op"] == "refresh":
            # Cleared before reading the state: progress arriving meanwhile queues a new refresh.
            self.delivery.threads.clear_dirty(entry["run_id"])
        try:
            with self._renewing():
                self.delivery(entry)
        except Exception as exc:
            return self._failed(raw, entry, exc)
        if entry["op"] == "refresh":
            self.last_refresh[entry["run_id"]] = time.monotonic()
        self.backoff = 0.0
        if not self.outbox.pop(raw, *self._guard()):
            log.warning(
                "outbox: %s delivered after this worker lost the queue; its new owner may send it again",
                entry["op"],
            )
            return POLL
        return 0.0

    def _failed(self, raw: bytes | str, entry: dict, exc: Exception) -> float:
        detail = redact(str(exc), self.secrets)
        kind = classify(exc)
        if kind != CONTENT:
            self.backoff = min(MAX_BACKOFF, max(0.5, self.backoff * 2))
            if kind == TRANSIENT:
                log.warning("outbox: %s will be retried in %.1f s: %s", entry["op"], self.backoff, detail)
            else:
                log.error(
                    "outbox: Slack refused %s (not its content: the app, token or channel needs fixing); "
                    "kept, retried in %.1f s: %s",
                    entry["op"],
                    self.backoff,
                    detail,
                )
            if entry["op"] == "refresh":
                self.delivery.threads.mark_dirty(entry["run_id"])
            return self.backoff
        log.error("outbox: Slack rejected %s for good: %s", entry["op"], detail)
        if entry["op"] in ("plain", "refresh"):
            # nothing simpler to fall back to (a refresh is redone by the next one)
            self.outbox.pop(raw, *self._guard())
        else:
            self.outbox.replace_head(raw, fallback_entry(entry), *self._guard())
        return 0.0

    def drain(self, timeout: float = 30.0) -> bool:
        """Deliver in this thread until the outbox is empty (tests, shutdown); False on timeout."""
        deadline = time.monotonic() + timeout
        while len(self.outbox) and time.monotonic() < deadline:
            delay = self.step()
            if delay:
                time.sleep(min(delay, 0.1))
        return not len(self.outbox)
