"""`rollback restore`: the report's scenario 3 ("nuclear rollback"), without its DROP DATABASE.

The coordinator asks (`rollback restore`), the TPM confirms (`rollback restore confirm`, or
the Slack button). The verified preflight backup is restored into a NEW database on the
same server and verified there (row counts equal to those recorded at the backup, the
runbook's version absent from schema_migrations, the schema equal to the pre-migration
snapshot). Only then is it swapped in: the live database's sessions are terminated, and
in ONE transaction it is renamed aside (`<db>_replaced_<ts>`) and the copy takes its name
(ALTER DATABASE … RENAME is transactional, so there is no moment without a database under
the live name). Nothing is dropped: the replaced database stays until someone removes it.
Until the swap the live database is never touched; a failure before it leaves it as it was.

The bot's own history (`migrate_bot.run_events`) lives in the target database. The copy
holds it as it was at the backup; after the swap the events written since (preflight
result, approval, phases, this restore) are copied over from the replaced database, so
`status` and `report` keep the whole story. The file ledger (`migrate_bot.applied_files`)
is not copied: it describes the database it is in, and the replaced one keeps its own.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import psycopg
from psycopg import sql as pgsql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

from core import clock
from core.roster import COORDINATOR, TPM
from engine import database_properties, schema
from preflight import backup as backups
from preflight import catalog
from state.machine import Status
from workflows import templates
from workflows.core import Core
from workflows.reporting import FAILED, OK, Post, Reporter

log = logging.getLogger("migrate.restore")

MAX_IDENT = 63  # PostgreSQL truncates longer identifiers
SWAP_ATTEMPTS = 10  # terminate + swap, retried while sessions keep reconnecting
COPY_EVENTS = "SELECT event_id, at, target, run_id, actor, action, outcome, evidence FROM migrate_bot.run_events ORDER BY id"


# ------------------------------------------------------------------ facts about the backup


def backup_of(run) -> dict:
    return dict((run.preflight or {}).get("backup") or {})


def backup_time(run) -> str:
    finished = (run.preflight or {}).get("finished_at") or (run.preflight or {}).get("started_at")
    return str(finished)[:16].replace("T", " ") + " UTC" if finished else "an unknown time"


def backup_problem(backup: dict, *, hash_file: bool = True) -> str | None:
    """Why the recorded backup cannot be restored, or None (with `hash_file`, its sha256 is recomputed)."""
    if not backup.get("path"):
        return "no backup recorded for this run (preflight takes it)"
    if not backup.get("verified"):
        return f"the backup {backup['path']} was not verified by a restore at preflight"
    path = Path(backup["path"])
    if not path.is_file():
        return f"the backup file {path} is missing"
    if hash_file:
        size, digest = backups.file_sha256(path)
        if digest != backup.get("sha256"):
            return (
                f"the backup file {path} changed since preflight: sha256 {digest[:12]}… "
                f"({size:,} bytes), recorded {str(backup.get('sha256'))[:12]}… ({int(backup.get('size', 0)):,} bytes)"
            )
    return None


def dbname(url: str) -> str:
    return str(conninfo_to_dict(url).get("dbname") or "postgres")  # conninfo values are text


def _on_server(url: str, dbname: str) -> str:
    """A conninfo for database `dbname` on the server (and as the user) of `url`."""
    params = conninfo_to_dict(url)
    params["dbname"] = dbname
    return make_conninfo("", **params)


def _derived_name(live: str, what: str, stamp: str) -> str:
    suffix = f"_{what}_{stamp}"
    return live[: MAX_IDENT - len(suffix)] + suffix


class RestoreFailed(Exception):
    """A restore step failed before the swap; `lines` say what was checked, `terminated`
    whether sessions of the live database were terminated (the swap was tried)."""

    def __init__(self, reason: str, lines: list[str] | None = None, terminated: bool = False):
        super().__init__(reason)
        self.reason, self.lines, self.terminated = reason, lines or [], terminated


class Restore:
    """One confirmed restore: copy, verify, swap, carry the history over, report."""

    def __init__(self, core: Core, run_id: str, actor: str, reporter: Reporter):
        self.core, self.run_id, self.actor, self.reporter = core, run_id, actor, reporter
        self.url = core.settings.required_database_url()  # Core.from_settings required it
        self.live = dbname(self.url)
        stamp = clock.now().strftime("%Y%m%d_%H%M%S")
        self.copy = _derived_name(self.live, "restore", stamp)
        self.aside = _derived_name(self.live, "replaced", stamp)
        self.admin_url = _on_server(self.url, "postgres")
        run = core.store.get(run_id)
        self.backup = backup_of(run)
        self.backup_time = backup_time(run)
        self.lines: list[str] = []
        self.created = False  # whether this restore created the copy database

    def execute(self) -> int:
        started = clock.monotonic()
        try:
            self._check_file()
            self._restore_copy()
            self._stop_if_aborted()
            self._verify_copy()
            self._carry_database_properties()
            self._stop_if_aborted()
            self._swap()
        except RestoreFailed as failure:
            return self._failed(failure, started)
        except Exception as exc:  # noqa: BLE001 - before the swap committed (a driver, Redis or OS error…)
            detail = getattr(exc, "stderr", None) or str(exc)
            self._drop_copy(quiet=True)
            return self._failed(
                RestoreFailed(f"{type(exc).__name__}: {self.core.redact(str(detail).strip())[:300]}"), started
            )
        recovery = clock.monotonic() - started
        carried = self._carry_history()
        loss = self._loss_lines()
        return self._done(recovery, carried, loss)

    # -------------------------------------------------------------- steps

    def _check_file(self) -> None:
        problem = backup_problem(self.backup)
        if problem:
            raise RestoreFailed(problem)
        self.lines.append(
            f"{templates.OK_MARK} Backup file {self.backup['path']}: present, sha256 equal to the one "
            "recorded at preflight"
        )

    def _restore_copy(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            owner = admin.execute(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (self.live,)
            ).fetchone()
            assert owner is not None  # the live database exists: it is being restored
            create = pgsql.SQL("CREATE DATABASE {} TEMPLATE template0").format(pgsql.Identifier(self.copy))
            try:
                admin.execute(create + pgsql.SQL(" OWNER {}").format(pgsql.Identifier(owner[0])))
            except psycopg.errors.InsufficientPrivilege:
                admin.execute(create)  # owned by the bot's role
        self.created = True  # from here on the copy is ours to drop
        self.reporter.post(
            Post(
                "restore_progress",
                f"Restoring the backup into the new database `{self.copy}`",
                [f"pg_restore of {self.backup['path']}"],
                run_id=self.run_id,
            )
        )
        t0 = clock.monotonic()
        try:
            error = backups.restore_file(
                Path(self.backup["path"]),
                _on_server(self.url, self.copy),
                self.url,
                should_stop=self._abort_requested_by,
            )
        except backups.RestoreStopped:
            self._drop_copy()
            raise RestoreFailed(
                f"aborted by <@{self._abort_requested_by()}> during pg_restore, "
                f"{templates.seconds(clock.monotonic() - t0)} in (the partial copy {self.copy} "
                "was dropped)"
            ) from None
        if error:
            self._drop_copy()
            raise RestoreFailed(f"pg_restore into {self.copy} failed: {self.core.redact(error)[:400]}")
        self.lines.append(
            f"{templates.OK_MARK} Restored into the new database `{self.copy}` "
            f"in {templates.seconds(clock.monotonic() - t0)}"
        )

    def _abort_requested_by(self) -> str:
        """Who asked to abort (any process, through the run's meta), or ""."""
        run = self.core.store.get(self.run_id)
        return (run.meta.get("abort_requested") or "") if run is not None else ""

    def _stop_if_aborted(self) -> None:
        """`abort` during a restore stops it before the swap (the copy is dropped); once the
        swap has begun it completes. During pg_restore itself the abort is polled for."""
        who = self._abort_requested_by()
        if who:
            self._drop_copy()
            raise RestoreFailed(f"aborted by <@{who}> before the swap (the copy {self.copy} was dropped)")

    def _verify_copy(self) -> None:
        copy_url = _on_server(self.url, self.copy)
        lines, ok = verify_restored(copy_url, self.backup, self.core.runbook)
        self.lines += lines
        if not ok:
            self._drop_copy()
            raise RestoreFailed(
                f"the restored copy {self.copy} failed verification (dropped; the live database "
                "was not touched)",
                lines,
            )

    def _carry_database_properties(self) -> None:
        """What pg_dump of one database does not hold, taken from the live database as it is now:
        its settings (`ALTER DATABASE … SET`, `ALTER ROLE … IN DATABASE … SET`) and its grants
        (CONNECT, CREATE, TEMPORARY). Without them an application that relies on a database-level
        search_path, or a role that was the only one allowed to connect, breaks after the swap."""
        carried = database_properties.carry(self.admin_url, self.live, self.copy)
        self.lines.append(
            f"{templates.mark(not carried.missed)} Database properties of `{self.live}` applied to "
            f"`{self.copy}`: {carried.settings} setting(s), {carried.grants} grant(s)"
        )
        self.lines += [f"  not carried over, apply by hand: {self.core.redact(m)}" for m in carried.missed]

    def _swap(self) -> None:
        """In ONE transaction: the live database renamed aside, the verified copy into its place
        (ALTER DATABASE … RENAME is transactional: a crash or error in between changes nothing)."""
        self.core.events.close()  # our pooled connections to the live db would block the rename
        aside = pgsql.SQL("ALTER DATABASE {} RENAME TO {}").format(
            pgsql.Identifier(self.live), pgsql.Identifier(self.aside)
        )
        into = pgsql.SQL("ALTER DATABASE {} RENAME TO {}").format(
            pgsql.Identifier(self.copy), pgsql.Identifier(self.live)
        )
        terminated = 0
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            for _ in range(SWAP_ATTEMPTS):
                terminated += self._terminate(admin, self.live)
                try:
                    with admin.transaction():
                        admin.execute(aside)  # waits up to 5 s for the terminated sessions to exit
                        admin.execute(into)
                    break
                except psycopg.errors.ObjectInUse:
                    time.sleep(0.2)
            else:
                raise RestoreFailed(
                    f"sessions kept reconnecting to {self.live}: it could not be renamed (it is "
                    f"unchanged); the verified copy is kept as {self.copy}",
                    terminated=True,
                )
            # A session that connected while the swap was committing is on the replaced database.
            try:
                terminated += self._terminate(admin, self.aside)
            except psycopg.Error as exc:
                log.warning("after the swap, sessions on %s could not be terminated: %s", self.aside, exc)
        self.lines.append(
            f"{templates.OK_MARK} Swapped in one transaction: `{self.live}` is now the restored copy "
            f"({terminated} session(s) of the old database terminated)"
        )

    @staticmethod
    def _terminate(admin: psycopg.Connection, dbname: str) -> int:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (dbname,),
        ).fetchall()
        return sum(1 for r in rows if r[0])

    def _drop_copy(self, quiet: bool = False) -> None:
        if not self.created:
            return
        try:
            with psycopg.connect(self.admin_url, autocommit=True) as admin:
                admin.execute(
                    pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(self.copy))
                )
        except psycopg.Error:
            if not quiet:
                raise
            self.lines.append(
                f"{templates.FAIL_MARK} The copy `{self.copy}` could not be dropped: drop it by hand"
            )

    # -------------------------------------------------------------- after the swap

    def _carry_history(self) -> int:
        """Copy the events written since the backup from the replaced database's event log."""
        events = self.core.events
        events.reset()  # the restored database may predate the event table
        try:
            before = len(events.events(None, limit=1_000_000))
            with psycopg.connect(
                _on_server(self.url, self.aside), autocommit=True, row_factory=dict_row
            ) as old:
                present = old.execute(
                    "SELECT to_regclass('migrate_bot.run_events') IS NOT NULL AS t"
                ).fetchone()
                assert present is not None  # a SELECT without FROM is one row
                if present["t"]:
                    for row in old.execute(COPY_EVENTS):
                        events.write(
                            {**row, "at": row["at"].isoformat()}
                        )  # an event already there is kept once
            copied = len(events.events(None, limit=1_000_000)) - before
        except Exception as exc:  # the restore itself succeeded: say the history is incomplete
            self.lines.append(
                f"{templates.FAIL_MARK} History not carried over from {self.aside}: "
                f"{self.core.redact(str(exc))[:200]}"
            )
            return -1
        self.core.store.flush_mirror()
        return copied

    def _loss_lines(self) -> list[str]:
        try:
            with psycopg.connect(_on_server(self.url, self.aside), autocommit=True) as old:
                now = catalog.write_counters(old)
                counts = catalog.row_counts(old, _tables(old))
        except psycopg.Error as exc:
            return [
                f"Data loss: unknown, writes since {self.backup_time} are not in the backup "
                f"(could not read {self.aside}: {self.core.redact(str(exc))[:120]})"
            ]
        return loss_lines(self.backup, now, counts, self.backup_time)

    def _done(self, recovery: float, carried: int, loss: list[str]) -> int:
        result = dict(self.core.store.get_existing(self.run_id).result or {})
        result["restore"] = {
            "database": self.live,
            "replaced_by_backup_kept_as": self.aside,
            "recovery_seconds": round(recovery, 3),
            "events_carried": carried,
            "loss": loss,
        }
        self.core.store.transition(
            self.run_id,
            Status.RESTORED,
            actor=self.actor,
            action="restored from backup",
            fields={"result": result},
            evidence={"kept_aside": self.aside, "recovery_seconds": round(recovery, 3), "loss": loss},
        )
        self.core.schedule.run_undone(self.run_id)  # post-execution follow-ups no longer apply
        history = (
            f"{carried} history event(s) copied over from the replaced database"
            if carried >= 0
            else "history since the backup stays in the replaced database (copy failed)"
        )
        self.reporter.post(
            Post(
                "restored",
                f"Restore from backup complete: `{self.live}` is the backup of {self.backup_time} "
                f"(recovery time {templates.seconds(recovery)}) {templates.OK_MARK}",
                [
                    *self.lines,
                    *loss,
                    history,
                    f"The replaced database is kept as `{self.aside}`: remove it with `DROP DATABASE {self.aside};` "
                    "when you are sure nothing in it is needed.",
                    "The run is finished: a new `preflight` starts over.",
                ],
                fields={"Recovery Time": templates.seconds(recovery), "Kept aside": self.aside},
                run_id=self.run_id,
                final=True,
                mentions=list(self.core.roster.members(TPM)) + list(self.core.roster.members(COORDINATOR)),
            )
        )
        return OK

    def _failed(self, failure: RestoreFailed, started: float) -> int:
        self.core.store.transition(
            self.run_id,
            Status.FAILED,
            actor=self.actor,
            action="restore failed",
            outcome="failed",
            evidence={"reason": failure.reason},
        )
        state = f"Untouched — the restore stopped before the swap: `{self.live}` was not renamed" + (
            " (its sessions were terminated while trying)"
            if failure.terminated
            else " and none of its sessions were terminated"
        )
        post = templates.failure(
            self.core.runbook,
            self.run_id,
            failed_phase="Restore from backup",
            error=failure.reason,
            rollback_status="Not run — the restore did not complete",
            database_status=state,
            action_required="Investigate; `rollback restore` again once the cause is fixed, "
            "or restore by hand",
            backup=self.backup,
            roster=self.core.roster,
        )
        post.lines = self.lines + failure.lines + post.lines
        self.reporter.post(post)
        return FAILED


