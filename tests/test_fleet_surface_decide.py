"""Issue 18: one TPM approval covers every target the pre-flight found GO (a NO-GO target is not
covered and never runs); `status` shows every target; `rollback all on <target>` undoes one
database and `rollback all` every one, newest first — each database's schema back as before,
as PostgreSQL's catalog says."""

from __future__ import annotations

from commands.fleetcore import close_target_cores, store, target_core
from state.fleet import FleetStatus, TargetStatus
from state.machine import Status
from tests.support import pg
from tests.support.fleetui import (
    WAVES,
    fleet_core,
    missing_database_url,
    scratch_fleet,
    small_runbook,
)
from tests.support.flow import COORDINATOR, LIU, TPM, Console

# The generated runbook's first migration creates public.items_1 (and the second adds a column).
CATALOG = "SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'"


def _objects(url: str) -> int:
    return pg.scalar(url, CATALOG)


def _started(core) -> list[str]:
    """The targets in the order the fleet run started them (its event stream)."""
    run = store(core).current()
    return [e.target for e in store(core).events(run.id) if e.kind == "target" and e.after == "running"]


def test_one_approval_covers_every_go_target_and_a_no_go_target_never_runs(settings, scratch_db, tmp_path):
    urls = scratch_fleet(scratch_db, [n for n in WAVES if n != "db-2"])
    urls["db-2"] = missing_database_url()
    console = Console(fleet_core(settings, tmp_path, urls, small_runbook(tmp_path)))
    core = console.core
    try:
        assert console(COORDINATOR, "preflight")[0] == 1  # 7 GO, 1 NO-GO
        code, out = console(LIU, "approve")
        assert code == 2 and "only the TPM" in out

        code, out = console(TPM, "approve")

        assert code == 0, out
        assert "GO recorded for 7 databases" in out and "Not covered (will not run): db-2" in out
        run = store(core).current()
        assert run.status is FleetStatus.APPROVED
        assert sorted(run.approval["targets"]) == sorted(n for n in WAVES if n != "db-2")
        assert "db-2" in run.approval["not_covered"]
        for name, bound in run.approval["targets"].items():
            own = target_core(core, core.settings.targets.get(name)).store.current()
            assert own.id == bound["run_id"] and own.status is Status.APPROVED
            assert own.approval["fleet"] == run.id and own.approval["by"] == TPM
            assert bound["backup_sha256"] == own.preflight["backup"]["sha256"]
        assert console(TPM, "approve")[0] == 2  # one decision: a second GO is refused
        assert "  valid until " in console(COORDINATOR, "status")[1]

        code, out = console(COORDINATOR, "run")  # the fleet's waves, a worker in this process

        assert code == 0, out
        ran = _started(core)
        assert ran[0] == "canary" and "db-2" not in ran and len(ran) == 7
        run = store(core).current()
        assert run.status is FleetStatus.SUCCEEDED and run.targets["db-2"].status is TargetStatus.NO_GO
        assert _objects(urls["canary"]) > 0

        code, out = console(COORDINATOR, "report")
        assert (
            code == 0
            and "**Decision:** GO by <@U0DYLAN>" in out
            and "for 7 databases (not covered: db-2)" in out
        )
        code, out = console(COORDINATOR, "status")
        assert code == 0
        for name in WAVES:
            row = next(l for l in out.splitlines() if f" {name} · wave {WAVES[name]} · " in l)
            assert ("no-go" if name == "db-2" else "succeeded") in row, row
    finally:
        close_target_cores(core)


def test_rollback_all_on_one_target_then_rollback_all_newest_first(settings, scratch_db, tmp_path):
    names = ["canary", "db-1", "db-4", "db-5"]
    urls = scratch_fleet(scratch_db, names)
    before = {n: pg.schema_dump(u) for n, u in urls.items()}
    console = Console(fleet_core(settings, tmp_path, urls, small_runbook(tmp_path), parallel=2))
    core = console.core
    try:
        assert console(COORDINATOR, "preflight")[0] == 0
        assert console(TPM, "approve")[0] == 0
        assert console(COORDINATOR, "run")[0] == 0
        started = _started(core)
        assert started[:2] == ["canary", "db-1"] and set(started[2:]) == {"db-4", "db-5"}
        assert all(_objects(u) > 0 for u in urls.values())

        code, out = console(COORDINATOR, "rollback all on db-4")

        assert code == 0, out
        assert _objects(urls["db-4"]) == 0 and pg.schema_dump(urls["db-4"]) == before["db-4"]
        assert all(_objects(urls[n]) > 0 for n in ("canary", "db-1", "db-5"))  # the others untouched
        assert store(core).current().targets["db-4"].status is TargetStatus.ROLLED_BACK
        assert console(LIU, "rollback all on db-1")[0] == 2  # the coordinator's, as `rollback all`
        assert console(COORDINATOR, "rollback all on nowhere")[0] == 2

        code, out = console(COORDINATOR, "rollback all")

        assert code == 0, out
        assert "on 3 databases, newest first (db-5, db-1, canary)" in out
        for name, url in urls.items():
            assert _objects(url) == 0, name
            assert pg.schema_dump(url) == before[name], name
        run = store(core).current()
        assert run.status is FleetStatus.ROLLED_BACK
        assert all(t.status is TargetStatus.ROLLED_BACK for t in run.targets.values())
        starts = [
            e.target for e in store(core).events(run.id) if e.kind == "target" and e.after == "rolling back"
        ]
        # db-4 alone first; then newest first, 2 at once: the canary only after db-5 and db-1 started
        assert starts[0] == "db-4" and set(starts[1:3]) == {"db-5", "db-1"} and starts[3] == "canary"
    finally:
        close_target_cores(core)


