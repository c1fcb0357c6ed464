"""manifest.yml declares what the bot needs: /migrate, interactivity, Home tab, scopes, events."""

from __future__ import annotations

from pathlib import Path

MANIFEST = (Path(__file__).resolve().parent.parent / "manifest.yml").read_text()


def test_the_manifest_declares_the_command_interactivity_home_and_scopes():
    for line in (
        "- command: /migrate",
        "url: https://YOUR-HOST/slack/events",
        "request_url: https://YOUR-HOST/slack/events",
        "home_tab_enabled: true",
        "- commands",
        "- chat:write",
        "- chat:write.public",
        "- files:write",
        "- app_home_opened",
        "is_enabled: true",
        "socket_mode_enabled: false",
        "usage_hint:",
    ):
        assert line in MANIFEST, line


def test_the_display_name_fits_slacks_35_characters():
    name = next(l.split(":", 1)[1].strip() for l in MANIFEST.splitlines() if l.strip().startswith("name:"))
    assert 0 < len(name) <= 35
