"""Proof that a backup restores to the database it was taken from.

Each comparison is a CheckLine of its own (the backup's evidence): the restore itself, the
file on disk against the bytes that were restored, every table present, exact row counts,
and the functions, views, policies, extensions, triggers, indexes and schema_migrations of
the restored copy against the source. Any mismatch leaves the backup unverified (NO-GO).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import psycopg

from core import clock
from core.config import Settings
from preflight import backup, catalog
from preflight.lines import Spec, line
from preflight.report import BackupInfo, CheckLine


def verify(settings: Settings, d: backup.Dump, scratch: str | None, problem: str | None = None) -> BackupInfo:
    """Verify dump `d` in database `scratch` (restored there already when the dump streamed
    into it, else restored from the file now). `problem`: why there is no scratch db."""
    start = clock.monotonic()
    secrets = settings.secrets()
    if scratch is None:
        return backup.info(d, [], clock.monotonic() - start, problem or "no scratch database to restore into")
    # The file check (normally a stat; a full hash when the file changed) overlaps the
    # restore or the comparisons (work in the server).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="backup-hash") as pool:
        file_line = pool.submit(_file_line, d, secrets)
        error = (
            d.restore_error
            if d.restored_into == scratch
            else backup.restore_file(d.path, scratch, settings.required_database_url())
        )
        restored = _restore_line(d, scratch, error, secrets)
        compared = compare(d, scratch, secrets) if error is None else []
        lines = [file_line.result(), restored, *compared]
    failed = [c for c in lines if not c.ok]
    why = "; ".join(f"{c.title}: {c.observed}" for c in failed) or None
    return backup.info(d, lines, clock.monotonic() - start, why)


def _file_line(d: backup.Dump, secrets: Sequence[str]) -> CheckLine:
    """The file holds the bytes that were restored: written, hashed and restored from the same
    chunks, and unchanged since (same size, inode, mtime and ctime); when anything of that
    changed, the file is read and hashed again and must still match."""
    spec = Spec(
        "backup:file",
        "Backup file on disk is the one restored",
        f"{d.path.name}: sha256 of the bytes written and restored; file unchanged since it was fsynced "
        "(size, inode, mtime, ctime), else hashed again",
        f"{d.size} bytes, sha256 {d.sha256[:16]}…",
    )
    if not d.path.exists():
        return line(spec, False, "file missing", secrets)
    if d.identity is not None and backup.file_identity(d.path) == d.identity:
        return line(spec, True, f"{d.size} bytes, sha256 {d.sha256[:16]}…, unchanged since written", secrets)
    size, digest = backup.file_sha256(d.path)
    return line(
        spec,
        (size, digest) == (d.size, d.sha256),
        f"{size} bytes, sha256 {digest[:16]}… (hashed again)",
        secrets,
    )


def _restore_line(d: backup.Dump, scratch: str, error: str | None, secrets: Sequence[str]) -> CheckLine:
    how = (
        "pg_dump stream restored while written: " if d.restored_into == scratch else ""
    ) + "pg_restore --exit-on-error"
    spec = Spec("backup:restore", "Backup restores without error", how, "exit code 0")
    return line(spec, error is None, error or "restored with exit code 0", secrets)


def compare(d: backup.Dump, scratch: str, secrets: Sequence[str] = ()) -> list[CheckLine]:
    """One line per kind of object, and the exact row counts, restored copy vs source."""
    with psycopg.connect(scratch, autocommit=True) as conn:
        copy = catalog.objects(conn)
        counts = catalog.row_counts(conn, [t for t in copy["tables"] if t in d.objects["tables"]])
    lines = []
    for kind in catalog.KINDS:
        diffs = catalog.differences(d.objects[kind], copy[kind])
        spec = Spec(
            f"backup:{kind}",
            f"Restored {kind.replace('_', ' ')} equal the source's",
            f"catalog query on source and copy ({kind})",
            f"{len(d.objects[kind])} equal",
        )
        observed = (
            f"{len(copy[kind])} equal" if not diffs else f"{len(diffs)} differ: " + ", ".join(diffs[:5])
        )
        lines.append(line(spec, not diffs, observed, secrets))
    lines.insert(1, _counts_line(d.row_counts, counts, secrets))  # right after "tables" (KINDS[0])
    return lines


def _counts_line(source: dict[str, int], copy: dict[str, int], secrets: Sequence[str]) -> CheckLine:
    total = sum(source.values())
    spec = Spec(
        "backup:row_counts",
        "Same row count in every table",
        "exact count(*) per table, source in the dump's snapshot",
        f"{len(source)} tables, {total} rows",
    )
    diffs = [
        f"{t}: {source[t]} vs {copy.get(t, 'missing')}" for t in sorted(source) if copy.get(t) != source[t]
    ]
    observed = (
        f"{len(copy)} tables, {sum(copy.values())} rows" if not diffs else "differ: " + ", ".join(diffs[:5])
    )
    return line(spec, not diffs, observed, secrets)
