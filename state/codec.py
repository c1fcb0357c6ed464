"""How `state` writes values: one JSON encoding for Redis and PostgreSQL, and text from
Redis's bytes. In one place so that what is stored, mirrored and read back always agrees."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, datetime
from enum import Enum
from pathlib import PurePath
from typing import Any


def dumps(value: Any) -> str:
    """JSON for everything `state` stores: datetimes as ISO 8601, paths and enums as text,
    NUL characters dropped (PostgreSQL text and jsonb cannot hold them).

    The C encoder first: a run's record is written whole at every transition, and walking it
    in Python (_clean) cost more than the migration itself on a folder of small files. Only a
    value holding a NUL, a set or a key JSON cannot take (a path, a bool) takes the slow walk."""
    try:
        text = json.dumps(value, default=_plain)
    except (TypeError, ValueError):  # a set, or a key that is not str/int/float
        return json.dumps(_clean(value), default=_plain)
    if "\\u0000" in text or '"true":' in text or '"false":' in text or '"null":' in text:
        return json.dumps(_clean(value), default=_plain)  # a NUL, or a key the walk spells differently
    return text


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, Mapping):
        return {_clean(str(k)): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_clean(v) for v in value]
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, PurePath):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable for the run state")


def as_text(value: bytes | str) -> str:
    """Redis answers bytes (no decode_responses on the shared client): text either way."""
    return value.decode() if isinstance(value, bytes) else value
