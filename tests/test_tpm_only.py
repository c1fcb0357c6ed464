"""Only the TPM decides, through the real command core: the coordinator's first `approve`, a
non-TPM `defer`, a non-TPM `approve at`, a non-TPM `rollback restore confirm` are refused with
exit 2 and change nothing (run state, Redis keys, audit beyond the refusal, the database).
And the TPM's own `approve at` is refused in the past and outside MIGRATE_WINDOW.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from commands import Core
from core import clock
from state.machine import Status
from tests.support.flow import COORDINATOR, LIU, SERGEI, TPM, YASMIN, Console
from tests.support.unchanged import Snapshot


def _after_preflight(settings) -> Console:
    console = Console(Core.from_settings(settings))
    code, out = console(COORDINATOR, "preflight")
    assert code == 0, out
    assert console.core.store.current().status is Status.GO
    return console


def _refused(console: Console, user: str, text: str) -> str:
    snapshot = Snapshot(console.core)
    code, out = console(user, text)
    assert code == 2, out
    snapshot.assert_unchanged(f"{user} {text}")
    return out


@pytest.mark.parametrize(
    "user, text",
    [
        (COORDINATOR, "approve"),
        (LIU, "approve"),
        (COORDINATOR, "defer the backup is too old"),
        (YASMIN, "defer not today"),
        (COORDINATOR, "approve at 02:00"),
        (SERGEI, "approve at 2099-01-01T02:00Z"),
    ],
)
def test_only_the_tpm_decides_go_or_no_go(ready, user, text):
    console = _after_preflight(ready)

    out = _refused(console, user, text)

    assert "only the TPM can" in out and "<@U0DYLAN>" in out
    run = console.core.store.current()
    assert run.status is Status.GO and run.approval is None and run.decision is None
    code, out = console(TPM, "approve")  # the decision is still the TPM's to make
    assert code == 0 and "GO now" in out, out


@pytest.mark.parametrize("user", [COORDINATOR, LIU])
def test_only_the_tpm_confirms_a_restore(ready, user):
    console = _after_preflight(ready)
    assert console(TPM, "approve")[0] == 0
    code, out = console(LIU, "run phase 1")
    assert code == 0, out
    code, out = console(COORDINATOR, "rollback restore")
    assert code == 0, out

    out = _refused(console, user, "rollback restore confirm")

    assert "only the TPM can `rollback restore confirm`" in out
    assert console.core.store.current().status is Status.RESTORE_REQUESTED


def test_approve_at_a_past_time_is_refused_and_changes_nothing(ready):
    console = _after_preflight(ready)
    past = clock.now() - timedelta(minutes=5)

    out = _refused(console, TPM, f"approve at {past:%Y-%m-%dT%H:%MZ}")

    assert "is in the past" in out
    assert console.core.store.current().status is Status.GO


def _window_around_now(hours_before: int, hours_after: int) -> str:
    now = clock.now()
    return f"{now - timedelta(hours=hours_before):%H:%M}-{now + timedelta(hours=hours_after):%H:%M}"


@pytest.mark.parametrize(
    "hours_ahead, why",
    [
        (6, "outside the window"),  # after the window closes
        (3, "h of the window left"),  # inside, but 1 h left where 2 h are required
    ],
)
def test_approve_at_outside_the_window_is_refused_and_changes_nothing(ready, hours_ahead, why):
    """The window is open now with 4 h left (pre-flight is GO); the scheduled time is not."""
    console = _after_preflight(ready.with_(window=_window_around_now(1, 4)))
    at = clock.now() + timedelta(hours=hours_ahead)

    out = _refused(console, TPM, f"approve at {at:%Y-%m-%dT%H:%MZ}")

    assert "outside the execution window" in out and why in out, out
    assert console.core.store.current().status is Status.GO
    inside = clock.now() + timedelta(hours=1)
    code, out = console(TPM, f"approve at {inside:%Y-%m-%dT%H:%MZ}")  # 3 h left then: accepted
    assert code == 0 and "GO scheduled" in out, out
