"""`rollback restore` (the report's scenario 3) against a real database: the coordinator asks,
the TPM confirms, the verified backup is restored into a new database, verified, swapped in;
the replaced database is kept aside; what was written since the backup is reported lost.
"""

from __future__ import annotations

import io
import threading
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from bot.console import run_command
from commands import Core
from core import clock
from state.machine import Status
from tests.conftest import PLANTED
from tests.support import pg
from tests.support.deployment import Deployment, TcpListener
from tests.support.waiting import wait_until

COORDINATOR, TPM, LIU = "U0RAFAEL", "U0DYLAN", "U0LIU"


@pytest.fixture
def ready(settings):
    deployment, mongo = Deployment(), TcpListener()
    yield settings.with_(
        deployment_url=deployment.url,
        register_mongodb_url=f"mongodb://lancio:S3cretMongoPw42@127.0.0.1:{mongo.port}/lancio",
    )
    deployment.close()
    mongo.close()


@pytest.fixture
def live_name(ready):
    """The live database's name; every database derived from it is dropped after the test."""
    name = ready.database_url.rsplit("/", 1)[1]
    yield name
    for other in _databases_like(name):
        pg.drop_database(other)


def _databases_like(name: str) -> list[str]:
    with psycopg.connect(pg.SERVER_URL, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s ORDER BY 1", (name + "\\_%",)
        ).fetchall()
    return [r[0] for r in rows]


