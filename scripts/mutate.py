"""Mutation testing of the guard modules with cosmic-ray, each with only the tests that cover it.

For every target below: a copy of the project (so the working tree is never mutated), a
cosmic-ray session over the module (restricted to the guard's own functions where a module
holds more than the guard), every mutant run against the target's tests (`pytest -x`, one
worker), then the survivors with file:line and the kill ratio. Equivalent mutants (a change
that cannot alter behaviour) are listed in README.md ("Mutation testing") with the reason.

Usage: scripts/mutate [--only NAME[,NAME]] [--sample N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import ast
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Target:
    name: str
    module: str
    tests: tuple[str, ...]
    functions: tuple[str, ...] = ()  # only mutants inside these functions/methods (empty: all)
    timeout: float = 300.0  # per mutant: a mutant that hangs the tests counts as killed


R, U, H, C = (
    "tests/test_redact.py::",
    "tests/test_url_secrets.py::",
    "tests/test_slack_http.py::",
    "tests/test_bad_config.py::",
)
# Tests in the order they run: the quick ones first, so that most mutants die in seconds (-x).
TARGETS = (
    Target(
        "rollback-proof",
        "workflows/rollback.py",
        (
            "tests/test_rollback_proof.py::test_a_rollback_that_forgets_a_function_fails_its_proof_and_names_the_function",
            "tests/test_rollback_proof.py::test_a_rollback_that_deletes_a_row_fails_its_proof_and_names_the_table",
            "tests/test_rollback_all.py::test_rollback_all_undoes_every_applied_phase_newest_first",
            "tests/test_tryout_folders.py::test_an_accepted_rollback_difference_does_not_fail_every_older_rollback",
        ),
        functions=("_proof",),
    ),
    Target("policy", "commands/policy.py", ("tests/test_policy.py",)),
    Target("approval", "state/approval.py", ("tests/test_state_approval.py", "tests/test_approval_plan.py")),
    Target(
        "redact",
        "core/redact.py",
        (
            "tests/test_redact_edges.py",
            R + "test_url_passwords_are_masked_up_to_the_last_at_of_the_word",
            R + "test_keyword_passwords_and_tokens_are_masked",
            R + "test_a_secret_at_the_cut_is_masked_before_the_cut",
            U + "test_every_url_password_is_a_secret_as_written_and_decoded_without_parsing",
            U + "test_a_credentials_problem_names_the_rule_not_the_url",
            R + "test_redaction_time_grows_linearly_on_adversarial_input",
        ),
    ),
    Target("lock", "state/lock.py", ("tests/test_state_lock.py",)),
    # The lock's guard (renew every ttl/3, give up after the TTL, only the owner extends) lives here.
    Target("owned", "state/owned.py", ("tests/test_state_owned.py", "tests/test_state_lock.py")),
    Target(
        "slack-verification",
        "bot/slack/app.py",
        (
            C + "test_the_slack_app_cannot_be_built_with_an_empty_signing_secret",
            C + "test_in_socket_mode_the_app_still_checks_signatures_with_a_secret_nobody_knows",
            C + "test_the_built_app_itself_refuses_an_unsigned_request",
            H + "test_a_bad_signature_is_rejected_with_401_and_runs_nothing",
            H + "test_help_is_acked_and_answered_privately_through_the_response_url",
            "tests/test_slack_app_settings.py",
        ),
    ),
    Target(
        "slack-server",
        "bot/slack/server.py",
        (
            H + "test_a_bad_signature_is_rejected_with_401_and_runs_nothing",
            H + "test_a_stale_timestamp_is_rejected_with_401_and_runs_nothing",
            H + "test_a_timestamp_that_is_not_a_number_is_refused_with_401",
            H + "test_an_unsigned_megabyte_body_is_refused_without_being_logged_or_run",
            H + "test_a_body_that_is_not_utf8_is_refused_with_400_signed_or_not",
            H + "test_help_is_acked_and_answered_privately_through_the_response_url",
        ),
        functions=("_unverified",),
    ),
    Target(
        "config",
        "core/config.py",
        ("tests/test_config_checks.py", "tests/test_bad_config.py", "tests/test_url_secrets.py"),
        functions=("_number", "_redis_url", "_parseable", "env_secrets", "require", "secrets"),
    ),
)


@dataclass
class Tally:
    killed: int = 0
    survived: list[tuple[str, int, str, str]] = field(default_factory=list)  # file, line, operator, diff
    other: int = 0  # incompetent (the mutant does not import) or worker errors

    @property
    def total(self) -> int:
        return self.killed + len(self.survived)


def copy_tree(dest: Path) -> Path:
    """The project without .git, .venv and caches: mutants are written into this copy only."""
    ignore = shutil.ignore_patterns(
        ".git", ".venv", ".local", "backups", "__pycache__", ".pytest_cache", "*.egg-info", ".mutate"
    )
    shutil.copytree(ROOT, dest, ignore=ignore)
    return dest


def config_text(target: Target, python: str) -> str:
    tests = " ".join(target.tests)
    return f"""[cosmic-ray]