def test_canary_backup_policy_runs_rolls_back_and_reports_the_skipped_backups(settings, scratch_db, tmp_path):
    urls = scratch_fleet(scratch_db, ["canary", "db-1", "db-4"])
    before = {n: pg.schema_dump(u) for n, u in urls.items()}
    runbook = small_runbook(tmp_path, extra='[fleet]\nbackup = "canary"')
    console = Console(fleet_core(settings, tmp_path, urls, runbook))
    core = console.core
    try:
        assert console(COORDINATOR, "preflight")[0] == 0
        code, out = console(TPM, "approve")
        assert code == 0, out
        run = store(core).current()
        assert run.approval["targets"]["db-1"]["backup_skipped"].startswith("the runbook's [fleet] backup")
        assert run.approval["targets"]["canary"]["backup_sha256"]

        code, out = console(COORDINATOR, "run")  # the final gates pass without a backup
        assert code == 0, out
        assert _started(core) == ["canary", "db-1", "db-4"]

        assert store(core).current().status is FleetStatus.SUCCEEDED
        code, out = console(COORDINATOR, "report")
        assert code == 0
        for name in ("canary", "db-1", "db-4"):
            assert f"## Target {name} (wave " in out
        assert out.count("**Backup:** none, skipped on purpose: the runbook's [fleet] backup") == 2
        assert "no backup of this database, skipped on purpose" in out  # the Backup safe gate says why

        code, out = console(COORDINATOR, "rollback all on db-1")  # proven against its schema snapshot
        assert code == 0, out
        assert pg.schema_dump(urls["db-1"]) == before["db-1"] and _objects(urls["db-1"]) == 0
    finally:
        close_target_cores(core)


def test_defer_is_no_go_for_every_database_of_the_fleet_run(settings, scratch_db, tmp_path):
    urls = scratch_fleet(scratch_db, ["canary", "db-1"])
    console = Console(fleet_core(settings, tmp_path, urls, small_runbook(tmp_path)))
    core = console.core
    try:
        assert console(COORDINATOR, "preflight")[0] == 0
        code, out = console(TPM, "defer the release moved to Friday")
        assert code == 0, out
        run = store(core).current()
        assert run.status is FleetStatus.DEFERRED and run.decision["reason"] == "the release moved to Friday"
        for name in ("canary", "db-1"):
            own = target_core(core, core.settings.targets.get(name)).store.current()
            assert own.status is Status.DEFERRED
        code, out = console(TPM, "approve")
        assert code == 2 and "the fleet run is deferred" in out
        code, out = console(COORDINATOR, "status")
        assert "NO-GO by <@U0DYLAN>: the release moved to Friday" in out
        code, out = console(COORDINATOR, "verify")
        assert code == 2 and "`verify` again is per database" in out
        code, out = console(COORDINATOR, "help")
        assert code == 0 and f"Now: fleet run {run.id}: ⛔ NO-GO by <@U0DYLAN>" in out
        assert "rollback all on <target>" in out
    finally:
        close_target_cores(core)


def test_go_scheduled_covers_every_go_target_and_waits_for_its_time(settings, scratch_db, tmp_path):
    from datetime import timedelta

    from core import clock

    urls = scratch_fleet(scratch_db, ["canary", "db-1"])
    console = Console(fleet_core(settings, tmp_path, urls, small_runbook(tmp_path)))
    core = console.core
    try:
        assert console(COORDINATOR, "preflight")[0] == 0
        at = (clock.now() + timedelta(hours=3)).replace(second=0, microsecond=0)

        code, out = console(TPM, f"approve at {at:%Y-%m-%dT%H:%MZ}")

        assert code == 0, out
        assert f"the canary starts by itself at {at:%H:%M} UTC, then the waves" in out
        run = store(core).current()
        assert run.status is FleetStatus.SCHEDULED and run.approval["scheduled_for"] == at.isoformat()
        for name in ("canary", "db-1"):
            own = target_core(core, core.settings.targets.get(name)).store.current()
            assert own.status is Status.SCHEDULED and own.approval["scheduled_for"] == at.isoformat()
        code, out = console(COORDINATOR, "run")
        assert code == 2 and "starts by itself" in out  # nothing runs before its time
        assert "GO scheduled for" in console(COORDINATOR, "status")[1]

        code, out = console(TPM, "approve")  # GO now replaces the schedule
        assert code == 0, out
        assert store(core).current().status is FleetStatus.APPROVED
    finally:
        close_target_cores(core)
