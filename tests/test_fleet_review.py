"""Adversarial review of the fleet (issue 18): what an operator trusting production needs from
approval binding, exactly-once and the wave rule — each test a defect found, or a probe that held."""

from __future__ import annotations

import time

from commands import Core
from commands.fleetcore import close_target_cores, store
from core.targets import load_fleet
from state.fleet import FleetStatus, TargetStatus
from tests.support import pg
from tests.support.fleetui import missing_database_url, small_runbook, targets_file
from tests.support.flow import COORDINATOR, TPM, Console


def _core(settings, tmp_path, urls, waves, runbook, *, own: str) -> Core:
    """The process Core of a fleet whose bot records live on target `own`'s database."""
    path, env = targets_file(tmp_path, urls, waves)
    return Core.from_settings(
        settings.with_(database_url=urls[own], runbook_path=runbook, targets=load_fleet(path, env))
    )


def _close(core: Core) -> None:
    close_target_cores(core)
    core.events.close()


def test_no_canary_go_no_approval(settings, scratch_db, tmp_path):
    """A canary wave with no GO database must not let wave 1 go first: the TPM's approve is
    refused naming the canary (was: GO recorded, and `run` migrated wave 1 with no canary)."""
    urls = {"canary": missing_database_url(), "db-1": scratch_db(), "db-2": scratch_db()}
    waves = {"canary": 0, "db-1": 1, "db-2": 1}
    console = Console(_core(settings, tmp_path, urls, waves, small_runbook(tmp_path), own="db-1"))
    try:
        assert console(COORDINATOR, "preflight")[0] == 1

        code, out = console(TPM, "approve")

        assert code == 2, out
        assert "canary" in out and "wave 0" in out, out
        assert store(console.core).current().status is FleetStatus.GO
        code, out = console(COORDINATOR, "run")
        assert code == 2, out
        assert pg.scalar(urls["db-1"], "SELECT count(*) FROM pg_class WHERE relname = 'items_1'") == 0
    finally:
        _close(console.core)


def test_two_targets_one_database_by_two_spellings(settings, scratch_db, tmp_path):
    """localhost and 127.0.0.1 reach one database: the second target is NO-GO as the same
    database as the first (was: a lock-held NO-GO, or both GO and every approve refused)."""
    url = scratch_db()
    other = url.replace("127.0.0.1", "localhost")
    assert other != url
    urls = {"canary": url, "db-1": other, "db-2": scratch_db()}
    waves = {"canary": 0, "db-1": 1, "db-2": 1}
    console = Console(_core(settings, tmp_path, urls, waves, small_runbook(tmp_path), own="db-2"))
    try:
        code, out = console(COORDINATOR, "preflight")

        assert code == 1, out
        run = store(console.core).current()
        assert run.targets["canary"].status is TargetStatus.GO, run.targets["canary"]
        assert run.targets["db-1"].status is TargetStatus.NO_GO
        assert "same database as target canary" in run.targets["db-1"].reason, run.targets["db-1"].reason
        assert "same database as target canary" in out
        code, out = console(TPM, "approve")
        assert code == 0, out
        code, out = console(COORDINATOR, "run")
        assert code == 0, out
    finally:
        _close(console.core)


def test_target_gone_from_the_targets_file_after_approval(settings, scratch_db, tmp_path):
    """A target approved, then removed from MIGRATE_TARGETS (a new process reads the new file):
    `run` is refused in one line naming it (was: AttributeError on None)."""
    urls = {"canary": scratch_db(), "db-1": scratch_db()}
    waves = {"canary": 0, "db-1": 1}
    runbook = small_runbook(tmp_path)
    console = Console(_core(settings, tmp_path, urls, waves, runbook, own="canary"))
    try:
        console.approved()
    finally:
        _close(console.core)
    (tmp_path / "again").mkdir()
    later = Console(
        _core(settings, tmp_path / "again", {"canary": urls["canary"]}, {"canary": 0}, runbook, own="canary")
    )
    try:
        code, out = later(COORDINATOR, "run")

        assert code == 2, out
        assert "db-1" in out and "MIGRATE_TARGETS" in out and "Traceback" not in out, out
        assert pg.scalar(urls["canary"], "SELECT count(*) FROM pg_class WHERE relname = 'items_1'") == 0
    finally:
        _close(later.core)


