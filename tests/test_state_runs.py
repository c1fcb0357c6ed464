"""RunStore against the real Redis: transitions, atomicity, idempotency, incidents."""

from __future__ import annotations

import itertools
import threading

import pytest

from state.audit import redis_events
from state.machine import TRANSITIONS, IllegalTransition
from state.machine import PhaseStatus as P
from state.machine import Status as S
from tests.support.state import force, make_run, new_store


@pytest.fixture
def store(redis_client, redis_prefix):
    return new_store(redis_client, redis_prefix)


def approved(store):
    run = store.create("U0RAFAEL", "006", phases=[1, 2], verification=[3])
    store.transition(
        run.id, S.GO, actor="U0RAFAEL", action="preflight", fields={"preflight": {"outcome": "GO"}}
    )
    return store.transition(
        run.id,
        S.APPROVED,
        actor="U0DYLAN",
        action="approve",
        fields={"approval": {"by": "U0DYLAN"}, "decision": {"what": "go"}},
    )


def test_create_makes_the_current_run_and_records_it(store):
    run = store.create("U0RAFAEL", "006", phases=[1, 2], verification=[3])
    assert store.current() == run
    assert run.status is S.PREFLIGHT_RUNNING and run.created_by == "U0RAFAEL"
    assert {n: p.kind for n, p in run.phases.items()} == {1: "migration", 2: "migration", 3: "verification"}
    assert [e["action"] for e in redis_events(store.redis, store.keys)] == ["run created"]


def test_a_new_preflight_is_refused_while_the_current_run_is_active(store):
    run = store.create("U0RAFAEL", "006")
    with pytest.raises(IllegalTransition, match=f"run {run.id} is preflight running"):
        store.create("U0RAFAEL", "006")
    store.transition(run.id, S.NO_GO, actor="bot", action="preflight", outcome="no-go")
    second = store.create("U0RAFAEL", "006")
    assert store.current().id == second.id
    assert [r.id for r in store.history()] == [second.id, run.id]


def test_a_transition_writes_status_phase_fields_and_event_together(store):
    run = approved(store)
    after = store.transition(
        run.id,
        S.RUNNING,
        actor="U0LIU",
        action="run phase 1",
        phase=1,
        file="006_add_platform_databases_table.sql",
        evidence={"command": "run phase 1"},
    )
    assert after == store.get(run.id)
    assert after.status is S.RUNNING and after.phase == 1
    assert after.phases[1].status is P.RUNNING and after.phases[1].actor == "U0LIU"
    assert after.approval == {"by": "U0DYLAN"} and after.decision == {"what": "go"}
    done = store.transition(run.id, S.PHASE_DONE, actor="U0LIU", action="phase 1 done", phase=1)
    assert done.phases[1].status is P.SUCCEEDED and done.phases[1].duration is not None
    last = redis_events(store.redis, store.keys, run.id)[-2]
    assert last["action"] == "run phase 1" and last["actor"] == "U0LIU"
    assert last["evidence"]["command"] == "run phase 1"
    assert last["evidence"]["transition"]["to"] == "running"
    assert last["evidence"]["transition"]["phases"]["1"]["status"] == "running"


ILLEGAL = [(a, b) for a, b in itertools.product(S, S) if b not in TRANSITIONS[a]]


def test_the_store_refuses_every_illegal_transition_and_changes_nothing(store):
    for current, to in ILLEGAL:
        force(store, make_run(current, {1: P.SUCCEEDED, 2: P.PENDING}, run_id=f"r-{current}"))
        before = store.get(f"r-{current}")
        events = store.redis.xlen(store.keys.audit_stream())
        with pytest.raises(IllegalTransition) as caught:
            store.transition(f"r-{current}", to, actor="U", action="try", phase=2)
        assert str(to) in caught.value.reason
        assert store.get(f"r-{current}") == before
        assert store.redis.xlen(store.keys.audit_stream()) == events


def test_expect_refuses_a_run_that_moved_on(store):
    run = approved(store)
    with pytest.raises(IllegalTransition, match="the run is approved; this needs it to be scheduled"):
        store.transition(
            run.id, S.RUNNING, actor="bot", action="scheduled start", phase=1, expect={S.SCHEDULED}
        )


