"""`abort` with MIGRATE_TARGETS stops the fleet run: the running database's statement is
cancelled (its own run ends aborted, its transaction rolled back), nothing new starts (the
waiting targets are skipped), and the fleet run ends failed."""

from __future__ import annotations

import threading

from commands.fleetcore import close_target_cores, store, target_core
from state.fleet import FleetStatus, TargetStatus
from state.machine import ACTIVE, Status
from tests.support import pg
from tests.support.fleetui import fleet_core, scratch_fleet
from tests.support.flow import COORDINATOR, TPM, Console
from tests.support.migration_folders import Folder, Migration
from tests.support.waiting import wait_until

SLOW = Migration("001_slow", "CREATE TABLE items (id int);\nSELECT pg_sleep(6);\n", "DROP TABLE items;\n")
WAVES = {"canary": 0, "db-1": 1, "db-2": 1, "db-4": 2}


def _table(url: str) -> bool:
    return bool(pg.scalar(url, "SELECT to_regclass('public.items') IS NOT NULL"))


def test_abort_cancels_the_running_database_and_starts_nothing_new(settings, scratch_db, tmp_path):
    urls = scratch_fleet(scratch_db, list(WAVES))
    runbook = Folder(tmp_path / "slow", [SLOW]).write()
    console = Console(fleet_core(settings, tmp_path, urls, runbook, waves=WAVES, parallel=2))
    core = console.core
    try:
        assert console(COORDINATOR, "preflight")[0] == 0
        assert console(TPM, "approve")[0] == 0
        ran: dict = {}
        runner = threading.Thread(target=lambda: ran.update(result=console(COORDINATOR, "run")))
        runner.start()
        canary = core.settings.targets.get("canary")
        wait_until(
            lambda: (own := target_core(core, canary).store.current()) is not None and own.status in ACTIVE,
            60,
            what="the canary's run to be under way",
        )

        code, out = console(COORDINATOR, "abort")

        assert code == 0, out
        assert "Not started, skipped: db-1, db-2, db-4" in out
        runner.join(120)
        assert ran["result"][0] == 1  # the fleet run did not succeed
        run = store(core).current()
        assert run.status is FleetStatus.FAILED
        assert run.targets["canary"].status is TargetStatus.FAILED
        for name in ("db-1", "db-2", "db-4"):
            assert run.targets[name].status is TargetStatus.SKIPPED
            assert run.targets[name].reason == "not started: abort by <@U0RAFAEL>"
            assert not _table(urls[name])
        assert target_core(core, canary).store.current().status is Status.ABORTED
        assert not _table(urls["canary"])  # the cancelled file's transaction rolled back
        assert console(COORDINATOR, "abort")[0] == 2  # nothing is running any more
    finally:
        close_target_cores(core)
