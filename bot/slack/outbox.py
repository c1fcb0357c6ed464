"""The Redis-backed outbox: every channel write, delivered in order, never lost.

Each write to the channel (a post, an edit, a file upload, a refresh of a run's parent
message) is an entry in a Redis list (`keys.outbox(channel)`). One worker per channel (a
Redis lock with an owner token, so two bot processes never both deliver) takes the head,
calls Slack, and removes the entry only once Slack answered. Rate limits, 5xx and broken
connections are retried by slack_sdk's retry handlers and, past those, by leaving the entry
at the head and trying again later: a Slack outage delays messages but loses none, and a
restart resumes where delivery stopped. Errors that no retry can fix (`invalid_blocks`,
`msg_too_long`, …) are logged (redacted) and the entry is replaced by a plain-text message.
"""
from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from typing import Callable

import redis as redis_lib
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler
from slack_sdk.http_retry.builtin_handlers import ServerErrorRetryHandler

from bot.slack import blocks
from core.redact import redact
from state.keys import Keys

log = logging.getLogger(__name__)

# ok:false errors that a later attempt can succeed with; every other error is permanent.
TRANSIENT_ERRORS = {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
REFRESH_EVERY = 2.5  # seconds between edits of one parent message (chat.update is Tier 3)
LOCK_TTL_MS = 120_000  # longer than a Retry-After the rate-limit handler may sleep through
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


# The delivery lock holds an owner token: only its owner renews or releases it.
_TAKE_OR_RENEW = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


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
        raw = self.redis.lindex(self.key, 0)
        return json.loads(raw) if raw else None

    def pop(self) -> None:
        self.redis.lpop(self.key)

    def replace_head(self, entry: dict) -> None:
        self.redis.lset(self.key, 0, json.dumps(entry))

    def rotate(self) -> None:
        """Move the head to the tail (a refresh that is not due yet must not block posts)."""
        self.redis.lmove(self.key, self.key, "LEFT", "RIGHT")

    def __len__(self) -> int:
        return self.redis.llen(self.key)


class RunThreads:
    """A run's Slack side in Redis: its parent message ts, its latest progress and outcome."""

    def __init__(self, redis: redis_lib.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    def parent(self, run_id: str) -> str | None:
        ts = self.redis.get(self.keys.thread(run_id))
        return ts.decode() if ts else None

    def set_parent(self, run_id: str, ts: str) -> None:
        self.redis.set(self.keys.thread(run_id), ts)

    def meta(self, run_id: str) -> dict[str, str]:
        raw = self.redis.hgetall(self.keys.slack_meta(run_id))
        return {k.decode(): v.decode() for k, v in raw.items()}

    def set_meta(self, run_id: str, **fields: str) -> None:
        self.redis.hset(self.keys.slack_meta(run_id), mapping=fields)

    def mark_dirty(self, run_id: str) -> bool:
        """True when no refresh of this run was pending (the caller then queues one)."""
        return bool(self.redis.hsetnx(self.keys.slack_meta(run_id), "pending", "1"))

    def clear_dirty(self, run_id: str) -> None:
        self.redis.hdel(self.keys.slack_meta(run_id), "pending")


class Delivery:
    """Performs one outbox entry against Slack."""

    def __init__(self, client: WebClient, threads: RunThreads, channel: str, card: Callable[[str, dict], blocks.Rendered]):
        self.client = client
        self.threads = threads
        self.channel = channel
        self.card = card  # (run_id, meta) -> the parent message

    def __call__(self, entry: dict) -> None:
        getattr(self, "_" + entry["op"])(entry)

    def _thread_of(self, run_id: str | None) -> str | None:
        """The run's parent ts, posting the parent first if the run has none yet."""
        if not run_id:
            return None
        ts = self.threads.parent(run_id)
        if ts is None:
            answer = self.client.chat_postMessage(channel=self.channel, **self.card(run_id, self.threads.meta(run_id)).payload())
            ts = answer["ts"]
            self.threads.set_parent(run_id, ts)
        return ts

    def _post(self, entry: dict) -> None:
        thread = self._thread_of(entry.get("run_id"))
        extra = {"thread_ts": thread, "reply_broadcast": bool(entry.get("broadcast"))} if thread else {}
        self.client.chat_postMessage(channel=self.channel, **entry["message"], **extra)

    def _plain(self, entry: dict) -> None:
        thread = self._thread_of(entry.get("run_id"))
        self.client.chat_postMessage(channel=self.channel, text=entry["text"], **({"thread_ts": thread} if thread else {}))

    def _update(self, entry: dict) -> None:
        self.client.chat_update(channel=entry.get("channel") or self.channel, ts=entry["ts"], **entry["message"])

    def _upload(self, entry: dict) -> None:
        thread = self._thread_of(entry.get("run_id"))
        self.client.files_upload_v2(
            channel=self.channel, thread_ts=thread, content=entry["content"],
            filename=entry["filename"], title=entry["title"],
        )

    def _refresh(self, entry: dict) -> None:
        run_id = entry["run_id"]
        had_parent = self.threads.parent(run_id) is not None
        ts = self._thread_of(run_id)
        if had_parent:  # a parent posted just now already shows the latest state
            self.client.chat_update(channel=self.channel, ts=ts, **self.card(run_id, self.threads.meta(run_id)).payload())


def fallback_entry(entry: dict) -> dict:
    """The plain-text message that replaces an entry Slack rejected for good."""
    text = entry.get("fallback") or entry.get("message", {}).get("text") or entry.get("title") or "(message could not be shown)"
    return {"id": entry["id"], "op": "plain", "run_id": entry.get("run_id"), "text": text}


def is_transient(exc: Exception) -> bool:
    """Whether a failed call may succeed later (rate limit, 5xx, network) or never will."""
    if isinstance(exc, SlackApiError):
        status = getattr(exc.response, "status_code", 200)
        return status == 429 or status >= 500 or exc.response.get("error") in TRANSIENT_ERRORS
    return isinstance(exc, (SlackClientError, OSError))


class OutboxWorker:
    """Delivers one channel's outbox in order, holding the channel's delivery lock."""

    def __init__(self, outbox: Outbox, delivery: Delivery, secrets: tuple[str, ...] = ()) -> None:
        self.outbox = outbox
        self.delivery = delivery
        self.secrets = secrets
        self.token = uuid.uuid4().hex
        self.lock_key = outbox.keys.outbox_lock(outbox.channel)
        self.last_refresh: dict[str, float] = {}
        self.backoff = 0.0
        self.rotations = 0  # not-due refreshes moved to the tail since the last delivery
        self.stop = threading.Event()
        self._stepping = threading.Lock()
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "OutboxWorker":
        self._thread = threading.Thread(target=self.run, name="slack-outbox", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        self.stop.set()
        self.outbox.wake.set()
        if self._thread:
            self._thread.join(timeout)
        self._release()

    def run(self) -> None:
        """Deliver until stopped; never dies on an error (it logs it redacted and goes on)."""
        while not self.stop.is_set():
            try:
                delay = self.step()
            except Exception as exc:  # Redis down, a bug: keep the thread, report, wait
                log.error("outbox: %s", redact(repr(exc), self.secrets))
                delay = POLL
            if delay:
                self.outbox.wake.wait(delay)
                self.outbox.wake.clear()

    # -- one step ----------------------------------------------------------------------------
    def _hold_lock(self) -> bool:
        """Take the channel's delivery lock, or renew it if this worker holds it (atomically)."""
        return bool(self.outbox.redis.eval(_TAKE_OR_RENEW, 1, self.lock_key, self.token, LOCK_TTL_MS))

    def _release(self) -> None:
        """Let another process deliver at once (else the lock's TTL frees it later)."""
        try:
            self.outbox.redis.eval(_RELEASE, 1, self.lock_key, self.token)
        except redis_lib.RedisError as exc:
            log.warning("outbox: lock not released: %s", redact(str(exc), self.secrets))

    def step(self) -> float:
        """Deliver the head entry if possible; return how long to wait before the next step."""
        with self._stepping:  # drain() from another thread must not deliver the same head twice
            return self._step()

    def _step(self) -> float:
        if not self._hold_lock():
            return POLL
        entry = self.outbox.head()
        if entry is None:
            return POLL
        if entry["op"] == "refresh" and not self._refresh_due(entry):
            self.rotations += 1
            if self.rotations < len(self.outbox):
                self.outbox.rotate()  # let what is behind it go first
                return 0.0
            self.rotations = 0
            return 0.1  # only refreshes that are not due: wait a little
        self.rotations = 0
        return self._deliver(entry)

    def _refresh_due(self, entry: dict) -> bool:
        last = self.last_refresh.get(entry["run_id"], 0.0)
        return time.monotonic() - last >= REFRESH_EVERY

    def _deliver(self, entry: dict) -> float:
        if entry["op"] == "refresh":
            # Cleared before reading the state: progress arriving meanwhile queues a new refresh.
            self.delivery.threads.clear_dirty(entry["run_id"])
        try:
            self.delivery(entry)
        except Exception as exc:
            return self._failed(entry, exc)
        if entry["op"] == "refresh":
            self.last_refresh[entry["run_id"]] = time.monotonic()
        self.outbox.pop()
        self.backoff = 0.0
        return 0.0

    def _failed(self, entry: dict, exc: Exception) -> float:
        detail = redact(str(exc), self.secrets)
        if is_transient(exc):
            self.backoff = min(MAX_BACKOFF, max(0.5, self.backoff * 2))
            log.warning("outbox: %s will be retried in %.1f s: %s", entry["op"], self.backoff, detail)
            if entry["op"] == "refresh":
                self.delivery.threads.mark_dirty(entry["run_id"])
            return self.backoff
        log.error("outbox: Slack rejected %s for good: %s", entry["op"], detail)
        if entry["op"] in ("plain", "refresh"):
            self.outbox.pop()  # nothing simpler to fall back to (a refresh is redone by the next one)
        else:
            self.outbox.replace_head(fallback_entry(entry))
        return 0.0

    def drain(self, timeout: float = 30.0) -> bool:
        """Deliver in this thread until the outbox is empty (tests, shutdown); False on timeout."""
        deadline = time.monotonic() + timeout
        while len(self.outbox) and time.monotonic() < deadline:
            delay = self.step()
            if delay:
                time.sleep(min(delay, 0.1))
        return not len(self.outbox)
