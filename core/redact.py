"""Keeps secrets out of everything the bot posts, prints or logs.

Three kinds of secret are masked: passwords inside URLs (`scheme://user:***@host`), Slack
tokens (`xoxb-…`, `xapp-…`), and any literal value the caller registers (the encryption
key, connection strings taken from the environment).
"""
from __future__ import annotations

import re
from typing import Iterable

MASK = "***"

# scheme://user:password@  — the password may hold anything but '@' and whitespace.
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]+)(?=@)")
# password=... in libpq keyword strings and query strings
_KV_PASSWORD = re.compile(r"(?i)(?P<head>\bpassword\s*=\s*)(?P<pw>'[^']*'|[^\s&;]+)")
_SLACK_TOKEN = re.compile(r"\bx(?:ox[abposr]|app)-[A-Za-z0-9-]+")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Return `text` with every secret masked."""
    if not text:
        return text
    for value in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(value, MASK)
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    text = _KV_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    return _SLACK_TOKEN.sub(lambda m: m.group(0)[:5] + MASK, text)


def redact_url(url: str | None) -> str:
    """A URL fit to show: password masked (`postgresql://user:***@host/db`)."""
    return redact(url or "")


def first_line(exc: BaseException) -> str:
    """An exception's first line (what follows is often the statement or a hint), or its type
    name when its text is empty. Not redacted: callers pass it through `redact`."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
