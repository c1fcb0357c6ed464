"""Helpers for the state tests: runs in any status, in memory or written straight to Redis."""

from __future__ import annotations

from core import clock
from state.keys import Keys
from state.machine import PhaseStatus, Status
from state.runs import PhaseState, Run, RunStore

TARGET = "127.0.0.1:5432/state_tests"


def make_run(
    status: Status,
    phases: dict[int, PhaseStatus] | None = None,
    *,
    phase: int | None = None,
    run_id: str = "006-test",
    approval: dict | None = None,
    preflight: dict | None = None,
) -> Run:
    """A run in `status` with the given phase states (default: phases 1-3 pending; phase 3,
    as in the 006 runbook, is the verification)."""
    now = clock.now()
    states = {
        n: PhaseState(
            status=s,
            started_at=now if s is not PhaseStatus.PENDING else None,
            kind="verification" if n == 3 else "migration",
        )
        for n, s in (
            phases or {1: PhaseStatus.PENDING, 2: PhaseStatus.PENDING, 3: PhaseStatus.PENDING}
        ).items()
    }
    return Run(
        id=run_id,
        target=TARGET,
        runbook="006",
        status=status,
        created_at=now,
        created_by="U0RAFAEL",
        updated_at=now,
        phase=phase,
        phases=states,
        approval=approval,
        preflight=preflight,
    )


def new_store(redis_client, prefix: str, events=None) -> RunStore:
    return RunStore(redis_client, Keys(prefix, TARGET), events=events)


def force(store: RunStore, run: Run) -> None:
    """Write `run` as it is and make it current, bypassing the lifecycle (test set-up only)."""
    pipe = store.redis.pipeline(transaction=True)
    pipe.delete(store.keys.run_phases(run.id))
    pipe.hset(store.keys.run(run.id), mapping=run.to_hash())
    pipe.hset(store.keys.run_phases(run.id), mapping=run.phases_hash())
    pipe.set(store.keys.current(), run.id)
    pipe.execute()
