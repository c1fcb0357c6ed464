"""The one source of time. Tests that need another clock patch `now` here."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now() -> datetime:
    """Current time, timezone-aware UTC."""
    return datetime.now(UTC)


def monotonic() -> float:
    """Seconds on a clock that never goes back, for durations."""
    return time.monotonic()


def hhmm(moment: datetime) -> str:
    """`HH:MM UTC`, the way operators read times in messages."""
    return moment.astimezone(UTC).strftime("%H:%M UTC")