def test_target_url_changed_after_approval_is_refused(settings, scratch_db, tmp_path):
    """Held: db-1's variable now names another database (a new process): `run` refused, nothing runs."""
    urls = {"canary": scratch_db(), "db-1": scratch_db()}
    waves = {"canary": 0, "db-1": 1}
    runbook = small_runbook(tmp_path)
    console = Console(_core(settings, tmp_path, urls, waves, runbook, own="canary"))
    try:
        console.approved()
    finally:
        _close(console.core)
    (tmp_path / "again").mkdir()
    swapped = {"canary": urls["canary"], "db-1": scratch_db()}
    later = Console(_core(settings, tmp_path / "again", swapped, waves, runbook, own="canary"))
    try:
        code, out = later(COORDINATOR, "run")

        assert code == 2, out
        assert "db-1" in out, out
        assert pg.scalar(urls["canary"], "SELECT count(*) FROM pg_class WHERE relname = 'items_1'") == 0
    finally:
        _close(later.core)


def test_a_fleet_target_does_not_run_alone_under_the_fleets_approval(settings, scratch_db, tmp_path):
    """The fleet's approval writes each GO target's own run APPROVED; a process with that
    target's DATABASE_URL alone (as the README sends operators for per-database rollbacks) must
    not `run` it outside its wave, before the canary (was: exit 0, wave 1 migrated first)."""
    urls = {"canary": scratch_db(), "db-1": scratch_db()}
    waves = {"canary": 0, "db-1": 1}
    runbook = small_runbook(tmp_path)
    console = Console(_core(settings, tmp_path, urls, waves, runbook, own="canary"))
    try:
        console.approved()
    finally:
        _close(console.core)
    alone = Console(Core.from_settings(settings.with_(database_url=urls["db-1"], runbook_path=runbook)))
    try:
        code, out = alone(COORDINATOR, "run")

        assert code == 2, out
        assert "fleet run" in out, out
        assert pg.scalar(urls["db-1"], "SELECT count(*) FROM pg_class WHERE relname = 'items_1'") == 0
        code, out = alone(COORDINATOR, "run phase 1")
        assert code == 2 and "fleet run" in out, out
    finally:
        alone.core.events.close()


def test_the_single_database_scheduler_leaves_a_fleets_go_scheduled_to_the_fleet(
    settings, scratch_db, tmp_path
):
    """GO scheduled for a fleet makes the canary's own run SCHEDULED on the database `serve`
    keeps its records in; serve's single-database Scheduler found it "with its start job
    missing" and re-added one, so at that time the canary started twice over (the fleet's sweep
    and APScheduler) and the loser failed or deferred it. The fleet's sweep alone starts it."""
    from datetime import timedelta

    from core import clock
    from scheduling.scheduler import Scheduler
    from tests.test_health import Collect

    urls = {"canary": scratch_db(), "db-1": scratch_db()}
    waves = {"canary": 0, "db-1": 1}
    console = Console(_core(settings, tmp_path, urls, waves, small_runbook(tmp_path), own="canary"))
    client = None
    try:
        assert console(COORDINATOR, "preflight")[0] == 0
        at = (clock.now() + timedelta(hours=3)).replace(second=0, microsecond=0)
        assert console(TPM, f"approve at {at:%Y-%m-%dT%H:%MZ}")[0] == 0
        assert console.core.store.current().approval["fleet"] == store(console.core).current().id

        client = Scheduler(console.core, lambda: Collect(), start=False)

        assert client.recover_start() is False
        assert [j for j in client.jobs() if j["kind"] == "start"] == []
    finally:
        if client is not None:
            client.shutdown()
        _close(console.core)


