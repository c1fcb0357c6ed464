"""Driving the bot through its console entry point, in-process, and collecting what it says."""

from __future__ import annotations

import io

from bot.console import run_command
from commands import Core

COORDINATOR, TPM, LIU, SERGEI, YASMIN = "U0RAFAEL", "U0DYLAN", "U0LIU", "U0SERGEI", "U0YASMIN"


class Console:
    """Runs commands as users; keeps every word printed so tests can search it for secrets."""

    def __init__(self, core: Core):
        self.core = core
        self.transcript: list[str] = []

    def __call__(self, user: str, text: str) -> tuple[int, str]:
        out = io.StringIO()
        code = run_command(self.core, user, text, out)
        self.transcript.append(out.getvalue())
        return code, out.getvalue()

    def everything(self) -> str:
        return "\n".join(self.transcript)

    def approved(self) -> None:
        """preflight by the coordinator, GO now by the TPM; asserts both worked."""
        code, out = self("U0RAFAEL", "preflight")
        assert code == 0, out
        code, out = self("U0DYLAN", "approve")
        assert code == 0, out