def _tables(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT schemaname || '.' || relname FROM pg_stat_user_tables WHERE schemaname <> ALL(%s)",
        (list(catalog.SKIP_SCHEMAS),),
    ).fetchall()
    return [r[0] for r in rows]


def verify_restored(url: str, backup: dict, runbook) -> tuple[list[str], bool]:
    """Check a restored copy against what preflight recorded: (lines, all held)."""
    lines, ok = [], True
    expected = backup.get("row_counts") or {}
    with psycopg.connect(url, autocommit=True) as conn:
        present = set(_tables(conn))
        missing = sorted(set(expected) - present)
        counts = catalog.row_counts(conn, [t for t in expected if t in present])
        versions = [r[0] for r in conn.execute("SELECT version::text FROM schema_migrations ORDER BY 1")]
    differ = [f"{t} ({counts[t]} vs {expected[t]})" for t in counts if counts[t] != expected[t]]
    good = bool(expected) and not missing and not differ
    ok &= good
    if not expected:
        lines.append(f"{templates.FAIL_MARK} No row counts recorded with the backup: cannot compare")
    elif good:
        lines.append(
            f"{templates.OK_MARK} Row counts of {len(counts)} tables equal to those recorded at the backup"
        )
    else:
        lines.append(
            f"{templates.FAIL_MARK} Row counts differ from the backup's: "
            + "; ".join(differ + [f"{t} missing" for t in missing])
        )
    previous = max(runbook.prerequisites.applied) if runbook.prerequisites.applied else None
    latest = versions[-1] if versions else None
    good = runbook.version not in versions and (previous is None or latest == previous)
    ok &= good
    lines.append(
        f"{templates.mark(good)} schema_migrations: latest {latest or 'none'} "
        f"(expected {previous or 'anything before ' + runbook.version}, {runbook.version} absent)"
    )
    snapshot = backup.get("schema_snapshot")
    if snapshot and Path(snapshot).is_file():
        diff = schema.difference(Path(snapshot).read_text(encoding="utf-8"), schema.schema_dump(url))
        ok &= not diff
        lines.append(
            f"{templates.OK_MARK} Schema equals the pre-migration snapshot (pg_dump compared)"
            if not diff
            else f"{templates.FAIL_MARK} Schema differs from the pre-migration snapshot: "
            + "; ".join(diff[:8])
        )
    else:
        ok = False
        lines.append(
            f"{templates.FAIL_MARK} Schema not compared: the pre-migration snapshot {snapshot} is missing"
        )
    return lines, ok


