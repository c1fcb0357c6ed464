"""The audit trail: every event in the Redis stream and in migrate_bot.run_events."""

from __future__ import annotations

import logging
import threading
from datetime import UTC

import psycopg
import pytest

from state.audit import EventLog, redis_events, signoff
from state.machine import Status as S
from tests.support import pg
from tests.support.state import TARGET, new_store

UNREACHABLE = "postgresql://postgres:S3cretPgPw99@127.0.0.1:1/nowhere"


@pytest.fixture
def events(scratch_db):
    log = EventLog(scratch_db(), target=TARGET)
    yield log
    log.close()


def a_run(store, *, scheduled: bool = False):
    run = store.create("U0RAFAEL", "006", phases=[1, 2], verification=[3])
    store.transition(
        run.id, S.GO, actor="bot", action="preflight done", fields={"preflight": {"outcome": "GO"}}
    )
    approval = {
        "by": "U0DYLAN",
        "mode": "scheduled" if scheduled else "now",
        "scheduled_for": "2026-11-25T03:00:00+00:00" if scheduled else None,
    }
    to = S.SCHEDULED if scheduled else S.APPROVED
    store.transition(run.id, to, actor="U0DYLAN", action="approve", fields={"approval": approval})
    return run


def test_every_event_lands_in_the_stream_and_in_postgresql(redis_client, redis_prefix, events):
    store = new_store(redis_client, redis_prefix, events)
    run = a_run(store)
    store.transition(run.id, S.RUNNING, actor="U0LIU", action="run phase 1", phase=1)
    store.record("status", actor="U0YASMIN", outcome="ok", run_id=run.id)
    store.set_incident("U0LIU", "API down")
    store.record("help", actor="U0YASMIN", outcome="ok")
    in_redis = redis_events(redis_client, store.keys)
    in_pg = events.events()
    assert len(in_redis) == 7
    assert [e["event_id"] for e in in_pg] == [e["event_id"] for e in in_redis]
    for r, p in zip(in_redis, in_pg):
        assert (p["run_id"], p["actor"], p["action"], p["outcome"], p["evidence"]) == (
            r["run_id"],
            r["actor"],
            r["action"],
            r["outcome"],
            r["evidence"],
        )
    assert pg.scalar(events.database_url, "SELECT count(*) FROM migrate_bot.run_events") == 7
    assert [e["action"] for e in events.events(run.id)] == [
        "run created",
        "preflight done",
        "approve",
        "run phase 1",
        "status",
        "incident start",
    ]
    assert store.mirror_backlog() == 0


def test_events_wait_in_redis_while_postgresql_is_unreachable(redis_client, redis_prefix, events, caplog):
    down = EventLog(UNREACHABLE, target=TARGET)
    offline = new_store(redis_client, redis_prefix, down)
    with caplog.at_level(logging.WARNING):
        run = a_run(offline)
    assert offline.mirror_backlog() == 3
    assert "S3cretPgPw99" not in caplog.text and "audit mirror to PostgreSQL failed" in caplog.text
    online = new_store(redis_client, redis_prefix, events)  # PostgreSQL is back
    online.transition(run.id, S.RUNNING, actor="U0LIU", action="run phase 1", phase=1)
    assert online.mirror_backlog() == 0
    assert [e["action"] for e in events.events(run.id)] == [
        "run created",
        "preflight done",
        "approve",
        "run phase 1",
    ]


def test_a_mirror_write_replayed_is_stored_once(redis_client, redis_prefix, events):
    store = new_store(redis_client, redis_prefix, events)
    store.record("help", actor="U", outcome="ok")
    (event,) = events.events()
    events.write(event)
    assert len(events.events()) == 1


def test_two_bots_creating_the_table_at_once_both_succeed(scratch_db):
    url = scratch_db()
    logs = [EventLog(url, target=TARGET) for _ in range(4)]
    errors: list[Exception] = []
    barrier = threading.Barrier(len(logs))

    def first_use(log: EventLog) -> None:
        barrier.wait()
        try:
            log.events()
        except Exception as exc:  # noqa: BLE001 - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=first_use, args=(log,)) for log in logs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for log in logs:
        log.close()
    assert errors == []


