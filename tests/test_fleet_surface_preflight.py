"""Issue 18, the operator's surface: `preflight` with MIGRATE_TARGETS checks every target
(concurrently within [fleet] parallel) and ends with ONE summary: how many GO, each NO-GO named
with its reason; the runbook's [fleet] backup policy decides which databases are backed up."""

from __future__ import annotations

from commands.fleetcore import close_target_cores, store, target_core
from state.fleet import FleetStatus, TargetStatus
from state.machine import Status
from tests.support import pg
from tests.support.fleetui import WAVES, fleet_core, missing_database_url, scratch_fleet, small_runbook
from tests.support.flow import COORDINATOR, Console


def _connections(urls: dict[str, str], exclude: str) -> dict[str, int]:
    """Sessions open on each fleet database (but `exclude`, the process's own), by name."""
    names = {url.rsplit("/", 1)[-1]: name for name, url in urls.items() if name != exclude}
    rows = pg.scalar(
        pg.SERVER_URL,
        "SELECT coalesce(json_object_agg(datname, n), '{}') FROM "
        "(SELECT datname, count(*) AS n FROM pg_stat_activity WHERE datname = ANY(%s) GROUP BY 1) s",
        (list(names),),
    )
    return {names[d]: n for d, n in rows.items()}


def _console(settings, tmp_path, urls, runbook):
    return Console(fleet_core(settings, tmp_path, urls, runbook))


def test_preflight_of_eight_databases_is_one_summary_with_the_no_go_named(settings, scratch_db, tmp_path):
    urls = scratch_fleet(scratch_db, [n for n in WAVES if n != "db-5"])
    urls["db-5"] = missing_database_url()
    console = _console(settings, tmp_path, urls, small_runbook(tmp_path))
    try:
        code, out = console(COORDINATOR, "preflight")

        assert code == 1, out  # not every database is GO
        summaries = [l for l in out.splitlines() if "pre-flight on 8 databases" in l]
        assert summaries == ["[channel] Migration generated pre-flight on 8 databases: 7 GO, 1 NO-GO ⚠️"], out
        nogo = [l for l in out.splitlines() if "db-5" in l and "❌" in l]
        assert len(nogo) == 1 and "(wave 2)" in nogo[0] and "does not exist" in nogo[0], out
        assert "One decision covers the 7 GO databases" in out
        assert "Not covered (NO-GO, they will not run): db-5" in out
        assert out.count("[channel]") == 3, (
            out
        )  # started, the summary, the TPM's request: no per-target posts

        core = console.core
        assert _connections(urls, exclude="canary") == {}  # no idle connection left per database
        run = store(core).current()
        assert run.status is FleetStatus.GO and run.backup_policy == "every"
        assert sorted(run.preflight["go"]) == sorted(n for n in WAVES if n != "db-5")
        assert (
            run.targets["db-5"].status is TargetStatus.NO_GO
            and "does not exist" in run.targets["db-5"].reason
        )
        fleet = core.settings.targets
        for name in run.preflight["go"]:
            state = run.targets[name]
            assert state.status is TargetStatus.GO and state.backup["verified"] is True
            own = target_core(core, fleet.get(name)).store.current()  # the target's own run
            assert own.id == state.run_id and own.status is Status.GO
            assert own.preflight["backup"]["path"].startswith(str(settings.backup_dir / "targets" / name))
    finally:
        close_target_cores(console.core)


def test_backup_canary_only_skips_the_others_on_purpose_and_says_so(settings, scratch_db, tmp_path):
    urls = scratch_fleet(scratch_db, ["canary", "db-1", "db-4"])
    runbook = small_runbook(tmp_path, extra='[fleet]\nbackup = "canary"')
    console = _console(settings, tmp_path, urls, runbook)
    try:
        code, out = console(COORDINATOR, "preflight")

        assert code == 0, out
        assert "pre-flight on 3 databases: 3 GO, 0 NO-GO ✅" in out
        assert 'skipped on purpose (the runbook\'s [fleet] backup = "canary"): db-1, db-4' in out, out
        run = store(console.core).current()
        assert run.backup_policy == "canary"
        assert run.targets["canary"].backup["verified"] is True
        for name in ("db-1", "db-4"):
            assert "only the canary (canary) is backed up" in run.targets[name].backup["skipped"]
            own = target_core(console.core, console.core.settings.targets.get(name)).store.current()
            lines = {c["key"]: c for c in own.preflight["checks"]}
            assert lines["backup"]["status"] == "skipped" and lines["rehearsal"]["status"] == "skipped"
            assert not list((settings.backup_dir / "targets" / name).glob("*.dump"))  # no backup taken
            assert list((settings.backup_dir / "targets" / name).glob("*.schema.sql"))  # the proof's snapshot
        assert list((settings.backup_dir / "targets" / "canary").glob("*.dump"))
    finally:
        close_target_cores(console.core)
