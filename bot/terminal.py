"""Text shown in a terminal (the console, serve's log lines): no control characters."""

from __future__ import annotations

import re

# Escape sequences (CSI, OSC, two-character ESC x) and every other control character but
# newline and tab: text people typed (an incident, a defer reason) or a database returned
# must not move another operator's cursor, recolour or retitle their terminal. Unicode's
# bidirectional overrides and isolates go too: `\u202e` makes the rest of a line display
# reversed, so a reason or a value could show other words than the ones it holds.
_TERMINAL_CONTROL = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?|\x9b[0-?]*[ -/]*[@-~]"
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]"
)


def terminal_safe(text: str) -> str:
    """`text` without control characters or escape sequences (newlines and tabs kept)."""
    return _TERMINAL_CONTROL.sub("", text)