def test_a_take_over_on_a_target_whose_url_now_reaches_another_database(settings, scratch_db, tmp_path):
    """A worker died with db-1 RUNNING; the process taking it over reads a targets file whose
    db-1 variable now reaches the canary's database. The take-over skipped the approval check
    (QUEUED only) and ran the canary's approved run as db-1's, then showed db-1 ✅ — a database
    never migrated. The job now checks the identity the pre-flight recorded."""
    from workflows.fleet.target import run_target

    urls = {"canary": scratch_db(), "db-1": scratch_db()}
    waves = {"canary": 0, "db-1": 0}
    runbook = small_runbook(tmp_path)
    console = Console(_core(settings, tmp_path, urls, waves, runbook, own="canary"))
    try:
        console.approved()
        fstore = store(console.core)
        run = fstore.current()
        fstore.transition(run.id, FleetStatus.RUNNING, actor="test", action="run")
        assert sorted(fstore.advance(run.id, actor="test").queued) == ["canary", "db-1"]
        fstore.move(run.id, "db-1", TargetStatus.RUNNING, actor="dead:1", action="started")
    finally:
        _close(console.core)
    (tmp_path / "again").mkdir()
    moved = {"canary": urls["canary"], "db-1": urls["canary"].replace("127.0.0.1", "localhost")}
    later = _core(settings, tmp_path / "again", moved, waves, runbook, own="canary")
    try:
        from commands.fleet_run import fleet_context

        done = run_target(fleet_context(later), run.id, "db-1")

        assert "another database" in done.what, done
        state = store(later).target(run.id, "db-1")
        assert state.status is TargetStatus.FAILED and "another database" in state.error
        for url in urls.values():
            assert pg.scalar(url, "SELECT count(*) FROM pg_class WHERE relname = 'items_1'") == 0
    finally:
        _close(later)


def test_a_fleet_run_read_with_a_target_gone_from_the_targets_file(settings, scratch_db, tmp_path):
    """After a run, a process whose MIGRATE_TARGETS no longer names db-1: `report` and `rollback
    all` crashed with AttributeError ('NoneType' object has no attribute 'name'); now the report
    says why db-1's own run is not read and `rollback all` undoes the canary and names db-1 as not
    rolled back, saying what to do."""
    urls = {"canary": scratch_db(), "db-1": scratch_db()}
    waves = {"canary": 0, "db-1": 1}
    runbook = small_runbook(tmp_path)
    console = Console(_core(settings, tmp_path, urls, waves, runbook, own="canary"))
    try:
        console.approved()
        code, out = console(COORDINATOR, "run")
        assert code == 0, out
    finally:
        _close(console.core)
    (tmp_path / "again").mkdir()
    later = Console(
        _core(settings, tmp_path / "again", {"canary": urls["canary"]}, {"canary": 0}, runbook, own="canary")
    )
    try:
        code, out = later(COORDINATOR, "report")
        assert code == 0 and "MIGRATE_TARGETS no longer names it" in out, out

        code, out = later(COORDINATOR, "rollback all")

        assert "AttributeError" not in out and "db-1: MIGRATE_TARGETS no longer names it" in out, out
        assert code == 1, out  # one database could not be rolled back from here
        assert pg.scalar(urls["canary"], "SELECT count(*) FROM pg_class WHERE relname = 'items_1'") == 0
        assert pg.scalar(urls["db-1"], "SELECT count(*) FROM pg_class WHERE relname = 'items_1'") == 1
    finally:
        _close(later.core)


SECRET = "Fl33tPw-9x7q"


def _with_password(url: str) -> str:
    return url.replace("postgresql://postgres@", f"postgresql://postgres:{SECRET}@")


def _value(client, key) -> bytes:
    """Every byte a key holds, whatever its type (DUMP may compress: not searchable)."""
    kind = client.type(key).decode()
    if kind == "string":
        return client.get(key) or b""
    if kind == "hash":
        return b" ".join(k + b"=" + v for k, v in client.hgetall(key).items())
    if kind == "list":
        return b" ".join(client.lrange(key, 0, -1))
    if kind == "set":
        return b" ".join(client.smembers(key))
    if kind == "zset":
        return b" ".join(client.zrange(key, 0, -1))
    if kind == "stream":
        return b" ".join(k + b"=" + v for _, entry in client.xrange(key) for k, v in entry.items())
    return client.dump(key) or b""


