"""The pre-migration backup and its proof.

Method (chosen by measuring, see bench/preflight.py): `pg_dump -Fc -Z0` reads the source in
one exported snapshot; its output is written to the backup file, hashed, and fed to
`pg_restore --exit-on-error` of a scratch database at the same time, so dump and verifying
restore overlap instead of running one after the other. The restore session gets a larger
`maintenance_work_mem` (index builds) and asynchronous commit (it is a throw-away copy).

While the dump runs, the source's exact row counts are taken in the same snapshot, so
"same row count per table" compares like with like even if the database is being written.
The bytes written to the file are the very chunks restored and hashed; once fsynced and
closed, the file's identity (size, inode, mtime, ctime) is recorded. The proof checks that the
file still has that identity — any write, truncation or replacement changes ctime, which no
unprivileged process can set back — and only when it changed reads and hashes the file again
(a file truncated later fails verification). Re-reading 1 GB right after writing it read the
page cache, not the disk, so it proved little more than the identity does and cost ~0.5 s of
the verification (bench/preflight.py: verify 0.9 s -> 0.4 s on 1 GB). Limit: file timestamps
have the kernel's clock-tick granularity (a few ms), so a same-size rewrite within the same
tick as the recorded stat would go unseen; the sha256 printed is that of the bytes restored.

The file is an ordinary custom-format archive: restorable by hand with `pg_restore -d`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import psycopg

from core import children, clock
from core.config import Settings
from engine import schema
from engine.psql import child_env
from preflight import catalog
from preflight.report import BackupInfo
from preflight.scratch import same_server

StopFn = Callable[[], object]  # asked while a restore runs: true to stop it

log = logging.getLogger("migrate.backup")

FORMAT = "custom"
# -Z0: on two cores the dump, the restore and their servers already compete for CPU, and
# compression only adds to it (bench/preflight.py --variants, 1 GB: -Z0 26.7 s, -Z1 30.4 s,
# -Z6 51.4 s). The file is then about the size of the report's plain .sql dump.
COMPRESS = 0
CHUNK = 1 << 20
LOCK_WAIT = "30s"  # pg_dump gives up rather than queue behind a long exclusive lock
# Session settings of the verifying restore (a throw-away copy: speed over durability).
RESTORE_OPTIONS = (
    "-c maintenance_work_mem=256MB -c synchronous_commit=off -c work_mem=64MB "
    f"-c client_connection_check_interval={children.CLIENT_CHECK_MS}"
)


# The dump's size is estimated from the tables' on-disk size (heap + TOAST, no indexes): text
# can be larger than the binary heap (bench/preflight.py: 1,025 MB dumped from 877 MB of heap)
# and TOASTed values are dumped decompressed, hence the margin (an estimate: data that TOAST
# compresses very well can still exceed it, and the dump then fails on a full disk).
SPACE_FACTOR = 1.5
SPACE_MARGIN = 64 * 1024 * 1024
# Large objects live in pg_catalog.pg_largeobject and are dumped too.
_TABLES_BYTES = """SELECT (coalesce(sum(pg_table_size(c.oid)), 0)
                           + pg_table_size('pg_catalog.pg_largeobject'))::bigint FROM pg_class c
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"""


def space_needed(tables_bytes: int) -> int:
    return int(tables_bytes * SPACE_FACTOR) + SPACE_MARGIN


def space_problem(directory: Path, free: int, tables_bytes: int) -> str | None:
    """Why BACKUP_DIR cannot hold the dump, or None. Checked before dumping: a dump that fills
    the disk fails late, after minutes, and takes the host's free space with it."""
    needed = space_needed(tables_bytes)
    if free >= needed:
        return None
    return (
        f"{directory} has {_size(free)} free; the dump needs about {_size(needed)} ({SPACE_FACTOR:g} × the "
        f"tables' {_size(tables_bytes)} + {_size(SPACE_MARGIN)}): free space there or point BACKUP_DIR elsewhere"
    )


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n / 1e3:.0f} kB"


class BackupError(RuntimeError):
    """The backup could not be taken at all; the message says why (redacted by the caller)."""


