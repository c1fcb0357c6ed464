"""The channel without a workspace: the demo flow through the Slack stand-in, rendered.

Runs the real bot (bolt app, command core, outbox) against the test suite's Slack stand-in,
a scratch database at version 005 and a scratch Redis prefix, through four scenes — a
successful run, its rollback, a failed run, a restore from backup — and writes
docs/gallery/index.html (each message laid out the way Slack shows it: header, sections,
context, buttons, the thread under its parent) plus one page and one PNG screenshot per
scene, taken with headless Chromium. Called by scripts/gallery.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.config import Settings  # noqa: E402
from tests.support import pg  # noqa: E402
from tests.support.deployment import Deployment, TcpListener  # noqa: E402
from tests.support.slack_standin import RunningBot, SlackStandIn, find_button  # noqa: E402

OUT = ROOT / "docs" / "gallery"
CHANNEL = "C0MIGRATE"
NAMES = {
    "U0RAFAEL": "Rafael (coordinator)",
    "U0DYLAN": "Dylan Torres (TPM)",
    "U0LIU": "Liu (database engineer)",
    "U0SERGEI": "Sergei (security)",
    "U0YASMIN": "Yasmin (integration)",
}
COORDINATOR, TPM, LIU, SERGEI = "U0RAFAEL", "U0DYLAN", "U0LIU", "U0SERGEI"
REDIS_URL = os.environ.get("MIGRATE_TEST_REDIS", "redis://127.0.0.1:6379/0")


# -- driving the bot -------------------------------------------------------------------------
class Demo:
    def __init__(self, bot: RunningBot, standin: SlackStandIn) -> None:
        self.bot, self.standin = bot, standin

    def slash(self, user: str, text: str) -> None:
        assert self.bot.slack.slash(user, text).status == 200
        time.sleep(0.3)
        self.settle()

    def settle(self) -> None:
        """Wait for the command, its work and every channel write to be delivered."""
        self.bot.bridge.wait_work(600)
        self.bot.bridge.worker.drain(timeout=60)
        time.sleep(3.0)  # a refresh of the parent waits for its 2.5 s spacing
        self.bot.bridge.worker.drain(timeout=60)

    def posted(self, needle: str) -> dict:
        call = self.standin.wait_method(
            "chat.postMessage", where=lambda b: needle in b.get("text", ""), timeout=600
        )[-1]
        return self.standin.messages[(CHANNEL, call.answer["ts"])]

    def click(self, user: str, message: dict, action: str) -> None:
        find_button(message, action)
        assert self.bot.slack.click(user, message, action).status == 200
        time.sleep(0.5)
        self.settle()

    def parent(self) -> str:
        return self.bot.bridge.threads.parent(self.bot.core.store.current().id)


def run_demo(bot: RunningBot, standin: SlackStandIn) -> list[dict]:
    """The four scenes; each: title, what happened, the parent ts, and the calls index range."""
    demo = Demo(bot, standin)
    scenes = []

    start = len(standin.calls)
    demo.slash(COORDINATOR, "preflight")
    request = demo.posted("Requesting go/no-go decision")
    demo.click(TPM, request, "approve_now")
    demo.slash(LIU, "run phase 1")
    demo.click(SERGEI, demo.posted("Phase 1 complete"), "run_phase")
    demo.click(COORDINATOR, demo.posted("Phase 2 complete"), "run_phase")
    first = demo.parent()
    scenes.append(
        {
            "id": "success",
            "title": "A successful run",
            "what": "pre-flight → GO now (button) → phase 1 (slash) → phase 2 and verification (buttons)",
            "parent": first,
            "from": start,
        }
    )

    start = len(standin.calls)
    demo.slash(COORDINATOR, "rollback phase 2")
    demo.slash(COORDINATOR, "rollback phase 1")
    scenes.append(
        {
            "id": "rollback",
            "title": "Its rollback",
            "what": "rollback phase 2, then phase 1: the same card says so",
            "parent": first,
            "from": start,
        }
    )

    start = len(standin.calls)
    demo.slash(COORDINATOR, "preflight")
    demo.slash(TPM, "approve")
    pg.scalar(
        bot.core.settings.database_url,
        "UPDATE platform.organizations SET slug = 'lancio-old' WHERE slug = 'lancio' RETURNING 1",
    )
    demo.slash(LIU, "run phase 1")
    failed = demo.parent()
    scenes.append(
        {
            "id": "failure",
            "title": "A failed run",
            "what": "the live database changed after approval: step 1.2 fails, URGENT to the TPM and coordinator",
            "parent": failed,
            "from": start,
        }
    )

    start = len(standin.calls)
    demo.slash(COORDINATOR, "rollback restore")
    demo.click(TPM, demo.posted("Restore from backup requested"), "restore_confirm")
    scenes.append(
        {
            "id": "restore",
            "title": "A restore from backup",
            "what": "rollback restore, confirmed by the TPM's button",
            "parent": failed,
            "from": start,
        }
    )
    return scenes


# -- rendering as Slack lays messages out ----------------------------------------------------
def mrkdwn(text: str) -> str:
    """Slack mrkdwn to HTML. The text is already escaped for Slack (&amp; &lt; &gt;), which is
    also what HTML needs: only the markup is turned into tags."""
    parts = re.split(r"```(.*?)```", text, flags=re.S)
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(f"<pre>{part}</pre>")
            continue
        part = re.sub(r"`([^`\n]+)`", r"<code>\1</code>", part)
        part = re.sub(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])", r"<b>\1</b>", part)
        part = re.sub(r"(?<![\w_])_([^_\n]+)_(?![\w_])", r"<i>\1</i>", part)
        part = re.sub(
            r"<@([A-Z0-9]+)>",
            lambda m: f'<span class="mention">@{html.escape(NAMES.get(m[1], m[1]))}</span>',
            part,
        )
        out.append(part.replace("\n", "<br>"))
    return "".join(out)


def plain(text: str) -> str:
    return html.escape(text)


def block_html(block: dict) -> str:
    kind = block.get("type")
    if kind == "header":
        return f'<div class="header">{plain(block["text"]["text"])}</div>'
    if kind == "section":
        return f'<div class="section">{mrkdwn(block["text"]["text"])}</div>'
    if kind == "context":
        return (
            '<div class="context">'
            + " ".join(mrkdwn(e.get("text", "")) for e in block["elements"])
            + "</div>"
        )
    if kind == "divider":
        return "<hr>"
    if kind == "actions":
        buttons = "".join(
            f'<span class="button {el.get("style", "")}">{plain(el["text"]["text"])}</span>'
            for el in block["elements"]
        )
        return f'<div class="actions">{buttons}</div>'
    return ""


def message_html(message: dict, *, reply: bool = False, broadcast: bool = False) -> str:
    blocks = message.get("blocks") or []
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
    body = (
        "".join(block_html(b) for b in blocks)
        or f'<div class="section">{mrkdwn(message.get("text", ""))}</div>'
    )
    note = (
        f'<div class="broadcast">{"Replied to a thread — " if not reply else ""}Also sent to the channel</div>'
        if broadcast
        else ""
    )
    return (
        f'<div class="message{" reply" if reply else ""}"><div class="avatar">🛠️</div><div class="content">'
        f'<div class="who">migrate-bot <span class="app">APP</span></div>{note}<div class="body">{body}</div></div></div>'
    )


def scene_html(scene: dict, standin: SlackStandIn) -> str:
    calls = standin.calls[scene["from"] : scene.get("to")]
    edits = [c.body for c in calls if c.method == "chat.update" and c.body.get("ts") == scene["parent"]]
    parent = (
        edits[-1] if edits else standin.messages[(CHANNEL, scene["parent"])]
    )  # the card as this scene left it
    replies = [
        c for c in calls if c.method == "chat.postMessage" and c.body.get("thread_ts") == scene["parent"]
    ]
    thread = "".join(
        message_html(
            standin.messages[(CHANNEL, c.answer["ts"])],
            reply=True,
            broadcast=bool(c.body.get("reply_broadcast")),
        )
        for c in replies
    )
    cards = [c for c in calls if c.method == "chat.update" and c.body.get("ts") == scene["parent"]]
    steps = "".join(f"<li>{mrkdwn(c.body['text'])}</li>" for c in cards)
    return (
        f'<section id="{scene["id"]}"><h2>{html.escape(scene["title"])}</h2><p class="what">{html.escape(scene["what"])}</p>'
        f'<div class="channel"><div class="label"># migrations — the run\'s parent message (its live card)</div>'
        f'{message_html(parent)}<div class="thread"><div class="label">Thread: {len(replies)} replies</div>{thread}</div></div>'
        f"<details><summary>The card over this scene ({len(cards)} edits)</summary><ol>{steps}</ol></details></section>"
    )


CSS = """
body{font-family:Lato,'Segoe UI',Helvetica,Arial,sans-serif;font-size:15px;color:#1d1c1d;background:#fff;margin:0;padding:16px;max-width:860px}
h1{font-size:22px} h2{font-size:18px;margin:28px 0 4px} .what{color:#616061;margin:0 0 8px}
.channel{border:1px solid #ddd;border-radius:8px;padding:8px 0}
.label{color:#616061;font-size:13px;padding:4px 16px;font-weight:bold}
.message{display:flex;padding:8px 16px} .message.reply{padding-left:40px}
.avatar{width:36px;height:36px;border-radius:4px;background:#e8f5fa;font-size:20px;display:flex;align-items:center;justify-content:center;margin-right:8px;flex:none}
.content{flex:1;min-width:0} .who{font-weight:900} .app{font-size:10px;background:#eee;color:#616061;padding:1px 3px;border-radius:2px;font-weight:bold}
.header{font-size:18px;font-weight:900;margin:4px 0}
.section{margin:4px 0;line-height:1.45;overflow-wrap:anywhere}
.context{font-size:12.5px;color:#616061;margin:4px 0}
.actions{margin:6px 0} .button{display:inline-block;border:1px solid #bbb;border-radius:4px;padding:3px 12px;margin-right:8px;font-weight:bold;font-size:14px}
.button.primary{background:#007a5a;color:#fff;border-color:#007a5a} .button.danger{color:#e01e5a;border-color:#e01e5a}
.mention{background:#e8f5fa;color:#1264a3;border-radius:3px;padding:0 2px}
code{font-family:Monaco,Menlo,Consolas,monospace;font-size:12px;color:#e01e5a;background:#f6f6f6;border:1px solid #ddd;border-radius:3px;padding:0 3px}
pre{font-family:Monaco,Menlo,Consolas,monospace;font-size:12px;background:#f8f8f8;border:1px solid #ddd;border-radius:4px;padding:8px;white-space:pre-wrap;max-height:180px;overflow:hidden}
.thread{border-top:1px solid #eee;margin-top:4px} .broadcast{font-size:12px;color:#616061}
hr{border:0;border-top:1px solid #ddd}
.body{max-height:none} .message.reply .body{max-height:330px;overflow:hidden}
.body.long{-webkit-mask-image:linear-gradient(180deg,#000 80%,transparent)} .more{color:#1264a3;font-size:13px}
"""


# Slack folds a long message behind "Show more": so does the gallery (the full text is in the page).
FOLD = """<script>
document.querySelectorAll('.body').forEach(function (b) {
  if (b.scrollHeight > b.clientHeight + 4) { b.classList.add('long'); b.insertAdjacentHTML('afterend', '<div class="more">Show more</div>'); }
});
</script>"""


def page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{CSS}</style></head><body>{body}{FOLD}</body></html>"
    )


def channel_html(standin: SlackStandIn) -> str:
    """What the channel shows without opening a thread: the parents (as they are now) and the
    replies also sent to the channel."""
    shown = [
        c
        for c in standin.calls
        if c.method == "chat.postMessage"
        and c.status == 200
        and c.answer.get("ok")
        and ("thread_ts" not in c.body or c.body.get("reply_broadcast"))
    ]
    items = "".join(
        message_html(
            standin.messages[(CHANNEL, c.answer["ts"])], broadcast=bool(c.body.get("reply_broadcast"))
        )
        for c in shown
    )
    return (
        '<section id="channel"><h2>The channel</h2><p class="what">What people see without opening a thread: '
        "one parent message per run, edited in place, and the phase boundaries and outcomes also sent to the "
        f'channel.</p><div class="channel"><div class="label"># migrations</div>{items}</div></section>'
    )


def write_pages(scenes: list[dict], standin: SlackStandIn) -> list[Path]:
    OUT.mkdir(parents=True, exist_ok=True)
    for i, scene in enumerate(scenes[:-1]):
        scene["to"] = scenes[i + 1]["from"]
    scenes = [{"id": "channel", "title": "The channel"}, *scenes]
    sections = [channel_html(standin)] + [scene_html(s, standin) for s in scenes[1:]]
    intro = (
        "<h1>migrate-bot in the channel</h1><p>Generated by <code>scripts/gallery</code>: the real bot against "
        "the Slack stand-in, each message as Slack lays it out (header, sections, context, buttons, the thread "
        "under the run's parent message).</p>"
    )
    (OUT / "index.html").write_text(page("migrate-bot gallery", intro + "".join(sections)))
    pages = []
    for scene, section in zip(scenes, sections):
        path = OUT / f"{scene['id']}.html"
        path.write_text(page(scene["title"], section))
        pages.append(path)
    return pages


def chromium() -> str | None:
    return next(
        (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None
    )


def screenshot(browser: str, page_path: Path, png: Path, height: int = 6000) -> None:
    """A PNG of `page_path` (headless Chromium, 900 px wide), cropped to its content."""
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                "--force-device-scale-factor=1",
                f"--window-size=900,{height}",
                f"--screenshot={png}",
                page_path.as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    crop(png)


def crop(png: Path) -> None:
    """Trim the white space below the content and quantize to a palette (small files)."""
    try:
        from PIL import Image, ImageChops
    except ImportError:
        return
    image = Image.open(png).convert("RGB")
    box = ImageChops.difference(image, Image.new("RGB", image.size, (255, 255, 255))).getbbox()
    if box:
        image = image.crop((0, 0, image.width, min(image.height, box[3] + 16)))
    image.quantize(colors=48).save(png, optimize=True)


# -- set-up ------------------------------------------------------------------------------------
def settings_for(workdir: Path, deployment: Deployment, mongo: TcpListener) -> tuple[Settings, str]:
    name = pg.new_name("gallery")
    url = pg.create_database(name)
    pg.apply_baseline(url)
    roster = workdir / "roster.toml"
    roster.write_text((ROOT / "roster.toml").read_text())
    return Settings(
        database_url=url,
        redis_url=REDIS_URL,
        slack_bot_token="xoxb-gallery-token",
        slack_signing_secret="gallery-signing",
        channel=CHANNEL,
        roster_path=roster,
        register_mongodb_url=f"mongodb://lancio:Gallery-Mongo-Pw-7@127.0.0.1:{mongo.port}/lancio",
        register_redis_url=REDIS_URL,
        encryption_key="gallery-key-local-only",
        backup_dir=workdir / "backups",
        redis_prefix=f"gallery:{uuid.uuid4().hex[:8]}",
        deployment_url=deployment.url,
    ), name


def main() -> int:
    import psycopg
    import redis

    import bot.slack.outbox as outbox_module

    outbox_module.POST_INTERVAL = 0.05  # the stand-in has no rate limit: the gallery need not wait
    deployment, mongo = Deployment(), TcpListener()
    with tempfile.TemporaryDirectory() as tmp, SlackStandIn() as standin:
        settings, dbname = settings_for(Path(tmp), deployment, mongo)
        running = RunningBot(settings, standin)
        try:
            scenes = run_demo(running, standin)
            pages = write_pages(scenes, standin)
        finally:
            running.close()
            client = redis.Redis.from_url(REDIS_URL)
            keys = list(client.scan_iter(match=f"{settings.redis_prefix}*", count=500))
            if keys:
                client.delete(*keys)
            with psycopg.connect(pg.SERVER_URL, autocommit=True) as conn:
                names = [
                    r[0]
                    for r in conn.execute(
                        "SELECT datname FROM pg_database WHERE datname LIKE %s", (f"{dbname}%",)
                    ).fetchall()
                ]
            for name in names:
                pg.drop_database(name)
            deployment.close()
            mongo.close()
    print(f"wrote {OUT / 'index.html'}")
    browser = chromium()
    if browser is None:
        print(
            "chromium not found: no screenshots (scripts/gallery installs it when run as root)",
            file=sys.stderr,
        )
        return 1
    for path in pages:
        png = path.with_suffix(".png")
        screenshot(browser, path, png)
        print(f"wrote {png} ({png.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
