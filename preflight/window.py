"""The execution window: `MIGRATE_WINDOW` (`HH:MM-HH:MM`, UTC, may cross midnight).

The report asks for "2+ hours for troubleshooting": GO needs at least `min_hours` of the
window left at the moment the run would start. The same check validates a scheduled GO
time (`approve at <time>`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta

from preflight.lines import Spec, line
from preflight.report import CheckLine

_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


class WindowError(ValueError):
    """MIGRATE_WINDOW is not `HH:MM-HH:MM`."""


def parse_window(window: str) -> tuple[time, time]:
    match = _WINDOW.match(window)
    if not match:
        raise WindowError(f"MIGRATE_WINDOW {window!r} is not HH:MM-HH:MM (UTC)")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        raise WindowError(f"MIGRATE_WINDOW {window!r} has an impossible time")
    return time(h1, m1), time(h2, m2)


def remaining(window: str, at: datetime) -> timedelta | None:
    """Time left in the window at `at`, or None when `at` is outside it.

    The window that contains `at` is either today's (start today) or yesterday's (when it
    crosses midnight and `at` is in its early-morning part). Equal ends mean all day.
    """
    start, end = parse_window(window)
    at = at.astimezone(UTC)
    length = (datetime.combine(at.date(), end) - datetime.combine(at.date(), start)) % timedelta(days=1)
    length = length or timedelta(days=1)
    for day in (at.date(), at.date() - timedelta(days=1)):
        opens = datetime.combine(day, start, tzinfo=UTC)
        if opens <= at < opens + length:
            return opens + length - at
    return None


def window_check(window: str | None, min_hours: float, at: datetime) -> CheckLine:
    """The window line: pass when no window is configured or enough of it is left at `at`."""
    spec = Spec(
        "window",
        f"Execution window allows {min_hours:g}+ h for troubleshooting",
        f"MIGRATE_WINDOW {window or '(unset)'} evaluated at {at.astimezone(UTC):%Y-%m-%d %H:%M} UTC",
        f"≥ {min_hours:g} h of the window left",
    )
    if not window:
        return line(spec, True, "no window configured")
    try:
        left = remaining(window, at)
    except WindowError as exc:
        return line(spec, False, str(exc))
    if left is None:
        return line(spec, False, f"{at.astimezone(UTC):%H:%M} UTC is outside the window {window} UTC")
    hours = left.total_seconds() / 3600
    return line(spec, hours >= min_hours, f"{hours:.2f} h of the window left")