def test_work_never_starts_on_a_run_that_is_no_longer_current(store):
    old = approved(store)
    store.transition(old.id, S.DEFERRED, actor="U0DYLAN", action="defer")
    force(store, make_run(S.APPROVED, run_id="old-approved", approval={"by": "U0DYLAN"}))
    store.redis.set(store.keys.current(), old.id)
    with pytest.raises(IllegalTransition, match="no longer the current run"):
        store.transition("old-approved", S.RUNNING, actor="U0LIU", action="run phase 1", phase=1)


def test_concurrent_transitions_from_one_state_have_exactly_one_winner(store):
    run = approved(store)
    workers = 8
    barrier = threading.Barrier(workers)
    wins, refusals = [], []

    def attempt(i: int) -> None:
        barrier.wait()
        try:
            store.transition(
                run.id, S.RUNNING, actor=f"U{i}", action="run phase 1", phase=1, expect={S.APPROVED}
            )
            wins.append(i)
        except IllegalTransition as exc:
            refusals.append(exc.reason)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and len(refusals) == workers - 1
    assert store.get(run.id).phases[1].actor == f"U{wins[0]}"
    runs = [e for e in redis_events(store.redis, store.keys, run.id) if e["action"] == "run phase 1"]
    assert len(runs) == 1


def test_leaving_an_active_status_fails_the_busy_phase(store):
    run = approved(store)
    store.transition(run.id, S.RUNNING, actor="U0LIU", action="run phase 1", phase=1)
    aborted = store.transition(run.id, S.ABORTED, actor="U0RAFAEL", action="abort")
    assert aborted.phases[1].status is P.FAILED and aborted.phases[1].error == "aborted"


def test_restored_marks_every_migration_phase_rolled_back(store):
    run = approved(store)
    for phase in (1, 2):
        store.transition(run.id, S.RUNNING, actor="U", action="run", phase=phase)
        store.transition(run.id, S.PHASE_DONE, actor="U", action="done", phase=phase)
    store.transition(run.id, S.RESTORE_REQUESTED, actor="U0RAFAEL", action="rollback restore")
    store.transition(run.id, S.RESTORING, actor="U0DYLAN", action="rollback restore confirm")
    restored = store.transition(run.id, S.RESTORED, actor="bot", action="restore done")
    assert [restored.phases[n].status for n in (1, 2, 3)] == [P.ROLLED_BACK, P.ROLLED_BACK, P.PENDING]


def test_unknown_fields_are_refused(store):
    run = store.create("U", "006")
    with pytest.raises(ValueError, match="cannot write"):
        store.transition(run.id, S.GO, actor="U", action="preflight", fields={"status": "succeeded"})


def test_update_meta_merges_adapter_data_without_an_event(store):
    run = store.create("U", "006", meta={"channel": "C1"})
    events = store.redis.xlen(store.keys.audit_stream())
    store.update_meta(run.id, ts="123.456")
    assert store.get(run.id).meta == {"channel": "C1", "ts": "123.456"}
    assert store.redis.xlen(store.keys.audit_stream()) == events


def test_meta_alone_reads_what_get_reads(store):
    run = store.create("U", "006", meta={"channel": "C1"})
    store.update_meta(run.id, abort_requested="U0RAFAEL")
    assert store.meta(run.id) == store.get(run.id).meta == {"channel": "C1", "abort_requested": "U0RAFAEL"}
    assert store.meta("no-such-run") is None


def test_first_delivery_is_true_once(store):
    assert store.first_delivery("req-1", ttl=60) is True
    assert store.first_delivery("req-1", ttl=60) is False
    assert store.first_delivery("req-2", ttl=60) is True