def test_target_passwords_are_nowhere(settings, scratch_db, tmp_path, redis_client, caplog):
    """Held or not: every target URL carries a password (trust auth ignores it); after
    preflight (one target NO-GO), approve, run (one target failing), status, report and rollback
    all, the password is in no output, log line, Redis key or value under the prefix, audit row
    (pg_dump of every database) or file under BACKUP_DIR."""
    import subprocess

    from tests.support.fleet import small_runbook as failing_runbook

    names = {n: pg.new_name("rv") for n in ("canary", "db-1", "db-2")}
    urls = {}
    try:
        for n, db in names.items():
            urls[n] = _with_password(pg.create_database(db))
        assert SECRET in urls["canary"]
        urls["db-3"] = _with_password(missing_database_url())
        waves = {"canary": 0, "db-1": 1, "db-2": 1, "db-3": 1}
        runbook = failing_runbook(tmp_path / "rb", fail_on=(names["db-2"],))
        console = Console(_core(settings, tmp_path, urls, waves, runbook, own="canary"))
        said = []
        try:
            for user, text in [
                (COORDINATOR, "preflight"),
                (TPM, "approve"),
                (COORDINATOR, "run"),
                (COORDINATOR, "status"),
                (COORDINATOR, "report"),
                (COORDINATOR, "rollback all"),
                (COORDINATOR, "status"),
            ]:
                said.append(console(user, text)[1])
            run = store(console.core).current()
            assert run.targets["db-3"].status is TargetStatus.NO_GO
            assert run.targets["db-2"].status in (TargetStatus.FAILED, TargetStatus.ROLLED_BACK)
        finally:
            _close(console.core)
        assert not [s for s in said if SECRET in s]
        assert SECRET not in caplog.text
        leaks = []
        keys = list(redis_client.scan_iter(match=f"{settings.redis_prefix}*", count=500))
        for key in keys:
            if SECRET.encode() in key or SECRET.encode() in _value(redis_client, key):
                leaks.append(key)
        assert len(keys) > 20 and not leaks, leaks
        assert "db-2" in said[2] and "failed" in said[2], said[2]
        for n, db in names.items():
            dump = subprocess.run(
                ["pg_dump", "-a", pg.url_for(db)], capture_output=True, text=True, check=True
            ).stdout
            assert SECRET not in dump, n
        for path in settings.backup_dir.rglob("*"):
            if path.is_file():
                assert SECRET.encode() not in path.read_bytes(), path
    finally:
        for db in names.values():
            pg.drop_database(db)


def test_run_resumes_a_fleet_run_every_process_of_which_died(settings, scratch_db, tmp_path):
    """Every process died right after the canary's job was sent (the fleet run RUNNING, nobody
    working): a new console's `run` said "the fleet run is running: `run` needs it approved (or
    failed, to retry)" and nothing ever moved without a serve. Now it resumes the run here (no
    live worker seen) and ends it; no target runs twice."""
    from commands.fleet_run import fleet_context
    from tests.support.fleet import applied_files
    from workflows.fleet import waves
    from workflows.fleet.queue import HEARTBEAT_TIMEOUT, FleetQueue

    urls = {"canary": scratch_db(), "db-1": scratch_db()}
    waves_of = {"canary": 0, "db-1": 1}
    console = Console(_core(settings, tmp_path, urls, waves_of, small_runbook(tmp_path), own="canary"))
    try:
        console.approved()
        fleet_id = store(console.core).current().id
        queue = FleetQueue(settings.redis_url, settings.redis_prefix)
        waves.start(fleet_context(console.core), queue, fleet_id, COORDINATOR)  # then the process died
        queue.close()
        code, out = console(COORDINATOR, "run")  # its sends are a heartbeat younger than 20 s
        assert code == 2 and "seen in the last 20 s" in out, out
        time.sleep(HEARTBEAT_TIMEOUT + 1)

        code, out = console(COORDINATOR, "run")

        assert code == 0, out
        assert "resumed" in out, out
        run = store(console.core).current()
        assert run.status is FleetStatus.SUCCEEDED
        for url in urls.values():
            files = [f for f, _ in applied_files(url)]
            assert len(files) == len(set(files)) > 0, files
    finally:
        _close(console.core)