module-path = "{target.module}"
timeout = {target.timeout}
excluded-modules = []
test-command = "{python} -m pytest -x -q -p no:cacheprovider -p no:randomly {tests}"

[cosmic-ray.distributor]
name = "local"
"""


def run_target(target: Target, tree: Path, python: str, sample: int | None, dry: bool = False) -> Tally:
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult

    config = tree / f".mutate-{target.name}.toml"
    session = tree / f".mutate-{target.name}.sqlite"
    config.write_text(config_text(target, python))
    subprocess.run([python, "-m", "cosmic_ray.cli", "init", str(config), str(session)], cwd=tree, check=True)
    annotations = annotation_spans(tree / target.module)
    with use_db(str(session), WorkDB.Mode.open) as db:
        items = list(db.pending_work_items)
        outside = [
            i
            for i in items
            if (target.functions and not _inside(i, target.functions)) or _within(i, annotations)
        ]
        kept = [i for i in items if i not in outside]
        outside += redundant(kept)
        kept = [i for i in kept if i not in outside]
        if sample is not None and len(kept) > sample:
            outside += random.Random(12).sample(kept, len(kept) - sample)
        db.set_multiple_results([i.job_id for i in outside], WorkResult(worker_outcome=WorkerOutcome.SKIPPED))
        print(
            f"[{target.name}] {len(items) - len(outside)} mutants of {target.module} "
            f"against {' '.join(target.tests)}",
            flush=True,
        )
    if dry:
        return Tally()
    started = time.monotonic()
    subprocess.run([python, "-m", "cosmic_ray.cli", "exec", str(config), str(session)], cwd=tree, check=True)
    tally = Tally()
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item, result in db.completed_work_items:
            if result.worker_outcome is WorkerOutcome.SKIPPED:
                continue
            if result.test_outcome is TestOutcome.KILLED:
                tally.killed += 1
            elif result.test_outcome is TestOutcome.SURVIVED:
                m = item.mutations[0]
                tally.survived.append(
                    (str(m.module_path), m.start_pos[0], m.operator_name, _diff_line(result.diff))
                )
            else:
                tally.other += 1
    print(
        f"[{target.name}] killed {tally.killed}/{tally.total} in {time.monotonic() - started:.0f} s"
        + (f" ({tally.other} incompetent)" if tally.other else ""),
        flush=True,
    )
    return tally


# One mutant per operator site (selective mutation): of cosmic-ray's replacements of a binary
# operator, a comparison or a number, the one that flips the meaning; the others rarely
# survive when it is killed, and each costs a whole test run.
PREFERRED = {
    "Eq": "NotEq",
    "NotEq": "Eq",
    "Lt": "GtE",
    "LtE": "Gt",
    "Gt": "LtE",
    "GtE": "Lt",
    "In": "NotIn",
    "NotIn": "In",
    "Is": "IsNot",
    "IsNot": "Is",
    "Add": "Sub",
    "Sub": "Add",
    "Mul": "Div",
    "Div": "Mul",
    "BitOr": "BitAnd",
    "BitAnd": "BitOr",
    "Mod": "Mul",
    "FloorDiv": "Mul",
    "Pow": "Mul",
}


def redundant(items: list) -> list:
    """The items beyond the one kept per (operator family, position)."""
    groups: dict[tuple, list] = {}
    for item in items:
        m = item.mutations[0]
        family = (
            m.operator_name
            if m.operator_name == "core/NumberReplacer"
            else m.operator_name.rpartition("_")[0]
        )
        if not family.startswith(
            ("core/ReplaceBinaryOperator", "core/ReplaceComparisonOperator", "core/NumberReplacer")
        ):
            continue
        groups.setdefault((family, tuple(m.start_pos)), []).append(item)
    extra = []
    for (family, _), members in groups.items():
        original = family.rsplit("_", 1)[-1]
        keep = next(
            (i for i in members if i.mutations[0].operator_name.endswith("_" + PREFERRED.get(original, ""))),
            members[0],
        )
        extra += [i for i in members if i is not keep]
    return extra


def annotation_spans(path: Path) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """(start, end) of every type annotation of a module that has `from __future__ import
    annotations`: they are never evaluated, so a mutant inside one is equivalent by construction."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lazy = any(
        isinstance(n, ast.ImportFrom)
        and n.module == "__future__"
        and any(a.name == "annotations" for a in n.names)
        for n in tree.body
    )
    if not lazy:
        return []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
            found.append(node.returns)
        elif isinstance(node, ast.arg) and node.annotation is not None:
            found.append(node.annotation)
        elif isinstance(node, ast.AnnAssign):
            found.append(node.annotation)
    return [((n.lineno, n.col_offset), (n.end_lineno, n.end_col_offset)) for n in found]


