"""The report's communication plan as Post builders: every field filled from facts.

Pure functions: they take what happened (results, evidence, timings) and return `Post`s.
Nothing here invents a value; a field whose fact is unknown says "unknown".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from core.clock import hhmm
from core.roster import COORDINATOR, TPM, Roster
from preflight.lint import LintResult, human_size
from runbook.model import Phase, Runbook
from runbook.validate import validate_runbook
from workflows.reporting import Action, Post

OK_MARK, FAIL_MARK, WAIT_MARK = "✅", "❌", "⏳"
NOTICE_DIGEST_LINES = 12


def mark(ok: bool | None) -> str:
    return WAIT_MARK if ok is None else (OK_MARK if ok else FAIL_MARK)


def seconds(value: float | None) -> str:
    """Human duration: 0.42 s, 12.3 s, 3 min 05 s."""
    if value is None:
        return "unknown"
    if value < 60:
        return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"
    minutes, secs = divmod(int(round(value)), 60)
    return f"{minutes} min {secs:02d} s"


def stored_duration(run, number: int, measured: float) -> float:
    """The phase's duration as the run's record holds it (status, report and App Home read the
    same number), or `measured` when the record has none."""
    state = run.phases.get(number) if run is not None else None
    return state.duration if state is not None and state.duration is not None else measured


def versus_estimate(duration: float, estimate: float) -> str:
    return f"{seconds(duration)} vs estimate {seconds(estimate)}"


def evidence_lines(evidence: Iterable) -> list[str]:
    """One line per Evidence: verdict, what, observed vs expected, how."""
    return [f"{mark(e.ok)} {e.name}: observed {e.observed}, expected {e.expected}" for e in evidence]


def notice_digest(notices: Sequence[str]) -> str | None:
    """The server NOTICEs, the first lines shown and the count of the rest."""
    if not notices:
        return None
    shown = list(notices[:NOTICE_DIGEST_LINES])
    if len(notices) > len(shown):
        shown.append(f"… and {len(notices) - len(shown)} more NOTICEs")
    return "\n".join(shown)


# --------------------------------------------------------------- pre-execution


def preflight_started(rb: Runbook, run_id: str, actor: str) -> Post:
    return Post(
        "preflight_started",
        f"{rb.title}: pre-flight started by <@{actor}>",
        ["Checks, backup with a verifying restore, and a rehearsal on the restored copy."],
        run_id=run_id,
    )


def preflight_result(rb: Runbook, run_id: str, report, roster: Roster) -> list[Post]:
    """The matrix, and when GO the go/no-go request addressed to the TPM with the decision buttons."""
    # The backup and the rehearsal are check lines of their own (keys backup, rehearsal).
    lines = [
        f"{mark(_line_ok(c))} {c.title}: {c.observed} (required: {c.required}; how: {c.how})"
        for c in report.checks
    ]
    lines += finding_lines(report)
    matrix = "\n".join(f"{state} {condition}" for condition, state in report.matrix())
    verdict = "GO" if report.go else "NO-GO"
    posts = [
        Post(
            "preflight_result",
            f"{rb.title} pre-flight: {verdict} {mark(report.go)}",
            lines,
            detail="Go/No-Go matrix\n" + matrix,
            run_id=run_id,
            final=not report.go,
        )
    ]
    if report.nogo_reasons:  # a short list, one reason a line (was one run-on sentence)
        posts[0].lines[:0] = ["*NO-GO because:*", *[f"• {reason}" for reason in report.nogo_reasons], ""]
    if report.go:
        posts.append(go_no_go_request(rb, run_id, report, roster))
    return posts


def _line_ok(check) -> bool | None:
    return None if check.status == "pending" else check.status == "pass"


def go_no_go_request(rb: Runbook, run_id: str, report, roster: Roster) -> Post:
    tpms = roster.members(TPM)
    rehearsal = report.rehearsal.summary if report.rehearsal else "no rehearsal ran"
    plan = [
        f"Phase {p.number} {p.name}: owner {roster.mention(p.owner)}, estimate {seconds(p.estimate)}, risk {p.risk}"
        for p in rb.phases
    ]
    plan.append(atomicity_line(rb))
    plan += rollback_warning_lines(report.rehearsal)
    plan += lock_safety_lines(report)
    return Post(
        "go_no_go_request",
        f"{rb.title} ready for execution. Pre-flight passed. Requesting go/no-go decision.",
        [
            f"To: {roster.mention(TPM)} (TPM)",
            f"Evidence: {sum(c.status == 'pass' for c in report.checks)} checks passed, "
            f"backup verified by restore, {rehearsal}",
            *plan,
        ],
        actions=go_no_go_actions(f"Start {rb.title} now?"),
        run_id=run_id,
        mentions=list(tpms),
    )


def rollback_warning_lines(rehearsal) -> list[str]:
    """A warning per phase whose rehearsed rollback did not return the schema exactly, with its
    diff: the TPM decides knowing it, not after a failed `rollback phase`."""
    lines = []
    for r in rehearsal.rollback_warnings() if rehearsal else []:
        lines.append(
            f"⚠ Rollback of phase {r['phase']} ({r['file']}) does not return the schema exactly "
            f"(rehearsed on the copy; {len(r['diff'])} lines differ from the schema before phase {r['phase']}):"
        )
        lines += [f"    {d}" for d in r["diff"][:10]]
    if lines:
        lines.append(
            "If that rollback is needed in production, it stops there: the TPM can `rollback accept` this "
            "difference (recorded in the audit) or have the database restored (`rollback restore`)."
        )
    return lines


def finding_lines(report) -> list[str]:
    """Each squawk finding: rule, file:line, statement, lock, table sizes, verdict, rehearsal time."""
    if not getattr(report, "lint", None):
        return []
    result = LintResult.from_dict(report.lint)
    return [f"{FAIL_MARK if f.blocks else '•'} squawk {f.text()}" for f in result.findings]


def lock_safety_lines(report) -> list[str]:
    """For the TPM: which squawk ran, every waiver with its reason and role, and the statements
    taking ACCESS EXCLUSIVE on a big table (high risk, whatever squawk says)."""
    lint = getattr(report, "lint", None)
    if not lint:
        return []
    result = LintResult.from_dict(lint)
    lines = [
        f"Lock safety: {result.squawk} (--pg-version {result.pg_version}) on {len(result.files)} files: "
        f"{len(result.findings)} findings, {len(result.blocking)} blocking, "
        f"{sum(1 for f in result.findings if f.waiver)} waived"
    ]
    for w in result.waivers:
        on = f" (`{w['statement']}`)" if w.get("statement") else ""
        lines.append(
            f"Waiver: {w['rule']} in {w['file']}{on}: {w['reason']} — role {w['who']}"
            + ("" if w.get("used") else " (no finding needed it)")
        )
    for h in result.high_risk:
        size = human_size(h["bytes"] or 0)
        rows = f"~{h['rows']:,} rows, " if h.get("rows") is not None else ""
        lines.append(
            f"⚠ HIGH RISK: ACCESS EXCLUSIVE on {h['table']} ({rows}{size}) at {h['file']}:{h['line']} "
            f"`{h['statement']}`" + (f"; rehearsal: {h['held']}" if h.get("held") else "")
        )
    return lines


def atomicity_line(rb: Runbook) -> str:
    """Whether every file runs all-or-nothing; files that cannot are named in the request."""
    steps = {s.file for p in rb.migration_phases for s in p.steps}
    loose = [c.name for c in validate_runbook(rb) if c.name in steps and not c.atomic]
    if not loose:
        return f"Atomic: each of the {len(steps)} migration files runs in one transaction (all or nothing)"
    return f"⚠ Non-atomic (statements that cannot run in a transaction, partial changes possible): {', '.join(loose)}"


def decision(
    rb: Runbook,
    run_id: str,
    by: str,
    what: str,
    at: datetime,
    *,
    scheduled_for: datetime | None = None,
    reason: str | None = None,
) -> Post:
    label = {
        "go": "GO now",
        "scheduled": f"GO scheduled for {scheduled_for:%Y-%m-%d %H:%M} UTC"
        if scheduled_for
        else "GO scheduled",
        "no-go": f"NO-GO ({reason})",
    }[what]
    return Post("decision", f"{rb.title}: {label}", [f"decided by <@{by}> at {hhmm(at)}"], run_id=run_id)


# --------------------------------------------------------------- during execution


def phase_started(rb: Runbook, phase: Phase, run_id: str, actor: str, roster: Roster) -> Post:
    """Phase n started / Verification started: the TPM is informed at each phase boundary."""
    files = [f"{s.id} {s.file}" for s in phase.steps] or [s.file for s in phase.suites]
    title = (
        f"Verification started: phase {phase.number} {phase.name}"
        if phase.is_verification
        else f"Phase {phase.number} started: {phase.name}"
    )
    return Post(
        "phase_started",
        title,
        [
            f"by <@{actor}> (owner: {roster.mention(phase.owner)}), estimate {seconds(phase.estimate)}, risk {phase.risk}",
            *files,
        ],
        run_id=run_id,
        informed=list(roster.members(TPM)),
    )


def step_waiting(step, blocker, run_id: str) -> Post:
    """A statement of the step waits for another session (a lock, or an older snapshot that a
    concurrent index build must outlive): who it is, while the wait goes on."""
    return Post(
        "step_waiting",
        f"Step {step.id} {step.file} is waiting for pid {blocker.pid}",
        [blocker.describe()],
        run_id=run_id,
    )


def step_result(step_id: str, result) -> Post:
    head = f"{mark(result.ok)} Step {step_id} {result.file}: {result.executed}/{result.statements} statements in {seconds(result.duration)}"
    lines = []
    if result.attempts > 1:
        lines.append(f"{result.attempts} attempts (lock timeouts)")
    for b in result.blockers[:3]:
        lines.append(f"blocked by pid {b.pid} ({b.state}, {seconds(b.age)}): {b.query[:120]}")
    if result.error:
        e = result.error
        lines.append(
            f"error at {e.file}:{e.line}: {e.message}" + (f" (SQLSTATE {e.sqlstate})" if e.sqlstate else "")
        )
        lines.append(f"statement: {e.statement[:200]}")
    if not result.atomic:
        lines.append("ran non-atomically (statements that cannot run in a transaction)")
    return Post("step_result", head, lines, detail=notice_digest(result.notices))


def phase_complete(
    phase: Phase, run_id: str, duration: float, evidence: Sequence, next_phase: Phase | None, roster: Roster
) -> Post:
    post = Post(
        "phase_done",
        f"Phase {phase.number} complete ({versus_estimate(duration, phase.estimate)}) {OK_MARK}",
        evidence_lines(evidence),
        run_id=run_id,
        informed=list(roster.members(TPM)),
    )
    if next_phase is not None:
        verb = "verify" if next_phase.is_verification else f"run phase {next_phase.number}"
        post.lines.append(
            f"Next: phase {next_phase.number} {next_phase.name}, owner {roster.mention(next_phase.owner)}"
        )
        post.actions.append(
            Action(
                "run_phase",
                f"Run phase {next_phase.number}",
                verb,
                style="primary",
                confirm=f"Run phase {next_phase.number} ({next_phase.name}) now?",
                allowed_role=next_phase.owner,
            )
        )
        post.mentions.extend(roster.members(next_phase.owner))
    return post


def phase_failed(phase: Phase, run_id: str, duration: float, reason: str, evidence: Sequence = ()) -> Post:
    return Post(
        "phase_failed",
        f"Phase {phase.number} failed ({seconds(duration)}) {FAIL_MARK}",
        [reason, *evidence_lines(evidence)],
        run_id=run_id,
    )


# --------------------------------------------------------------- post-execution


def success(
    rb: Runbook,
    run_id: str,
    evidence: Sequence,
    gates: Sequence,
    backup: dict | None,
    roster: Roster,
    steps: dict | None = None,
) -> Post:
    """The report's success template. Only built when every gate held (the caller checks).

    It opens with the runbook's summary lines, each shown only as far as the checks and
    gates it names passed, and the downtime as measured (`steps`: the run's step outcomes)."""
    results = [f"- {e.name}: {e.observed} {mark(e.ok)}" for e in evidence]
    summary = [summary_line(line, [*evidence, *gates]) for line in rb.summary_lines]
    return Post(
        "success",
        f"{rb.title} SUCCESSFUL {OK_MARK}",
        [
            "*Summary:*",
            *summary,
            downtime_line(steps, rb.zero_downtime_lock),
            "",
            "Checks:",
            *results,
            "",
            "Quality gates:",
            *[f"- {g.name}: {g.observed} {mark(g.ok)}" for g in gates],
            "",
            "Next steps:",
            *[f"- {s}" for s in rb.next_steps],
        ],
        fields={"Backup": _backup_text(backup)},
        run_id=run_id,
        final=True,
        informed=list(roster.members(TPM)),  # "All complete": an update for the TPM, nothing to do
    )


def summary_line(line, evidence: Sequence) -> str:
    """`- RLS: Enabled (…) ✅ — <check>: <observed>` when every check it names passed; else
    what is missing instead of the claim."""
    found = {e.name: e for e in evidence}
    missing = [name for name in line.backed_by if name not in found]
    if missing:
        return f"- {line.label}: {WAIT_MARK} not verified (no check named {', '.join(missing)} ran)"
    failed = [found[name] for name in line.backed_by if not found[name].ok]
    if failed:
        return f"- {line.label}: {FAIL_MARK} not shown: " + "; ".join(
            f"{e.name}: {e.observed}" for e in failed
        )
    proof = "; ".join(f"{name}: {found[name].observed}" for name in line.backed_by)
    return f"- {line.label}: {line.text} {OK_MARK} ({proof})"


def downtime_line(steps: dict | None, threshold: float) -> str:
    """Downtime as the executor measured it: the longest any statement held its locks (an
    atomic file's transaction), against `threshold`. "Zero" only when measured under it."""
    held = {sid: s.get("lock_held") for sid, s in (steps or {}).items() if s.get("ok")}
    if not held:
        return "- Downtime: not measured (no step outcome recorded)"
    unmeasured = [sid for sid, h in held.items() if h is None]
    if unmeasured:
        return f"- Downtime: not measured (step {', '.join(sorted(unmeasured))} ran through psql)"
    step, longest = max(held.items(), key=lambda kv: kv[1])
    if longest <= threshold:
        return (
            f"- Downtime: Zero {OK_MARK} (the longest any statement held its locks: {seconds(longest)}, "
            f"step {step}; under {seconds(threshold)})"
        )
    return f"- Downtime: locks held up to {seconds(longest)} (step {step}), over {seconds(threshold)} ⚠️"


def failure(
    rb: Runbook,
    run_id: str,
    *,
    failed_phase: str,
    error: str,
    rollback_status: str,
    database_status: str,
    action_required: str,
    backup: dict | None,
    roster: Roster,
    evidence: Sequence = (),
) -> Post:
    """The report's failure template, each field a fact established by the caller."""
    return Post(
        "failure",
        f"🚨 URGENT: {rb.title} FAILED {FAIL_MARK}",
        evidence_lines(evidence),
        fields={
            "Failed Phase": failed_phase,
            "Error": error,
            "Rollback Status": rollback_status,
            "Database Status": database_status,
            "Action Required": action_required,
            "Backup Available": _backup_text(backup),
        },
        run_id=run_id,
        final=True,
        mentions=list(roster.members(TPM)) + list(roster.members(COORDINATOR)),
    )


def _backup_text(backup: dict | None) -> str:
    if not backup:
        return "none recorded: run /migrate preflight"
    text = f"{backup.get('path')} (sha256 {str(backup.get('sha256', ''))[:12]}…, {int(backup.get('size', 0)):,} bytes)"
    if backup.get("restore_command"):
        text += f"; restore by hand: `{backup['restore_command']}`"
    return text


def go_no_go_actions(confirm: str) -> list[Action]:
    """The TPM's three buttons under a go/no-go request; `confirm` asks before GO now."""
    return [
        Action("approve_now", "GO now", "approve", style="primary", allowed_role=TPM, confirm=confirm),
        Action("approve_scheduled", "GO scheduled", "approve at", allowed_role=TPM),
        Action("defer", "NO-GO", "defer", style="danger", allowed_role=TPM),
    ]
