"""The fleet run in Redis (state/fleet.py): the transition tables, the start rule, the wave rule
(`advance`), the event stream the adapters render and the audit trail, against real Redis."""

from __future__ import annotations

import threading

import pytest

from state.audit import EventLog
from state.fleet import FleetStatus as F
from state.fleet import FleetStore, IllegalTransition, decide
from state.fleet import TargetStatus as T

U = "U0RAFAEL"
# 8 targets in 3 waves: the canary, then 3, then 4
EIGHT = [("c", 0), ("a1", 1), ("a2", 1), ("a3", 1), ("b1", 2), ("b2", 2), ("b3", 2), ("b4", 2)]


@pytest.fixture
def store(redis_client, redis_prefix):
    return FleetStore(redis_client, redis_prefix)


def go_all(store, fleet, no_go=()):
    for name in fleet.targets:
        store.move(fleet.id, name, T.PREFLIGHT, actor=U, action="preflight")
        if name in no_go:
            store.move(fleet.id, name, T.NO_GO, actor=U, action="no-go", fields={"reason": "no backup"})
        else:
            store.move(fleet.id, name, T.GO, actor=U, action="go")
    store.transition(fleet.id, F.GO, actor=U, action="preflight ended")
    store.transition(
        fleet.id, F.APPROVED, actor="U0DYLAN", action="approve", fields={"approval": {"by": "U0DYLAN"}}
    )
    return store.transition(fleet.id, F.RUNNING, actor=U, action="run")


def started(store, fleet_id, names, to=T.SUCCEEDED):
    for name in names:
        store.move(fleet_id, name, T.RUNNING, actor="w1", action="started")
        store.move(
            fleet_id,
            name,
            to,
            actor="w1",
            action=str(to),
            fields={"error": "boom"} if to is T.FAILED else None,
        )


def statuses(store, fleet_id):
    return {n: str(t.status) for n, t in store.get(fleet_id).targets.items()}


def test_create_stores_targets_pending_in_file_order_and_refuses_a_second_while_active(store):
    fleet = store.create(U, "006", EIGHT, parallel=2, stop_after_failures=1)
    read = store.current()
    assert read.id == fleet.id and read.status is F.PREFLIGHT
    assert list(read.targets) == [n for n, _ in EIGHT]
    assert {t.status for t in read.targets.values()} == {T.PENDING} and read.targets["b4"].wave == 2
    with pytest.raises(IllegalTransition, match="is preflight running: wait for it to finish"):
        store.create(U, "006", EIGHT)
    store.transition(fleet.id, F.NO_GO, actor=U, action="preflight ended")
    second = store.create(U, "006", EIGHT[:2])
    assert store.current().id == second.id and [f.id for f in store.history()] == [second.id, fleet.id]


def test_the_tables_refuse_with_a_sentence(store):
    fleet = store.create(U, "006", EIGHT)
    with pytest.raises(IllegalTransition, match="target c is pending: it cannot become running"):
        store.move(fleet.id, "c", T.RUNNING, actor=U, action="start")
    with pytest.raises(
        IllegalTransition, match="the fleet run is preflight running: it cannot become running"
    ):
        store.transition(fleet.id, F.RUNNING, actor=U, action="run")
    with pytest.raises(IllegalTransition, match="has no target 'zz'"):
        store.move(fleet.id, "zz", T.PREFLIGHT, actor=U, action="preflight")
    with pytest.raises(ValueError, match="cannot write"):
        store.move(fleet.id, "c", T.PREFLIGHT, actor=U, action="preflight", fields={"status": "go"})
    with pytest.raises(IllegalTransition, match="needs it to be approved"):
        store.transition(fleet.id, F.DEFERRED, actor=U, action="x", expect=[F.APPROVED])


def test_canary_first_then_each_wave_parallel_at_once_only_after_the_previous_succeeded(store):
    fleet = store.create(U, "006", EIGHT, parallel=2)
    fleet = go_all(store, fleet)
    assert fleet.wave == 0
    assert store.advance(fleet.id, actor=U).queued == ("c",)
    assert store.advance(fleet.id, actor=U).queued == ()  # idempotent: nothing twice
    store.move(fleet.id, "a1", T.QUEUED, actor="w", action="queued by hand")
    with pytest.raises(IllegalTransition, match=r"a1 \(wave 1\) cannot start: wave 0 is running"):
        store.move(fleet.id, "a1", T.RUNNING, actor="w", action="started")
    started(store, fleet.id, ["c"])
    step = store.advance(fleet.id, actor=U)
    assert (step.queued, step.wave) == (("a2",), 1)  # parallel = 2, a1 was queued already
    started(store, fleet.id, ["a1"])
    assert store.advance(fleet.id, actor=U).queued == ("a3",)  # a place freed
    started(store, fleet.id, ["a2", "a3"])
    step = store.advance(fleet.id, actor=U)
    assert (step.queued, step.wave) == (("b1", "b2"), 2)
    started(store, fleet.id, ["b1", "b2"])
    assert store.advance(fleet.id, actor=U).queued == ("b3", "b4")
    started(store, fleet.id, ["b3", "b4"])
    step = store.advance(fleet.id, actor=U)
    assert step.finished is F.SUCCEEDED and store.get(fleet.id).status is F.SUCCEEDED
    assert store.advance(fleet.id, actor=U).changed is False


