"""Slack's Socket Mode side, stood in: a local WebSocket server that greets the app with
`hello`, sends it envelopes (slash commands, interactions) the way Slack does, and records the
acks the app sends back with their arrival times. Pair it with `SocketModeSlack`, the Web API
stand-in whose `apps.connections.open` hands out this server's URL."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

from websockets.sync.server import ServerConnection, serve

from tests.support.slack_standin import SlackStandIn


class SocketModeServer:
    def __init__(self) -> None:
        self.acks: list[tuple[float, dict]] = []  # (arrival, message)
        self.sent: dict[str, float] = {}  # envelope_id -> when it was sent
        self._connections: list[ServerConnection] = []
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._server = serve(self._handler, "127.0.0.1", 0)
        self.port = self._server.socket.getsockname()[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> SocketModeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._thread.join(5)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/link/?ticket=standin"

    def wait_connected(self, timeout: float = 30.0) -> bool:
        return self._connected.wait(timeout)

    def _handler(self, ws: ServerConnection) -> None:
        ws.send(
            json.dumps(
                {
                    "type": "hello",
                    "num_connections": 1,
                    "connection_info": {"app_id": "A0APP"},
                    "debug_info": {"host": "standin", "approximate_connection_time": 3600},
                }
            )
        )
        with self._lock:
            self._connections.append(ws)
        self._connected.set()
        for message in ws:
            with self._lock:
                self.acks.append((time.monotonic(), json.loads(message)))

    def send(self, kind: str, payload: dict) -> str:
        """Send an envelope of `kind` (slash_commands, interactive) to the app; its id."""
        envelope_id = str(uuid.uuid4())
        with self._lock:
            ws = self._connections[-1]
            self.sent[envelope_id] = time.monotonic()
        ws.send(
            json.dumps(
                {
                    "envelope_id": envelope_id,
                    "type": kind,
                    "payload": payload,
                    "accepts_response_payload": kind == "slash_commands",
                    "retry_attempt": 0,
                    "retry_reason": "",
                }
            )
        )
        return envelope_id

    def ack_of(self, envelope_id: str, timeout: float = 10.0) -> tuple[float, dict]:
        """(seconds from send to ack, the ack message); fails after `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for at, message in self.acks:
                    if message.get("envelope_id") == envelope_id:
                        return at - self.sent[envelope_id], message
            time.sleep(0.01)
        raise AssertionError(f"no ack for envelope {envelope_id} within {timeout} s")


class SocketModeSlack(SlackStandIn):
    """The Web API stand-in, with `apps.connections.open` pointing at a SocketModeServer."""

    def __init__(self, server: SocketModeServer) -> None:
        super().__init__()
        self.socket_server = server

    def _api_apps_connections_open(self, body: dict) -> dict[str, Any]:
        return {"ok": True, "url": self.socket_server.url}
