"""Rolling back: one phase's rollback file (or its steps' reverts), newest phase first, then proof.

Proof means: the schema equals the snapshot taken before the phase ran (pg_dump compared),
the runbook's version is gone from schema_migrations, and row counts of every table that
survives the rollback are unchanged ("data loss: none" only when that was checked).
The verbs that start it (and `rollback accept`, which records a difference the TPM accepts)
are commands/rollback.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import psycopg

from core import clock
from engine import ledger, ledgers, schema
from engine.executor import FileChanged
from engine.ledgers import version_table
from state.machine import (
    ROLLBACK_DIFFERENCE,
    PhaseStatus,
    Status,
    applied_phases,
)
from workflows import facts, templates
from workflows.failures import mark_undone
from workflows.phases import PhaseRunner
from workflows.reporting import FAILED, OK, Post

ACCEPTED_DIFF = "accepted_rollback_diff"  # result key: schema diff lines the TPM accepted (`rollback accept`)


def without_phase(result: dict | None, n: int) -> dict:
    """The run's result record once phase `n` is undone: its step outcomes and any pending
    rollback difference dropped."""
    out = dict(result or {})
    out["steps"] = {k: v for k, v in out.get("steps", {}).items() if not k.startswith(f"{n}.")}
    out.pop("rollback_difference", None)
    return mark_undone(out, n)  # its ledger rows of this run no longer count as applied


def applied_before(run) -> list[int]:
    """Succeeded phases of which this run executed no step: the team's ledger showed every step
    applied (adopting a database half way through its history). They are older than the run's
    restore point, and their state before them was never snapshotted: `rollback all` undoes what
    the run applied and leaves them, as the backup does."""
    steps = (run.result or {}).get("steps") or {}
    return [
        n
        for n in applied_phases(run)
        if _status_of_phase(run, n) is PhaseStatus.SUCCEEDED and not any(k.startswith(f"{n}.") for k in steps)
    ]


def _status_of_phase(run, n: int):
    state = run.phases.get(n)
    return state.status if state else None


def before_text(before: list[int]) -> str:
    return (
        f"{', '.join(f'phase {m}' for m in reversed(before))} applied before this run, "
        "as the ledger showed: not undone"
    )


def left_nothing(run, n: int) -> bool:
    """Phase `n` failed in an atomic file before any of its steps committed: nothing of it is in
    the database, and its rollback must not run (it would drop what this run did not create)."""
    state = run.phases.get(n)
    steps = [v for k, v in ((run.result or {}).get("steps") or {}).items() if k.startswith(f"{n}.")]
    return (
        state is not None
        and state.status is PhaseStatus.FAILED
        and bool(steps)
        and not any(v.get("ok") for v in steps)
        and all(v.get("atomic") is True for v in steps)
    )


class AllRollback:
    def __init__(self, runner: PhaseRunner, numbers: list[int], before: Sequence[int] = ()):
        self.runner = runner
        self.core = runner.core
        self.numbers = numbers
        self.before = list(before)

    def execute(self) -> int:
        undone: list[int] = []
        for n in self.numbers:
            run = self.core.store.get(self.runner.run_id)
            if left_nothing(run, n):
                nothing_to_undo(self.runner, n)
            elif PhaseRollback(self.runner, self.core.runbook.phase(n)).execute() != OK:
                rest = [m for m in self.numbers if m not in undone and m != n]
                self.runner.reporter.post(
                    Post(
                        "rollback_all_stopped",
                        f"Rollback all stopped at phase {n} {templates.FAIL_MARK}",
                        [
                            f"Rolled back: {', '.join(f'phase {m}' for m in undone) or 'nothing'}",
                            f"Not rolled back: phase {n} (its rollback failed or left a difference: see above)"
                            + (f" and {', '.join(f'phase {m}' for m in rest)}" if rest else ""),
                            "The run is not rolled back.",
                        ],
                        run_id=self.runner.run_id,
                        final=True,
                    )
                )
                return FAILED
            undone.append(n)
        self.runner.reporter.post(
            Post(
                "rollback_all_done",
                f"Rollback of every applied phase complete {templates.OK_MARK}",
                [
                    f"Rolled back newest first: {', '.join(f'phase {m}' for m in undone)}",
                    "Each phase's schema proof held (see each phase's post).",
                    *([before_text(self.before).capitalize()] if self.before else []),
                ],
                run_id=self.runner.run_id,
                final=True,
            )
        )
        return OK


def nothing_to_undo(runner: PhaseRunner, n: int) -> int:
    """Phase `n` left nothing behind (see `left_nothing`): it is marked rolled back, its
    rollback file not run."""
    store, actor, run_id = runner.core.store, runner.actor, runner.run_id
    store.transition(
        run_id,
        Status.ROLLING_BACK,
        actor=actor,
        action=f"rollback phase {n} start",
        phase=n,
        phase_status=PhaseStatus.ROLLING_BACK,
    )
    why = "its atomic step failed and its transaction was rolled back: nothing of it was applied"
    store.transition(
        run_id,
        Status.ROLLED_BACK,
        actor=actor,
        action=f"rollback phase {n}",
        phase=n,
        phase_status=PhaseStatus.ROLLED_BACK,
        fields={"result": without_phase(store.get_existing(run_id).result, n)},
        evidence={"not_run": why},
    )
    runner.reporter.post(
        Post("rollback_done", f"Phase {n}: nothing to undo, rollback file not run", [why], run_id=run_id)
    )
    return OK


def foreseen(run, n: int) -> str:
    """Whether the pre-flight rehearsal showed the TPM that phase `n`'s rollback leaves a difference."""
    rollbacks = ((run.preflight or {}).get("rehearsal") or {}).get("rollbacks") or [] if run else []
    if any(r.get("phase") == n and r.get("status") == "differs" for r in rollbacks):
        return "the rehearsal showed a difference for this rollback before the approval"
    return "⚠ the rehearsal did NOT show this difference (it appeared only in this database)"