def console(core: Core, user: str, text: str, transcript: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    code = run_command(core, user, text, out)
    transcript.append(out.getvalue())
    return code, out.getvalue()


def _approved_and_phase_1(core: Core, transcript: list[str]) -> None:
    for user, text in ((COORDINATOR, "preflight"), (TPM, "approve"), (LIU, "run phase 1")):
        code, out = console(core, user, text, transcript)
        assert code == 0, out


def _write_after_backup(url: str) -> int:
    """Three organizations inserted and one updated after the backup; returns the new count."""
    with psycopg.connect(url) as conn:
        for i in range(3):
            conn.execute(
                "INSERT INTO platform.organizations (name, slug) VALUES (%s, %s)",
                (f"After backup {i}", f"after-backup-{i}"),
            )
        conn.execute("UPDATE platform.organizations SET name = name WHERE slug = 'after-backup-0'")
        return conn.execute("SELECT count(*) FROM platform.organizations").fetchone()[0]


def test_restore_swaps_in_the_verified_backup_keeps_the_old_db_and_reports_the_loss(ready, live_name):
    core = Core.from_settings(ready)
    transcript: list[str] = []
    schema_005 = pg.schema_dump(ready.database_url)
    orgs_at_backup = pg.scalar(ready.database_url, "SELECT count(*) FROM platform.organizations")

    code, out = console(core, COORDINATOR, "preflight", transcript)
    assert code == 0, out
    code, out = console(core, TPM, "approve", transcript)
    assert code == 0, out
    code, out = console(core, COORDINATOR, "rollback restore", transcript)
    assert code == 2 and "approved" in out  # nothing ran yet: the lifecycle refuses

    code, out = console(core, LIU, "run phase 1", transcript)
    assert code == 0, out
    orgs_now = _write_after_backup(ready.database_url)
    assert orgs_now == orgs_at_backup + 3

    code, out = console(core, TPM, "rollback restore", transcript)
    assert code == 2 and "only the coordinator" in out
    code, out = console(core, COORDINATOR, "rollback restore confirm", transcript)
    assert code == 2 and "only the TPM" in out
    code, out = console(core, TPM, "rollback restore confirm", transcript)
    assert code == 2 and "no restore was requested" in out

    code, out = console(core, COORDINATOR, "rollback restore", transcript)
    assert code == 0, out
    assert "[button: Confirm restore] → /migrate rollback restore confirm" in out
    assert core.store.current().status is Status.RESTORE_REQUESTED

    app_session = psycopg.connect(ready.database_url, autocommit=True)  # an application's idle connection
    code, out = console(core, TPM, "rollback restore confirm", transcript)
    assert code == 0, out
    assert "Restore from backup complete" in out
    assert (
        "sha256 equal" in out and "Row counts of" in out and "Schema equals the pre-migration snapshot" in out
    )
    assert "schema_migrations: latest 005" in out
    assert "Swapped in one transaction" in out and "session(s) of the old database terminated" in out
    assert app_session.closed or _is_dead(app_session)

    # The loss is reported, per table where it can be measured...
    assert "Data loss:" in out and "row(s) inserted" in out and "1 updated" in out
    assert (
        f"platform.organizations: 3 inserted, 1 updated, 0 deleted since the backup "
        f"({orgs_now} rows now vs {orgs_at_backup} at the backup)"
    ) in out
    assert "platform.databases: created since the backup" in out
    # ... and it is indeed lost: the live database is the backup again.
    url = ready.database_url
    assert pg.scalar(url, "SELECT count(*) FROM platform.organizations") == orgs_at_backup
    assert pg.scalar(url, "SELECT count(*) FROM platform.organizations WHERE slug LIKE 'after-backup-%'") == 0
    assert pg.scalar(url, "SELECT to_regclass('platform.databases')") is None
    assert pg.scalar(url, "SELECT max(version::text) FROM schema_migrations") == "005"
    assert pg.schema_dump(url) == schema_005

    # The replaced database is kept aside, with what was written to it.
    aside = [d for d in _databases_like(live_name) if "_replaced_" in d]
    assert len(aside) == 1 and f"DROP DATABASE {aside[0]};" in out
    aside_url = pg.url_for(aside[0])
    assert (
        pg.scalar(aside_url, "SELECT count(*) FROM platform.organizations WHERE slug LIKE 'after-backup-%'")
        == 3
    )
    assert pg.scalar(aside_url, "SELECT to_regclass('platform.databases')") is not None
    assert not [d for d in _databases_like(live_name) if "_restore_" in d]  # the copy took the live name

    run = core.store.current()
    assert run.status is Status.RESTORED
    assert all(p.status.value in ("rolled back", "pending") for p in run.phases.values())
    # The history written since the backup was carried over into the restored database.
    actions = [e["action"] for e in core.events.events(run.id, limit=1000)]
    for action in (
        "preflight",
        "phase 1 complete",
        "restore requested",
        "restore confirmed",
        "restored from backup",
    ):
        assert action in actions, actions
    code, out = console(core, COORDINATOR, "status", transcript)
    assert code == 0 and "restored" in out
    code, out = console(core, COORDINATOR, "report", transcript)
    assert code == 0, out
    assert (
        "## Restore from Backup" in out
        and "Replaced database kept as" in out
        and "3 inserted, 1 updated" in out
    )

    everything = "\n".join(transcript)
    for secret in (PLANTED["key"], "S3cretMongoPw42", "S3cretRedisPw42", PLANTED["bot_token"]):
        assert secret not in everything
    app_session.close()


def _is_dead(conn: psycopg.Connection) -> bool:
    try:
        conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return True
    return False


def test_a_changed_backup_file_is_refused_and_the_live_database_is_untouched(ready, live_name):
    core = Core.from_settings(ready)
    transcript: list[str] = []
    _approved_and_phase_1(core, transcript)
    code, out = console(core, COORDINATOR, "rollback restore", transcript)
    assert code == 0, out
    backup = Path(core.store.current().preflight["backup"]["path"])
    with open(backup, "ab") as f:
        f.write(b"\0garbage")

    code, out = console(core, TPM, "rollback restore confirm", transcript)
    assert code == 1, out
    assert "Migration 006 FAILED" in out and "changed since preflight" in out
    assert "Untouched" in out
    assert (
        pg.scalar(ready.database_url, "SELECT to_regclass('platform.databases')") is not None
    )  # phase 1 still there
    assert _databases_like(live_name) == []  # no copy left, nothing renamed
    assert core.store.current().status is Status.FAILED


def test_a_copy_that_fails_verification_is_dropped_and_never_swapped_in(ready, live_name):
    core = Core.from_settings(ready)
    transcript: list[str] = []
    _approved_and_phase_1(core, transcript)
    snapshot = Path(core.store.current().preflight["backup"]["schema_snapshot"])
    # The pre-migration snapshot no longer matches what the backup holds.
    snapshot.write_text(snapshot.read_text() + "\nCREATE TABLE platform.imaginary (id integer);\n")

    assert console(core, COORDINATOR, "rollback restore", transcript)[0] == 0
    code, out = console(core, TPM, "rollback restore confirm", transcript)
    assert code == 1, out
    assert "Schema differs from the pre-migration snapshot" in out and "imaginary" in out
    assert "failed verification" in out and "Untouched" in out
    assert pg.scalar(ready.database_url, "SELECT to_regclass('platform.databases')") is not None
    assert _databases_like(live_name) == []


def _restore_copy_loading(live: str) -> bool:
    """Whether pg_restore is loading rows into the restore copy of `live` right now."""
    with psycopg.connect(pg.SERVER_URL, autocommit=True) as conn:
        return bool(
            conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname LIKE %s AND application_name = 'migrate-bot-restore' "
                "AND query LIKE 'COPY %%'",
                (live + "\\_restore\\_%",),
            ).fetchone()[0]
        )


