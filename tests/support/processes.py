"""Processes on this machine, read from /proc: for tests that check nothing was left running."""

from __future__ import annotations

from pathlib import Path


def running_with(*fragments: str) -> list[int]:
    """Pids of running (not zombie) processes whose command line contains every fragment."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and all(f in cmdline for f in fragments):
            found.append(int(entry.name))
    return found
