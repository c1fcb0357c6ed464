"""Network probes: the deployment answers 200, the private databases accept connections.

The report's `curl -I` and `ping mongodb.railway.internal` become a timed GET and a TCP
connect to the port the registration will use (ICMP proves nothing about a port), plus a
real Redis `PING`. Every probe has its own timeout.

Redis and passwords: a server with no password configured (the default user is `nopass`)
answers `AUTH default <anything>` with OK (and the one-argument `AUTH <pw>` with an error),
so PONG after AUTH proves the server is reachable and accepts the URL's credentials, not
that the password is checked. When the URL carries a password, a second PING without any
credentials tells the two apart, and the line says which: "PONG (AUTH accepted)",
"PONG (AUTH accepted; the server also answers without a password, so it was not checked)"
or "PONG (no AUTH sent)". Reachability is what GO needs, so all three pass.
"""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import redis as redis_lib

from core.urls import credentials_problem

DEFAULT_PORTS = {
    "mongodb": 27017,
    "mongodb+srv": 27017,
    "redis": 6379,
    "rediss": 6379,
    "postgresql": 5432,
    "postgres": 5432,
    "mysql": 3306,
    "amqp": 5672,
    "http": 80,
    "https": 443,
}
REDIS_SCHEMES = ("redis", "rediss")  # a reach check of such a URL also sends a real PING


def http_probe(url: str, timeout: float, expect: tuple[int, ...] = (200,)) -> tuple[bool, str]:
    """GET `url`: ok when the status is one of `expect`. Observed: status and latency, or the error."""
    start = time.monotonic()
    request = urllib.request.Request(url, method="GET", headers={"User-Agent": "migrate-bot-preflight"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, (TimeoutError, socket.timeout)) or "timed out" in str(reason):
            return False, f"no answer within {timeout:g} s"
        return False, f"unreachable: {reason}"
    latency = (time.monotonic() - start) * 1000
    return status in expect, f"HTTP {status} in {latency:.0f} ms"


def endpoints(url: str) -> list[tuple[str, int]]:
    """host:port pairs of a connection URL (MongoDB URLs may list several hosts).
    Raises ValueError saying what is wrong, quoting no part of the URL: credentials a parser
    would cut (a password with an unencoded '/', '?', '#' or '@' would be read as a host and
    port), or a port that is not a number."""
    problem = credentials_problem("the URL", url)
    if problem:
        raise ValueError(problem.removeprefix("the URL: "))
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    default = DEFAULT_PORTS.get(parts.scheme, 0)
    pairs = []
    for item in netloc.split(","):
        host, _, port = item.rpartition(":") if item.rfind(":") > item.rfind("]") else (item, "", "")
        if port and not (port.isascii() and port.isdigit()):
            raise ValueError("a port is not a number")
        pairs.append((host.strip("[]"), int(port) if port else default))
    return pairs


def tcp_probe(host: str, port: int, timeout: float) -> tuple[bool, str]:
    """Open (and close) a TCP connection; observed: connect time or the error."""
    start = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except TimeoutError:
        return False, f"TCP {host}:{port}: no answer within {timeout:g} s"
    except OSError as exc:
        return False, f"TCP {host}:{port}: {exc.strerror or exc}"
    return True, f"TCP {host}:{port} connected in {(time.monotonic() - start) * 1000:.0f} ms"


def tcp_all(url: str, timeout: float) -> tuple[bool, str]:
    """TCP probe of every host of `url`."""
    results = [tcp_probe(host, port, timeout) for host, port in endpoints(url)]
    return all(ok for ok, _ in results), "; ".join(text for _, text in results)


def redis_probe(url: str, timeout: float) -> tuple[bool, str]:
    """TCP connect, then a real PING with the URL's credentials: ok on PONG."""
    ok, observed = tcp_all(url, timeout)
    if not ok:
        return ok, observed
    client = redis_lib.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        pong = client.ping()
    except redis_lib.RedisError as exc:
        return False, f"{observed}; PING failed: {type(exc).__name__}: {exc}"
    finally:
        client.close()
    answer = "PONG" if pong is True else repr(pong)
    return pong is True, f"{observed}; PING → {answer} ({_auth_note(url, timeout)})"


def _auth_note(url: str, timeout: float) -> str:
    """Whether the URL's password was sent, and whether the server actually checks it."""
    if not urlsplit(url).password:
        return "no AUTH sent"
    parts = urlsplit(url)
    bare = parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]).geturl()  # credentials stripped
    anonymous = redis_lib.Redis.from_url(bare, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        anonymous.ping()
    except redis_lib.RedisError:  # NOAUTH / AuthenticationError: the server requires the password
        return "AUTH accepted"
    finally:
        anonymous.close()
    return "AUTH accepted; the server also answers without a password, so it was not checked"
