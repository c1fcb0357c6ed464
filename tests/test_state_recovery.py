"""Redis lost the run state: rebuild the last run from the PostgreSQL history (issue 6)."""

from __future__ import annotations

import pytest

from core import clock
from state.approval import why_approval_invalid, why_preflight_stale
from state.audit import EventLog
from state.machine import PhaseStatus as P
from state.machine import Status as S
from state.recovery import rebuild_from_history
from tests.support.state import TARGET, new_store

CHECKSUMS = {"006_add_platform_databases_table.sql": "aa" * 32}


@pytest.fixture
def events(scratch_db):
    log = EventLog(scratch_db(), target=TARGET)
    yield log
    log.close()


def lose_redis(redis_client, prefix: str) -> None:
    """What a Redis restart without persistence does to this bot's keys."""
    keys = list(redis_client.scan_iter(match=f"{prefix}*"))
    redis_client.delete(*keys)


def run_until_phase_2_is_running(store):
    now = clock.now()
    run = store.create("U0RAFAEL", "006", phases=[1, 2], verification=[3])
    preflight = {
        "outcome": "GO",
        "at": now.isoformat(),
        "expires_at": now.replace(year=now.year + 1).isoformat(),
        "checksums": CHECKSUMS,
        "backup": {"path": "b.dump", "sha256": "bb" * 32, "size": 1},
    }
    store.transition(run.id, S.GO, actor="bot", action="preflight done", fields={"preflight": preflight})
    approval = {
        "by": "U0DYLAN",
        "at": now.isoformat(),
        "expires_at": preflight["expires_at"],
        "mode": "now",
        "scheduled_for": None,
        "checksums": CHECKSUMS,
    }
    store.transition(
        run.id,
        S.APPROVED,
        actor="U0DYLAN",
        action="approve",
        fields={"approval": approval, "decision": {"by": "U0DYLAN", "what": "go"}},
    )
    store.transition(run.id, S.RUNNING, actor="U0LIU", action="run phase 1", phase=1, file="006_add.sql")
    store.transition(run.id, S.PHASE_DONE, actor="U0LIU", action="phase 1 done", phase=1)
    store.transition(run.id, S.RUNNING, actor="U0SERGEI", action="run phase 2", phase=2)
    store.update_meta(run.id, thread_ts="1700000000.1")
    store.set_incident("U0LIU", "replica lag")
    return run


def test_the_last_run_is_rebuilt_from_postgresql_and_cannot_run(redis_client, redis_prefix, events):
    store = new_store(redis_client, redis_prefix, events)
    before = run_until_phase_2_is_running(store)
    lose_redis(redis_client, redis_prefix)
    assert store.current() is None

    report = rebuild_from_history(store, events)

    assert report.rebuilt and report.events == 7
    run = store.current()
    assert run == report.run and run.id == before.id and run.created_by == "U0RAFAEL"
    # what the history holds is back
    assert run.phases[1].status is P.SUCCEEDED and run.phases[1].actor == "U0LIU"
    assert run.phases[1].file == "006_add.sql" and run.phases[3].kind == "verification"
    assert run.decision == {"by": "U0DYLAN", "what": "go"} and run.approval["by"] == "U0DYLAN"
    assert store.incident()["text"] == "replica lag"
    # work that was in progress is not resumed: it is interrupted
    assert run.status is S.INTERRUPTED
    assert run.phases[2].status is P.FAILED and "interrupted" in run.phases[2].error
    # nothing runs on the old approval or preflight
    assert run.meta["rebuilt"] == "true"
    assert why_approval_invalid(run.approval, checksums=CHECKSUMS, now=clock.now()).startswith(
        "approval no longer valid: the run state was rebuilt from history"
    )
    assert why_preflight_stale(run.preflight, now=clock.now()).startswith("preflight no longer valid")
    # and it says what it could not rebuild
    assert "thread_ts" not in run.meta
    assert any("Slack thread" in m for m in report.missing)
    assert any("work in progress (the run was running)" in m for m in report.missing)
    assert f"Rebuilt run {run.id} (interrupted) from 7 events" in report.message
    assert "Nothing will run until a fresh preflight" in report.message
    # the rebuild itself is on the record
    assert events.events(run.id)[-1]["action"] == "run rebuilt"


def test_a_rebuilt_run_can_be_rolled_back_or_replaced_by_a_new_preflight(redis_client, redis_prefix, events):
    store = new_store(redis_client, redis_prefix, events)
    run_until_phase_2_is_running(store)
    lose_redis(redis_client, redis_prefix)
    run = rebuild_from_history(store, events).run
    store.transition(run.id, S.ROLLING_BACK, actor="U0SERGEI", action="rollback phase 2", phase=2)
    store.transition(run.id, S.ROLLED_BACK, actor="U0SERGEI", action="phase 2 rolled back", phase=2)
    assert store.create("U0RAFAEL", "006").id != run.id


def test_nothing_is_rebuilt_while_redis_has_the_state(redis_client, redis_prefix, events):
    store = new_store(redis_client, redis_prefix, events)
    run = store.create("U0RAFAEL", "006")
    report = rebuild_from_history(store, events)
    assert not report.rebuilt and report.run.id == run.id


def test_nothing_to_rebuild_without_history(redis_client, redis_prefix, events):
    report = rebuild_from_history(new_store(redis_client, redis_prefix, events), events)
    assert not report.rebuilt and report.run is None and "no run in the event history" in report.message


def test_unreachable_history_is_reported_not_raised(redis_client, redis_prefix):
    down = EventLog("postgresql://postgres:S3cretPgPw99@127.0.0.1:1/nowhere", target=TARGET)
    report = rebuild_from_history(new_store(redis_client, redis_prefix, down), down)
    assert not report.rebuilt and "unreachable" in report.message and "S3cret" not in report.message


def test_a_second_loss_rebuilds_again_from_the_same_history(redis_client, redis_prefix, events):
    store = new_store(redis_client, redis_prefix, events)
    before = run_until_phase_2_is_running(store)
    lose_redis(redis_client, redis_prefix)
    rebuild_from_history(store, events)
    lose_redis(redis_client, redis_prefix)
    again = rebuild_from_history(store, events)
    assert again.rebuilt and again.run.id == before.id and again.run.status is S.INTERRUPTED


def test_a_file_the_ledger_shows_committed_in_an_unfinished_phase_is_named(
    redis_client, redis_prefix, events
):
    store = new_store(redis_client, redis_prefix, events)
    before = run_until_phase_2_is_running(store)
    lose_redis(redis_client, redis_prefix)
    ledger = [
        {
            "run_id": before.id,
            "phase": 1,
            "step": "1.1",
            "file": "006_add.sql",
            "started_at": before.created_at,
        },
        {
            "run_id": before.id,
            "phase": 2,
            "step": "2.1",
            "file": "006_enable_rls_IMPROVED.sql",
            "started_at": clock.now(),
        },
        {"run_id": "another-run", "phase": 2, "step": "2.1", "file": "old.sql", "started_at": clock.now()},
    ]
    report = rebuild_from_history(store, events, ledger=ledger)
    notes = [m for m in report.missing if "ledger" in m]
    assert notes == [
        "whether phase 2 is applied: the ledger shows 006_enable_rls_IMPROVED.sql (step 2.1) "
        "committed while the history ends with the phase running: check the database"
    ]
