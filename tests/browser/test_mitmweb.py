"""mitmweb shows Realtime frames decoded by rtproxy's "Supabase Realtime" content view: a test drives
mitmweb's UI in Chromium and saves a screenshot (artifacts/mitmweb.png)."""

from __future__ import annotations

import asyncio
import json
import re
import socket

from conftest import MITMWEB, TIMEOUT
from rtproxy_core import frames

# Importing test_browser applies its prerequisites: skip outside CI, fail inside (its autouse fixture).
from test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, _prerequisites, async_playwright  # noqa: F401
from websockets.asyncio.client import connect

PASSWORD = "rtproxy-test"


def free_port() -> int:
    """mitmweb names its UI port 0 when asked for 0, so pick one (loopback)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def realtime_traffic(port: int) -> None:
    """A vsn 2.0.0 client: join with presence, a binary broadcast echoed to itself, a heartbeat."""
    url = f"ws://127.0.0.1:{port}/realtime/v1/websocket?apikey=YOUR-ANON-KEY&vsn=2.0.0"
    async with connect(url) as ws:
        await ws.send(
            json.dumps(
                [
                    "1",
                    "1",
                    "realtime:room1",
                    "phx_join",
                    {"config": {"broadcast": {"self": True}, "presence": {"key": "alice"}}},
                ]
            )
        )
        await asyncio.wait_for(ws.recv(), TIMEOUT)
        await ws.send(
            frames.encode_user_push("realtime:room1", "cursor", {"x": 12, "y": 40}, join_ref="1", ref="2")
        )
        echo = await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert isinstance(echo, bytes) and echo[0] == frames.USER_BROADCAST


async def test_mitmweb_shows_decoded_frames(local_server, mitmdump):
    local_server.config.accept_any_apikey = True  # the screenshot shows the URL: use a placeholder key
    web = await mitmdump(
        f"rt_supabase_url={local_server.url}",
        f"web_password={PASSWORD}",
        "web_open_browser=false",
        program=MITMWEB,
        extra=("--web-host", "127.0.0.1", "--web-port", str(free_port())),
    )
    ui = (await web.wait_for(r"Web server listening at (http://127\.0\.0\.1:\d+)/")).group(1)
    await realtime_traffic(web.port)
    await web.wait_for(r"closed by client")
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 1500})
            await page.goto(f"{ui}/?token={PASSWORD}")
            await page.get_by_text("/realtime/v1/websocket").first.click()
            await page.get_by_text("WebSocket", exact=True).click()
            view = page.locator("text=2.0.0 binary kind 4 (user broadcast), server → client")
            await view.wait_for(timeout=TIMEOUT * 1000)
            text = await page.locator("body").inner_text()
            assert "# 2.0.0 binary kind 3 (user broadcast push), client → server" in text
            assert re.search(r'event: "broadcast"', text) and '"x": 12' in text
            assert 'event: "phx_join"' in text and 'event: "phx_reply"' in text
            ARTIFACTS.parent.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS.parent / "mitmweb.png"))
        finally:
            await browser.close()