def test_abort_during_pg_restore_stops_it_drops_the_partial_copy_and_a_new_request_restores(ready, live_name):
    """An operator's abort must not wait for a long pg_restore: it is stopped while it loads rows,
    its partial copy is dropped, the live database is untouched, and asking again works."""
    url = ready.database_url
    with psycopg.connect(url, autocommit=True) as conn:  # enough rows that pg_restore takes seconds
        conn.execute(
            "CREATE TABLE public.bulk_history AS SELECT g AS id, md5(g::text) AS note "
            "FROM generate_series(1, 1500000) g"
        )
    core = Core.from_settings(ready)
    transcript: list[str] = []
    _approved_and_phase_1(core, transcript)
    assert console(core, COORDINATOR, "rollback restore", transcript)[0] == 0
    schema_before = pg.schema_dump(url)

    other = Core.from_settings(ready)  # the abort comes from another process's core
    aborted: list[tuple[int, str]] = []

    def abort_while_loading() -> None:
        wait_until(lambda: _restore_copy_loading(live_name), timeout=60, interval=0.05)
        aborted.append(console(other, COORDINATOR, "abort", []))

    watcher = threading.Thread(target=abort_while_loading, daemon=True)
    watcher.start()
    code, out = console(core, TPM, "rollback restore confirm", transcript)
    watcher.join(timeout=30)
    assert aborted and aborted[0][0] == 0 and "pg_restore in progress is stopped" in aborted[0][1]
    assert code == 1, out
    assert f"aborted by <@{COORDINATOR}> during pg_restore" in out and "was dropped" in out
    assert "Untouched" in out and "none of its sessions were terminated" in out
    assert not _restore_copy_loading(live_name)
    assert _databases_like(live_name) == []  # the partial copy is gone, nothing renamed
    assert pg.schema_dump(url) == schema_before  # phase 1 still applied, nothing else changed
    assert pg.scalar(url, "SELECT count(*) FROM public.bulk_history") == 1500000
    assert core.store.current().status is Status.FAILED

    # The way forward the failure post names: ask again, confirm, and it restores.
    assert console(core, COORDINATOR, "rollback restore", transcript)[0] == 0
    code, out = console(core, TPM, "rollback restore confirm", transcript)
    assert code == 0, out
    assert "Restore from backup complete" in out
    assert pg.scalar(url, "SELECT to_regclass('platform.databases')") is None
    assert pg.scalar(url, "SELECT count(*) FROM public.bulk_history") == 1500000
    assert core.store.current().status is Status.RESTORED


def test_a_restore_request_left_unconfirmed_expires_and_asking_again_renews_it(ready, live_name, monkeypatch):
    core = Core.from_settings(ready.with_(restore_request_minutes=30))
    transcript: list[str] = []
    _approved_and_phase_1(core, transcript)
    assert console(core, COORDINATOR, "rollback restore", transcript)[0] == 0
    asked = clock.now()

    monkeypatch.setattr(clock, "now", lambda: asked + timedelta(minutes=31))
    code, out = console(core, TPM, "rollback restore confirm", transcript)
    assert code == 2, out
    assert (
        f"by <@{COORDINATOR}> expired (requests are valid 30 min)" in out
        and "asks again with `rollback restore`" in out
    )
    assert core.store.current().status is Status.RESTORE_REQUESTED
    assert _databases_like(live_name) == []  # nothing was started
    assert pg.scalar(ready.database_url, "SELECT to_regclass('platform.databases')") is not None

    assert (
        console(core, COORDINATOR, "rollback restore", transcript)[0] == 0
    )  # a new request, at the new "now"
    code, out = console(core, TPM, "rollback restore confirm", transcript)
    assert code == 0, out
    assert "Restore from backup complete" in out
    assert pg.scalar(ready.database_url, "SELECT to_regclass('platform.databases')") is None


