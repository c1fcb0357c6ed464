"""What people read in Slack and in a terminal: escaped mrkdwn, mentions that render, no
control characters. Read from the Block Kit JSON the Slack stand-in received."""

from __future__ import annotations

import io
import json

import pytest

from bot.console import run_command, terminal_safe
from bot.slack import blocks
from commands import Core
from commands.result import Post
from tests.support.slack_fixtures import standin  # noqa: F401 (fixture)
from tests.support.slack_standin import RunningBot

COORDINATOR, TPM, LIU = "U0RAFAEL", "U0DYLAN", "U0LIU"


@pytest.fixture
def real_bot(settings, standin):
    running = RunningBot(settings, standin)  # the real commands.handle
    yield running
    running.close()


def mrkdwn_texts(body: dict) -> list[str]:
    """Every mrkdwn text of a message: its fallback `text` and its blocks' mrkdwn objects."""
    found = [body.get("text", "")]

    def walk(node) -> None:
        if isinstance(node, dict):
            if node.get("type") == "mrkdwn":
                found.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(body.get("blocks") or [])
    return found


def plain_texts(body: dict) -> list[str]:
    out: list[str] = []

    def walk(node) -> None:
        if isinstance(node, dict):
            if node.get("type") == "plain_text":
                out.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(body.get("blocks") or [])
    return out


def test_the_escaper_keeps_mentions_and_escapes_everything_else():
    text = "run phase <n> & <!channel> <https://evil|click> <@U0DYLAN> <#C0MIGRATE>"
    assert blocks.escape(text) == (
        "run phase &lt;n&gt; &amp; &lt;!channel&gt; &lt;https://evil|click&gt; <@U0DYLAN> <#C0MIGRATE>"
    )


def test_a_cut_never_leaves_half_an_entity():
    text = "a" * 2996 + "&&&&&&"
    cut = blocks.mrkdwn(text)["text"]
    assert len(cut) <= blocks.SECTION_CHARS and not cut.split("\n")[0].endswith(("&", "&a", "&am"))


def test_an_incident_text_with_channel_ping_is_shown_literally(real_bot, standin):
    assert (
        real_bot.slack.slash(LIU, "incident start <!channel> DB down & <https://x.example|see>").status == 200
    )
    call = standin.wait_method("chat.postMessage", timeout=30)[0]
    texts = mrkdwn_texts(call.body)
    joined = "\n".join(texts)
    assert "<!channel>" not in joined and "<https://" not in joined
    assert "&lt;!channel&gt; DB down &amp; &lt;https://x.example|see&gt;" in call.body["text"]
    assert "<@U0LIU>" in joined  # the bot's own mention still renders


def test_help_placeholders_render_literally(real_bot, standin):
    assert real_bot.slack.slash(COORDINATOR, "help").status == 200
    reply = standin.wait_for(lambda c: c.method == "response_url", timeout=30)[0]
    joined = "\n".join(mrkdwn_texts(reply.body))
    assert "run phase &lt;n&gt;" in joined and "defer &lt;reason&gt;" in joined
    assert "<n>" not in joined and "<reason>" not in joined


def test_no_mention_is_put_in_a_plain_text_header():
    for title in (
        "Migration 006: pre-flight started by <@U0RAFAEL>",
        "🚨 Critical incident declared by <@U0LIU>: CPU",
        "Restore from backup requested by <@U0LIU>: the TPM must confirm",
        "Ping <@U0LIU> and <@U0DYLAN>",
    ):
        rendered = blocks.post_message(Post("info", title))
        assert not [t for t in plain_texts(rendered.payload()) if "<@" in t], title
        assert any("<@U0" in t for t in mrkdwn_texts(rendered.payload())), title


def test_incident_and_preflight_headers_carry_no_raw_mention(real_bot, standin):
    real_bot.slack.slash(LIU, "incident start CPU at 95%")
    call = standin.wait_method("chat.postMessage", timeout=30)[0]
    assert not [t for t in plain_texts(call.body) if "<@" in t]
    assert "<@U0LIU>" in "\n".join(mrkdwn_texts(call.body))


