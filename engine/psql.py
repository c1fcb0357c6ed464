"""Running a file through `psql` itself, for files that use psql meta-commands.

The password travels in PGPASSWORD and the inputs in PGOPTIONS (`-c name=value`), both in
the child's environment, never on its command line (visible in `ps`). Output is captured
and parsed: NOTICEs and the error (with its line and SQLSTATE) come from psql's stderr.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from core import children

# psql:/path/file.sql:12: ERROR:  42P01: relation "x" does not exist   (VERBOSITY=verbose)
_MESSAGE = re.compile(
    r"^psql:(?P<file>.*?):(?P<line>\d+): (?P<severity>[A-Z]+):\s+(?:(?P<state>[0-9A-Z]{5}): )?(?P<text>.*)$"
)
_SEVERITIES = {"NOTICE", "WARNING", "INFO", "DEBUG", "LOG"}


@dataclass
class PsqlRun:
    returncode: int
    stdout: str
    stderr: str
    notices: list[str] = field(default_factory=list)
    error_line: int | None = None
    error_state: str | None = None
    error_message: str | None = None


def pgoptions(settings: Mapping[str, str]) -> str:
    """PGOPTIONS value setting each name=value; spaces and backslashes escaped per libpq."""

    def esc(text: str) -> str:
        return text.replace("\\", "\\\\").replace(" ", "\\ ")

    return " ".join(f"-c {esc(name)}={esc(value)}" for name, value in settings.items())


def child_env(dsn: str, settings: Mapping[str, str], application_name: str) -> tuple[str, dict[str, str]]:
    """(conninfo without password, environment for psql)."""
    params = conninfo_to_dict(dsn)
    password = params.pop("password", None)
    env = dict(os.environ)
    # client_connection_check_interval: if the tool dies with the bot, its backend notices and
    # rolls back within a second instead of finishing a sleep or a lock wait first.
    options = {"client_connection_check_interval": str(children.CLIENT_CHECK_MS), **settings}
    env.update(PGOPTIONS=pgoptions(options), PGAPPNAME=application_name, PGCONNECT_TIMEOUT="10")
    if password:
        env["PGPASSWORD"] = str(password)  # conninfo values are text
    params.pop("application_name", None)
    return make_conninfo("", **params), env


def command(conninfo: str, files: Sequence[Path], single_transaction: bool) -> list[str]:
    args = [
        "psql",
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-v",
        "VERBOSITY=verbose",
        "-v",
        "SHOW_CONTEXT=never",
    ]
    if single_transaction:
        args.append("-1")
    for path in files:
        args += ["-f", str(path)]
    return args + ["-d", conninfo]


class PsqlProcess:
    """One psql child; `interrupt()` (thread-safe) sends SIGINT, which makes psql cancel the
    running statement; ON_ERROR_STOP then ends it."""

    def __init__(self, args: list[str], env: dict[str, str]):
        self._args, self._env = args, env
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        self._interrupted = False

    def run(self, timeout: float | None = None) -> PsqlRun:
        with self._lock:
            if self._interrupted:
                return PsqlRun(3, "", "cancelled before start")
            self._proc = subprocess.Popen(
                children.dying_with_parent(self._args),
                env=self._env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                errors="replace",
            )
        try:
            out, err = self._proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.interrupt()
            out, err = self._proc.communicate()
        return parse_output(self._proc.returncode, out, err)

    def interrupt(self) -> None:
        with self._lock:
            self._interrupted = True
            if self._proc is not None and self._proc.poll() is None:
                self._proc.send_signal(signal.SIGINT)


def parse_output(returncode: int, stdout: str, stderr: str) -> PsqlRun:
    """Notices in order, and the first ERROR with its line and SQLSTATE."""
    run = PsqlRun(returncode, stdout, stderr)
    for line in stderr.splitlines():
        match = _MESSAGE.match(line)
        if not match:
            continue
        severity, text = match.group("severity"), match.group("text")
        if severity in _SEVERITIES:
            run.notices.append(f"{severity}: {text}")
        elif severity in ("ERROR", "FATAL") and run.error_message is None:
            run.error_line, run.error_state, run.error_message = (
                int(match.group("line")),
                match.group("state"),
                text,
            )
    if returncode != 0 and run.error_message is None:
        run.error_message = (
            stderr.strip().splitlines()[-1] if stderr.strip() else f"psql exited with {returncode}"
        )
    return run