def test_a_failure_stops_what_has_not_started_and_lets_what_runs_finish(store):
    fleet = go_all(store, store.create(U, "006", EIGHT, parallel=2))
    store.advance(fleet.id, actor=U)
    started(store, fleet.id, ["c"])
    store.advance(fleet.id, actor=U)  # a1, a2 queued
    store.move(fleet.id, "a1", T.RUNNING, actor="w1", action="started")
    store.move(fleet.id, "a2", T.RUNNING, actor="w2", action="started")
    store.move(fleet.id, "a1", T.FAILED, actor="w1", action="failed", fields={"error": "phase 1: boom"})
    assert store.get(fleet.id).stopped
    step = store.advance(fleet.id, actor=U)
    assert step.skipped == ("a3", "b1", "b2", "b3", "b4") and step.finished is None  # a2 still runs
    with pytest.raises(IllegalTransition, match="skipped: it cannot become running"):
        store.move(fleet.id, "a3", T.RUNNING, actor="w", action="started")
    store.move(fleet.id, "a2", T.SUCCEEDED, actor="w2", action="succeeded")  # what ran finished
    step = store.advance(fleet.id, actor=U)
    assert step.finished is F.FAILED
    assert statuses(store, fleet.id) == {
        "c": "succeeded", "a1": "failed", "a2": "succeeded", "a3": "skipped",
        "b1": "skipped", "b2": "skipped", "b3": "skipped", "b4": "skipped",
    }  # fmt: skip
    assert store.get(fleet.id).targets["b1"].reason == "not started: the fleet stopped after 1 failure(s)"


def test_the_start_rule_refuses_a_queued_target_once_stopped(store):
    """A job already queued when the failure came never starts (checked in the move's MULTI)."""
    fleet = go_all(store, store.create(U, "006", [("c", 0), ("x", 0), ("y", 0)], parallel=3))
    assert store.advance(fleet.id, actor=U).queued == ("c", "x", "y")
    store.move(fleet.id, "c", T.RUNNING, actor="w1", action="started")
    store.move(fleet.id, "c", T.FAILED, actor="w1", action="failed")
    with pytest.raises(IllegalTransition, match="cannot start: the fleet stopped after 1 failure"):
        store.move(fleet.id, "x", T.RUNNING, actor="w2", action="started")


def test_below_the_failure_limit_the_wave_goes_on_but_the_next_wave_never_starts(store):
    fleet = go_all(store, store.create(U, "006", EIGHT, parallel=1, stop_after_failures=3))
    store.advance(fleet.id, actor=U)
    started(store, fleet.id, ["c"])
    store.advance(fleet.id, actor=U)
    started(store, fleet.id, ["a1"], to=T.FAILED)
    assert store.advance(fleet.id, actor=U).queued == ("a2",)
    started(store, fleet.id, ["a2"])
    assert store.advance(fleet.id, actor=U).queued == ("a3",)
    started(store, fleet.id, ["a3"])
    step = store.advance(fleet.id, actor=U)
    assert step.finished is F.FAILED and step.skipped == ("b1", "b2", "b3", "b4")
    assert "wave 1 did not succeed (a1)" in store.target(fleet.id, "b1").reason


def test_no_go_targets_are_not_in_the_run_and_an_empty_wave_is_passed(store):
    fleet = go_all(store, store.create(U, "006", EIGHT, parallel=4), no_go={"a1", "a2", "a3"})
    store.advance(fleet.id, actor=U)
    started(store, fleet.id, ["c"])
    step = store.advance(fleet.id, actor=U)
    assert (step.queued, step.wave) == (("b1", "b2", "b3", "b4"), 2)
    assert store.target(fleet.id, "a1").status is T.NO_GO