@dataclass
class Dump:
    """A written backup file and what was seen of the source at its snapshot."""

    path: Path
    size: int
    sha256: str
    seconds: float
    schema_snapshot: Path
    objects: dict[str, dict[str, str]]  # catalog.objects of the source
    row_counts: dict[str, int]
    write_counters: dict[str, int]
    space: str = ""  # free space against the estimate, checked before dumping
    identity: tuple[int, ...] | None = None  # file_identity() once written and fsynced
    restored_into: str | None = None  # scratch conninfo the stream was restored into
    restore_error: str | None = None  # pg_restore's complaint, when it failed
    restore_seconds: float = 0.0
    format: str = f"{FORMAT} -Z{COMPRESS}"


def file_name(prefix: str, at: datetime) -> str:
    return f"{prefix}_{at.astimezone(UTC):%Y%m%d_%H%M%S}.dump"


def restore_command(path: Path) -> str:
    """The command an operator pastes to restore this backup by hand: a script written next to
    the dump (restore_script) that restores into a NEW database and swaps it in. (`pg_restore
    --dbname "$DATABASE_URL" <dump>` fails: the live database's objects exist.)"""
    script = path.resolve().with_name(path.name + ".restore.sh")
    if not script.exists():
        script.write_text(restore_script(path.resolve()))
        script.chmod(0o700)
    return f"bash {shlex.quote(str(script))}  # restores into $DATABASE_URL's database"


def restore_script(dump: Path) -> str:
    """A bash script: restore `dump` into a new database `<db>_restored_<ts>`, then in ONE
    transaction rename the live database aside (`<db>_replaced_<ts>`, kept) and the copy into
    its place. Works with a postgres:// URL or a key=value conninfo in $DATABASE_URL."""
    return f"""#!/usr/bin/env bash
# Restore {dump.name} by hand: into a new database, then swap it in place of the live one.
# Usage: DATABASE_URL=postgresql://…/<db> bash {dump.name}.restore.sh
set -euo pipefail
: "${{DATABASE_URL:?set DATABASE_URL to the database to restore}}"
dump={shlex.quote(str(dump))}
on() {{  # the same server, another database
  case "$DATABASE_URL" in
    postgres://*\\?*|postgresql://*\\?*) printf '%s&dbname=%s' "$DATABASE_URL" "$1" ;;
    postgres://*|postgresql://*) printf '%s?dbname=%s' "$DATABASE_URL" "$1" ;;
    *) printf '%s dbname=%s' "$DATABASE_URL" "$1" ;;
  esac
}}
live=$(psql "$DATABASE_URL" -XAtc 'SELECT current_database()')
stamp=$(date -u +%Y%m%d_%H%M%S)
copy="${{live}}_restored_${{stamp}}"
aside="${{live}}_replaced_${{stamp}}"
echo "restoring $dump into the new database $copy"
psql "$DATABASE_URL" -X -q -v ON_ERROR_STOP=1 -v db="$copy" <<'SQL'
CREATE DATABASE :"db";
SQL
pg_restore --exit-on-error --dbname "$(on "$copy")" "$dump"
echo "swapping: $live -> $aside (kept), $copy -> $live"
psql "$(on postgres)" -X -q -v ON_ERROR_STOP=1 -v live="$live" -v copy="$copy" -v aside="$aside" <<'SQL'
SELECT count(pg_terminate_backend(pid)) AS sessions_ended FROM pg_stat_activity WHERE datname = :'live' AND pid <> pg_backend_pid();
BEGIN;
ALTER DATABASE :"live" RENAME TO :"aside";
ALTER DATABASE :"copy" RENAME TO :"live";
COMMIT;
SQL
echo "restored: $live is the backup now; the replaced database is kept as $aside (DROP DATABASE when sure)"
"""


