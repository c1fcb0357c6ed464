"""Real sockets on 127.0.0.1 standing in for the deployment and the private network.

`http_server(status)` answers every GET with `status`; `silent_listener()` accepts TCP
connections and never answers (a hung deployment, or a port that is open); `closed_port()`
is a port nothing listens on (connection refused).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _handler(status: int) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            body = b'{"status":"ok"}' if status == 200 else b'{"error":"Service Unavailable"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:  # keep test output clean
            pass

    return Handler


@contextmanager
def http_server(status: int = 200) -> Iterator[str]:
    """An HTTP server answering `status`; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(status))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def silent_listener() -> Iterator[tuple[str, int]]:
    """A listening TCP socket that never reads or answers; yields (host, port). The kernel
    completes the handshake, so a TCP connect succeeds and an HTTP request times out."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield sock.getsockname()
    finally:
        sock.close()


def closed_port() -> int:
    """A port nothing listens on (bound once, released): connecting is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
