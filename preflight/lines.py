"""Making check lines: time a probe, turn its answer or its exception into a CheckLine.

A probe returns `(ok, observed)`; anything it raises becomes a failed line whose text is
redacted, so a password inside a driver's error message never reaches a post.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from core import clock
from core.redact import redact
from preflight.report import FAIL, PASS, CheckLine

Probe = Callable[[], tuple[bool, str]]


@dataclass(frozen=True)
class Spec:
    """What a check is, before it runs."""

    key: str
    title: str
    how: str
    required: str


def run_probe(spec: Spec, probe: Probe, secrets: Iterable[str] = ()) -> CheckLine:
    """Run `probe`, timing it; its exception is the observed value of a failed line."""
    start = clock.monotonic()
    try:
        ok, observed = probe()
    except Exception as exc:  # noqa: BLE001 - a failing probe is a failed check, never a crash
        ok, observed = False, f"{type(exc).__name__}: {exc}".strip()
    return line(spec, ok, observed, secrets, clock.monotonic() - start)


def line(
    spec: Spec, ok: bool, observed: str, secrets: Iterable[str] = (), duration: float = 0.0
) -> CheckLine:
    """A finished line, observed value redacted."""
    secrets = tuple(secrets)
    return CheckLine(
        key=spec.key,
        title=spec.title,
        how=redact(spec.how, secrets),
        observed=redact(_one_line(observed), secrets),
        required=spec.required,
        status=PASS if ok else FAIL,
        duration=round(duration, 4),
    )


def _one_line(text: str) -> str:
    # Driver errors span lines (DETAIL/HINT); a check line is one line.
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())
