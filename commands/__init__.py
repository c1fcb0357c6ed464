"""The command core: `/migrate` verbs as plain functions over the run state.

`handle(core, user, text)` parses (commands.parse), authorizes (commands.policy against
the roster) and dispatches to a verb, one module each; a verb checks *whether* something may
happen (run status, approval, roster) and returns an `Outcome` (commands/result.py) that the
console or the Slack adapter renders. Long work goes in `Outcome.work`, started by a workflow
(workflows/: running phases, rollback, restore, pre-flight's own runner in preflight/).
Time-driven work (a GO scheduled, follow-ups) is reached through `core.schedule`, the
interface the adapter handed the core at start-up (workflows/schedule.py).

May import: workflows, preflight, engine, state, runbook, core. Never scheduling (a sibling:
the scheduler runs workflows, not verbs) and never bot (no Slack here). Checked by
lint-imports.
"""

from __future__ import annotations

import logging

import psycopg
from redis.exceptions import RedisError

from commands.abort import abort, interruption_facts
from commands.decide import approve, defer
from commands.fleet import route as fleet_route
from commands.incident import incident
from commands.info import help_, status
from commands.parse import ParseError, parse
from commands.policy import describe, refusal
from commands.preflight import preflight
from commands.report import report
from commands.rollback import rollback
from commands.run import run, verify
from core import clock
from engine import ledger
from state.machine import IllegalTransition
from state.recovery import rebuild_from_history
from workflows.core import Core
from workflows.reporting import FAILED, OK, REFUSED, Outcome, Post, redact_post

__all__ = ["Core", "handle", "Outcome", "Post", "OK", "FAILED", "REFUSED"]

log = logging.getLogger("migrate.commands")

VERBS = {
    "help": help_,
    "status": status,
    "preflight": preflight,
    "approve": approve,
    "defer": defer,
    "run": run,
    "verify": verify,
    "rollback": rollback,
    "abort": abort,
    "incident": incident,
    "report": report,
}


def handle(core: Core, user: str, text: str, *, request_id: str | None = None) -> Outcome:
    """Run `/migrate TEXT` as USER. A repeated `request_id` is answered, never executed twice.
    Redis or PostgreSQL being unreachable is a short answer, never a stack trace."""
    try:
        return _handle(core, user, text, request_id)
    except (RedisError, psycopg.OperationalError) as exc:
        what = "Redis (the bot's state)" if isinstance(exc, RedisError) else "the database"
        reason = core.redact(f"{type(exc).__name__}: {exc}")[:200]
        log.error("command by %s not run: %s unreachable: %s", user, what, reason)
        return Outcome(
            FAILED, reply=[f"nothing was done: {what} is unreachable ({reason}); try again when it is back"]
        )


def _handle(core: Core, user: str, text: str, request_id: str | None) -> Outcome:
    if request_id and not core.store.first_delivery(request_id):
        return Outcome.refused("already handled: this request was delivered twice and ran once")
    try:
        cmd = parse(text, clock.now())
    except ParseError as exc:
        return Outcome.refused(core.redact(str(exc)))
    denied = refusal(core.roster, core.runbook, user, cmd)
    if denied:
        core.store.record(describe(cmd), actor=user, outcome="refused", evidence={"reason": denied})
        return Outcome.refused(denied)
    notices = _rebuilt_notice(core) + _interrupted_notice(core)
    try:
        outcome = (fleet_route(core, cmd) or VERBS[cmd.verb])(core, user, cmd)
    except IllegalTransition as exc:
        outcome = Outcome.refused(exc.reason)
    except Exception as exc:  # never a stack trace in Slack; the log has the redacted reason
        reason = core.redact(f"{type(exc).__name__}: {exc}")[:300]
        log.error("command %r by %s failed: %s", describe(cmd), user, reason)
        outcome = Outcome(FAILED, reply=[f"`{describe(cmd)}` failed: {reason}"])
    if outcome.code == REFUSED:
        core.store.record(
            describe(cmd), actor=user, outcome="refused", evidence={"reason": outcome.reply[:1]}
        )
    outcome.posts = notices + outcome.posts
    return _redacted(core, outcome)


def _rebuilt_notice(core: Core) -> list[Post]:
    """Redis lost the run state (a restart without persistence, a flush): rebuild the last run
    from the PostgreSQL history and the file ledger, say what was and was not rebuilt. The
    rebuilt run's approval and preflight are revoked: nothing runs until a fresh preflight."""
    if core.store.current() is not None:
        return []
    try:
        applied = ledger.applied_files(core.settings.required_database_url(), core.runbook.id)
    except psycopg.Error:
        applied = []
    report = rebuild_from_history(core.store, core.events, ledger=applied)
    if not report.rebuilt or report.run is None:  # (a rebuilt report has its run)
        return []
    run = report.run
    phases = ", ".join(f"phase {n} {state.status.value}" for n, state in sorted(run.phases.items()))
    return [
        Post(
            "rebuilt",
            f"⚠ The run state was lost from Redis: run {run.id} rebuilt from the PostgreSQL history",
            [
                f"Rebuilt from {report.events} events: status {run.status.value}"
                + (f"; {phases}" if phases else ""),
                "Could not rebuild:",
                *[f"• {m}" for m in report.missing],
                "Nothing runs until a fresh `/migrate preflight` and a new approval; "
                "`rollback phase <n>` and `rollback restore` remain available.",
            ],
            run_id=run.id,
            final=True,
        )
    ]


def _interrupted_notice(core: Core) -> list[Post]:
    """A run whose lock owner died is reported as interrupted, once, by whoever looks next."""
    run = core.store.detect_interrupted(core.lock)
    if run is None:
        return []
    return [
        Post(
            "interrupted",
            f"⚠ Run {run.id} was interrupted: the bot process working on it stopped",
            [
                f"Status: {run.status.value}. Nothing was re-run.",
                *interruption_facts(core, run),
                "Check `/migrate status`, then `run phase <n>` again or `rollback phase <n>`.",
            ],
            run_id=run.id,
            final=True,
        )
    ]


def _redacted(core: Core, outcome: Outcome) -> Outcome:
    outcome.reply = [core.redact(line) for line in outcome.reply]
    outcome.posts = [redact_post(p, core.redact) for p in outcome.posts]
    return outcome
