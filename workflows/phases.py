"""Runs a run's phases: each step's file through the executor, the team's ledger, the phase's
checks, its schema snapshot, and the facts about which known state the database is in.

The command verbs decide *whether* something may run; the PhaseRunner runs it, in the
background `work` of an Outcome, holding the run lock, and reports through a Reporter.
Every status line comes from a result: executor FileResults, verification Evidence,
schema snapshots compared with pg_dump output. What a failure does is workflows/failures.py,
the verification phase workflows/verification.py (both mixed into PhaseRunner).
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import psycopg

from core import clock
from engine import ledger, ledgers, schema
from engine.executor import Executor, FileChanged, FileResult, LedgerRecord, StatementError
from engine.ledgers import version_table
from engine.verify import run_checks, run_smoke
from preflight.inputs import step_inputs
from runbook.model import Phase, Step
from state.approval import why_plan_not_approved
from state.machine import IllegalTransition, PhaseStatus, Status
from workflows import facts, templates
from workflows.abort import AbortWatch, lost_connection
from workflows.core import Core
from workflows.failures import PhaseFailures
from workflows.reporting import FAILED, OK, Progress, Reporter
from workflows.snapshots import PhaseSnapshots
from workflows.verification import Verification, _as_evidence

PROGRESS_INTERVAL = 0.5  # seconds between progress reports (adapters may coalesce further)


class PhaseRunner(PhaseFailures, Verification):
    """Executes phases of one run as one actor, reporting as it goes."""

    def __init__(self, core: Core, run_id: str, actor: str, reporter: Reporter):
        self.core = core
        self.rb = core.runbook
        self.run_id = run_id
        self.actor = actor
        self.reporter = reporter
        self.dsn = core.settings.required_database_url()  # Core.from_settings required it
        self.inputs = step_inputs(core.settings, self.rb)
        secret_inputs = [v for name, v in self.inputs.items() if self.rb.inputs[name].secret]
        self.secrets = (*core.settings.secrets(), *secret_inputs)
        self.executor = Executor(self.dsn, secrets=self.secrets, keep_connection=True)  # closed by attached()
        self.ledger = ledgers.for_runbook(self.rb)
        self._last_progress = 0.0
        self._steps: dict | None = (
            None  # step outcomes of the phase in progress, saved by its closing transition
        )
        self._snapshots = PhaseSnapshots(self.dsn, self.rb.defaults.lock_timeout)
        self._ledger_rows: list[dict] | None = None  # migrate_bot.applied_files, read once (below)

    # ------------------------------------------------------------ entry points

    @contextmanager
    def attached(self):
        """While work runs: `abort` from this process (the executor registry) or any other
        (AbortWatch publishes the backend pid and watches the run's abort flag) reaches it."""
        with self.core.executors_guard:
            self.core.executors[self.run_id] = self.executor
        try:
            with AbortWatch(self.core, self.run_id, self.executor):
                yield self
        finally:
            with self.core.executors_guard:
                self.core.executors.pop(self.run_id, None)
            self.executor.close()

    def run_all(self, numbers: list[int], verify: bool) -> int:
        """Phases `numbers` in order, then verification when `verify`; stops at the first failure."""
        unapproved = why_plan_not_approved(
            self.rb, (self.core.store.get_existing(self.run_id).approval or {})
        )
        if unapproved:  # the plan was reloaded between the command's check and this work: run nothing
            self.reporter.post(
                templates.Post(
                    "error",
                    "Not run: the plan is not the approved one",
                    [unapproved],
                    run_id=self.run_id,
                    final=True,
                )
            )
            return FAILED
        try:
            for k, number in enumerate(numbers):
                if k and self._stopped_by_abort(numbers[k:], verify):
                    return FAILED
                phase = self.rb.phase(number)
                assert phase is not None  # `numbers` are the runbook's phases
                ok = self.verify_phase(phase) if phase.is_verification else self.migrate_phase(phase)
                if not ok:
                    return FAILED
            if verify and numbers and self._stopped_by_abort([], verify):
                return FAILED
            if verify and not self.verify_phase(self.rb.verification_phase):
                return FAILED
            return OK
        finally:
            self._snapshots.finish()  # the last phase's snapshot is on disk before the run lock is released

    def _stopped_by_abort(self, rest: list[int], verify: bool) -> bool:
        """An abort that arrived after the last statement of the phase before (during its checks)
        found nothing to cancel: it still means nothing further runs. The run rests where that
        phase left it."""
        if not self._abort_requested():
            return False
        who = (self.core.store.get_existing(self.run_id).meta or {}).get("abort_requested")
        why = f"Abort requested by <@{who}>" if who else "This process lost the run lock"
        not_started = [f"phase {n}" for n in rest] + (["verification"] if verify else [])
        self.core.store.record(
            "run stopped by abort",
            actor=self.actor,
            outcome="aborted",
            run_id=self.run_id,
            evidence={"requested_by": who, "not_started": not_started},
        )
        self.reporter.post(
            templates.Post(
                "error",
                f"Run stopped: {', '.join(not_started)} not started",
                [
                    f"{why} after the last statement of the phase before had run: that phase completed (see above).",
                    "`/migrate status` shows where the run rests.",
                ],
                run_id=self.run_id,
                final=True,
            )
        )
        return True

    # ------------------------------------------------------------ migration phases

    def migrate_phase(self, phase: Phase) -> bool:
        store = self.core.store
        run = store.transition(
            self.run_id,
            Status.RUNNING,
            actor=self.actor,
            action=f"phase {phase.number} start",
            phase=phase.number,
            phase_status=PhaseStatus.RUNNING,
        )
        self.reporter.post(templates.phase_started(self.rb, phase, self.run_id, self.actor, self.core.roster))
        started = clock.monotonic()
        done = dict((run.result or {}).get("steps", {}))
        shown = self._ledger_shows(phase)
        committed = self._committed_in_this_run(phase, run)
        for step in phase.steps:
            if step.id in committed and not done.get(step.id, {}).get(
                "ok"
            ):  # a crash lost its outcome, not its commit
                done[step.id] = {
                    "ok": True,
                    "file": step.file,
                    "duration": committed[step.id]["duration_ms"] / 1000,
                    "attempts": 1,
                    "error": None,
                }
                self.reporter.post(
                    templates.Post(
                        "step_skipped",
                        f"Step {step.id} {step.file}: committed earlier in this run "
                        "(migrate_bot.applied_files, approved sha256), skipped",
                        run_id=self.run_id,
                    )
                )
                continue
            if step.migration in shown and not done.get(step.id, {}).get("ok"):
                self.reporter.post(
                    templates.Post(
                        "step_skipped",
                        f"Step {step.id} {step.file}: {self.ledger.label} shows "
                        f"{step.migration} applied, skipped",
                        run_id=self.run_id,
                    )
                )
                continue
            if done.get(step.id, {}).get("ok"):
                self.reporter.post(
                    templates.Post(
                        "step_skipped",
                        f"Step {step.id} {step.file}: already applied in this run, skipped",
                        run_id=self.run_id,
                    )
                )
                continue
            if self._abort_requested():
                return self._aborted(phase, step, None, started)
            before = self._before_step()
            step_started = clock.now()
            earlier = any(done.get(s.id, {}).get("ok") for s in phase.steps[: phase.steps.index(step)])
            try:
                result = self._run_step(phase, step, started)
            except FileChanged as changed:  # nothing of it ran: the run stops before it
                self._steps = self._with_steps(done)
                return self._file_refused(phase, step, changed, started)
            done[step.id] = {
                "ok": result.ok,
                "file": result.file,
                "duration": result.duration,
                "attempts": result.attempts,
                "error": self._error_text(result),
                "atomic": result.atomic,
                "lock_held": result.lock_held,
            }
            self.reporter.post(templates.step_result(step.id, result))
            if result.ok:
                self._save_steps(phase, step, done)
                verified = self._verify_step(step)
                if (
                    verified is not None and not verified.ok
                ):  # the next step does not run on an unverified one
                    self._steps = self._with_steps(done)
                    return self._checks_failed(phase, [verified], clock.monotonic() - started)
            if not result.ok:
                self._steps = self._with_steps(done)
                if result.cancelled or self._abort_requested():
                    return self._aborted(phase, step, result, started, before, step_started)
                return self._step_failed(phase, step, result, started, before, earlier, step_started)
        self._steps = self._with_steps(done)
        # Everything the phase names runs right after it: its checks, its suites (a sqitch
        # verify script), its smoke tests; any failing one fails the phase.
        evidence = (
            run_checks(self.dsn, phase.checks)
            + [_as_evidence(s) for s in self._run_suites(phase.suites)]
            + [run_smoke(self.core.settings.deployment_url, s) for s in phase.smoke]
        )
        duration = clock.monotonic() - started
        if not all(e.ok for e in evidence):
            return self._checks_failed(phase, evidence, duration)
        snapshot_problem = self._write_snapshot(phase)
        closed = store.transition(
            self.run_id,
            Status.PHASE_DONE,
            actor=self.actor,
            action=f"phase {phase.number} complete",
            phase=phase.number,
            phase_status=PhaseStatus.SUCCEEDED,
            fields=self._closing_fields(evidence, str(phase.number)),
            evidence={
                "duration": round(duration, 3),
                "checks": [e.name for e in evidence],
                **({"snapshot": snapshot_problem} if snapshot_problem else {}),
            },
        )
        duration = templates.stored_duration(closed, phase.number, duration)  # the one number everywhere
        self.reporter.post(
            templates.phase_complete(
                phase, self.run_id, duration, evidence, self._next_phase(phase), self.core.roster
            )
        )
        if snapshot_problem:
            self.reporter.post(
                templates.Post(
                    "warning",
                    f"Phase {phase.number}: applied and checked, but its schema "
                    "snapshot could not be written",
                    [
                        snapshot_problem,
                        "The phase's files committed and its checks passed; without the snapshot, "
                        "later comparisons with the schema after this phase are not possible.",
                        "Free space in BACKUP_DIR before going on.",
                    ],
                    run_id=self.run_id,
                )
            )
        return True

    def _write_snapshot(self, phase: Phase) -> str | None:
        """The schema after the phase, for later comparisons; the problem when it cannot be
        written (a full BACKUP_DIR): the phase's files have committed by now, so that is a
        warning about the evidence, never a failed phase."""
        path = self.snapshot_path(phase.number)
        try:
            self._snapshots.start(path)  # the file is created now, the dump written in the background
        except OSError as exc:
            return self.core.redact(f"{path}: {exc.strerror or exc}")
        return None

    def _committed_in_this_run(self, phase: Phase, run) -> dict[str, dict]:
        """Steps of `phase` the bot's ledger shows committed by this run, with the approved
        sha256, since the phase was last undone: step id -> ledger row. The ledger row is
        written in the step's own transaction, so it is the truth when a crash (or an internal
        error) lost the step's outcome before the run state recorded it."""
        undone_at = ((run.result or {}).get("undone_at") or {}).get(str(phase.number))
        since = datetime.fromisoformat(undone_at) if undone_at else None
        rows = {}
        # Read once per runner: the rows that matter were written before it started (a crash's);
        # the steps it commits itself it knows, and it runs each phase once.
        if self._ledger_rows is None:
            self._ledger_rows = ledger.applied_files(self.dsn, self.rb.id)
        for row in self._ledger_rows:
            if row["run_id"] != self.run_id or row["phase"] != phase.number:
                continue
            step = next((s for s in phase.steps if s.id == row["step"]), None)
            if (
                step
                and row["sha256"] == self.approved_sha256(step.file)
                and (since is None or row["started_at"] > since)
            ):
                rows[step.id] = row
        return rows

    def _save_steps(self, phase: Phase, step: Step, done: dict) -> None:
        """The run state learns of each step as it commits, not only when the phase closes."""
        try:
            self.core.store.update_record(
                self.run_id,
                fields={"result": self._with_steps(done)},
                actor=self.actor,
                action=f"step {step.id} committed",
                expect=(Status.RUNNING,),
                evidence={"phase": phase.number, "step": step.id},
            )
        except IllegalTransition:  # moved on (an abort): the ledger still has the step
            pass

    def _run_step(self, phase: Phase, step: Step, started: float) -> FileResult:
        record = LedgerRecord(
            runbook=self.rb.id, run_id=self.run_id, phase=phase.number, step=step.id, actor=self.actor
        )

        def progress(k: int, n: int, _statement) -> None:
            now = clock.monotonic()
            if k in (1, n) or now - self._last_progress >= PROGRESS_INTERVAL:
                self._last_progress = now
                self.reporter.progress(
                    Progress(
                        self.run_id,
                        phase.number,
                        phase.name,
                        step.id,
                        step.file,
                        k,
                        n,
                        now - started,
                        phase.estimate,
                        Status.RUNNING.value,
                    )
                )

        t0 = clock.monotonic()
        try:
            refused = self._ledger_refusal(step)
            if refused is not None:
                return refused
            team = self._ledger_before(step)
            result = self.executor.run_step(
                self.rb,
                step,
                inputs=self.inputs,
                record=record,
                on_progress=progress,
                team_ledger=team,
                approved_sha256=self.approved_sha256(step.file),
                on_wait=lambda b: self.reporter.post(templates.step_waiting(step, b, self.run_id)),
            )
        except (
            psycopg.OperationalError
        ) as exc:  # the connection died mid-file: a step failure, with its real cause
            return lost_connection(self.rb, step, exc, clock.monotonic() - t0, self.core.redact)
        if not result.ok and step.migration:
            self._ledger_failed(step)
        return result

    # ------------------------------------------------------------ the team's ledger (engine.ledgers)

    def _ledger_shows(self, phase: Phase) -> set[str]:
        """Migrations of `phase` the runbook's ledger shows applied: `run` skips them."""
        if not any(s.migration for s in phase.steps):
            return set()
        shown, _problem = ledgers.applied(self.dsn, self.rb)
        return shown

    def _ledger_refusal(self, step: Step) -> FileResult | None:
        """A ledger that forbids running (golang-migrate dirty) fails the step with the reason,
        before anything runs; None when it may run."""
        if not step.migration:
            return None
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            problem = self.ledger.problem(conn)
        if not problem:
            return None
        error = StatementError(step.file, 0, "", None, f"not run: {problem}")
        return FileResult(step.file, "", False, 0, 0, 0.0, [], 0, [], error, False, True)

    def _ledger_before(self, step: Step):
        """What the ledger's tool commits before a migration (golang-migrate: dirty), then the
        statements that record it in the file's own transaction (None: the step names no migration)."""
        if not step.migration:
            return None
        entry = self.ledger.entry(step, self.actor)
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            self.ledger.before(conn, entry)
        return lambda duration_ms: self.ledger.record(entry, duration_ms)

    def _ledger_failed(self, step: Step) -> None:
        """What the tool writes after a failed migration (sqitch: a `fail` event)."""
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                self.ledger.mark_failed(conn, self.ledger.entry(step, self.actor))
        except psycopg.Error:
            pass  # the database that failed the step may be unreachable: the failure template says what is known

    def _record_runbook_version(self) -> None:
        """A `table` ledger (006's schema_migrations) records the runbook's version once the run succeeded."""
        if self.rb.ledger.kind == "table":
            table = version_table(self.ledger)
            ledger.record_version(
                self.dsn, self.rb.version, self.rb.summary, table=table.table, column=table.column
            )

    def approved_sha256(self, name: str) -> str:
        """The sha256 the approval binds `name` to ("" when the approval does not name it):
        the executor runs the file only when the bytes it reads hash to this."""
        approval = self.core.store.fields(self.run_id, "approval").get("approval")
        return str((approval or {}).get("checksums", {}).get(name) or "")

    def _stored_duration(self, phase: Phase, measured: float) -> float:
        """The phase's duration as its closing transition stored it: the number status, the card,
        the report and App Home show (`measured` when none is stored)."""
        return templates.stored_duration(self.core.store.get(self.run_id), phase.number, measured)

    def _closing_fields(self, evidence=None, key: str | None = None) -> dict:
        """Fields for a phase's closing transition: step outcomes and the evidence, for status and report."""
        result = (
            self._steps
            if self._steps is not None
            else dict(self.core.store.get_existing(self.run_id).result or {})
        )
        if evidence is not None and key is not None:
            result.setdefault("evidence", {})[key] = [
                {"name": e.name, "how": e.how, "observed": e.observed, "expected": e.expected, "ok": e.ok}
                for e in evidence
            ]
        return {"result": result}

    def _with_steps(self, done: dict) -> dict:
        """The run's result record with this phase's step outcomes, written by the next transition."""
        result = dict(self.core.store.fields(self.run_id, "result").get("result") or {})
        result["steps"] = done
        return result

    # ------------------------------------------------------------ facts

    def snapshot_dir(self) -> Path:
        return facts.snapshot_dir(self.core, self.run_id)

    def snapshot_path(self, phase_number: int) -> Path:
        """Schema after phase n of this run (phase 0: the pre-migration snapshot taken at preflight)."""
        return facts.snapshot_path(self.core, self.run_id, phase_number)

    def known_states(self) -> dict[str, Path]:
        return facts.known_states(self.core, self.run_id)

    def _before_step(self) -> tuple | None:
        """The state before a step: the previous phase's snapshot when this runner just wrote
        it (nothing ran in between), else a fresh fingerprint."""
        carried = self._snapshots.wait()
        return carried if carried is not None else self._state_fingerprint()

    def _state_fingerprint(self) -> tuple | None:
        """Schema and row counts, to prove "unchanged" later; None when it could not be read in
        time (another session's lock): the bot does not queue behind production to look."""
        wait = self.rb.defaults.lock_timeout
        try:
            return (
                schema.normalize(schema.snapshot(self.dsn, lock_wait=wait)),
                facts.row_counts(self.dsn, lock_timeout=wait),
            )
        except Exception:  # lock wait exceeded, database away: "unchanged" just cannot be claimed
            return None

    def _database_status(self, before: tuple | None) -> str:
        """A fresh check of which known state the database is in."""
        try:
            self._snapshots.wait()  # a snapshot still being written is one of the known states
            if before is not None:
                now = self._state_fingerprint()
                if now is not None and now == before:
                    return f"Unchanged — schema and row counts of {len(now[1])} tables equal to before the step (checked)"
            label = facts.matching_state(self.dsn, self.known_states())
        except Exception as exc:  # the database itself may be what failed
            return f"Unknown — could not check: {self.core.redact(str(exc))[:200]}"
        if label:
            return f"Healthy — matches {label} (schema compared)"
        return "Unknown — matches no known state (schema compared with the pre-migration and post-phase snapshots)"

    def _abort_requested(self) -> bool:
        if self._lock_lost():
            return True
        meta = self.core.store.meta(self.run_id)
        return bool(meta and meta.get("abort_requested"))

    def _lock_lost(self) -> bool:
        lost = self.core.lost_locks.get(self.run_id)
        return bool(lost and lost.is_set())

    def _error_text(self, result: FileResult | None) -> str | None:
        if result is None or result.error is None:
            return None if result is None or result.ok else ("cancelled" if result.cancelled else "failed")
        e = result.error
        return self.core.redact(
            f"{e.file}:{e.line}: {e.message}" + (f" (SQLSTATE {e.sqlstate})" if e.sqlstate else "")
        )

    def _next_phase(self, phase: Phase) -> Phase | None:
        later = [p for p in self.rb.phases if p.number > phase.number]
        return later[0] if later else None

    @staticmethod
    def _backup(run) -> dict | None:
        return (run.preflight or {}).get("backup") if run else None
