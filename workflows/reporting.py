"""What work reports and what a command returns: plain data any adapter (console, Slack) renders.

Neither a verb nor a workflow talks to Slack or prints. A verb returns an `Outcome`: what to
tell the invoker privately, what to post to the channel now, and optionally the long `work`
to run in the background. Work (a workflow: phases, rollback, restore, a scheduled job)
reports through the `Reporter` it is handed (`Post`s for the channel, `Progress` for the
live card / status line) and returns the final exit code. The vocabulary lives here, at the
workflows layer, because the workflows and the scheduler below the verbs speak it too;
`commands.result` re-exports it for the adapters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

# Console exit codes (CONTRACT.md): the same numbers tell the Slack adapter how it went.
OK, FAILED, REFUSED = 0, 1, 2


@dataclass(frozen=True)
class Action:
    """A button the Slack adapter renders under a post; the console shows its command."""

    id: str  # approve_now | approve_scheduled | defer | run_phase | restore_confirm
    label: str
    command: str  # the /migrate text the click stands for, e.g. "run phase 2"
    style: str | None = None  # primary | danger
    confirm: str | None = None  # confirmation dialog text; None: no dialog
    allowed_role: str | None = None  # only these roster members may click


@dataclass
class Post:
    """One message for the channel (into the run's thread when the run has one)."""

    kind: str  # e.g. preflight_request, phase_started, phase_done, phase_failed, success, failure, info
    title: str  # first line, e.g. "Phase 1 complete (4.2 s vs estimate 3 min)"
    lines: list[str] = field(default_factory=list)  # body, one item a line (mrkdwn-safe text)
    fields: dict[str, str] = field(default_factory=dict)  # labelled template fields, in order
    detail: str | None = None  # long output (NOTICEs, evidence): adapters truncate or attach it
    actions: list[Action] = field(default_factory=list)
    run_id: str | None = None
    final: bool = False  # a final state: Slack also broadcasts it to the channel
    mentions: list[str] = field(default_factory=list)  # user IDs who must act
    informed: list[str] = field(default_factory=list)  # user IDs kept informed (FYI), e.g. the TPM per phase

    def text(self) -> str:
        """Plain-text rendering (console, and Slack's fallback `text`)."""
        out = [self.title, *self.lines]
        out += [f"{k}: {v}" for k, v in self.fields.items()]
        if self.detail:
            out += ["", self.detail]
        return "\n".join(out)


@dataclass(frozen=True)
class Progress:
    """Live state of a run, for the edited-in-place parent message / the console status line."""

    run_id: str
    phase: int | None
    phase_name: str
    step: str | None  # "1.1"
    file: str | None
    statement: int  # k of n, 1-based; 0 before the first
    statements: int
    elapsed: float  # seconds in this phase
    estimate: float  # the phase's estimate, seconds
    state: str  # the run's status value


class Reporter(Protocol):
    """Where background work reports. Console prints; Slack posts via its outbox."""

    def post(self, post: Post) -> None: ...

    def progress(self, progress: Progress) -> None: ...


Work = Callable[[Reporter], int]


@dataclass
class Outcome:
    code: int  # OK | FAILED | REFUSED (for work: the code once the work has finished)
    reply: list[str] = field(default_factory=list)  # to the invoker only (ephemeral)
    posts: list[Post] = field(default_factory=list)  # to the channel, now
    work: Work | None = None  # long work to run in the background
    run_id: str | None = None

    @classmethod
    def refused(cls, message: str) -> Outcome:
        return cls(code=REFUSED, reply=[message])


class RedactingReporter:
    """Wraps an adapter's Reporter so that nothing reaches it unredacted."""

    def __init__(self, inner: Reporter, redact: Callable[[str], str]):
        self.inner = inner
        self.redact = redact

    def post(self, post: Post) -> None:
        self.inner.post(redact_post(post, self.redact))

    def progress(self, progress: Progress) -> None:
        self.inner.progress(progress)


def redact_post(post: Post, redact: Callable[[str], str]) -> Post:
    post.title = redact(post.title)
    post.lines = [redact(line) for line in post.lines]
    post.fields = {k: redact(v) for k, v in post.fields.items()}
    post.detail = redact(post.detail) if post.detail else post.detail
    return post