def loss_lines(backup: dict, counters: dict, counts: dict, since: str) -> list[str]:
    """What the restored database lacks: write counters of the replaced db since the backup,
    and per table the net row difference; "unknown" when the counters cannot tell."""
    before = backup.get("write_counters") or {}
    keys = ("n_tup_ins", "n_tup_upd", "n_tup_del")
    if not before or any(k not in before for k in keys) or any(counters.get(k, 0) < before[k] for k in keys):
        return [
            f"Data loss: unknown, writes since {since} are not in the backup "
            "(the statistics counters were reset or not recorded at the backup)"
        ]
    ins, upd, dele = (counters[k] - before[k] for k in keys)
    if not (ins or upd or dele):
        return [
            f"Data loss: none measured — no row was inserted, updated or deleted since the backup ({since}), "
            "per PostgreSQL's statistics counters"
        ]
    lines = [
        f"Data loss: {ins} row(s) inserted, {upd} updated, {dele} deleted since the backup ({since}) are not in "
        "the restored database (PostgreSQL statistics counters; they include the migration's own writes)"
    ]
    expected = backup.get("row_counts") or {}
    then_tables, now_tables = before.get("tables") or {}, counters.get("tables") or {}
    for table in sorted(set(counts) | set(expected)):
        now, then = counts.get(table), expected.get(table)
        if then is None:
            lines.append(f"  {table}: created since the backup ({now} rows), not in the restored database")
        elif now is None:
            lines.append(f"  {table}: dropped since the backup; restored with its {then} rows")
        elif table in then_tables and table in now_tables:
            i, u, d = (a - b for a, b in zip(now_tables[table], then_tables[table]))
            if i or u or d:
                lines.append(
                    f"  {table}: {i} inserted, {u} updated, {d} deleted since the backup "
                    f"({now} rows now vs {then} at the backup)"
                )
        elif now != then:  # per-table counters not recorded (an older backup): the net change only
            lines.append(f"  {table}: {now} rows now vs {then} at the backup ({now - then:+d} net)")
    return lines
