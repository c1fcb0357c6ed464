"""The verification phase (or, for a runbook that declares none, the final checks) and the
suites (verify scripts run through psql, output read) that phases and steps name.

Part of the PhaseRunner (workflows/phases.py), as a mixin: it reads the runner's run,
runbook, reporter and failure paths. Success ends here: the version in the ledger, the
success template, and the follow-ups handed to the scheduling interface (`core.schedule`).
"""

from __future__ import annotations

from core import clock
from engine.verify import Evidence, run_checks, run_smoke, run_suite
from runbook.model import Phase, Step, Suite
from state.machine import PhaseStatus, Status
from workflows import gates, templates
from workflows.phasehost import PhaseHost

FINAL_CHECKS = "final"  # evidence key of the final checks of a runbook without a verification phase


class Verification(PhaseHost):
    """The verification paths of PhaseRunner."""

    def verify_phase(self, phase: Phase | None) -> bool:
        """The verification phase; for a runbook that declares none (`phase` None), the final
        checks alone: every migration phase's checks again and the quality gates. Either ends
        with the version in the ledger and the success template."""
        store = self.core.store
        number = phase.number if phase else None
        store.transition(
            self.run_id,
            Status.VERIFYING,
            actor=self.actor,
            action="verification start",
            phase=number,
            phase_status=PhaseStatus.RUNNING if phase else None,
        )
        if phase:
            self.reporter.post(
                templates.phase_started(self.rb, phase, self.run_id, self.actor, self.core.roster)
            )
        started = clock.monotonic()
        evidence = []
        for migration in self.rb.migration_phases:
            evidence += run_checks(self.dsn, migration.checks)
        suites = self._run_suites(phase.suites if phase else ())
        smoke = [run_smoke(self.core.settings.deployment_url, s) for s in (phase.smoke if phase else ())]
        checks_and_smoke = evidence + smoke
        duration = clock.monotonic() - started
        suites_ok = all(s.ok for s in suites)
        if not (suites_ok and all(e.ok for e in checks_and_smoke)):
            return self._verification_failed(phase, checks_and_smoke, suites, duration)
        run = store.get(self.run_id)
        gate_results = gates.quality_gates(self.core, run, suites)
        if not all(g.ok for g in gate_results):
            return self._verification_failed(phase, checks_and_smoke + gate_results, suites, duration)
        self._record_runbook_version()
        fields = self._closing_fields(checks_and_smoke, str(number) if phase else FINAL_CHECKS)
        fields["result"]["gates"] = [
            {"name": g.name, "observed": g.observed, "expected": g.expected, "ok": g.ok} for g in gate_results
        ]
        closed = store.transition(
            self.run_id,
            Status.SUCCEEDED,
            actor=self.actor,
            action="verification passed",
            phase=number,
            phase_status=PhaseStatus.SUCCEEDED if phase else None,
            fields=fields,
            evidence={
                "gates": [f"{g.name}: {g.observed}" for g in gate_results],
                "duration": round(duration, 3),
            },
        )
        if phase:
            duration = templates.stored_duration(closed, phase.number, duration)  # the one number everywhere
            self.reporter.post(
                templates.phase_complete(
                    phase, self.run_id, duration, checks_and_smoke, None, self.core.roster
                )
            )
        self.reporter.post(
            templates.success(
                self.rb,
                self.run_id,
                checks_and_smoke,
                gate_results,
                self._backup(run),
                self.core.roster,
                steps=(closed.result or {}).get("steps"),
            )
        )
        followups = self.core.schedule.succeeded(self.run_id)
        if followups:
            self.reporter.post(
                templates.Post(
                    "followups_scheduled",
                    "Post-execution follow-ups scheduled",
                    [*followups, "(they run in the bot's `serve` process)"],
                    run_id=self.run_id,
                )
            )
        return True

    def _verify_step(self, step: Step) -> Evidence | None:
        """The step's own verify script, right after it (None: it names none)."""
        if not step.verify:
            return None
        return _as_evidence(
            self._run_suites([Suite(name=f"verify {step.migration or step.id}", file=step.verify)])[0]
        )

    def _run_suites(self, suites) -> list:
        """Run the suites (through psql, output read), posting each result."""
        results = [
            run_suite(
                self.dsn,
                self.rb.file_path(s.file),
                s,
                inputs=self.inputs,
                secrets=self.secrets,
                approved_sha256=self.approved_sha256(s.file),
            )
            for s in suites
        ]
        for suite in results:
            self.reporter.post(
                templates.Post(
                    "suite_result",
                    f"{templates.mark(suite.ok)} Suite {suite.name}: {suite.reason}",
                    templates.evidence_lines(suite.evidence),
                    detail=suite.output[-4000:] or None,
                    run_id=self.run_id,
                )
            )
        return results

    def _verification_failed(self, phase: Phase | None, evidence, suites, duration: float) -> bool:
        failing = [e for e in evidence if not e.ok] + [s for s in suites if not s.ok]
        names = "; ".join(
            getattr(f, "reason", None) and f"{f.name}: {f.reason}" or f"{f.name}: observed {f.observed}"
            for f in failing
        )
        state = self._database_status(None)
        self.core.store.transition(
            self.run_id,
            Status.FAILED,
            actor=self.actor,
            action="verification failed",
            phase=phase.number if phase else None,
            phase_status=PhaseStatus.FAILED if phase else None,
            outcome="failed",
            fields=self._closing_fields(evidence, str(phase.number) if phase else FINAL_CHECKS),
            evidence={"failing": names},
        )
        if phase:
            self.reporter.post(
                templates.phase_failed(
                    phase,
                    self.run_id,
                    self._stored_duration(phase, duration),
                    "verification failed",
                    evidence,
                )
            )
        self.reporter.post(
            self._failure_post(
                phase,
                None,
                names,
                "Not run — verification does not change the database",
                state,
                "Investigation needed: fix forward, or `rollback phase <n>` newest first",
                evidence=[e for e in evidence if not e.ok],
            )
        )
        return False


def _as_evidence(suite) -> Evidence:
    """A suite's outcome as one line of a phase's evidence."""
    return Evidence(
        f"suite {suite.name}", f"{suite.file} through psql, output read", suite.reason, "passed", suite.ok
    )
