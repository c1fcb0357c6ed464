"""Pre-flight: the report's checklist, a verified backup, a rehearsal, and the go/no-go matrix.

Entry points for the command layer: `run_preflight` (everything), `fast_checks` (the quick
checks only, at a scheduled GO time), `window_check` (also validates `approve at <time>`).

A workflow (it runs minutes: backup, rehearsal on a copy) that commands start. Checks a
runbook declares ([preflight.*]) are run by preflight.quick; squawk lint by preflight.lint.

May import: engine, runbook, core. Never workflows, commands, scheduling, state (the verbs
pass what it needs of a run) or bot. Checked by lint-imports.
"""

from preflight.inputs import step_inputs
from preflight.quick import Timeouts
from preflight.report import BackupInfo, CheckLine, PreflightReport, RehearsalResult
from preflight.runner import fast_checks, run_preflight
from preflight.window import window_check

__all__ = [
    "run_preflight",
    "fast_checks",
    "window_check",
    "step_inputs",
    "Timeouts",
    "PreflightReport",
    "CheckLine",
    "BackupInfo",
    "RehearsalResult",
]