def test_rollback_all_on_a_target_that_never_ran_or_does_not_exist(settings, scratch_db, tmp_path):
    """Held: `rollback all on <target>` for an unknown name, a NO-GO target and a target not yet
    started is refused in one line (exit 2), nothing touched; the operator's `status` stays true."""
    urls = {"canary": scratch_db(), "db-1": scratch_db(), "db-2": missing_database_url()}
    waves = {"canary": 0, "db-1": 1, "db-2": 1}
    console = Console(_core(settings, tmp_path, urls, waves, small_runbook(tmp_path), own="canary"))
    try:
        assert console(COORDINATOR, "preflight")[0] == 1
        assert console(TPM, "approve")[0] == 0
        for text in (
            "rollback all on nosuch",
            "rollback all on db-2",
            "rollback all on db-1",
            "rollback all",
        ):
            code, out = console(COORDINATOR, text)
            assert code == 2, (text, out)
            assert len([line for line in out.splitlines() if line.strip()]) <= 2, (text, out)
            assert "Traceback" not in out and "Error" not in out, (text, out)
        code, out = console(COORDINATOR, "status")
        assert code == 0 and "approved" in out, out
    finally:
        _close(console.core)


def test_a_file_changed_between_waves_stops_the_next_wave_before_it_runs(settings, scratch_db, tmp_path):
    """Held: the canary succeeded, then a migration file changed; wave 1's queued target is not
    started ("changed since approval"), its database untouched, and the fleet run ends failed."""
    from commands.fleet_run import fleet_context
    from workflows.fleet.target import run_target

    urls = {"canary": scratch_db(), "db-1": scratch_db()}
    waves = {"canary": 0, "db-1": 1}
    runbook = small_runbook(tmp_path)
    console = Console(_core(settings, tmp_path, urls, waves, runbook, own="canary"))
    try:
        console.approved()
        fstore = store(console.core)
        fleet_id = fstore.current().id
        ctx = fleet_context(console.core)
        fstore.transition(fleet_id, FleetStatus.RUNNING, actor="test", action="run")
        assert fstore.advance(fleet_id, actor="test").queued == ("canary",)
        assert run_target(ctx, fleet_id, "canary").what == "succeeded"
        assert fstore.advance(fleet_id, actor="test").queued == ("db-1",)
        sql = sorted(runbook.parent.rglob("*.up.sql"))[-1]
        sql.write_text(sql.read_text() + "\n-- changed after the approval\n")

        done = run_target(ctx, fleet_id, "db-1")

        assert done.what.startswith("failed: not started") and "changed" in done.what, done
        assert pg.scalar(urls["db-1"], "SELECT count(*) FROM pg_class WHERE relname = 'items_1'") == 0
        fstore.advance(fleet_id, actor="test")
        assert fstore.current().status is FleetStatus.FAILED
    finally:
        _close(console.core)


def test_the_same_job_delivered_to_four_workers_at_once_runs_the_database_once(
    settings, scratch_db, tmp_path
):
    """Held: one queued target's job run by four threads at once (a redelivery racing the first
    delivery): one runs it, the others come back later or find it ended; one ledger row per file."""
    from concurrent.futures import ThreadPoolExecutor

    from commands.fleet_run import fleet_context
    from tests.support.fleet import applied_files
    from workflows.fleet.target import Done, run_target

    urls = {"canary": scratch_db()}
    console = Console(_core(settings, tmp_path, urls, {"canary": 0}, small_runbook(tmp_path), own="canary"))
    try:
        console.approved()
        fstore = store(console.core)
        fleet_id = fstore.current().id
        fstore.transition(fleet_id, FleetStatus.RUNNING, actor="test", action="run")
        assert fstore.advance(fleet_id, actor="test").queued == ("canary",)
        contexts = [fleet_context(console.core) for _ in range(4)]
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda ctx: run_target(ctx, fleet_id, "canary"), contexts))
        again = run_target(contexts[0], fleet_id, "canary")

        ran = [r for r in results if isinstance(r, Done) and r.what == "succeeded"]
        assert len(ran) == 1, results
        assert isinstance(again, Done) and again.what.startswith("nothing to do"), again
        files = [f for f, _ in applied_files(urls["canary"])]
        assert files and len(files) == len(set(files)), files
        assert fstore.target(fleet_id, "canary").attempts == 1
    finally:
        _close(console.core)


