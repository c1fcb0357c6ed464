"""Post-execution follow-ups (issue 7) on a compressed clock, after a real run of 006.

The run goes preflight → approve → run through the console (as in test_console_path); the
performance baseline is captured at preflight (what the preflight wiring does). A follow-up
posts each check with its evidence; after a policy is dropped, the next one posts a ❌ that
names it and mentions the coordinator. The +1 week reminder names the owners.
"""

from __future__ import annotations

from datetime import timedelta

import psycopg

from commands import Core
from scheduling import followups
from scheduling.scheduler import Scheduler
from state.machine import Status
from tests.conftest import PLANTED
from tests.support.state import force, make_run
from tests.support.waiting import wait_until
from tests.test_health import Collect
from tests.test_scheduling import COORDINATOR, TPM, console, ready, services  # noqa: F401 (fixtures)
from workflows import baseline
from workflows.baseline import capture_baseline, store_baseline


def summaries(out: Collect) -> list:
    with out.guard:
        return [p for p in out.posts if p.kind == "followup_summary"]


def checks_of(out: Collect, start: int = 0) -> dict[str, object]:
    """The follow-up check posts after the `start`-th post, by check name."""
    with out.guard:
        posts = [p for p in out.posts[start:] if p.kind == "followup_check"]
    return {p.title.split(" — ", 1)[1].split(":", 1)[0]: p for p in posts}


def test_followups_post_evidence_and_name_a_dropped_policy(ready):
    core = Core.from_settings(ready)
    code, out_text = console(core, COORDINATOR, "preflight")
    assert code == 0, out_text
    run_id = core.store.current().id
    store_baseline(core, run_id, capture_baseline(ready.database_url))
    assert console(core, TPM, "approve")[0] == 0
    code, out_text = console(core, COORDINATOR, "run")
    assert code == 0 and "Migration 006 SUCCESSFUL ✅" in out_text, out_text

    out = Collect()
    scheduler = Scheduler(core, lambda: out, poll=0.5)
    try:
        scheduler.schedule_followups(run_id, [timedelta(seconds=1)], week=None)
        wait_until(lambda: len(summaries(out)) == 1, timeout=120)
        first = checks_of(out)
        assert set(first) == {
            "verification queries",
            "schema unchanged since the run",
            "query performance vs baseline",
            "registered databases reachable",
            "no permission-denied errors",
        }
        for name in (
            "verification queries",
            "schema unchanged since the run",
            "registered databases reachable",
            "no permission-denied errors",
        ):
            assert first[name].title.startswith("✅ +1 s follow-up"), first[name].text()
        assert "10/10 hold" in first["verification queries"].title
        assert "2/2 reachable" in first["registered databases reachable"].title
        perf = first["query performance vs baseline"]
        assert len([line for line in perf.lines if " ms)" in line and "%" in line]) == len(baseline.QUERIES)
        assert all(p.run_id == run_id for p in out.posts)
        mark = len(out.posts)

        # Sabotage after the run: one of the 48 permissive policies disappears.
        with psycopg.connect(ready.database_url, autocommit=True) as conn:
            conn.execute("DROP POLICY users_select_permissive ON platform.users")
        scheduler.schedule_followups(run_id, [timedelta(seconds=1)], week=timedelta(seconds=2))
        wait_until(
            lambda: len(summaries(out)) == 2 and any(p.kind == "followup_reminder" for p in out.posts),
            timeout=120,
        )
    finally:
        scheduler.shutdown()

    second = checks_of(out, mark)
    verification = second["verification queries"]
    assert verification.title.startswith("❌") and "48 permissive policies" in verification.title
    assert "observed 47" in verification.title
    drift = second["schema unchanged since the run"]
    assert drift.title.startswith("❌") and "users_select_permissive" in drift.text()
    for failed in (verification, drift):
        assert failed.mentions == [COORDINATOR] and f"<@{COORDINATOR}>" in failed.text()
    summary = summaries(out)[1]
    assert (
        "❌" in summary.title
        and "verification queries" in summary.title
        and summary.mentions == [COORDINATOR]
    )

    week = next(p for p in out.posts if p.kind == "followup_reminder")
    text = week.text()
    for owner in ("<@U0YASMIN>", "<@U0LIU>", "<@U0SERGEI>"):
        assert owner in text
    assert "Redis" in text and "Migration 007" in text and "dashboard" in text
    assert run_id == week.run_id

    everything = "\n".join(p.text() for p in out.posts)
    for secret in (PLANTED["key"], "S3cretMongoPw42", "S3cretRedisPw42"):
        assert secret not in everything