def test_first_delivery_under_concurrency_admits_one(store):
    results: list[bool] = []
    barrier = threading.Barrier(6)

    def deliver() -> None:
        barrier.wait()
        results.append(store.first_delivery("double-click", ttl=60))

    threads = [threading.Thread(target=deliver) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 5 + [True]


def test_incident_start_and_clear_are_recorded(store):
    assert store.incident() is None
    store.set_incident("U0LIU", "prod API 500s")
    assert store.incident()["text"] == "prod API 500s" and store.incident()["by"] == "U0LIU"
    store.clear_incident("U0DYLAN")
    assert store.incident() is None
    actions = [(e["action"], e["actor"]) for e in redis_events(store.redis, store.keys)]
    assert actions == [("incident start", "U0LIU"), ("incident clear", "U0DYLAN")]


def test_record_appends_an_event_without_a_transition(store):
    store.record("approve refused", actor="U0LIU", outcome="refused", evidence={"rule": "only the TPM"})
    (event,) = redis_events(store.redis, store.keys)
    assert (event["action"], event["outcome"], event["run_id"]) == ("approve refused", "refused", None)
    assert event["evidence"] == {"rule": "only the TPM"}


def test_a_failing_phase_rolled_back_by_its_policy_then_a_failed_rollback(store):
    run = approved(store)
    store.transition(run.id, S.RUNNING, actor="U0LIU", action="run phase 1", phase=1)
    rolling = store.transition(
        run.id, S.ROLLING_BACK, actor="U0LIU", action="step 1.1 failed: rollback-006.sql", phase=1
    )
    assert rolling.phases[1].status is P.ROLLING_BACK
    failed = store.transition(
        run.id,
        S.FAILED,
        actor="U0LIU",
        action="rollback failed",
        phase=1,
        error="rollback-006.sql: lock timeout",
        outcome="failed",
    )
    assert failed.phases[1].status is P.FAILED and failed.phases[1].error == "rollback-006.sql: lock timeout"
    store.transition(run.id, S.RUNNING, actor="U0LIU", action="retry", phase=1)
    with pytest.raises(
        IllegalTransition, match="phase 2 is pending, not in progress: it cannot be marked failed"
    ):
        store.transition(run.id, S.FAILED, actor="U0LIU", action="wrong phase", phase=2)


def test_update_record_writes_fields_and_an_event_without_moving_the_run(store):
    run = approved(store)
    store.transition(run.id, S.RUNNING, actor="U0LIU", action="run", phase=1)
    store.transition(run.id, S.PHASE_DONE, actor="U0LIU", action="phase 1 done", phase=1)
    events = store.redis.xlen(store.keys.audit_stream())
    renewed = store.update_record(
        run.id,
        fields={"approval": {"by": "U0DYLAN", "renewed_from": "x"}},
        actor="U0DYLAN",
        action="approval renewed",
        expect={S.PHASE_DONE},
    )
    again = store.get(run.id)
    assert again.status is S.PHASE_DONE and again.phases[1].status is P.SUCCEEDED
    assert again.approval == renewed.approval == {"by": "U0DYLAN", "renewed_from": "x"}
    assert store.redis.xlen(store.keys.audit_stream()) == events + 1
    with pytest.raises(IllegalTransition, match="the run is phase done"):
        store.update_record(run.id, fields={"approval": {}}, actor="U", action="x", expect={S.FAILED})
    with pytest.raises(ValueError, match="cannot write"):
        store.update_record(
            run.id, fields={"status": "succeeded"}, actor="U", action="x", expect={S.PHASE_DONE}
        )
    assert store.get(run.id).approval == renewed.approval


def test_update_record_refuses_a_run_that_changed_since_the_caller_read_it(store):
    run = approved(store)
    store.transition(run.id, S.RUNNING, actor="U0LIU", action="run", phase=1)
    read = store.transition(run.id, S.PHASE_DONE, actor="U0LIU", action="phase 1 done", phase=1)
    store.update_meta(run.id, note="meta does not count")  # adapter data, no updated_at change
    store.transition(run.id, S.ROLLING_BACK, actor="U0LIU", action="rollback", phase=1)
    store.transition(run.id, S.ROLLED_BACK, actor="U0LIU", action="rolled back", phase=1)
    with pytest.raises(IllegalTransition, match="changed while this was being checked"):
        store.update_record(
            run.id,
            fields={"approval": {"renewed": True}},
            actor="U0DYLAN",
            action="renew",
            expect={S.PHASE_DONE, S.ROLLED_BACK},
            unchanged_since=read.updated_at,
        )
    assert store.get(run.id).approval == {"by": "U0DYLAN"}