@pytest.fixture
def app_role():
    """A login role of the application, dropped after every database that mentions it."""
    name = pg.new_name("app_role")
    with psycopg.connect(pg.SERVER_URL, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{name}" LOGIN')
    yield name
    with psycopg.connect(pg.SERVER_URL, autocommit=True) as conn:
        conn.execute(f'DROP ROLE IF EXISTS "{name}"')


def _database_properties(dbname: str) -> tuple[list, list]:
    """(settings per role, grants without their grantor) of database `dbname`."""
    with psycopg.connect(pg.SERVER_URL, autocommit=True) as conn:
        settings = conn.execute(
            "SELECT coalesce(r.rolname, ''), s.setconfig FROM pg_db_role_setting s LEFT JOIN pg_roles r "
            "ON r.oid = s.setrole WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = %s) ORDER BY 1",
            (dbname,),
        ).fetchall()
        grants = conn.execute(
            "SELECT CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END, a.privilege_type, "
            "a.is_grantable FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = %s ORDER BY 1, 2",
            (dbname,),
        ).fetchall()
    return [(role, sorted(config)) for role, config in settings], grants


def test_restore_carries_the_databases_own_settings_and_grants_over(app_role, ready, live_name):
    """pg_dump of a database does not hold the database's settings and grants: the restored
    database must get them from the one it replaces, or an application relying on a
    database-level search_path, or the only role allowed to connect, breaks after the swap."""
    core = Core.from_settings(ready)
    transcript: list[str] = []
    with psycopg.connect(
        ready.database_url, autocommit=True
    ) as conn:  # in the backup: an object a setting names
        conn.execute("CREATE TEXT SEARCH CONFIGURATION public.lancio_search (COPY = english)")
    _approved_and_phase_1(core, transcript)
    with psycopg.connect(pg.SERVER_URL, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{live_name}" SET search_path = public, platform')
        admin.execute(f"ALTER DATABASE \"{live_name}\" SET app.region = 'eu-west-1'")
        # checked against the database it is set for: the one being restored, not `postgres`
        admin.execute(
            f"ALTER DATABASE \"{live_name}\" SET default_text_search_config = 'public.lancio_search'"
        )
        admin.execute(f'ALTER ROLE "{app_role}" IN DATABASE "{live_name}" SET work_mem = \'8MB\'')
        # must not turn the statement that stores it read-only
        admin.execute(
            f'ALTER ROLE "{app_role}" IN DATABASE "{live_name}" SET default_transaction_read_only = on'
        )
        admin.execute(f'REVOKE CONNECT, TEMPORARY ON DATABASE "{live_name}" FROM PUBLIC')
        admin.execute(f'GRANT CONNECT ON DATABASE "{live_name}" TO "{app_role}"')
    before = _database_properties(live_name)
    assert before[0] and ("PUBLIC", "CONNECT", False) not in before[1]

    assert console(core, COORDINATOR, "rollback restore", transcript)[0] == 0
    code, out = console(core, TPM, "rollback restore confirm", transcript)
    assert code == 0, out
    assert f"Database properties of `{live_name}` applied" in out and "5 setting(s)" in out
    assert "not carried over" not in out
    assert _database_properties(live_name) == before
    assert (
        pg.scalar(ready.database_url, "SHOW search_path") == "public, platform"
    )  # a list, not one quoted name
    assert (
        pg.scalar(ready.database_url, "SELECT to_regclass('platform.databases')") is None
    )  # it is the backup


def test_a_read_only_default_carried_first_does_not_block_the_settings_after_it(scratch_db):
    from engine import database_properties

    source, target = scratch_db(), scratch_db()
    src, tgt = (psycopg.conninfo.conninfo_to_dict(u)["dbname"] for u in (source, target))
    with psycopg.connect(pg.SERVER_URL, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{src}" SET default_transaction_read_only = on')  # stored first
        admin.execute(f'ALTER DATABASE "{src}" SET search_path = public, platform')
        admin.execute(f"ALTER DATABASE \"{src}\" SET work_mem = '8MB'")
    carried = database_properties.carry(pg.SERVER_URL, src, tgt)
    assert (carried.settings, carried.missed) == (3, [])
    assert _database_properties(tgt)[0] == _database_properties(src)[0]
