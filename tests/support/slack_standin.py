"""A Slack stand-in for the test suite: the Web API server and a signing request sender.

`SlackStandIn` plays Slack's Web API on 127.0.0.1 (port 0) under `/api/`: it records every
call, answers the methods the bot uses, rejects blocks the way Slack does (`invalid_blocks`,
`msg_too_long`), answers 429 with `Retry-After` or 500 on demand, hands out upload URLs and
response URLs that it also serves. `SlackSender` sends requests to the bot's `/slack/events`
exactly as Slack does: form-encoded slash commands, `payload=` JSON for interactions, JSON
events, all signed with the signing secret. Modelled on bolt-python's own test mock server.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from slack_sdk.signature import SignatureVerifier

BLOCK_TYPES = {"section", "header", "context", "actions", "divider", "input", "rich_text", "image", "file"}
ELEMENT_TYPES = {"button", "datepicker", "timepicker", "plain_text_input", "static_select", "overflow"}


@dataclass
class Call:
    """One recorded request: Web API method (or `response_url` / `upload`), body, headers."""

    method: str
    body: dict
    headers: dict
    status: int = 200
    answer: dict = field(default_factory=dict)
    at: float = field(default_factory=time.monotonic)  # when the request arrived


class BlockError(ValueError):
    """Blocks Slack would reject; the message says which limit."""


def _text_len(obj: Any) -> int:
    return len(obj.get("text", "")) if isinstance(obj, dict) else 0


def _check_element(el: dict) -> None:
    kind = el.get("type")
    if kind not in ELEMENT_TYPES:
        raise BlockError(f"unknown element {kind}")
    if kind == "button":
        if _text_len(el.get("text")) > 75:
            raise BlockError("button text > 75")
        if len(el.get("value", "")) > 2000:
            raise BlockError("button value > 2000")
    if len(el.get("action_id", "")) > 255:
        raise BlockError("action_id > 255")
    confirm = el.get("confirm")
    if confirm and (_text_len(confirm.get("title")) > 100 or _text_len(confirm.get("text")) > 300):
        raise BlockError("confirm title > 100 or text > 300")


def check_blocks(blocks: list, limit: int = 50) -> None:
    """Raise BlockError for blocks Slack answers `invalid_blocks` to."""
    if len(blocks) > limit:
        raise BlockError(f"{len(blocks)} blocks > {limit}")
    for block in blocks:
        kind = block.get("type")
        if kind not in BLOCK_TYPES:
            raise BlockError(f"unknown block type {kind}")
        if kind in ("section", "header") and "text" in block and not block["text"].get("text", "").strip():
            raise BlockError("empty text")
        if kind == "section" and _text_len(block.get("text")) > 3000:
            raise BlockError("section text > 3000")
        if kind == "header" and _text_len(block.get("text")) > 150:
            raise BlockError("header text > 150")
        if len(block.get("block_id", "")) > 255:
            raise BlockError("block_id > 255")
        for el in block.get("elements", []) if kind == "actions" else []:
            _check_element(el)
        if kind == "section" and block.get("accessory"):
            _check_element(block["accessory"])
        if kind == "input":
            _check_element(block.get("element", {}))


class SlackStandIn:
    """The Web API stand-in. Use as a context manager; `base_url` goes to SLACK_API_URL."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.team_id = "T0TEAM"  # the workspace the bot token belongs to (auth.test)
        self.enterprise_id: str | None = None
        self.messages: dict[tuple[str, str], dict] = {}  # (channel, ts) -> latest message
        self._lock = threading.Lock()
        self._ts = itertools.count(1)
        self._failures: list[tuple[int, dict]] = []  # queued (status, headers) for the next calls
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> SlackStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def root(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/"

    @property
    def base_url(self) -> str:
        return self.root + "api/"

    def response_url(self, name: str = "r") -> str:
        return f"{self.root}response/{name}"

    # -- failure injection -------------------------------------------------------------------
    def storm_429(self, count: int, retry_after: int = 1) -> None:
        """The next `count` Web API calls get HTTP 429 with `Retry-After`."""
        with self._lock:
            self._failures += [(429, {"Retry-After": str(retry_after)})] * count

    def fail_500(self, count: int) -> None:
        """The next `count` Web API calls get HTTP 500."""
        with self._lock:
            self._failures += [(500, {})] * count

    # -- queries -----------------------------------------------------------------------------
    def calls_of(self, method: str, ok_only: bool = True) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method and (not ok_only or c.answer.get("ok"))]

    def wait_for(
        self, predicate: Callable[[Call], bool], count: int = 1, timeout: float = 15.0
    ) -> list[Call]:
        """Wait (bounded) until `count` recorded calls match; return them. Raise on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                found = [c for c in self.calls if predicate(c)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"waited {timeout}s for {count} matching calls, saw {len(found)}")
            time.sleep(0.02)

    def wait_method(
        self,
        method: str,
        count: int = 1,
        where: Callable[[dict], bool] = lambda b: True,
        timeout: float = 15.0,
    ) -> list[Call]:
        """Wait for `count` successful calls of `method` whose body satisfies `where`."""
        return self.wait_for(
            lambda c: c.method == method and c.answer.get("ok") and where(c.body), count, timeout
        )

    # -- the API -----------------------------------------------------------------------------
    def _answer(self, method: str, body: dict) -> dict:
        handler = getattr(self, "_api_" + method.replace(".", "_"), None)
        if handler is None:
            return {"ok": False, "error": "unknown_method"}
        try:
            return handler(body)
        except BlockError as exc:
            return {"ok": False, "error": "invalid_blocks", "errors": [str(exc)]}

    def _new_ts(self) -> str:
        return f"1700000000.{next(self._ts):06d}"

    @staticmethod
    def _blocks(body: dict) -> list:
        blocks = body.get("blocks") or []
        return json.loads(blocks) if isinstance(blocks, str) else blocks

    def _check_message(self, body: dict) -> None:
        if len(body.get("text") or "") > 40000:
            raise _TooLong()
        check_blocks(self._blocks(body))

    def _api_auth_test(self, body: dict) -> dict:
        """Where the bot token belongs: team T0TEAM, and `enterprise_id` when a test sets one."""
        answer = {
            "ok": True,
            "user_id": "UBOT",
            "bot_id": "BBOT",
            "team_id": self.team_id,
            "team": "Lancio",
            "url": self.root,
        }
        return {**answer, "enterprise_id": self.enterprise_id} if self.enterprise_id else answer

    def _api_chat_postMessage(self, body: dict) -> dict:
        self._check_message(body)
        ts = self._new_ts()
        with self._lock:
            self.messages[(body["channel"], ts)] = dict(body, ts=ts)
        return {
            "ok": True,
            "channel": body["channel"],
            "ts": ts,
            "message": {"ts": ts, "text": body.get("text")},
        }

    def _api_chat_update(self, body: dict) -> dict:
        key = (body["channel"], body["ts"])
        with self._lock:
            if key not in self.messages:
                return {"ok": False, "error": "message_not_found"}
        self._check_message(body)
        with self._lock:
            self.messages[key] = {**self.messages[key], **body}
        return {"ok": True, "channel": body["channel"], "ts": body["ts"]}

    def _api_chat_postEphemeral(self, body: dict) -> dict:
        self._check_message(body)
        return {"ok": True, "message_ts": self._new_ts()}

    def _api_views_open(self, body: dict) -> dict:
        view = body["view"] if isinstance(body["view"], dict) else json.loads(body["view"])
        check_blocks(view.get("blocks", []), limit=100)
        return {"ok": True, "view": {**view, "id": f"V{next(self._ts)}"}}

    _api_views_update = _api_views_open
    _api_views_publish = _api_views_open

    def _api_apps_connections_open(self, body: dict) -> dict:
        # A URL nobody listens on: enough to see that Socket Mode was chosen and asked Slack.
        return {"ok": True, "url": "ws://127.0.0.1:9/socket-mode-standin"}

    def _api_files_getUploadURLExternal(self, body: dict) -> dict:
        file_id = f"F{next(self._ts)}"
        return {"ok": True, "file_id": file_id, "upload_url": f"{self.root}upload/{file_id}"}

    def _api_files_completeUploadExternal(self, body: dict) -> dict:
        files = body.get("files")
        files = json.loads(files) if isinstance(files, str) else files
        return {"ok": True, "files": [{"id": f["id"], "title": f.get("title")} for f in files]}

    # -- HTTP --------------------------------------------------------------------------------
    def _take_failure(self) -> tuple[int, dict] | None:
        with self._lock:
            return self._failures.pop(0) if self._failures else None

    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def _handler(self):
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                path = urllib.parse.urlparse(self.path).path
                if path.startswith("/api/"):
                    self._api(path[len("/api/") :], _parse_body(raw, headers), headers)
                elif path.startswith("/response/"):
                    standin._record(
                        Call("response_url", _parse_body(raw, headers), headers, 200, {"ok": True})
                    )
                    self._send(200, b"ok", "text/plain")
                elif path.startswith("/upload/"):
                    body = {"file_id": path.rsplit("/", 1)[-1], "content": raw.decode("utf-8", "replace")}
                    standin._record(Call("upload", body, headers, 200, {"ok": True}))
                    self._send(200, b"OK - %d" % len(raw), "text/plain")
                else:
                    self._send(404, b"not found", "text/plain")

            def _api(self, method: str, body: dict, headers: dict) -> None:
                failure = standin._take_failure()
                if failure:
                    status, extra = failure
                    standin._record(Call(method, body, headers, status, {"ok": False}))
                    self._send(
                        status,
                        json.dumps(
                            {"ok": False, "error": "ratelimited" if status == 429 else "fatal_error"}
                        ).encode(),
                        "application/json",
                        extra,
                    )
                    return
                try:
                    answer = standin._answer(method, body)
                except _TooLong:
                    answer = {"ok": False, "error": "msg_too_long"}
                standin._record(Call(method, body, headers, 200, answer))
                self._send(200, json.dumps(answer).encode(), "application/json")

            def _send(self, status: int, data: bytes, ctype: str, extra: dict | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        return Handler


class _TooLong(Exception):
    pass


def _parse_body(raw: bytes, headers: dict) -> dict:
    """JSON or form body as a dict (form values single; JSON-encoded form fields stay strings)."""
    text = raw.decode("utf-8", "replace")
    if "json" in headers.get("content-type", ""):
        return json.loads(text or "{}")
    return {k: v[0] for k, v in urllib.parse.parse_qs(text, keep_blank_values=True).items()}


@dataclass
class Reply:
    """The bot's answer to one request."""

    status: int
    headers: dict
    body: str

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class SlackSender:
    """Sends signed requests to the bot's `/slack/events` the way Slack does."""

    def __init__(
        self,
        bot_url: str,
        signing_secret: str,
        standin: SlackStandIn,
        team: str = "T0TEAM",
        enterprise: str | None = None,
    ) -> None:
        self.url = bot_url.rstrip("/") + "/slack/events"
        self.verifier = SignatureVerifier(signing_secret)
        self.standin = standin
        self.team = team
        self.enterprise = enterprise  # the Enterprise Grid organization the requests name, if any
        self._ids = itertools.count(1)

    def send(
        self,
        body: str,
        content_type: str,
        *,
        retry_num: int | None = None,
        bad_signature: bool = False,
        timestamp: int | None = None,
    ) -> Reply:
        """POST `body` signed (or badly signed) with the given timestamp (default: now)."""
        ts = str(timestamp if timestamp is not None else int(time.time()))
        signature = self.verifier.generate_signature(timestamp=ts, body=body)
        if bad_signature:
            signature = "v0=" + "0" * 64
        headers = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": signature,
        }
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = "http_timeout"
        request = urllib.request.Request(self.url, data=body.encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                return Reply(resp.status, dict(resp.headers), resp.read().decode())
        except urllib.error.HTTPError as err:
            return Reply(err.code, dict(err.headers), err.read().decode())

    def next_trigger(self) -> str:
        return f"{next(self._ids)}.{int(time.time())}.trigger"

    def slash_body(
        self, user: str, text: str, trigger_id: str | None = None, channel: str = "C0MIGRATE"
    ) -> str:
        """The form body Slack sends for `/migrate TEXT` typed by `user`."""
        trigger = trigger_id or self.next_trigger()
        fields = {
            "token": "legacy",
            "team_id": self.team,
            "team_domain": "lancio",
            "channel_id": channel,
            "channel_name": "migrations",
            "user_id": user,
            "user_name": user.lower(),
            "command": "/migrate",
            "text": text,
            "api_app_id": "A0APP",
            "is_enterprise_install": "false",
            "response_url": self.standin.response_url(trigger),
            "trigger_id": trigger,
        }
        return urllib.parse.urlencode(
            {**fields, **({"enterprise_id": self.enterprise} if self.enterprise else {})}
        )

    def slash(self, user: str, text: str, **kwargs) -> Reply:
        send_opts = {k: kwargs.pop(k) for k in ("retry_num", "bad_signature", "timestamp") if k in kwargs}
        return self.send(
            self.slash_body(user, text, **kwargs), "application/x-www-form-urlencoded", **send_opts
        )

    def interaction(self, payload: dict, **kwargs) -> Reply:
        body = urllib.parse.urlencode({"payload": json.dumps(payload)})
        return self.send(body, "application/x-www-form-urlencoded", **kwargs)

    def click(self, user: str, message: dict, action_id: str, channel: str = "C0MIGRATE", **kwargs) -> Reply:
        """Click the button `action_id` of a message the bot posted (as recorded by the stand-in)."""
        return self.interaction(self.click_payload(user, message, action_id, channel), **kwargs)

    def click_payload(self, user: str, message: dict, action_id: str, channel: str = "C0MIGRATE") -> dict:
        """The block_actions payload of one click (send it twice to deliver the click twice)."""
        button = find_button(message, action_id)
        trigger = self.next_trigger()
        payload = {
            "type": "block_actions",
            "team": {"id": self.team},
            "user": {"id": user, "name": user.lower()},
            "api_app_id": "A0APP",
            "trigger_id": trigger,
            "response_url": self.standin.response_url(trigger),
            "container": {"type": "message", "message_ts": message["ts"], "channel_id": channel},
            "channel": {"id": channel},
            "message": message,
            "actions": [
                {
                    "type": "button",
                    "action_id": button["action_id"],
                    "block_id": button["_block_id"],
                    "value": button.get("value", ""),
                    "action_ts": str(time.time()),
                }
            ],
        }
        return payload

    def submit_view(self, user: str, view: dict, values: dict, **kwargs) -> Reply:
        """Submit a modal the bot opened, with `values` as {block_id: {action_id: value-dict}}."""
        payload = {
            "type": "view_submission",
            "team": {"id": self.team},
            "user": {"id": user, "name": user.lower()},
            "api_app_id": "A0APP",
            "trigger_id": self.next_trigger(),
            "view": {**view, "id": view.get("id", "V1"), "state": {"values": values}},
        }
        return self.interaction(payload, **kwargs)

    def event(self, event: dict, event_id: str | None = None, **kwargs) -> Reply:
        body = json.dumps(
            {
                "token": "legacy",
                "team_id": self.team,
                "api_app_id": "A0APP",
                "type": "event_callback",
                "event_id": event_id or f"Ev{next(self._ids)}",
                "event_time": int(time.time()),
                "event": event,
            }
        )
        return self.send(body, "application/json", **kwargs)


def find_button(message: dict, action_id_prefix: str) -> dict:
    """The first button of `message` whose action_id starts with `action_id_prefix`."""
    blocks = message.get("blocks") or []
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
    for block in blocks:
        for el in block.get("elements", []) if block.get("type") == "actions" else []:
            if el.get("type") == "button" and el.get("action_id", "").startswith(action_id_prefix):
                return {**el, "_block_id": block.get("block_id", "")}
    raise AssertionError(f"no button {action_id_prefix!r} in message {message.get('text', '')[:80]!r}")


# -- the bot under test ----------------------------------------------------------------------
class RunningBot:
    """The real bot (bolt App, outbox worker, WSGI app in waitress on port 0) against a stand-in."""

    def __init__(self, settings, standin: SlackStandIn, handle=None) -> None:
        from bot.slack.app import build_app
        from bot.slack.bridge import Bridge
        from bot.slack.server import http_server, make_wsgi_app
        from commands import Core
        from scheduling.hooks import ProcessSchedule

        self.settings = settings.with_(slack_api_url=standin.base_url)
        self.standin = standin
        self.core = Core.from_settings(self.settings, schedule=ProcessSchedule)  # as `serve` wires it
        self.bridge = Bridge.create(self.core, handle=handle)
        self.app = build_app(self.bridge)
        self.bridge.worker.start()
        self.server = http_server(make_wsgi_app(self.core, self.app), host="127.0.0.1", port=0, threads=8)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self.server.effective_port}"
        self.slack = SlackSender(self.url, self.settings.slack_signing_secret, standin)

    def get(self, path: str) -> Reply:
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as resp:
                return Reply(resp.status, dict(resp.headers), resp.read().decode())
        except urllib.error.HTTPError as err:
            return Reply(err.code, dict(err.headers), err.read().decode())

    def _serve(self) -> None:
        """waitress's loop in short slices, closed by this same thread (no select on a closed fd)."""
        from waitress import wasyncore

        while not self._stop.is_set():
            wasyncore.loop(timeout=0.05, map=self.server._map, count=1)
        self.server.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.bridge.wait_work(30)
        self.bridge.close()


