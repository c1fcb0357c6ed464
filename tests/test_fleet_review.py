"""Adversarial review of the fleet (issue 18): what an operator trusting production needs from
approval binding, exactly-once and the wave rule — each test a defect found, or a probe that held."""

from __future__ import annotations

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
