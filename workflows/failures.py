"""What a failed phase does and says: its step's failure policy (rollback file, retry, stop),
the database's state checked now, the run moved to FAILED / ABORTED, the failure template.

Part of the PhaseRunner (workflows/phases.py), as a mixin: these methods read the runner's
run, runbook, executor, ledger and reporter. The runner itself decides when a phase failed.
"""

from __future__ import annotations

import psycopg

from core import clock
from engine import ledger
from engine.executor import FileChanged, FileResult
from runbook.model import Phase, Step
from state.machine import PhaseStatus, Status
from workflows import templates
from workflows.phasehost import PhaseHost


class PhaseFailures(PhaseHost):
    """The failure paths of PhaseRunner: a failed step, a refused file, an abort, failed checks."""

    def _step_failed(
        self,
        phase: Phase,
        step: Step,
        result: FileResult,
        started: float,
        before: tuple | None,
        earlier: bool,
        step_started=None,
    ) -> bool:
        rollback_status, rolled_back = self._apply_policy(step, result, earlier)
        if rolled_back and self._steps is not None:  # the phase's applied steps were undone with it
            for undone in phase.steps:
                self._steps["steps"].pop(undone.id, None)
            mark_undone(self._steps, phase.number)
        state = self._database_status(before)
        if state.startswith("Unknown") and result.atomic and not rolled_back and step_started is not None:
            state = self._rolled_back_step_status(step, result, step_started, state)
        action = self._action_required(phase, step, rolled_back, state)
        if step.migration:
            entry = self.ledger.entry(step, self.actor)
            action += f". Ledger — {self.ledger.failure_help(entry) if result.atomic else self.ledger.partial_failure_help(entry)}"
        # A phase its rollback file undid is rolled back, not failed: older phases may then roll back too.
        self.core.store.transition(
            self.run_id,
            Status.FAILED,
            actor=self.actor,
            action=f"phase {phase.number} failed",
            phase=phase.number,
            outcome="failed",
            phase_status=PhaseStatus.ROLLED_BACK if rolled_back else PhaseStatus.FAILED,
            fields=self._closing_fields(),
            evidence={
                "step": step.id,
                "error": self._error_text(result),
                "rollback": rollback_status,
                "database": state,
            },
        )
        self.reporter.post(
            templates.phase_failed(
                phase,
                self.run_id,
                self._stored_duration(phase, clock.monotonic() - started),
                self._error_text(result) or "failed",  # (a failed result always has a text)
            )
        )
        self.reporter.post(
            self._failure_post(
                phase, step, self._error_text(result) or "failed", rollback_status, state, action
            )
        )
        return False

    def _rolled_back_step_status(self, step: Step, result: FileResult, step_started, unknown: str) -> str:
        """What is known when the schema could not be compared (the check waits behind the same
        lock that stalled the step, or the database is away): an atomic step whose ledger row,
        written in its own transaction, is absent did not commit — the database is unchanged by
        it, whatever the comparison could not show."""
        try:
            committed = ledger.step_committed(
                self.dsn,
                run_id=self.run_id,
                step=step.id,
                sha256=self.approved_sha256(step.file),
                since=step_started,
                timeout=self.rb.defaults.lock_timeout + 3,
            )
        except psycopg.Error:  # the ledger is unreadable too: nothing more is known
            return unknown
        if committed:
            return unknown
        reason = unknown.split(" — ", 1)[-1]
        return (
            f"Unchanged by step {step.id} — its transaction was rolled back (its ledger row, written in that "
            f"transaction, is absent); the schema could not be compared now ({reason})"
        )

    def _apply_policy(self, step: Step, result: FileResult, earlier: bool) -> tuple[str, bool]:
        """Carry out the step's failure policy; return (what the rollback status field says, rolled back?).

        A rollback file undoes the phase's objects by name: run when nothing was applied, it
        would drop what someone else created (a conflicting table that made the step fail). So
        it runs only when something of the phase may be in the database: an earlier step of the
        phase committed, or the failed file ran non-atomically."""
        tx_note = (
            "the file's transaction was rolled back"
            if result.atomic
            else "the file ran non-atomically: partial changes possible"
        )
        if step.on_failure == "rollback" and step.rollback and result.atomic and not earlier:
            return (
                f"Not needed — the file's transaction was rolled back and no earlier step of the phase was applied, "
                f"so {step.rollback} was not run (it would drop objects this run did not create)"
            ), False
        if step.on_failure == "rollback" and step.rollback:
            try:
                rb_result = self.executor.run_file(
                    self.rb.file_path(step.rollback),
                    name=step.rollback,
                    lock_timeout=self.rb.defaults.lock_timeout,
                    statement_timeout=self.rb.defaults.statement_timeout,
                    lock_retries=self.rb.defaults.lock_retries,
                    retry_backoff=self.rb.defaults.retry_backoff,
                    approved_sha256=self.approved_sha256(step.rollback),
                )
            except FileChanged as changed:
                return f"Not run — {changed}", False
            self.reporter.post(templates.step_result(f"rollback of {step.id}", rb_result))
            if rb_result.ok:
                return (
                    f"Complete — {step.rollback} ran in {templates.seconds(rb_result.duration)} ({tx_note})",
                    True,
                )
            return f"Failed — {step.rollback}: {self._error_text(rb_result)}", False
        if step.on_failure == "retry":
            return f"Not needed — {tx_note}; step {step.id} is safe to retry", False
        return f"Not run — policy is stop; {tx_note}", False

    def _file_refused(self, phase: Phase, step: Step, changed: FileChanged, started: float) -> bool:
        """A step's file is not the approved one: it did not run, the run stops before it."""
        error = f"{changed}"
        self.core.store.transition(
            self.run_id,
            Status.FAILED,
            actor=self.actor,
            action=f"phase {phase.number} refused",
            phase=phase.number,
            outcome="refused",
            phase_status=PhaseStatus.FAILED,
            fields=self._closing_fields(),
            evidence={"step": step.id, "error": error},
        )
        self.reporter.post(
            templates.phase_failed(
                phase, self.run_id, self._stored_duration(phase, clock.monotonic() - started), error
            )
        )
        self.reporter.post(
            self._failure_post(
                phase,
                step,
                error,
                f"Not needed — {step.file} did not run",
                f"Unchanged by step {step.id}: it did not run",
                f"Decision needed: restore the approved {step.file}, or a new pre-flight and approval for the new one "
                "(with phases applied: `rollback phase <n>` newest first, then `preflight`)",
            )
        )
        return False

    def _aborted(
        self,
        phase: Phase,
        step: Step,
        result: FileResult | None,
        started: float,
        before: tuple | None = None,
        step_started=None,
    ) -> bool:
        state = self._database_status(before) if before else self._database_status(None)
        if state.startswith("Unknown") and result is not None and result.atomic and step_started is not None:
            state = self._rolled_back_step_status(step, result, step_started, state)
        unchanged = state.startswith("Unchanged")
        rollback_status = (
            "Not needed — the transaction was rolled back"
            if unchanged
            else "Unknown — the database differs from its state before the step: see Database Status"
        )
        self.core.store.transition(
            self.run_id,
            Status.ABORTED,
            actor=self.actor,
            action=f"phase {phase.number} aborted",
            phase=phase.number,
            phase_status=PhaseStatus.FAILED,
            outcome="aborted",
            fields=self._closing_fields(),
            evidence={"step": step.id, "database": state},
        )
        error = self._error_text(result) if result else f"aborted before step {step.id}"
        why = "this process lost the run lock" if self._lock_lost() else "aborted by request"
        self.reporter.post(
            self._failure_post(
                phase,
                step,
                f"{why} ({error})",
                rollback_status,
                state,
                f"Decision needed: re-run the phase (`run phase {phase.number}`) or roll back applied phases",
            )
        )
        return False

    def _checks_failed(self, phase: Phase, evidence, duration: float) -> bool:
        failing = [e for e in evidence if not e.ok]
        state = self._database_status(None)
        self.core.store.transition(
            self.run_id,
            Status.FAILED,
            actor=self.actor,
            action=f"phase {phase.number} checks failed",
            phase=phase.number,
            phase_status=PhaseStatus.FAILED,
            outcome="failed",
            fields=self._closing_fields(evidence, str(phase.number)),
            evidence={"failing": [f"{e.name}: {e.observed}" for e in failing]},
        )
        self.reporter.post(
            templates.phase_failed(
                phase,
                self.run_id,
                self._stored_duration(phase, duration),
                "verification queries failed",
                evidence,
            )
        )
        self.reporter.post(
            self._failure_post(
                phase,
                None,
                "; ".join(f"{e.name}: observed {e.observed}, expected {e.expected}" for e in failing),
                "Not run — the files committed; their checks failed",
                state,
                f"Investigation needed: roll back with `rollback phase {phase.number}` or fix forward",
                evidence=evidence,
            )
        )
        return False

    def _failure_post(
        self,
        phase: Phase | None,
        step: Step | None,
        error: str,
        rollback_status: str,
        state: str,
        action: str,
        evidence=(),
    ):
        where = (
            f"Phase {phase.number} ({phase.name})"
            if phase
            else "Final checks (the runbook has no verification phase)"
        ) + (f", step {step.id} {step.file}" if step else "")
        run = self.core.store.get(self.run_id)
        return templates.failure(
            self.rb,
            self.run_id,
            failed_phase=where,
            error=error,
            rollback_status=rollback_status,
            database_status=state,
            action_required=action,
            backup=self._backup(run),
            roster=self.core.roster,
            evidence=evidence,
        )

    def _action_required(self, phase: Phase, step: Step, rolled_back: bool, state: str) -> str:
        if state.startswith("Unknown"):
            return "Restore from backup may be needed: investigate, then `rollback restore`"
        if step.on_failure == "retry":
            return f"Decision needed: fix the cause, then retry with `run phase {phase.number}` (step {step.id} is safe to retry)"
        if rolled_back:
            return f"Investigation needed: phase {phase.number} was rolled back; fix the cause, then `run phase {phase.number}`"
        return f"Investigation needed: fix the cause, then `run phase {phase.number}` or roll back"


def mark_undone(result: dict, phase_number: int) -> dict:
    """Note in a run's result record that `phase_number`'s steps were undone now: ledger rows of
    this run for that phase older than this no longer count as applied."""
    result.setdefault("undone_at", {})[str(phase_number)] = clock.now().isoformat()
    return result