def test_a_new_run_after_a_stop_retries_what_failed_or_was_skipped(store):
    fleet = go_all(store, store.create(U, "006", EIGHT[:3], parallel=2))
    store.advance(fleet.id, actor=U)
    started(store, fleet.id, ["c"], to=T.FAILED)
    assert store.advance(fleet.id, actor=U).finished is F.FAILED
    again = store.transition(fleet.id, F.RUNNING, actor=U, action="run")
    assert again.failures == 0 and again.wave == 0
    assert {t.status for t in again.targets.values()} == {T.GO}
    assert store.advance(fleet.id, actor=U).queued == ("c",)


def test_a_take_over_is_counted_and_keeps_the_start_time(store):
    fleet = go_all(store, store.create(U, "006", EIGHT[:1]))
    store.advance(fleet.id, actor=U)
    first = store.move(fleet.id, "c", T.RUNNING, actor="w1", action="started", fields={"worker": "w1"})
    again = store.move(fleet.id, "c", T.RUNNING, actor="w2", action="taken over", fields={"worker": "w2"})
    assert (again.attempts, again.worker, again.started_at) == (2, "w2", first.started_at)
    done = store.move(fleet.id, "c", T.SUCCEEDED, actor="w2", action="succeeded")
    assert done.ended_at >= done.started_at and done.duration >= 0


def test_every_change_is_one_event_on_the_stream_read_from_where_one_left_off(store):
    fleet = go_all(store, store.create(U, "006", EIGHT[:2]))
    events = store.events(fleet.id)
    assert [e.kind for e in events].count("target") == 4 and events[0].action == "fleet created"
    assert [(e.target, e.before, e.after) for e in events if e.kind == "target"][:2] == [
        ("c", "pending", "preflight"),
        ("c", "preflight", "go"),
    ]
    last = events[-1].id
    store.advance(fleet.id, actor=U)
    store.move(fleet.id, "c", T.RUNNING, actor="w1", action="started")
    store.set_phase(fleet.id, "c", 2, actor="w1")
    store.move(fleet.id, "c", T.FAILED, actor="w1", action="failed", fields={"error": "phase 2: boom"})
    new = store.events(fleet.id, after=last)
    assert [(e.kind, e.target, e.after, e.phase) for e in new] == [
        ("target", "c", "queued", None),
        ("target", "c", "running", None),
        ("phase", "c", None, 2),
        ("target", "c", "failed", 2),
    ]
    assert new[-1].error == "phase 2: boom" and new[-1].wave == 0
    audit = store.audit_events(fleet.id)
    assert audit[-1]["action"] == "failed" and audit[-1]["evidence"]["failures"] == 1
    assert audit[-1]["evidence"]["transition"] == {
        "from": "running",
        "to": "failed",
        "fields": {"error": "phase 2: boom"},
    }


def test_concurrent_advances_queue_each_target_once(store):
    names = [(f"t{i}", 0) for i in range(12)]
    fleet = go_all(store, store.create(U, "006", names, parallel=5))
    queued: list[str] = []
    guard = threading.Lock()

    def advance():
        step = store.advance(fleet.id, actor="w")
        with guard:
            queued.extend(step.queued)

    threads = [threading.Thread(target=advance) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(queued) == sorted(f"t{i}" for i in range(5))


def test_the_audit_is_mirrored_to_postgresql(redis_client, redis_prefix, db_005):
    events = EventLog(db_005, target="fleet")
    store = FleetStore(redis_client, redis_prefix, events=events)
    fleet = store.create(U, "006", EIGHT[:1])
    store.move(fleet.id, "c", T.PREFLIGHT, actor=U, action="preflight")
    rows = EventLog(db_005, target=f"fleet:{fleet.id}").events(run_id=fleet.id)
    assert [r["action"] for r in rows] == ["fleet created", "preflight"]
    assert redis_client.llen(store.keys.mirror_pending()) == 0
    events.close()


def test_decide_is_pure_and_does_nothing_unless_running(store):
    fleet = store.create(U, "006", EIGHT)
    plan = decide(fleet)
    assert (plan.queue, plan.skip, plan.finish) == ((), (), None)


def test_waiting_for_a_fleet_run_that_does_not_exist_says_so_at_once(store):
    # mypy (issue 17): waves.wait returned None for a missing fleet run, which `run`'s work then
    # read as a FleetRun (AttributeError on .status); it names the missing run instead.
    from types import SimpleNamespace

    from workflows.fleet import waves

    with pytest.raises(KeyError, match="there is no fleet run fleet-missing"):
        waves.wait(SimpleNamespace(fleets=store), "fleet-missing", timeout=float("inf"))