def test_the_console_strips_terminal_escapes_from_user_text(settings):
    core = Core.from_settings(settings)
    out = io.StringIO()
    run_command(core, LIU, "incident start \x1b[2J\x1b]0;pwned\x07CPU \x1b[31mred\x1b[0m\x07", out)
    printed = out.getvalue()
    assert "\x1b" not in printed and "\x07" not in printed
    assert "CPU red" in printed
    assert terminal_safe("a\tb\nc\x9b31md\x00") == "a\tb\ncd"


def test_a_header_shows_no_mrkdwn_code_marks():
    rendered = blocks.post_message(Post("restored", "Restore from backup complete: `app` is the backup"))
    assert plain_texts(rendered.payload())[0] == "Restore from backup complete: app is the backup"


def test_a_defer_reason_is_shown_literally(ready, standin):
    running = RunningBot(ready, standin)
    try:
        assert running.slack.slash(COORDINATOR, "preflight").status == 200
        standin.wait_method(
            "chat.postMessage", where=lambda b: "Requesting go/no-go" in b.get("text", ""), timeout=120
        )
        running.bridge.wait_work()
        assert running.slack.slash(TPM, "defer <!here> traffic > 80% & rising").status == 200
        call = standin.wait_method(
            "chat.postMessage", where=lambda b: "NO-GO" in b.get("text", ""), timeout=60
        )[-1]
        joined = "\n".join(mrkdwn_texts(call.body))
        assert "<!here>" not in joined and "&lt;!here&gt; traffic &gt; 80% &amp; rising" in joined
    finally:
        running.close()


_TITLE_CHILD = """
import json, sys, time
from bot.slack.blocks import title_blocks
def best(text):
    times = []
    for _ in range(3):
        start = time.process_time(); title_blocks(text); times.append(time.process_time() - start)
    return min(times)
out = {}
for name, expr in json.loads(sys.argv[1]).items():
    small, large = (best(eval(expr, {"n": n})) for n in (50_000, 200_000))
    out[name] = large / max(small, 1e-4)
print(json.dumps(out))
"""


def test_a_title_holding_a_long_run_of_blanks_is_laid_out_in_linear_time():
    """An incident text is a post's title: `\\s+by <@U…>` tried from every blank of a long run
    was quadratic (40,000 spaces: 13 s holding the GIL, so no ack, no heartbeat). Four times the
    blanks must cost about four times the CPU (quadratic: sixteen). In a child process so that
    the old code fails by its time-out."""
    import subprocess
    import sys
    from pathlib import Path

    inputs = {
        "spaces": '"incident: a" + " " * n + "b"',
        "tabs and newlines": '"a" + "\\t\\n" * (n // 2) + "by x"',
        "spaces then a by": '"a" + " " * n + "by <@U0X"',
    }
    child = subprocess.run(
        [sys.executable, "-c", _TITLE_CHILD, json.dumps(inputs)],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    ratios = json.loads(child.stdout)
    slow = {name: round(r, 1) for name, r in ratios.items() if r >= 8}
    assert not slow, f"time(4x blanks) / time(x blanks) should be about 4: {slow}"


def test_a_by_mention_after_several_blanks_still_moves_to_the_context_line():
    rendered = blocks.title_blocks("Phase 1 started   by <@U0LIU>")
    assert rendered[0]["type"] == "header" and "<@U0LIU>" not in rendered[0]["text"]["text"]
    assert rendered[1]["type"] == "context" and "<@U0LIU>" in rendered[1]["elements"][0]["text"]


def test_the_console_strips_bidirectional_overrides_from_user_text(settings):
    """Fails without the fix: U+202E reversed the rest of the printed line, so an incident text
    could display as other words than it holds."""
    core = Core.from_settings(settings)
    out = io.StringIO()
    run_command(core, LIU, "incident start db \u202edesrever\u202c and \u2067isolated\u2069", out)
    printed = out.getvalue()
    assert not any(ch in printed for ch in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
    assert "db desrever and isolated" in printed