def test_rollback_all_while_the_fleet_run_is_running_is_refused(settings, scratch_db, tmp_path):
    """Between waves (the canary succeeded, wave 1 queued, nothing RUNNING this instant),
    `rollback all` rolled the canary back while the fleet run went on RUNNING, and the wave rule
    (a rolled-back target is out of the run) then started wave 1 on a runbook just undone on the
    canary. Refused now while the fleet run is running: `abort` first."""
    from commands.fleet_run import fleet_context
    from workflows.fleet.target import run_target

    urls = {"canary": scratch_db(), "db-1": scratch_db()}
    waves = {"canary": 0, "db-1": 1}
    console = Console(_core(settings, tmp_path, urls, waves, small_runbook(tmp_path), own="canary"))
    try:
        console.approved()
        fstore = store(console.core)
        fleet_id = fstore.current().id
        fstore.transition(fleet_id, FleetStatus.RUNNING, actor="test", action="run")
        assert fstore.advance(fleet_id, actor="test").queued == ("canary",)
        assert run_target(fleet_context(console.core), fleet_id, "canary").what == "succeeded"
        assert fstore.advance(fleet_id, actor="test").queued == ("db-1",)

        for text in ("rollback all", "rollback all on canary"):
            code, out = console(COORDINATOR, text)

            assert code == 2 and "abort" in out, (text, out)
        assert pg.scalar(urls["canary"], "SELECT count(*) FROM pg_class WHERE relname = 'items_1'") == 1
        assert fstore.target(fleet_id, "canary").status is TargetStatus.SUCCEEDED
    finally:
        _close(console.core)


def test_a_migration_error_cannot_ping_the_channel_from_the_card_or_the_thread(settings):
    """Held: a failed target's error (a RAISE in someone's migration) saying `<!channel>` and a
    link is shown literally in the thread line and the card, never as Slack markup."""
    import json
    from datetime import UTC, datetime

    from bot.slack.fleet_blocks import fleet_card, transition_message
    from commands.fleet_templates import transition_line
    from core.roster import Roster
    from state.fleet import FleetEvent, FleetRun, TargetState

    now = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
    error = "step 2.1: ERROR: <!channel> *urgent* <https://evil.example|click>"
    line = transition_line(
        FleetEvent(
            id="1-0",
            kind="target",
            fleet="f",
            at=now,
            actor="w",
            action="failed",
            target="eu-2",
            wave=1,
            before="running",
            after="failed",
            phase=2,
            error=error,
        )
    )
    failed = TargetState("eu-2", 1, 0, status=TargetStatus.FAILED, error=error, started_at=now, ended_at=now)
    run = FleetRun("f", "rb", FleetStatus.FAILED, now, "u", now, 4, 1, {"eu-2": failed}, wave=1, failures=1)
    for rendered in (
        transition_message([line]),
        fleet_card(run, "Fleet", Roster.load(settings.roster_path), "f"),
    ):
        payload = json.dumps(rendered.payload())
        assert "<!channel>" not in payload and "<https://" not in payload, payload
        assert "&lt;!channel&gt;" in payload


def _execute(url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql)


def test_a_retry_after_the_canary_was_rolled_back_does_not_skip_the_canary(settings, scratch_db, tmp_path):
    """Canary succeeded, db-1 failed (fleet run failed); the coordinator rolled the canary back,
    cleared db-1's trouble and typed `run` to retry: the wave rule (a rolled-back target is out of
    the run) skipped wave 0, ran db-1 alone and reported the fleet run SUCCEEDED with its canary
    rolled back. A retry is refused once any database of the fleet run was rolled back."""
    from tests.support.migration_folders import Folder, Migration

    blocker = (
        "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_catalog.pg_class WHERE relname = 'block_me') "
        "THEN RAISE EXCEPTION 'blocked'; END IF; END $$;\n"
    )
    runbook = Folder(
        tmp_path / "rb",
        [
            Migration(
                "001_items", "CREATE TABLE items_1 (id bigint PRIMARY KEY);\n", "DROP TABLE items_1;\n"
            ),
            Migration(
                "002_more",
                blocker + "ALTER TABLE items_1 ADD COLUMN label text;\n",
                "ALTER TABLE items_1 DROP COLUMN label;\n",
            ),
        ],
    ).write()
    urls = {"canary": scratch_db(), "db-1": scratch_db()}
    waves = {"canary": 0, "db-1": 1}
    console = Console(_core(settings, tmp_path, urls, waves, runbook, own="canary"))
    try:
        console.approved()
        _execute(urls["db-1"], "CREATE TABLE block_me ()")
        assert console(COORDINATOR, "run")[0] == 1
        assert console(COORDINATOR, "rollback all on canary")[0] == 0
        assert pg.scalar(urls["canary"], "SELECT count(*) FROM pg_class WHERE relname = 'items_1'") == 0
        _execute(urls["db-1"], "DROP TABLE block_me")

        code, out = console(COORDINATOR, "run")

        assert code == 2 and "rolled back" in out and "preflight" in out, out
        assert store(console.core).current().status is FleetStatus.FAILED
    finally:
        _close(console.core)


