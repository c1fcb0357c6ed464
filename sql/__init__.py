"""SQL shipped with the bot: the version-005 baseline and one folder per runbook.

A package only so that `pip install .` carries the files; `RUNBOOKS_DIR` is where they are.

Data, not code: the bottom layer, imports nothing of the project. core.config reads
DEFAULT_RUNBOOK.
"""

from pathlib import Path

RUNBOOKS_DIR = Path(__file__).resolve().parent
BASELINE_DIR = RUNBOOKS_DIR / "baseline"
DEFAULT_RUNBOOK = RUNBOOKS_DIR / "006" / "runbook.toml"
