"""Local stand-ins for the deployed application and the private-network MongoDB host.

Used by `scripts/demo` (so a pre-flight of the demo database can reach a "deployment" and a
"MongoDB" on loopback) and by the test suite. The deployment answers like the report's
application: `/` → 200, `/api/platform/...` → 401 {"error":"Unauthorized"}. With
`session_context` on (the session-middleware release Migration 007 waits for),
`/api/platform/session-context` answers 200 with the session settings the middleware sets.
`python -m bot.demo_services` starts both and prints their settings as env lines.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Deployment:
    def __init__(self):
        self.status = 200  # what `/` answers; set to 503 to make the deployment unhealthy
        self.session_context = False  # True: the session middleware shipped (Migration 007's precondition)
        deployment = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                body: dict[str, object]
                if self.path == "/api/platform/session-context" and deployment.session_context:
                    code, body = 200, {"settings": ["app.current_user_id", "app.current_org_id"]}
                elif self.path.startswith("/api/platform/"):
                    code, body = 401, {"error": "Unauthorized"}
                else:
                    code, body = deployment.status, {"ok": deployment.status == 200}
                data = json.dumps(body, separators=(",", ":")).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class TcpListener:
    """Accepts TCP connections (a private-network service that is up) and closes them."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
                conn.close()
            except OSError:
                return

    def close(self):
        self._stop = True
        try:  # wakes the blocked accept(): without it the port keeps accepting after close()
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def main() -> None:
    deployment, mongo = Deployment(), TcpListener()
    print(f"DEPLOYMENT_URL={deployment.url}")
    print(f"REGISTER_MONGODB_URL=mongodb://lancio:demo-mongo-pw@127.0.0.1:{mongo.port}/lancio", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
