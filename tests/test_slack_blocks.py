"""Block Kit builders keep to Slack's limits, whatever the command core hands them."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from bot.slack import blocks
from commands.result import Action, Post, Progress
from tests.support.slack_standin import check_blocks

NOTICE_LINES = [f'NOTICE:  relation "platform.t{i}" already exists, skipping' for i in range(10_000)]


def test_a_10000_line_notice_output_fits_in_one_message_and_is_attached_in_full():
    post = Post(
        "phase_done", "Phase 1 complete", lines=NOTICE_LINES, detail="\n".join(NOTICE_LINES), run_id="r1"
    )
    rendered = blocks.post_message(post)
    check_blocks(rendered.blocks)  # raises on anything Slack would answer invalid_blocks to
    assert len(rendered.text) <= blocks.FALLBACK_CHARS
    assert rendered.attachment == "\n".join(NOTICE_LINES)
    assert any(blocks.TRUNCATED in str(b) for b in rendered.blocks)


@hsettings(max_examples=60, deadline=None)
@given(
    title=st.text(max_size=400),
    lines=st.lists(st.text(max_size=5000), max_size=80),
    detail=st.none() | st.text(max_size=9000),
    labels=st.lists(st.text(min_size=1, max_size=120), max_size=5),
)
def test_any_post_renders_within_slack_limits(title, lines, detail, labels):
    actions = [
        Action("run_phase", label, "run phase 1", "danger", "x" * 500, "coordinator") for label in labels
    ]
    rendered = blocks.post_message(
        Post("info", title, lines=lines, detail=detail, actions=actions, run_id="r")
    )
    check_blocks(rendered.blocks)
    assert rendered.text and len(rendered.text) <= blocks.FALLBACK_CHARS


def test_buttons_carry_their_command_role_and_a_confirm_dialog():
    action = Action(
        "run_phase", "Run phase 2", "run phase 2", "danger", "Apply the RLS policies?", "security-specialist"
    )
    button = blocks.button(action, 0, "r9")
    assert blocks.button_value(button["value"]) == {
        "id": "run_phase",
        "c": "run phase 2",
        "r": "security-specialist",
        "run": "r9",
    }
    assert button["style"] == "danger" and button["confirm"]["text"]["text"] == "Apply the RLS policies?"


def test_a_decision_removes_the_buttons_and_says_who_what_when():
    post = Post(
        "preflight_request", "GO / NO-GO?", actions=[Action("approve_now", "GO now", "approve", "primary")]
    )
    rendered = blocks.post_message(post)
    at = datetime(2026, 11, 24, 5, 7, tzinfo=UTC)
    line = blocks.decision_line("U0DYLAN", at, "approve_scheduled", "approve at 2026-11-25T02:00Z")
    edited = blocks.decided(rendered.blocks, line)
    assert not [b for b in edited if b["type"] == "actions"]
    assert line == "decided by <@U0DYLAN> at 05:07 UTC: GO scheduled for 2026-11-25 02:00 UTC"
    assert (
        blocks.decision_line("U1", at, "defer", "defer backup failed")
        == "decided by <@U1> at 05:07 UTC: NO-GO (backup failed)"
    )


def test_the_schedule_modal_defaults_to_the_next_low_traffic_window():
    assert blocks.next_window(datetime(2026, 11, 24, 1, 30, tzinfo=UTC)) == datetime(
        2026, 11, 24, 2, 0, tzinfo=UTC
    )
    assert blocks.next_window(datetime(2026, 11, 24, 5, 0, tzinfo=UTC)) == datetime(
        2026, 11, 25, 2, 0, tzinfo=UTC
    )
    view = blocks.schedule_modal(datetime(2026, 11, 25, 2, 0, tzinfo=UTC), "{}")
    values = {
        "date": {"date": {"selected_date": view["blocks"][1]["element"]["initial_date"]}},
        "time": {"time": {"selected_time": view["blocks"][2]["element"]["initial_time"]}},
    }
    assert blocks.scheduled_at(values) == datetime(2026, 11, 25, 2, 0, tzinfo=UTC)


def test_the_run_card_shows_phase_statement_elapsed_and_a_bar():
    p = Progress(
        "r1",
        1,
        "Database infrastructure",
        "1.1",
        "006_create_databases_table.sql",
        12,
        48,
        95.0,
        180.0,
        "running",
    )
    card = blocks.run_card("r1", "Migration 006", None, p)
    text = card.blocks[1]["text"]["text"]
    assert "Phase 1:* Database infrastructure" in text and "12 of 48" in text
    assert "1 min 35 s of 3 min 00 s" in text and "▓▓▓▓▓░░░" in text and " 25%" in text
    check_blocks(card.blocks)


def test_home_view_stays_within_100_blocks():
    view = blocks.home_view(["x"] * 500, ["y"], [f"run {i} " + "z" * 2900 for i in range(300)])
    check_blocks(view["blocks"], limit=100)


def test_other_buttons_say_who_clicked_what_and_when():
    at = datetime(2026, 11, 24, 3, 15, tzinfo=UTC)
    assert (
        blocks.decision_line("U0SERGEI", at, "run_phase", "run phase 2")
        == "`run phase 2` by <@U0SERGEI> at 03:15 UTC"
    )