def test_followup_of_a_run_that_did_not_stay_succeeded_posts_nothing(settings):
    core = Core.from_settings(settings)
    out = Collect()
    for status in (Status.ROLLED_BACK, Status.RESTORED, Status.ROLLING_BACK):
        force(core.store, make_run(status, run_id="006-rolled"))
        assert followups.post_followup(core, out, "006-rolled", "+1 h") == []
        assert followups.post_week_reminder(core, out, "006-rolled", "+1 week") is False
    assert followups.post_followup(core, out, "006-gone", "+24 h") == []
    assert out.posts == []


def test_baseline_timings_and_the_budget(db_005):
    taken = capture_baseline(db_005, runs=3)
    assert set(taken["queries"]) == {name for name, _ in baseline.QUERIES}
    assert all(q["ms"] >= 0 for q in taken["queries"].values())

    base = {
        "queries": {
            "organization by slug": {"ms": 10.0},
            "projects of an organization": {"ms": 10.0},
            "members with their users": {"ms": 0.05},
            "recent audit log of an organization": {"ms": 1.0},
            "active sessions per user": {
                "error": "error: permission denied for table user_sessions (SQLSTATE 42501)"
            },
        }
    }
    now = {
        "organization by slug": {"ms": 10.9},
        "projects of an organization": {"ms": 12.0},
        "members with their users": {"ms": 0.09},
        "recent audit log of an organization": {"ms": 0.8},
        "active sessions per user": {"ms": 1.0},
    }
    rows = {r.name: r for r in baseline.compare(base, now)}
    assert rows["organization by slug"].ok and "+9.0%" in rows["organization by slug"].text()
    assert (
        not rows["projects of an organization"].ok
        and "OVER the 10% budget" in rows["projects of an organization"].text()
    )
    assert rows["members with their users"].ok and "noise floor" in rows["members with their users"].text()
    assert rows["recent audit log of an organization"].ok
    assert not rows["active sessions per user"].ok

    denied = followups.permission_denied(
        [
            followups.CheckResult(
                "query performance vs baseline", False, "", errors=[rows["active sessions per user"].error]
            )
        ]
    )
    assert not denied.ok and "permission denied for table user_sessions" in denied.evidence[0]


def test_followup_jobs_of_an_undone_run_post_nothing(settings):
    """Rolled back or restored after it succeeded: the jobs fire, check the status, post nothing."""
    from scheduling import once
    from scheduling.jobs import followup_id

    core = Core.from_settings(settings)
    force(core.store, make_run(Status.RESTORED, run_id="006-undone"))
    out = Collect()
    scheduler = Scheduler(core, lambda: out, poll=0.3)
    try:
        scheduler.schedule_followups("006-undone", [timedelta(seconds=0.5)], week=timedelta(seconds=1))
        jobs = {j["id"]: j for j in scheduler.jobs()}
        due = {
            i: jobs[i]["next_run_at"].isoformat()
            for i in (followup_id("006-undone", 1), followup_id("006-undone", "week"))
        }
        wait_until(lambda: all(once.claimed_by(core, i, d) for i, d in due.items()), timeout=30)
        wait_until(lambda: scheduler.jobs() == [], timeout=10)
    finally:
        scheduler.shutdown()
    assert out.posts == []


def test_run_undone_removes_the_followups(settings):
    from scheduling import hooks
    from scheduling.scheduler import for_core

    core = Core.from_settings(settings)
    assert len(hooks.succeeded(core, "006-u")) == 3
    assert hooks.run_undone(core, "006-u") == 3
    assert [j for j in for_core(core).jobs() if j["run_id"] == "006-u"] == []
    assert hooks.run_undone(core, "006-u") == 0


def test_no_evidence_is_not_a_pass(settings):
    import dataclasses

    core = Core.from_settings(settings)
    rb = core.runbook
    bare = dataclasses.replace(
        core,
        runbook=dataclasses.replace(rb, phases=tuple(dataclasses.replace(p, checks=()) for p in rb.phases)),
    )
    result = followups.verification(bare)
    assert not result.ok and "nothing was checked" in result.summary and "0/0" not in result.summary
