"""Secrets never reach a log record, and database passwords never reach a command line.

1. Every log record at DEBUG (every logger, every thread: the bot's own, psycopg, redis,
   slack_sdk, bolt, urllib, APScheduler) captured across the whole console path and the whole
   Slack path, searched for the planted secrets (tests/conftest.py PLANTED).
2. A database URL with a password (a scratch role; the server's pg_hba may trust 127.0.0.1,
   which accepts any password, so what is checked is where the password travels): while the
   bot runs pre-flight, the phases and verification, every psql / pg_dump / pg_restore child is
   caught in /proc; its command line never holds the password, its environment does
   (PGPASSWORD).
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql as pgsql

from commands import Core
from tests.conftest import PLANTED, PLANTED_MONGO_PASSWORD
from tests.support import pg
from tests.support.flow import COORDINATOR, LIU, SERGEI, TPM, Console
from tests.support.slack_fixtures import standin  # noqa: F401 (fixture)
from tests.support.slack_standin import RunningBot

SECRETS = (
    PLANTED["key"],
    PLANTED["bot_token"],
    PLANTED["signing"],
    PLANTED_MONGO_PASSWORD,
    "S3cretRedisPw42",
    PLANTED["mongodb"],
    PLANTED["redis"],
)
TOOLS = ("psql", "pg_dump", "pg_restore")


class Everything(logging.Handler):
    """Keeps every record's message and traceback text, whatever its logger or thread."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []
        self.formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(self.format(record) + " " + repr(vars(record)))  # extra fields and args too


@pytest.fixture
def every_log_record():
    root = logging.getLogger()
    handler, level = Everything(), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)]
    levels = {lg: lg.level for lg in loggers if isinstance(lg, logging.Logger)}
    for lg in levels:
        lg.setLevel(logging.NOTSET)  # nothing filtered below DEBUG on the way to the root
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)
    for lg, lvl in levels.items():
        lg.setLevel(lvl)


def _assert_no_secret(texts: list[str]) -> None:
    assert len(texts) > 100, f"only {len(texts)} records captured: is DEBUG logging reaching the handler?"
    for secret in SECRETS:
        leaks = [t[:300] for t in texts if secret in t]
        assert not leaks, f"{secret[:6]}… in {len(leaks)} log records, e.g. {leaks[0]}"


def test_no_log_record_of_the_console_path_holds_a_secret(ready, every_log_record):
    console = Console(Core.from_settings(ready))
    for user, text, code in (
        (COORDINATOR, "preflight", 0),
        (LIU, "approve", 2),
        (TPM, "approve", 0),
        (LIU, "run phase 1", 0),
        (SERGEI, "run phase 2", 0),
        (COORDINATOR, "verify", 0),
        (COORDINATOR, "status", 0),
        (COORDINATOR, "report", 0),
        (COORDINATOR, "rollback all", 0),
    ):
        got, out = console(user, text)
        assert got == code, out
    _assert_no_secret(every_log_record.texts)


def test_no_log_record_of_the_slack_path_holds_a_secret(ready, standin, every_log_record):
    bot = RunningBot(ready, standin)  # the real command core, bolt, slack_sdk, the outbox
    try:
        assert bot.slack.slash(COORDINATOR, "preflight").status == 200
        call = standin.wait_method(
            "chat.postMessage", where=lambda b: "Requesting go/no-go" in b.get("text", ""), timeout=120
        )[-1]
        request = standin.messages[("C0MIGRATE", call.answer["ts"])]
        bot.slack.click(TPM, request, "approve_now")
        standin.wait_for(lambda c: c.method == "chat.update" and c.body["ts"] == request["ts"], timeout=60)
        assert bot.slack.slash(COORDINATOR, "run").status == 200
        standin.wait_method(
            "chat.postMessage", where=lambda b: "SUCCESSFUL" in b.get("text", ""), timeout=180
        )
        assert bot.slack.slash(COORDINATOR, "report").status == 200
        assert bot.slack.slash(COORDINATOR, "help", bad_signature=True).status == 401
        bot.bridge.wait_work()
        bot.bridge.worker.drain(timeout=30)
    finally:
        bot.close()
    _assert_no_secret(every_log_record.texts)
    assert any(
        "slack" in t.lower() for t in every_log_record.texts
    )  # the Slack libraries' DEBUG records were caught


# ------------------------------------------------------------------ passwords and command lines


@pytest.fixture
def password_role():
    """A login role with a password (superuser: it runs the whole migration), dropped after the
    test's databases (requested first, so torn down last)."""
    name, password = f"mt_pw_{uuid.uuid4().hex[:8]}", f"DbPw{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg.SERVER_URL, autocommit=True) as conn:
        conn.execute(
            pgsql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
                pgsql.Identifier(name), pgsql.Literal(password)
            )
        )
    yield name, password
    with psycopg.connect(pg.SERVER_URL, autocommit=True) as conn:
        for (db,) in conn.execute(
            "SELECT datname FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba WHERE r.rolname = %s",
            (name,),
        ).fetchall():
            conn.execute(pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(db)))
        conn.execute(pgsql.SQL("DROP ROLE IF EXISTS {}").format(pgsql.Identifier(name)))


class ChildWatch:
    """Samples /proc every few milliseconds for psql / pg_dump / pg_restore processes that are
    descendants of this test process; keeps each one's command line and environment."""

    def __init__(self):
        self.seen: dict[int, tuple[str, list[str], dict[str, str]]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> ChildWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        me = os.getpid()
        while not self._stop.wait(0.002):
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit() and int(entry.name) not in self.seen:
                    self._look(int(entry.name), me)

    def _look(self, pid: int, me: int) -> None:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            tool = os.path.basename(argv[0].decode(errors="replace"))
            if tool not in TOOLS or not self._descends(pid, me):
                return
            raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError):
            return
        env = dict(item.decode(errors="replace").split("=", 1) for item in raw if b"=" in item)
        self.seen[pid] = (tool, [a.decode(errors="replace") for a in argv if a], env)

    @staticmethod
    def _descends(pid: int, ancestor: int) -> bool:
        for _ in range(10):
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except FileNotFoundError:
                return False
            pid = int(stat.rsplit(")", 1)[1].split()[1])  # ppid
            if pid == ancestor:
                return True
            if pid <= 1:
                return False
        return False


def test_database_passwords_reach_the_client_tools_in_their_environment_never_their_arguments(
    password_role, ready
):
    role, password = password_role
    url = ready.database_url.replace("postgresql://postgres@", f"postgresql://{role}:{password}@")
    assert password in url
    settings = ready.with_(database_url=url)
    console = Console(Core.from_settings(settings))

    with ChildWatch() as watch:
        for user, text in ((COORDINATOR, "preflight"), (TPM, "approve"), (COORDINATOR, "run")):
            code, out = console(user, text)
            assert code == 0, out

    tools = {tool for tool, _, _ in watch.seen.values()}
    assert tools == set(TOOLS), f"saw only {sorted(tools)} ({len(watch.seen)} children)"
    for pid, (tool, argv, env) in watch.seen.items():
        assert not any(password in arg for arg in argv), (
            f"{tool} (pid {pid}) has the password in its arguments"
        )
        if argv[1:] == ["--version"]:
            continue  # asked for its version: no connection
        assert env.get("PGPASSWORD") == password, f"{tool} (pid {pid}) got no PGPASSWORD: {argv}"
    assert password not in console.everything()
