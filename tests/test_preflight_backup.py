"""The backup, its proof and the rehearsal, on real databases and real files: a truncated
backup fails verification, a restored copy that differs from the source fails, a missing
pg_dump or a role without CREATEDB is a clear failed line, and a runbook whose phase 2
fails on the copy is NO-GO while the real database stays untouched."""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from datetime import UTC, datetime

import psycopg
import pytest

from preflight import Timeouts, backup, lockwatch, proof, run_preflight, scratch
from preflight.report import FAIL, PreflightReport
from preflight.runner import backup_line
from runbook.model import load_runbook
from sql import DEFAULT_RUNBOOK
from tests.support import fakes_net, pg, processes

FAST = Timeouts(network=0.5, database=5)
RB = load_runbook(DEFAULT_RUNBOOK)
NOW = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)


def execute(url: str, statement: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


def database_exists(conninfo: str) -> bool:
    name = psycopg.conninfo.conninfo_to_dict(conninfo)["dbname"]
    return pg.scalar(pg.SERVER_URL, "SELECT count(*) FROM pg_database WHERE datname = %s", (name,)) == 1


def test_truncated_backup_fails_verification_and_is_nogo(settings):
    with scratch.scratch_database(settings) as copy:
        dumped = backup.dump(settings, RB.backup_prefix, NOW, restore_into=copy)
        assert (
            dumped.restore_error is None
            and dumped.path.name == "backup_pre_migration_006_20261124_030000.dump"
        )
        with open(dumped.path, "r+b") as f:  # corrupt it after it was written
            f.truncate(dumped.size // 2)
        info = proof.verify(settings, dumped, copy)
    assert not database_exists(copy)  # the scratch database is dropped
    assert info.verified is False
    file_line = next(c for c in info.comparisons if c.key == "backup:file")
    assert file_line.status == FAIL and f"{dumped.size // 2} bytes" in file_line.observed
    line = backup_line(settings, info, copy, 1.0)
    report = PreflightReport.build("006", NOW, NOW, [line])
    assert report.go is False and "NOT verified" in report.nogo_reasons[0]
    # restored from the file by hand, the truncated archive fails too
    with scratch.scratch_database(settings) as again:
        error = backup.restore_file(dumped.path, again, settings.database_url)
    assert error and "pg_restore" in error


def test_restored_copy_that_differs_from_the_source_is_not_verified(settings):
    with scratch.scratch_database(settings) as copy:
        dumped = backup.dump(settings, RB.backup_prefix, NOW, restore_into=copy)
        execute(
            copy,
            "DELETE FROM platform.notifications WHERE id IN (SELECT id FROM platform.notifications LIMIT 1)",
        )
        execute(copy, "DROP EXTENSION pgcrypto CASCADE")
        info = proof.verify(settings, dumped, copy)
    failed = {c.key: c.observed for c in info.comparisons if c.status == FAIL}
    assert info.verified is False
    assert "platform.notifications: 2 vs 1" in failed["backup:row_counts"]
    assert "missing pgcrypto" in failed["backup:extensions"]


def test_backup_file_restores_by_hand_with_the_printed_command(settings):
    with scratch.scratch_database(settings) as copy:
        dumped = backup.dump(settings, RB.backup_prefix, NOW)  # file only, no streamed restore
        info = proof.verify(settings, dumped, copy)  # restored from the file, like an operator would
    assert info.verified, info.problem
    assert info.restore_command.startswith("bash ") and dumped.path.name in info.restore_command
    # The whole database is in it: only the bot's user may read it.
    assert dumped.path.stat().st_mode & 0o777 == 0o600
    assert dumped.path.parent.stat().st_mode & 0o777 == 0o700


def test_missing_pg_dump_is_a_failed_line_not_a_crash(settings, tmp_path, monkeypatch):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    report = run_preflight(settings, RB, incident=None, timeouts=FAST)
    line = report.line("backup")
    assert report.go is False and line.status == FAIL
    assert "pg_dump not found on PATH" in line.observed
    assert report.line("rehearsal").observed == "not rehearsed: no backup"


def test_too_old_pg_dump_is_refused():
    with pytest.raises(backup.BackupError, match="older than the server"):
        backup.tool("pg_dump", 990000)


@pytest.fixture
def role_without_createdb(db_005):
    """A login role that may read everything but not create databases (a production role)."""
    role = f"mt_nocreatedb_{uuid.uuid4().hex[:8]}"
    execute(pg.SERVER_URL, f"CREATE ROLE {role} LOGIN NOCREATEDB IN ROLE pg_read_all_data")
    try:
        yield role
    finally:
        execute(pg.SERVER_URL, f"DROP ROLE IF EXISTS {role}")


def test_no_createdb_fails_saying_why_unless_a_scratch_server_is_set(settings, role_without_createdb):
    url = settings.database_url.replace("postgres@", f"{role_without_createdb}@")
    limited = settings.with_(database_url=url)
    report = run_preflight(limited, RB, incident=None, rehearse=False, timeouts=FAST)
    line = report.line("backup")
    assert line.status == FAIL
    assert "cannot create a scratch database on the server of DATABASE_URL" in line.observed
    assert "set MIGRATE_SCRATCH_URL" in line.observed
    with_scratch = limited.with_(scratch_url=pg.SERVER_URL)
    report = run_preflight(with_scratch, RB, incident=None, rehearse=False, timeouts=FAST)
    assert report.line("backup").ok, report.line("backup").observed
    assert "on MIGRATE_SCRATCH_URL" in report.line("backup").how


def test_phase_2_failing_on_the_copy_is_nogo_and_the_real_database_is_untouched(settings, tmp_path):
    folder = tmp_path / "runbook"
    shutil.copytree(DEFAULT_RUNBOOK.parent, folder)
    phase2 = folder / "006_enable_rls_IMPROVED.sql"
    lines = phase2.read_text().splitlines()
    at = next(i for i, l in enumerate(lines) if l.startswith("ALTER TABLE platform.access_tokens"))
    lines.insert(at, "ALTER TABLE platform.no_such_table ENABLE ROW LEVEL SECURITY;")
    phase2.write_text("\n".join(lines) + "\n")
    broken = load_runbook(folder / "runbook.toml")
    before = pg.schema_dump(settings.database_url)
    with fakes_net.http_server(200) as deployment, fakes_net.silent_listener() as (host, port):
        healthy = settings.with_(
            deployment_url=deployment, register_mongodb_url=f"mongodb://m:Pw9x@{host}:{port}/db"
        )
        report = run_preflight(healthy, broken, incident=None, timeouts=FAST)
    assert report.go is False
    assert {c.key for c in report.checks if c.status == FAIL} == {"rehearsal"}
    rehearsal = report.rehearsal
    assert rehearsal.failure.startswith(f"006_enable_rls_IMPROVED.sql:{at + 1}:"), rehearsal.failure
    assert "no_such_table" in rehearsal.failure
    assert [(p["number"], p["ok"]) for p in rehearsal.phases] == [(1, True), (2, False)]
    assert rehearsal.rollback_clean  # phase 1 and 2 rollbacks brought the copy back to the snapshot
    assert pg.schema_dump(settings.database_url) == before
    assert pg.scalar(settings.database_url, "SELECT max(version) FROM schema_migrations") == "005"


def test_restore_that_fails_midstream_is_reported_and_the_file_still_written(settings):
    with scratch.scratch_database(settings) as copy:
        execute(copy, "CREATE SCHEMA platform")  # pg_restore --exit-on-error stops at CREATE SCHEMA
        dumped = backup.dump(settings, RB.backup_prefix, NOW, restore_into=copy)
        info = proof.verify(settings, dumped, copy)
    assert info.verified is False
    restore = next(c for c in info.comparisons if c.key == "backup:restore")
    assert restore.status == FAIL and 'schema "platform" already exists' in restore.observed
    assert next(c for c in info.comparisons if c.key == "backup:file").ok  # the file itself is whole
    assert backup.file_sha256(dumped.path) == (dumped.size, dumped.sha256)


def test_lockwatch_sees_a_lock_granted_to_a_named_session(db_005):
    with psycopg.connect(db_005, application_name="mt-locker") as holder:
        holder.execute("LOCK TABLE platform.users IN ACCESS EXCLUSIVE MODE")  # held until rollback
        with lockwatch.LockWatch(db_005, "mt-locker") as watch:
            for _ in range(1000):  # until the first samples are in (bounded, not timed)
                if ("ACCESS EXCLUSIVE", "platform.users") in watch.seen:
                    break
                threading.Event().wait(0.005)
        holder.rollback()
    assert ("ACCESS EXCLUSIVE", "platform.users") in watch.seen and watch.error is None
    assert lockwatch.level("ShareUpdateExclusiveLock") == "SHARE UPDATE EXCLUSIVE"
    assert lockwatch.qualified("schema_migrations") == "public.schema_migrations"


def test_backup_file_changed_in_place_after_it_was_written_fails_verification(settings):
    with scratch.scratch_database(settings) as copy:
        dumped = backup.dump(settings, RB.backup_prefix, NOW, restore_into=copy)
        intact = proof.verify(settings, dumped, copy)
        with open(dumped.path, "r+b") as f:  # same size, one byte different
            f.seek(dumped.size // 2)
            byte = f.read(1)
            f.seek(dumped.size // 2)
            f.write(bytes([byte[0] ^ 0xFF]))
        changed = proof.verify(settings, dumped, copy)
    file_ok = next(c for c in intact.comparisons if c.key == "backup:file")
    assert intact.verified and "unchanged since written" in file_ok.observed
    file_bad = next(c for c in changed.comparisons if c.key == "backup:file")
    assert changed.verified is False and file_bad.status == FAIL
    assert f"{dumped.size} bytes" in file_bad.observed and "hashed again" in file_bad.observed


def test_backup_dir_without_room_for_the_dump_is_nogo_before_anything_is_written(settings, monkeypatch):
    """A dump that fills the disk fails late and takes the host's free space with it: the room
    is checked first, against the tables' real size and BACKUP_DIR's real free space. The
    margin is raised past the size of BACKUP_DIR's whole filesystem so that the check must
    refuse (not past its free space at one moment: other processes free space meanwhile)."""
    settings.backup_dir.mkdir(parents=True, exist_ok=True)
    monkeypatch.setattr(backup, "SPACE_MARGIN", shutil.disk_usage(settings.backup_dir).total + 1)
    report = run_preflight(settings, RB, incident=None, timeouts=FAST)
    line = next(c for c in report.checks if c.key == "backup")
    assert not report.go and line.status == FAIL
    assert f"{settings.backup_dir} has " in line.observed and "free; the dump needs about" in line.observed
    assert "point BACKUP_DIR elsewhere" in line.observed
    assert list(settings.backup_dir.iterdir()) == []  # nothing was dumped


def test_the_backup_line_shows_the_room_it_was_checked_against(settings):
    report = run_preflight(settings, RB, incident=None, timeouts=FAST, rehearse=False)
    line = next(c for c in report.checks if c.key == "backup")
    assert line.ok, line.observed
    assert "free in BACKUP_DIR, about " in line.how and " needed)" in line.how


def test_restore_file_is_never_left_running_and_a_failed_stop_check_is_not_a_stop(settings, scratch_db):
    """`should_stop` reads Redis during a restore: a blip there must not stop the restore, and
    anything that ends the wait (here an interrupt) must take pg_restore with it."""
    with scratch.scratch_database(settings) as copy:
        dumped = backup.dump(settings, RB.backup_prefix, NOW, restore_into=copy)
    asked = []

    def redis_blip() -> bool:
        asked.append(1)
        raise ConnectionError("Redis is away for a moment")

    target = scratch_db()
    assert (
        backup.restore_file(dumped.path, target, settings.database_url, should_stop=redis_blip, poll=0.01)
        is None
    )
    assert asked and pg.scalar(target, "SELECT max(version::text) FROM schema_migrations") == "005"

    def interrupted() -> bool:
        raise KeyboardInterrupt

    other = scratch_db()
    with pytest.raises(KeyboardInterrupt):
        backup.restore_file(dumped.path, other, settings.database_url, should_stop=interrupted, poll=0.01)
    assert processes.running_with("pg_restore", psycopg.conninfo.conninfo_to_dict(other)["dbname"]) == []


@pytest.mark.parametrize("spelling", ["url", "conninfo"])
def test_the_printed_restore_command_works_pasted_as_is(settings, spelling):
    """'Restore by hand' in a panic: the command, run in a shell with DATABASE_URL set, puts the
    backup in place of the live database (objects exist there: a plain pg_restore fails)."""
    import subprocess

    dumped = backup.dump(settings, RB.backup_prefix, NOW)
    command = backup.restore_command(dumped.path)
    live = settings.database_url.rsplit("/", 1)[1]
    execute(settings.database_url, "CREATE TABLE public.after_backup (id int)")
    url = (
        settings.database_url
        if spelling == "url"
        else f"host=127.0.0.1 port=5432 user=postgres dbname={live}"
    )
    try:
        done = subprocess.run(
            ["bash", "-c", command],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "DATABASE_URL": url},
        )
        assert done.returncode == 0, done.stderr
        assert pg.scalar(settings.database_url, "SELECT to_regclass('public.after_backup') IS NULL") is True
        assert pg.scalar(settings.database_url, "SELECT count(*) FROM platform.organizations") > 0
        aside = pg.scalar(
            pg.SERVER_URL, "SELECT datname FROM pg_database WHERE datname LIKE %s", (f"{live}_replaced_%",)
        )
        assert pg.scalar(pg.url_for(aside), "SELECT to_regclass('public.after_backup') IS NOT NULL") is True
    finally:
        with psycopg.connect(pg.SERVER_URL, autocommit=True) as conn:
            for (name,) in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s OR datname LIKE %s",
                (f"{live}_replaced_%", f"{live}_restored_%"),
            ).fetchall():
                pg.drop_database(name)
