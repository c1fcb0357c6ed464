"""What a command returns, for the adapters: `Outcome` and the data it carries.

The types live in workflows/reporting.py (the workflows and the scheduler report with the
same `Post`, `Progress` and `Reporter`); this module is the adapters' one import for them.
"""

from workflows.reporting import FAILED, OK, REFUSED, Action, Outcome, Post, Progress, Reporter, Work

__all__ = ["OK", "FAILED", "REFUSED", "Action", "Outcome", "Post", "Progress", "Reporter", "Work"]