def tool(name: str, server_version_num: int | None = None) -> str:
    """Path of a PostgreSQL client tool whose major version can dump the server."""
    path = shutil.which(name)
    if path is None:
        raise BackupError(f"{name} not found on PATH (install the PostgreSQL client tools)")
    out = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
    match = re.search(r"(\d+)(?:\.(\d+))?", out)
    major = int(match.group(1)) if match else 0
    if server_version_num and major < server_version_num // 10000:
        raise BackupError(
            f"{name} is version {major}, older than the server ({server_version_num // 10000}): "
            "it cannot dump it; install a newer client"
        )
    return path


def dump(
    settings: Settings, prefix: str, at: datetime, restore_into: str | None = None, compress: int = COMPRESS
) -> Dump:
    """Write the backup of DATABASE_URL to BACKUP_DIR; with `restore_into`, restore the
    same bytes into that (empty) database while they are written. `compress`: the -Z level
    (bench/preflight.py compares them)."""
    url = settings.database_url
    if not url:
        raise BackupError("DATABASE_URL is not set")
    # A backup is the whole production database: only the bot's user may read it.
    Path(settings.backup_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
    path = Path(settings.backup_dir) / file_name(prefix, at)
    # Serial counts: the source is counted while dump and restore run, and a parallel scan
    # would take CPU from them; the copy, counted after, gets the parallel workers.
    options = f"-c lock_timeout={LOCK_WAIT} -c max_parallel_workers_per_gather=0"
    with psycopg.connect(url, connect_timeout=10, options=options) as source:
        source.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        source.read_only = True
        version = source.info.server_version
        snapshot_row = source.execute("SELECT pg_export_snapshot()").fetchone()
        bytes_row = source.execute(_TABLES_BYTES).fetchone()
        assert snapshot_row is not None and bytes_row is not None  # each answers one row
        snapshot, tables_bytes = snapshot_row[0], bytes_row[0]
        free = shutil.disk_usage(settings.backup_dir).free
        problem = space_problem(Path(settings.backup_dir), free, tables_bytes)
        if problem:
            raise BackupError(problem)
        space = f"{_size(free)} free in BACKUP_DIR, about {_size(space_needed(tables_bytes))} needed"
        pg_dump = tool("pg_dump", version)
        start = clock.monotonic()
        schema = _schema_thread(pg_dump, url, snapshot, path)
        result = _stream(pg_dump, url, snapshot, path, restore_into, compress)
        try:  # the source as the dump sees it, while it runs: same snapshot
            objects = catalog.objects(source)
            counts = catalog.row_counts(source, list(objects["tables"]))
            counters = catalog.write_counters(source)
        finally:
            result.join()
            schema.join()
        seconds = clock.monotonic() - start
    if result.dump_error:
        raise BackupError(f"pg_dump failed: {result.dump_error}")
    if schema.error:
        raise BackupError(f"pg_dump --schema-only failed: {schema.error}")
    return Dump(
        path=path,
        size=result.size,
        sha256=result.sha256,
        seconds=seconds,
        schema_snapshot=schema.path,
        objects=objects,
        row_counts=counts,
        write_counters=counters,
        identity=result.identity,
        space=space,
        restored_into=restore_into,
        restore_error=result.restore_error,
        restore_seconds=result.restore_seconds,
        format=f"{FORMAT} -Z{compress}",
    )


class _Stream(threading.Thread):
    """pg_dump → (file, sha256, pg_restore stdin), in a thread so the caller can count rows."""

    def __init__(
        self,
        dump_cmd: list[str],
        dump_env: dict[str, Any],
        path: Path,
        restore_cmd: list[str] | None,
        env: dict[str, Any],
    ):
        super().__init__(daemon=True)
        self.dump_cmd, self.dump_env, self.path, self.restore_cmd, self.env = (
            dump_cmd,
            dump_env,
            path,
            restore_cmd,
            env,
        )
        self.size, self.sha256 = 0, ""
        self.identity: tuple[int, ...] | None = None
        self.dump_error: str | None = None
        self.restore_error: str | None = None
        self.restore_seconds = 0.0

    def run(self) -> None:
        start = clock.monotonic()
        try:
            self._pump()
        except Exception as exc:  # noqa: BLE001 - disk full, tool vanished…: reported by dump()
            self.dump_error = self.dump_error or f"{type(exc).__name__}: {exc}"
        self.restore_seconds = clock.monotonic() - start

    def _pump(self) -> None:
        # stderr goes to files, not pipes: a chatty tool cannot block on a full pipe.
        with tempfile.TemporaryFile() as dump_err, tempfile.TemporaryFile() as restore_err:
            dumper = subprocess.Popen(
                children.dying_with_parent(self.dump_cmd),
                stdout=subprocess.PIPE,
                stderr=dump_err,
                env=self.dump_env,
            )
            restorer = None
            if self.restore_cmd:
                restorer = subprocess.Popen(
                    children.dying_with_parent(self.restore_cmd),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=restore_err,
                    env=self.env,
                )
            self._write(dumper, restorer, restore_err)
            if dumper.wait() != 0:
                self.dump_error = _text(dump_err) or f"exit code {dumper.returncode}"

    def _write(
        self,
        dumper: subprocess.Popen[bytes],
        restorer: subprocess.Popen[bytes] | None,
        restore_err: IO[bytes],
    ) -> None:
        assert dumper.stdout is not None  # started with stdout=PIPE
        digest = hashlib.sha256()
        with os.fdopen(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
            # read1: whatever the pipe holds now (up to CHUNK), so pg_restore is fed as the
            # dump produces instead of waiting for a full megabyte to gather.
            while chunk := dumper.stdout.read1(CHUNK):  # type: ignore[attr-defined]  # a BufferedReader; typeshed: IO[bytes]
                out.write(chunk)
                digest.update(chunk)
                self.size += len(chunk)
                restorer = self._feed(restorer, chunk, restore_err)
            out.flush()
            os.fsync(out.fileno())  # a backup that is not on disk is not a backup
        self.sha256 = digest.hexdigest()
        self.identity = file_identity(self.path)
        if restorer is not None:
            self._finish(restorer, restore_err)

    def _feed(
        self, restorer: subprocess.Popen[bytes] | None, chunk: bytes, restore_err: IO[bytes]
    ) -> subprocess.Popen[bytes] | None:
        if restorer is None:
            return None
        assert restorer.stdin is not None  # started with stdin=PIPE
        try:
            restorer.stdin.write(chunk)
            return restorer
        except BrokenPipeError:  # pg_restore stopped on an error: keep writing the file
            self._finish(restorer, restore_err)
            return None

    def _finish(self, restorer: subprocess.Popen[bytes], restore_err: IO[bytes]) -> None:
        assert restorer.stdin is not None  # started with stdin=PIPE
        try:
            restorer.stdin.close()
        except BrokenPipeError:
            pass
        code = restorer.wait()
        if code != 0 and not self.restore_error:
            self.restore_error = _text(restore_err) or f"pg_restore exit code {code}"


def _text(f: IO[bytes]) -> str:
    f.seek(0)
    return f.read().decode(errors="replace").strip()


def _stream(
    pg_dump: str, url: str, snapshot: str, path: Path, restore_into: str | None, compress: int
) -> _Stream:
    conninfo, dump_env = child_env(url, {}, "migrate-bot-backup")
    cmd = [
        pg_dump,
        "--format=custom",
        f"--compress={compress}",
        f"--snapshot={snapshot}",
        f"--lock-wait-timeout={LOCK_WAIT}",
        "--dbname",
        conninfo,
    ]
    restore, env = _restore_cmd(restore_into, url) if restore_into else (None, {})
    stream = _Stream(cmd, dump_env, path, restore, env)
    stream.start()
    return stream


def _restore_cmd(target: str, source: str, archive: Path | None = None) -> tuple[list[str], dict[str, Any]]:
    """pg_restore into `target` and its environment. Passwords travel in PGPASSWORD, never in
    argv (visible in `ps`); the restore session gets RESTORE_OPTIONS for speed."""
    conninfo, env = child_env(target, {}, "migrate-bot-restore")
    env["PGOPTIONS"] = RESTORE_OPTIONS
    cmd = [tool("pg_restore"), "--exit-on-error", "--dbname", conninfo]
    if not same_server(source, target):
        cmd += ["--no-owner", "--no-privileges"]  # roles of the source may not exist there
    return cmd + ([str(archive)] if archive else []), env


class _SchemaDump(threading.Thread):
    """The schema-only snapshot next to the backup (rollback verification compares with it)."""

    def __init__(self, cmd: list[str], env: dict[str, Any], path: Path):
        super().__init__(daemon=True)
        self.cmd, self.env, self.path = cmd, env, path
        self.error: str | None = None

    def run(self) -> None:
        result = subprocess.run(
            children.dying_with_parent(self.cmd), capture_output=True, text=True, env=self.env
        )
        if result.returncode != 0:
            self.error = result.stderr.strip() or f"exit code {result.returncode}"


def _schema_thread(pg_dump: str, url: str, snapshot: str, path: Path) -> _SchemaDump:
    target = path.with_suffix(".schema.sql")
    conninfo, env = child_env(url, {}, "migrate-bot-backup")
    cmd = schema.dump_command(conninfo, pg_dump=pg_dump, snapshot=snapshot, file=target)
    cmd.insert(1, f"--lock-wait-timeout={LOCK_WAIT}")
    thread = _SchemaDump(cmd, env, target)
    thread.start()
    return thread


class RestoreStopped(Exception):
    """`restore_file` was told to stop: pg_restore was terminated, the target is half-restored."""


def restore_file(
    path: Path, target: str, source: str, should_stop: StopFn | None = None, poll: float = 0.2
) -> str | None:
    """Restore an archive file into `target` (empty) the way an operator would; the error or None.

    `should_stop()`, when given, is asked every `poll` seconds while pg_restore runs: a restore
    of a large database takes minutes, and an operator's `abort` must not wait for it. On True
    pg_restore is terminated (its server session ends with its connection) and RestoreStopped
    is raised; the caller drops the half-restored target."""
    cmd, env = _restore_cmd(target, source, path)
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: pg_restore never blocks on it
        proc = subprocess.Popen(
            children.dying_with_parent(cmd), stdout=subprocess.DEVNULL, stderr=err, env=env
        )
        try:
            while True:
                try:
                    code = proc.wait(timeout=poll)
                    break
                except subprocess.TimeoutExpired:
                    if _asked_to_stop(should_stop):
                        raise RestoreStopped("pg_restore was terminated on request") from None
        finally:  # stopped, or anything else raised here: pg_restore must not go on alone
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if code != 0:
            return _text(err) or f"pg_restore exit code {code}"
    return None


def _asked_to_stop(should_stop: StopFn | None) -> bool:
    """should_stop() asked; an error asking it (Redis away for a moment) is not a stop request."""
    if should_stop is None:
        return False
    try:
        return bool(should_stop())
    except Exception as exc:  # noqa: BLE001 - logged, and asked again at the next poll
        log.warning("could not check for an abort during pg_restore: %s", type(exc).__name__)
        return False


def file_identity(path: Path) -> tuple[int, ...]:
    """What changes whenever a file's content may have: size, device, inode, mtime and ctime
    (ctime is set by the kernel on every write, truncate or utime and cannot be set back by a
    process; its granularity is the kernel's clock tick)."""
    st = os.stat(path)
    return (st.st_size, st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)


def file_sha256(path: Path) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def info(d: Dump, comparisons: list[Any], verify_seconds: float, problem: str | None) -> BackupInfo:
    """The BackupInfo a report carries."""
    return BackupInfo(
        path=str(d.path.resolve()),
        size=d.size,
        sha256=d.sha256,
        format=d.format,
        verified=problem is None and bool(comparisons) and all(c.ok for c in comparisons),
        comparisons=comparisons,
        restore_command=restore_command(d.path),
        dump_seconds=round(d.seconds, 3),
        verify_seconds=round(verify_seconds, 3),
        schema_snapshot=str(d.schema_snapshot.resolve()),
        row_counts=d.row_counts,
        write_counters=d.write_counters,
        problem=problem,
        space=d.space,
    )
