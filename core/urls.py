"""Connection URLs read before any parser sees them: their password, so that it is a
registered secret before anything can quote it, and whether their credentials can be parsed.

A password holding an unencoded `/`, `?` or `#` ends a URL parser's authority early: the
pieces of the password become a "host", a "port" or a "database name", and the parser's
error (`port 'pa' … is not a number`) or the bot's own output shows them where no redaction
of the whole password can recognise them. So the password is taken here as everything between
the user's `:` and the last `@` (a host never holds `@`), both as written and percent-decoded,
and a URL whose credentials a parser would cut is refused without quoting any part of it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote

from psycopg.conninfo import conninfo_to_dict

_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_CUTTERS = "/?#@"  # characters that end (or split) a URL's userinfo in a parser


def userinfo(url: str) -> str | None:
    """`user:password` of `scheme://user:password@host…`: between `://` and the last `@`."""
    start = url.find("://")
    if start < 0:
        return None
    info, at, _ = url[start + 3 :].rpartition("@")
    return info if at else None


def password(url: str) -> str | None:
    info = userinfo(url)
    if info is None or ":" not in info:
        return None
    return info.split(":", 1)[1] or None


def url_secrets(urls: Iterable[str | None]) -> tuple[str, ...]:
    """The password of each URL as written and percent-decoded (a driver may show either),
    and the `password`/`sslpassword` libpq reads from a PostgreSQL URL's query string or a
    keyword string (`host=… password='…'`)."""
    found: list[str] = []
    for url in urls:
        secret = password(url or "")
        if secret:
            found += [secret, unquote(secret)]
        found += _libpq_passwords(url or "")
    return tuple(dict.fromkeys(found))


def _libpq_passwords(dsn: str) -> list[str]:
    """What libpq's own parser reads as a password in `dsn` (nothing when it is not a
    PostgreSQL connection string; its parse errors are never shown)."""
    if not dsn or ("=" not in dsn):
        return []
    try:
        params = conninfo_to_dict(dsn)
    except Exception:  # noqa: BLE001 - not a libpq string (redis://, mongodb://…): nothing to take
        return []
    return [str(params[key]) for key in ("password", "sslpassword") if params.get(key)]


def credentials_problem(name: str, url: str | None) -> str | None:
    """Why the user or password of `url` (setting `name`) cannot be parsed safely, or None.
    Names the rule, never a part of the URL."""
    info = userinfo(url or "")
    if not info:
        return None
    if any(c in info for c in _CUTTERS):
        return (
            f"{name}: the user or password holds an unencoded '/', '?', '#' or '@': "
            "percent-encode it (/ as %2F, ? as %3F, # as %23, @ as %40)"
        )
    if _BAD_ESCAPE.search(info):
        return f"{name}: the user or password holds a '%' that does not start a %-escape: write it as %25"
    return None
