"""Keeps secrets out of everything the bot posts, prints or logs.

Three kinds of secret are masked: passwords inside URLs (`scheme://user:***@host`), Slack
tokens (`xoxb-…`, `xapp-…`), and any literal value the caller registers (the encryption
key, connection strings taken from the environment).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"

# `://user:` — the head of a URL's credentials. The password that follows is found by
# `_mask_url_passwords`, not by a regex: a pattern such as `[^@\s]+(?=@)` rescans the rest of
# the text from every candidate start, which is quadratic (1 MB of `a://u:` took minutes while
# holding the GIL). No scheme is required before `://`: masking more is the safe direction.
_URL_CREDENTIALS = re.compile(r"://[^:/@\s]*:")
_WHITESPACE = re.compile(r"\s")
# password=... (and libpq's sslpassword=..., the client key's passphrase) in libpq keyword
# strings and query strings. A quoted value may hold `\'` (libpq's escape: the quote does not
# end it). An unclosed quote masks to the end (`'…'?`): with a required closing quote every
# unclosed one would rescan the text; the two alternatives inside the quotes never overlap,
# so this stays linear.
_KV_PASSWORD = re.compile(r"(?i)(?P<head>\b(?:ssl)?password\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'?|[^\s&;]+)")
_SLACK_TOKEN = re.compile(r"\bx(?:ox[abposr]|app)-[A-Za-z0-9-]+")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Return `text` with every secret masked. Linear in the length of `text`."""
    if not text:
        return text
    for value in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(value, MASK)
    text = _mask_url_passwords(text)
    text = _KV_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    return _SLACK_TOKEN.sub(lambda m: m.group(0)[:5] + MASK, text)


def _mask_url_passwords(text: str) -> str:
    """Mask what lies between `://user:` and the last `@` of the same whitespace-free word.

    The last `@`, not the first: a password may hold an unencoded `@` (or `/`, `#`, `?`), and
    a host never does. Each word's end and last `@` are looked up once and reused by every
    head inside that word, so the whole pass reads the text a bounded number of times."""
    pieces: list[str] = []
    copied = 0  # text[:copied] is already in `pieces`
    word_end = last_at = -1  # the current word's end and its last '@' (-1: no '@')
    for head in _URL_CREDENTIALS.finditer(text):
        start = head.end()
        if start < copied:
            continue  # inside a password already masked
        if start > word_end:
            found = _WHITESPACE.search(text, start)
            word_end = found.start() if found else len(text)
            last_at = text.rfind("@", start, word_end)
        if last_at > start:
            pieces += [text[copied:start], MASK]
            copied = last_at
    return "".join(pieces) + text[copied:] if pieces else text


def redact_url(url: str | None) -> str:
    """A URL fit to show: password masked (`postgresql://user:***@host/db`)."""
    return redact(url or "")


def first_line(exc: BaseException) -> str:
    """An exception's first line (what follows is often the statement or a hint), or its type
    name when its text is empty. Not redacted: callers pass it through `redact`."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
