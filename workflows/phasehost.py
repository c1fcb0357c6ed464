"""What PhaseRunner's mixins (workflows/failures.py, workflows/verification.py) use of it: the
attributes PhaseRunner sets and the helpers it defines (workflows/phases.py). Declarations for
the type checker: at run time this class is empty, PhaseRunner supplies everything."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.executor import Executor, FileResult
    from engine.ledgers import Ledger
    from runbook.model import Phase, Runbook, Step
    from workflows.core import Core
    from workflows.reporting import Post, Reporter


class PhaseHost:
    core: Core
    rb: Runbook
    run_id: str
    actor: str
    reporter: Reporter
    dsn: str
    inputs: dict[str, str]
    secrets: tuple[str, ...]
    executor: Executor
    ledger: Ledger
    _steps: dict[str, Any] | None

    if TYPE_CHECKING:

        def _closing_fields(self, evidence: Any = None, key: str | None = None) -> dict[str, Any]: ...
        def _database_status(self, before: tuple[Any, ...] | None) -> str: ...
        def _error_text(self, result: FileResult | None) -> str | None: ...
        def _lock_lost(self) -> bool: ...
        def _stored_duration(self, phase: Phase, measured: float) -> float: ...
        def approved_sha256(self, name: str) -> str: ...
        def _record_runbook_version(self) -> None: ...
        @staticmethod
        def _backup(run: Any) -> dict[str, Any] | None: ...
        def _failure_post(
            self,
            phase: Phase | None,
            step: Step | None,
            error: str,
            rollback_status: str,
            state: str,
            action: str,
            evidence: Any = (),
        ) -> Post: ...