def test_last_run_ids_newest_first(redis_client, redis_prefix, events):
    store = new_store(redis_client, redis_prefix, events)
    first = store.create("U0RAFAEL", "006")
    store.transition(first.id, S.NO_GO, actor="bot", action="preflight done", outcome="no-go")
    second = store.create("U0RAFAEL", "006")
    assert events.last_run_ids() == [second.id, first.id]


def test_signoff_comes_from_the_events(redis_client, redis_prefix, events):
    store = new_store(redis_client, redis_prefix, events)
    run = a_run(store, scheduled=True)
    sign = signoff(events.events(run.id))
    assert sign["reviewed_by"] == "U0RAFAEL"
    assert sign["approved_by"] == "U0DYLAN" and sign["approved_at"] is not None
    assert sign["mode"] == "scheduled" and sign["scheduled_execution"] == "2026-11-25T03:00:00+00:00"
    store.transition(
        run.id,
        S.DEFERRED,
        actor="U0DYLAN",
        action="defer",
        fields={"decision": {"what": "no-go", "reason": "incident"}},
    )
    sign = signoff(redis_events(redis_client, store.keys, run.id))
    assert (sign["deferred_by"], sign["deferred_reason"]) == ("U0DYLAN", "incident")


def test_evidence_with_times_paths_and_nul_characters_is_stored_as_plain_json(
    redis_client, redis_prefix, events
):
    from datetime import datetime
    from pathlib import Path

    store = new_store(redis_client, redis_prefix, events)
    at = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
    store.record(
        "preflight",
        actor="U0RAFAEL",
        outcome="ok",
        evidence={"at": at, "backup": Path("backups/b.dump"), "notice": "odd\x00byte", "status": S.GO},
    )
    expected = {"at": at.isoformat(), "backup": "backups/b.dump", "notice": "oddbyte", "status": "go"}
    assert redis_events(redis_client, store.keys)[0]["evidence"] == expected
    assert events.events()[0]["evidence"] == expected


def test_an_event_postgresql_refuses_does_not_block_the_ones_behind_it(redis_client, redis_prefix, events):
    store = new_store(redis_client, redis_prefix, events)
    store.record("nobody", actor=None, outcome="ok")  # actor is NOT NULL in the table
    store.record("help", actor="U0YASMIN", outcome="ok")
    assert [e["action"] for e in events.events()] == ["help"]
    assert store.mirror_backlog() == 0
    assert redis_client.llen(store.keys.mirror_failed()) == 1


def test_reset_recreates_the_table_in_a_replaced_database(events):
    events.write(
        {"at": "2026-11-24T03:00:00+00:00", "actor": "U", "action": "a", "outcome": "ok", "event_id": "e1"}
    )
    with psycopg.connect(
        events.database_url, autocommit=True
    ) as conn:  # as if a restore had swapped in an older copy
        conn.execute("DROP SCHEMA migrate_bot CASCADE")
    events.reset()
    events.write(
        {"at": "2026-11-24T03:01:00+00:00", "actor": "U", "action": "b", "outcome": "ok", "event_id": "e2"}
    )
    assert [e["action"] for e in events.events()] == ["b"]


def test_the_mirror_reuses_its_connection_across_events(redis_client, redis_prefix, events):
    """A fresh connection per audit write cost more than a small phase's own SQL (bench/folder_vs_psql.py)."""
    from sqlalchemy import event as sa_event

    opened = []
    sa_event.listen(events.engine, "connect", lambda *_: opened.append(1))
    store = new_store(redis_client, redis_prefix, events)
    run = a_run(store)
    for _ in range(5):
        store.record("status", actor="U0YASMIN", outcome="ok", run_id=run.id)
    assert len(events.events(run.id)) == 8
    assert len(opened) == 1


def test_a_mirror_connection_terminated_meanwhile_loses_no_event(redis_client, redis_prefix, events):
    store = new_store(redis_client, redis_prefix, events)
    store.record("before", actor="U0YASMIN", outcome="ok")
    with psycopg.connect(events.database_url, autocommit=True) as conn:  # as a restore's swap does
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    store.record("after", actor="U0YASMIN", outcome="ok")
    assert [e["action"] for e in events.events()] == ["before", "after"]
    assert store.mirror_backlog() == 0
