"""The console adapter: the same commands as Slack, in a terminal.

`python -m bot console --user U… "TEXT"` runs one command, prints what the bot would post
to the channel and tell the invoker, waits for the work it started, and exits 0/1/2
(CONTRACT.md). Without TEXT it is an interactive prompt.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from bot.terminal import terminal_safe
from commands import Core, handle
from commands.parse import ParseError, parse
from commands.result import OK, Post, Progress
from core import clock
from workflows.templates import seconds

BAR_WIDTH = 20
PLAIN_PROGRESS_INTERVAL = 2.0  # seconds between progress lines when stdout is not a terminal


def progress_line(p: Progress) -> str:
    """`Phase 1 [######--------------] statement 12/40 of 1.1 file.sql — 1.2 s of estimate 3 min 00 s`."""
    done = p.statement / p.statements if p.statements else 0.0
    filled = int(round(done * BAR_WIDTH))
    where = f"statement {p.statement}/{p.statements} of {p.step} {p.file}" if p.step else p.state
    return (
        f"Phase {p.phase} {p.phase_name} [{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {where} — "
        f"{seconds(p.elapsed)} of estimate {seconds(p.estimate)}"
    )


class ConsoleReporter:
    """Prints posts as the channel would show them, and a live progress line."""

    def __init__(self, out: TextIO):
        self.out = out
        self.tty = out.isatty()
        self._guard = threading.Lock()
        self._last = 0.0
        self._pending_cr = False

    def post(self, post: Post) -> None:
        with self._guard:
            self._end_progress()
            self.out.write(terminal_safe(render_post(post)) + "\n")
            self.out.flush()

    def progress(self, progress: Progress) -> None:
        with self._guard:
            now = time.monotonic()
            if self.tty:
                self.out.write("\r\033[K" + terminal_safe(progress_line(progress)))
                self._pending_cr = True
            elif now - self._last >= PLAIN_PROGRESS_INTERVAL or progress.statement == progress.statements:
                self.out.write("  … " + terminal_safe(progress_line(progress)) + "\n")
            else:
                return
            self._last = now
            self.out.flush()

    def _end_progress(self) -> None:
        if self._pending_cr:
            self.out.write("\n")
            self._pending_cr = False


def render_post(post: Post) -> str:
    lines = [f"[channel] {post.title}"] + [f"    {line}" for line in post.lines]
    lines += [f"    {k}: {v}" for k, v in post.fields.items()]
    if post.detail:
        lines += ["    " + line for line in post.detail.splitlines()]
    if post.mentions:
        lines.append("    action needed from: " + ", ".join(post.mentions))
    informed = [u for u in post.informed if u not in post.mentions]
    if informed:
        lines.append("    fyi: " + ", ".join(informed))
    for action in post.actions:
        lines.append(f"    [button: {action.label}] → /migrate {action.command}")
    return "\n".join(lines)


def run_command(core: Core, user: str, text: str, out: TextIO = sys.stdout) -> int:
    """One command as `user`: print replies and posts, run the work to its end, return the exit code."""
    outcome = handle(core, user, text)
    for line in outcome.reply:
        out.write(f"[to you] {terminal_safe(line)}\n")
    reporter = ConsoleReporter(out)
    for post in outcome.posts:
        reporter.post(post)
    code = outcome.work(reporter) if outcome.work else outcome.code
    reporter._end_progress()
    for note in console_notes(text, code):
        out.write(f"[note] {note}\n")
    out.flush()
    return code


def console_notes(text: str, code: int) -> list[str]:
    """What the console must add to a command's answer: a GO scheduled here starts only if
    `serve` (where the scheduler runs) is running for this database."""
    try:
        cmd = parse(text, clock.now())
    except ParseError:
        return []
    if cmd.verb == "approve" and cmd.at is not None and code == OK:
        return [
            "the scheduled start is fired by the scheduler in `python -m bot serve`, not by this console: "
            "keep `serve` running for this database, or the run will not start by itself."
        ]
    return []


def interactive(core: Core, user: str, stdin: TextIO = sys.stdin, out: TextIO = sys.stdout) -> int:
    """A prompt: each line is a /migrate command; `quit` or end of input leaves."""
    out.write(f"/migrate console as {user} — `help` lists the commands, `quit` leaves.\n")
    code = 0
    while True:
        out.write("migrate> ")
        out.flush()
        line = stdin.readline()
        if not line or line.strip() in ("quit", "exit"):
            out.write("\n")
            return code
        if line.strip():
            code = run_command(core, user, line.strip(), out)
            out.write(f"(exit {code})\n")