class PhaseRollback:
    def __init__(self, runner: PhaseRunner, phase):
        self.runner = runner
        self.core = runner.core
        self.phase = phase
        self.dsn = runner.dsn
        self.diff: list[str] = []  # the schema lines the proof found different (not accepted before)

    def execute(self) -> int:
        n, rb, store = self.phase.number, self.core.runbook, self.core.store
        store.transition(
            self.runner.run_id,
            Status.ROLLING_BACK,
            actor=self.runner.actor,
            action=f"rollback phase {n} start",
            phase=n,
            phase_status=PhaseStatus.ROLLING_BACK,
        )
        self.runner.reporter.post(
            Post(
                "rollback_started",
                f"Rollback of phase {n} started: {self.undo}",
                [f"by <@{self.runner.actor}>"],
                run_id=self.runner.run_id,
            )
        )
        started = clock.monotonic()
        before = facts.row_counts(self.dsn)
        recorded = self._versions_table() and rb.version in self._versions()
        files = (
            [(self.phase.rollback, None, self._migrations())]
            if self.phase.rollback
            else [
                (s.revert, s.id, [self.runner.ledger.entry(s, self.runner.actor)] if s.migration else [])
                for s in self._applied_steps
            ]
        )
        for file, step_id, entries in files:  # each with its ledger rows' removal, in its own transaction
            try:
                result = self.runner.executor.run_file(
                    rb.file_path(file),
                    name=file,
                    lock_timeout=rb.defaults.lock_timeout,
                    statement_timeout=rb.defaults.statement_timeout,
                    lock_retries=rb.defaults.lock_retries,
                    retry_backoff=rb.defaults.retry_backoff,
                    approved_sha256=self.runner.approved_sha256(file),
                    team_ledger=self._ledger_removal(entries, file),
                )
            except FileChanged as changed:  # not the approved rollback: nothing of it ran
                return self._failed(str(changed), started)
            self.runner.reporter.post(
                templates.step_result(f"revert {step_id}" if step_id else f"rollback {n}", result)
            )
            if not result.ok:
                return self._failed(f"{file} failed: {self.runner._error_text(result)}", started)
            if step_id:
                self._forget_step(step_id)
        # Who removed the version matters to the proof: read it before the bot removes it too.
        left_by_file = self._versions_table() and rb.version in self._versions()
        if self._versions_table():
            ledger.remove_version(
                self.dsn,
                rb.version,
                table=version_table(self.runner.ledger).table,
                column=version_table(self.runner.ledger).column,
            )
        lines, proven = self._proof(before, recorded, left_by_file)
        recovery = clock.monotonic() - started
        if not proven:
            return self._failed(
                "the rollback ran but the database is not in the expected state", started, lines
            )
        steps = without_phase(store.get_existing(self.runner.run_id).result, n)
        closed = store.transition(
            self.runner.run_id,
            Status.ROLLED_BACK,
            actor=self.runner.actor,
            action=f"rollback phase {n}",
            phase=n,
            phase_status=PhaseStatus.ROLLED_BACK,
            fields={"result": steps},
            evidence={"recovery_seconds": round(recovery, 3), "proof": lines},
        )
        recovery = templates.stored_duration(closed, n, recovery)  # the number the card and status show
        self.core.schedule.run_undone(self.runner.run_id)  # post-execution follow-ups no longer apply
        self.runner.reporter.post(
            Post(
                "rollback_done",
                f"Rollback of phase {n} complete {templates.OK_MARK}",
                [f"Recovery time: {templates.seconds(recovery)}", *lines],
                run_id=self.runner.run_id,
            )
        )
        return OK

    def _versions_table(self) -> bool:
        """The runbook's version lives in a `table` ledger (006's schema_migrations)."""
        return self.core.runbook.ledger.kind == "table"

    def _versions(self) -> list[str]:
        return ledger.applied_versions(
            self.dsn,
            table=version_table(self.runner.ledger).table,
            column=version_table(self.runner.ledger).column,
        )

    @property
    def undo(self) -> str:
        """What undoes the phase: its rollback file, or the reverts of the steps this run applied."""
        return (
            self.phase.rollback or ", ".join(s.revert for s in self._applied_steps) or "nothing of it applied"
        )

    @cached_property
    def _applied_steps(self) -> list:
        """Steps with their own revert that this run committed, newest first (read once, before
        any is reverted): a phase stopped part-way undoes its committed steps only."""
        done = (self.core.store.get_existing(self.runner.run_id).result or {}).get("steps") or {}
        return [s for s in self.phase.reverts if done.get(s.id, {}).get("ok")]

    def _forget_step(self, step_id: str) -> None:
        """A reverted step no longer counts as applied: a rollback retried after a later revert
        failed does not revert it twice."""
        result = dict(self.core.store.get_existing(self.runner.run_id).result or {})
        result["steps"] = {k: v for k, v in (result.get("steps") or {}).items() if k != step_id}
        self.core.store.update_record(
            self.runner.run_id,
            fields={"result": result},
            actor=self.runner.actor,
            action=f"step {step_id} reverted",
            expect=(Status.ROLLING_BACK,),
            evidence={"phase": self.phase.number, "step": step_id},
        )

    def _migrations(self) -> list:
        """The phase's migrations the ledger tracks, newest first (the order they are undone in)."""
        steps = self.phase.steps if self.phase.rollback else self._applied_steps
        return [
            self.runner.ledger.entry(s, self.runner.actor)
            for s in sorted(steps, key=self.phase.steps.index, reverse=True)
            if s.migration
        ]

    def _ledger_removal(self, entries: list, file: str):
        """The ledger's removal statements, run in `file`'s own transaction, after what the tool
        commits first (golang-migrate: the previous version, dirty)."""
        if not entries:
            return None
        team = self.runner.ledger
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            for entry in entries:
                team.before_remove(conn, entry)
        return lambda duration_ms: [q for e in entries for q in team.remove(e, file, duration_ms)]

    def _ledger_line(self) -> tuple[str, bool]:
        team, entries = self.runner.ledger, self._migrations()
        shown, _problem = ledgers.applied(self.dsn, self.core.runbook)
        left = [e.migration for e in entries if e.migration in shown]
        names = ", ".join(e.migration for e in entries)
        return (
            f"{templates.mark(not left)} {team.label}: {names} "
            + ("no longer applied" if not left else f"STILL APPLIED ({', '.join(left)})"),
            not left,
        )

    def _proof(self, before: dict[str, int], recorded: bool, left_by_file: bool) -> tuple[list[str], bool]:
        n = self.phase.number
        expected_path = self.runner.snapshot_path(n - 1 if n > 1 else 0)
        lines, proven = [], True
        if Path(expected_path).exists():
            expected = Path(expected_path).read_text(encoding="utf-8")
            every = schema.difference(expected, schema.current_like(expected, self.dsn), limit=100_000)
            accepted = set(
                (self.core.store.get_existing(self.runner.run_id).result or {}).get(ACCEPTED_DIFF, [])
            )
            diff = self.diff = [d for d in every if d not in accepted]
            label = "the pre-migration schema" if n == 1 else f"the schema after phase {n - 1}"
            lines.append(
                f"{templates.mark(not diff)} Schema equals {label} ({schema.method(expected)})"
                + (
                    f": {len(diff)} lines differ"
                    if diff
                    else f", but for {len(every)} lines accepted with a newer phase's rollback (`rollback accept`)"
                    if every
                    else ""
                )
            )
            lines += [f"    {d}" for d in diff[:10]]
            proven &= not diff
        else:
            lines.append(f"{templates.FAIL_MARK} Schema not compared: no snapshot at {expected_path}")
            proven = False
        if self._versions_table():
            versions = self._versions()
            gone = self.core.runbook.version not in versions
            who = (
                "it was not recorded"
                if not recorded
                else "the rollback file left it; the bot removed it"
                if left_by_file
                else f"removed by {self.undo}"
            )
            lines.append(
                f"{templates.mark(gone)} {version_table(self.runner.ledger).table}: latest {max(versions) if versions else 'none'}"
                f" ({self.core.runbook.version} {'absent' if gone else 'STILL PRESENT'}; {who})"
            )
            proven &= gone
        if self._migrations():
            text, gone = self._ledger_line()
            lines.append(text)
            proven &= gone
        after = facts.row_counts(self.dsn)
        kept = [t for t in before if t in after]
        ledger_tables = {
            "public.schema_migrations",
            *self.runner.ledger.tables,
        }  # the ledger's rows change by design
        changed = [t for t in kept if before[t] != after[t] and t not in ledger_tables]
        dropped = [f"{t} ({before[t]} rows)" for t in before if t not in after]
        if changed:
            lines.append(f"{templates.FAIL_MARK} Data loss: row counts changed in {', '.join(changed)}")
            proven = False
        else:
            lines.append(
                f"{templates.OK_MARK} Data loss: none — row counts of {len(kept)} surviving tables unchanged (checked)"
            )
        if dropped:
            lines.append(f"Dropped with the rollback (created by this migration): {', '.join(dropped)}")
        return lines, proven

    def _failed(self, reason: str, started: float, lines: list[str] | None = None) -> int:
        """The run is FAILED, not rolled back. When the file ran and only its proof failed
        (`lines`), the difference is recorded with the phase: the TPM may `rollback accept` it."""
        state = self.runner._database_status(None)
        fields, error, action = (
            None,
            None,
            "Investigate; restore from backup may be needed (`rollback restore`)",
        )
        if lines is not None:
            result = dict(self.core.store.get_existing(self.runner.run_id).result or {})
            result["rollback_difference"] = {
                "phase": self.phase.number,
                "file": self.undo,
                "lines": lines,
                "diff": self.diff,
            }
            fields, error = {"result": result}, ROLLBACK_DIFFERENCE
            action = (
                f"Decision needed (TPM): {foreseen(self.core.store.get(self.runner.run_id), self.phase.number)}; "
                "`rollback accept` records this difference and moves on, "
                "or `rollback restore` returns to the verified backup"
            )
        self.core.store.transition(
            self.runner.run_id,
            Status.FAILED,
            actor=self.runner.actor,
            action=f"rollback phase {self.phase.number} failed",
            phase=self.phase.number,
            phase_status=PhaseStatus.FAILED,
            outcome="failed",
            fields=fields,
            error=error,
            evidence={"reason": reason, **({"proof": lines} if lines is not None else {})},
        )
        run = self.core.store.get_existing(self.runner.run_id)
        post = templates.failure(
            self.core.runbook,
            self.runner.run_id,
            failed_phase=f"Rollback of phase {self.phase.number} ({self.undo})",
            error=reason,
            rollback_status="Failed",
            database_status=state,
            action_required=action,
            backup=(run.preflight or {}).get("backup"),
            roster=self.core.roster,
        )
        post.lines = (lines or []) + post.lines
        self.runner.reporter.post(post)
        return FAILED
