"""Issue 18, the surface's pure parts: `rollback all on <target>` parsed and described, refused
without MIGRATE_TARGETS; a skipped backup is neither ✅ nor NO-GO; the runbook's [fleet] backup
setting; the thread's line for a transition."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from commands import Core
from commands.fleet_templates import transition_line
from commands.parse import ParseError, parse
from commands.policy import allowed_roles, describe
from core.roster import COORDINATOR
from preflight.report import FAIL, PASS, SKIPPED, CheckLine, PreflightReport
from runbook.model import RunbookError, load_runbook
from state.fleet import FleetEvent
from tests.support.fleetui import small_runbook
from tests.support.flow import Console

NOW = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)


def test_rollback_all_on_a_target_is_parsed_described_and_the_coordinators():
    cmd = parse("rollback all on eu-1.shard_2", NOW)
    assert cmd.verb == "rollback" and cmd.flags == frozenset({"all"}) and cmd.target == "eu-1.shard_2"
    assert describe(cmd) == "rollback all on eu-1.shard_2"
    assert parse("rollback ALL ON Eu-1", NOW).target == "Eu-1"  # the name as the targets file writes it
    assert allowed_roles(cmd, None) == (COORDINATOR,)
    assert parse("rollback all", NOW).target is None
    for text in ("rollback all on", "rollback all on a b", "rollback all on -x", "rollback all on a;b"):
        with pytest.raises(ParseError, match="rollback all on <target>"):
            parse(text, NOW)


def test_rollback_all_on_a_target_is_refused_without_migrate_targets(settings, tmp_path):
    console = Console(Core.from_settings(settings))
    code, out = console("U0RAFAEL", "rollback all on eu-1")
    assert code == 2 and "names a target of MIGRATE_TARGETS, which is not set" in out


def _line(key: str, status: str) -> CheckLine:
    return CheckLine(key, key.title(), "how", "observed", "required", status)


def test_a_skipped_backup_is_neither_a_pass_nor_a_no_go():
    report = PreflightReport.build(
        "x", NOW, NOW, [_line("database", PASS), _line("backup", SKIPPED), _line("rehearsal", SKIPPED)]
    )
    assert report.go and report.nogo_reasons == []
    matrix = dict(report.matrix())
    assert matrix["GO: Backup"] == "⏭️"
    assert "NO-GO check: not checked, skipped on purpose (backup failed or unverified?)" in matrix
    failed = PreflightReport.build("x", NOW, NOW, [_line("backup", SKIPPED), _line("database", FAIL)])
    assert not failed.go and failed.nogo_reasons == ["Database: observed"]


def test_the_runbooks_fleet_backup_setting(tmp_path):
    assert load_runbook(small_runbook(tmp_path / "a")).fleet.backup == "every"
    assert (
        load_runbook(small_runbook(tmp_path / "b", extra='[fleet]\nbackup = "canary"')).fleet.backup
        == "canary"
    )
    with pytest.raises(RunbookError, match='backup must be "every"'):
        load_runbook(small_runbook(tmp_path / "c", extra='[fleet]\nbackup = "some"'))
    with pytest.raises(RunbookError, match="unknown key"):
        load_runbook(small_runbook(tmp_path / "d", extra="[fleet]\nparallel = 3"))


def test_one_line_per_target_transition():
    def event(kind="target", **kw):
        base = dict(id="1-0", kind=kind, fleet="f", at=NOW, actor="w", action="a", target="eu-2", wave=1)
        return FleetEvent(**{**base, **kw})

    assert transition_line(event(before="queued", after="running", phase=1)) == (
        "🔄 eu-2 (wave 1): queued → running at phase 1"
    )
    failed = transition_line(event(before="running", after="failed", phase=2, error="step 2.1: boom"))
    assert failed == "❌ eu-2 (wave 1): running → failed at phase 2: step 2.1: boom"
    multi = transition_line(
        event(before="preflight", after="no-go", reason="connection failed:\n  FATAL:  no")
    )
    assert multi == "⛔ eu-2 (wave 1): preflight → no-go: connection failed: FATAL: no"  # one line
    assert transition_line(event(kind="phase", phase=2)) is None  # a phase: the table only
    assert transition_line(event(kind="fleet", target=None, before="go", after="approved")) is None


def test_with_migrate_targets_database_url_may_be_unset_the_canary_keeps_the_bots_records(
    scratch_db, tmp_path, redis_prefix
):
    from core.config import Settings
    from tests.support.fleetui import targets_file

    urls = {"canary": scratch_db(), "db-1": scratch_db()}
    path, env = targets_file(tmp_path, urls, {"canary": 0, "db-1": 1})
    env = {**env, "MIGRATE_TARGETS": str(path), "MIGRATE_REDIS_PREFIX": redis_prefix}

    settings = Settings.from_env(env)

    assert settings.database_url == urls["canary"]
    assert Settings.from_env({**env, "DATABASE_URL": urls["db-1"]}).database_url == urls["db-1"]
    roster = tmp_path / "roster.toml"
    roster.write_text('[roles]\ncoordinator = ["U0RAFAEL"]\ntpm = ["U0DYLAN"]\n')
    core = Core.from_settings(settings.with_(roster_path=roster, runbook_path=small_runbook(tmp_path)))
    try:
        code, out = Console(core)("U0RAFAEL", "status")
        assert code == 0 and "on 2 databases" in out and "No fleet run yet" in out
    finally:
        core.events.close()
