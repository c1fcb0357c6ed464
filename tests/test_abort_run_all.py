"""`abort` during `run` (all phases): nothing further runs. Phase 2 never starts — no phase-2
event in the audit (Redis stream and migrate_bot.run_events), no "Phase 2 started" post, no
phase-2 row in the file ledger (migrate_bot.applied_files) — whether the abort reaches a
statement of phase 1 or arrives while phase 1's checks run, after its last step committed.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

from bot.console import run_command
from commands import Core
from engine import ledger
from state.audit import redis_events
from state.machine import PhaseStatus, Status
from tests.support import pg
from tests.support import runbooks as rbs
from tests.support.flow import COORDINATOR, Console

SLOW_CHECK = """
[[phases.checks]]
name = "a slow look at the new table"
sql = "SELECT count(*) FROM (SELECT pg_sleep(CASE WHEN current_database() = '{live}' THEN {seconds} ELSE 0 END)) s"
expect = 1
"""


def _live(settings) -> str:
    return settings.database_url.rsplit("/", 1)[-1]


def _with_slow_phase_1_check(runbook: Path, live: str, seconds: int) -> Path:
    """Phase 1 gets one more check, which sleeps `seconds` in the live database only."""
    text = runbook.read_text(encoding="utf-8")
    anchor = "# ---------------------------------------------------------------- Phase 2"
    assert anchor in text
    runbook.write_text(
        text.replace(anchor, SLOW_CHECK.format(live=live, seconds=seconds) + "\n" + anchor, 1),
        encoding="utf-8",
    )
    return runbook


def _sleeping_backend(url: str, where: str, value: str) -> int | None:
    """A backend of the live database sleeping in pg_sleep, found by `where` (a column
    compared with LIKE `value`; a long statement's text may be cut off in pg_stat_activity)."""
    return pg.scalar(
        url,
        f"SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event = 'PgSleep' "
        f"AND {where} LIKE %s AND pid <> pg_backend_pid()",
        (value,),
    )


def _run_and_abort_when(core: Core, ready_to_abort) -> tuple[int, str, str]:
    """`run` as the coordinator in a thread; `abort` once `ready_to_abort()` is true."""
    out, result = io.StringIO(), {}
    worker = threading.Thread(target=lambda: result.update(code=run_command(core, COORDINATOR, "run", out)))
    worker.start()
    try:
        rbs.wait_until(ready_to_abort, timeout=120, what="the moment to abort")
        aborted = io.StringIO()
        assert run_command(core, COORDINATOR, "abort", aborted) == 0, aborted.getvalue()
    finally:
        worker.join(timeout=120)
    assert not worker.is_alive()
    return result["code"], out.getvalue(), aborted.getvalue()


def _assert_phase_2_never_started(core: Core, out: str) -> None:
    run = core.store.current()
    core.store.flush_mirror()
    actions = [e["action"] for e in redis_events(core.redis, core.keys, run.id, count=10_000)]
    history = [e["action"] for e in core.events.events(run.id, limit=10_000)]
    for where in (actions, history):
        assert not [a for a in where if "phase 2" in a or a.startswith("verif")], where
    assert "Phase 2 started" not in out and "Phase 2 complete" not in out
    rows = ledger.applied_files(core.settings.database_url, core.runbook.id)
    assert [r["phase"] for r in rows if r["phase"] != 1] == []
    assert run.phases[2].status is PhaseStatus.PENDING and run.phases[2].started_at is None
    assert (
        pg.scalar(
            core.settings.database_url, "SELECT count(*) FROM pg_policies WHERE schemaname = 'platform'"
        )
        == 0
    )  # nothing of phase 2 ran


def test_abort_while_phase_1_runs_a_statement_stops_the_whole_run(ready, tmp_path):
    settings = ready.with_(runbook_path=rbs.sleeping_runbook(tmp_path, _live(ready)))
    console = Console(Core.from_settings(settings))
    console.approved()

    code, out, _ = _run_and_abort_when(
        console.core, lambda: _sleeping_backend(settings.database_url, "application_name", "migrate-bot")
    )

    assert code == 1, out
    assert "aborted by request" in out
    assert console.core.store.current().status is Status.ABORTED
    _assert_phase_2_never_started(console.core, out)
    assert ledger.applied_files(settings.database_url, console.core.runbook.id) == []  # 1.1 rolled back


def test_abort_while_phase_1_checks_run_lets_phase_1_finish_and_never_starts_phase_2(ready, tmp_path):
    """The abort comes after phase 1's last step committed: phase 1 stays complete (its checks
    and snapshot are its evidence), and the run stops there instead of going on."""
    runbook = _with_slow_phase_1_check(rbs.copy_runbook(tmp_path), _live(ready), seconds=3)
    console = Console(Core.from_settings(ready.with_(runbook_path=runbook)))
    console.approved()

    code, out, aborted = _run_and_abort_when(
        console.core, lambda: _sleeping_backend(ready.database_url, "query", "%pg_sleep(CASE%")
    )

    assert code == 1, out  # `run` did not do what it was asked: the rest was aborted
    assert "Phase 1 complete" in out
    assert "phase 2" in out.lower() and "not started" in out.lower(), out
    run = console.core.store.current()
    assert run.phases[1].status is PhaseStatus.SUCCEEDED
    _assert_phase_2_never_started(console.core, out)
    assert {r["phase"] for r in ledger.applied_files(ready.database_url, console.core.runbook.id)} == {1}