class ScriptedCommands:
    """A small command core standing in for `commands.handle` (same signature), for the
    adapter's own tests: it records what ran and produces the posts and work the real core
    produces (a go/no-go request with buttons, progress, long NOTICE output). It holds no
    guard (no duplicate-request check, no roles): what the adapter's tests see refused is
    refused by the adapter; the core's guards are tested with the real core
    (tests/test_slack_guards.py)."""

    def __init__(self) -> None:
        self.executed: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def __call__(self, core, user: str, text: str, *, request_id: str | None = None):
        from commands.result import Outcome

        with self._lock:
            self.executed.append((user, text))
        verb, _, rest = text.strip().partition(" ")
        handler = getattr(self, "_" + (verb or "help"), None)
        return (
            handler(core, user, rest)
            if handler
            else Outcome.refused(f"unknown command {verb!r}: try /migrate help")
        )

    def ran(self, text: str) -> int:
        with self._lock:
            return sum(1 for _, t in self.executed if t == text)

    def _help(self, core, user, rest):
        from commands.result import OK, Outcome

        return Outcome(OK, reply=["/migrate help", "/migrate status", "/migrate preflight"])

    def _decide(self, core, user, what):
        from commands.result import OK, Outcome

        return Outcome(OK, reply=[f"recorded: {what}"])

    def _approve(self, core, user, rest):
        return self._decide(core, user, f"approve {rest}".strip())

    def _defer(self, core, user, rest):
        return self._decide(core, user, f"defer {rest}")

    def _preflight(self, core, user, rest):
        from commands.result import OK, Action, Outcome, Post, Progress

        run_id = "run-" + uuid_hex()
        actions = [
            Action("approve_now", "GO now", "approve", "primary", "Start Migration 006 now?", "tpm"),
            Action("approve_scheduled", "GO scheduled", "approve at", None, None, "tpm"),
            Action("defer", "NO-GO", "defer", "danger", None, "tpm"),
        ]

        def work(reporter) -> int:
            reporter.progress(
                Progress(run_id, None, "preflight", None, None, 0, 5, 0.0, 60.0, "preflight running")
            )
            reporter.post(Post("preflight_done", "Preflight: GO", lines=["all checks passed"], run_id=run_id))
            reporter.post(
                Post(
                    "preflight_request",
                    "GO / NO-GO?",
                    lines=["decide"],
                    actions=actions,
                    run_id=run_id,
                    mentions=list(core.roster.members("tpm")),
                )
            )
            return OK

        return Outcome(OK, reply=["preflight started"], work=work, run_id=run_id)

    def _notice(self, core, user, rest):
        from commands.result import OK, Outcome, Post

        lines = [f'NOTICE:  relation "t{i}" already exists, skipping' for i in range(10_000)]
        post = Post(
            "phase_done", "Phase 1 complete", lines=lines[:200], detail="\n".join(lines), run_id="run-notice"
        )
        return Outcome(OK, reply=["ok"], posts=[post], run_id="run-notice")


def uuid_hex() -> str:
    import uuid

    return uuid.uuid4().hex[:8]
