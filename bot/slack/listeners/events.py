"""Events: the App Home tab is (re)published whenever a user opens it."""

from __future__ import annotations

from bot.slack import home


def register(app, bridge) -> None:
    @app.event("app_home_opened")
    def home_opened(event, client) -> None:
        if event.get("tab", "home") == "home":
            home.publish(bridge.core, client, event["user"])