def test_a_target_variable_that_is_not_a_postgresql_url_is_one_line_naming_it(tmp_path):
    """A target's variable holding something libpq cannot parse ("garbage", a mysql:// URL with
    a password) gave "configuration error: missing "=" after "garbage" in connection info
    string": no target, no variable, no fix. Now one line naming both and what to export; the
    password never shown; exit 2 from the CLI."""
    import os
    import subprocess
    import sys

    import pytest

    from core.errors import ConfigError

    path = tmp_path / "targets.toml"
    path.write_text('[[targets]]\nname = "eu-1"\nurl_env = "EU1_URL"\nwave = 0\n')
    for value in ("garbage", f"mysql://u:{SECRET}@h/db"):
        with pytest.raises(ConfigError) as caught:
            load_fleet(path, {"EU1_URL": value})
        text = str(caught.value)
        assert "target 'eu-1'" in text and "EU1_URL is not a PostgreSQL URL" in text, text
        assert "export EU1_URL=postgresql://" in text and SECRET not in text and "garbage" not in text
    env = {**os.environ, "MIGRATE_TARGETS": str(path), "EU1_URL": f"mysql://u:{SECRET}@h/db"}
    env.pop("DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "bot", "console", "--user", COORDINATOR, "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    said = (done.stdout + done.stderr).strip()
    assert done.returncode == 2 and len(said.splitlines()) == 1, said
    assert "EU1_URL is not a PostgreSQL URL" in said and SECRET not in said, said


def test_a_target_unreachable_after_approval_fails_after_a_while_instead_of_hanging(
    settings, scratch_db, tmp_path, monkeypatch
):
    """db-1 (wave 1) refuses connections after the approval: its job erred on every try and was
    sent again every 10 s forever, so `run` never returned. Now the target fails once its job has
    erred for GIVE_UP_AFTER (120 s; 2 s here), naming the error, and the fleet run ends FAILED."""
    from psycopg.conninfo import conninfo_to_dict

    from workflows.fleet import worker

    monkeypatch.setattr(worker, "GIVE_UP_AFTER", 2.0)
    urls = {"canary": scratch_db(), "db-1": scratch_db()}
    waves = {"canary": 0, "db-1": 1}
    runbook = small_runbook(tmp_path)
    db_1 = conninfo_to_dict(urls["db-1"])["dbname"]
    console = Console(_core(settings, tmp_path, urls, waves, runbook, own="canary"))
    try:
        console.approved()
        _execute(urls["canary"], f'ALTER DATABASE "{db_1}" ALLOW_CONNECTIONS false')
        started = time.monotonic()

        code, out = console(COORDINATOR, "run")

        assert code == 1, out
        assert time.monotonic() - started < 120, "gave up after GIVE_UP_AFTER, not after the default"
        fleet = store(console.core).current()
        assert fleet.status is FleetStatus.FAILED
        target = store(console.core).target(fleet.id, "db-1")
        assert target.status is TargetStatus.FAILED
        assert "every try failed" in (target.error or ""), target
        assert pg.scalar(urls["canary"], "SELECT count(*) FROM pg_class WHERE relname = 'items_1'") == 1
    finally:
        _execute(urls["canary"], f'ALTER DATABASE "{db_1}" ALLOW_CONNECTIONS true')
        _close(console.core)