def _within(item, spans) -> bool:
    start = tuple(item.mutations[0].start_pos)
    return any(a <= start < b for a, b in spans)


def _inside(item, functions: tuple[str, ...]) -> bool:
    name = item.mutations[0].definition_name or ""
    return any(name == f or name.endswith("." + f) for f in functions)


def _diff_line(diff: str | None) -> str:
    """The mutated line of cosmic-ray's unified diff."""
    for line in (diff or "").splitlines():
        if line.startswith("+") and not line.startswith("+++"):
            return line[1:].strip()[:100]
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated target names: " + ", ".join(t.name for t in TARGETS))
    parser.add_argument("--sample", type=int, help="at most N mutants per target (calibration)")
    parser.add_argument("--dry", action="store_true", help="count the mutants of each target, run none")
    parser.add_argument(
        "--keep", type=Path, help="work in DIR and keep it (default: a temporary copy, removed)"
    )
    args = parser.parse_args(argv)
    chosen = [t for t in TARGETS if not args.only or t.name in args.only.split(",")]
    work = args.keep or Path(tempfile.mkdtemp(prefix="mutate-"))
    tree = work / "tree"
    if tree.exists():
        shutil.rmtree(tree)
    copy_tree(tree)
    started, totals = time.monotonic(), {}
    try:
        for target in chosen:
            totals[target.name] = run_target(target, tree, sys.executable, args.sample, args.dry)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if args.dry else report(totals, time.monotonic() - started)


def report(totals: dict[str, Tally], seconds: float) -> int:
    killed = sum(t.killed for t in totals.values())
    total = sum(t.total for t in totals.values())
    print("\nSurviving mutants (file:line operator — mutated line):")
    for tally in totals.values():
        for file, line, operator, text in tally.survived:
            print(f"  {file}:{line} {operator} — {text}")
    if not total:
        print("  (no mutant ran)")
        return 1
    print(
        f"\nKill ratio: {killed}/{total} = {killed / total:.1%} in {seconds / 60:.1f} min "
        f"({', '.join(f'{n} {t.killed}/{t.total}' for n, t in totals.items())})"
    )
    return 0 if killed == total else 1


if __name__ == "__main__":
    sys.exit(main())
