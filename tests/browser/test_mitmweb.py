"""mitmweb shows Realtime frames decoded by rtproxy's "Supabase Realtime" content view: a test drives
mitmweb's UI in Chromium and saves a screenshot (artifacts/mitmweb.png)."""

from __future__ import annotations

import asyncio
import json
import re

from conftest import TIMEOUT
from rtproxy_core import frames

# Importing test_browser applies its prerequisites: skip outside CI, fail inside (its autouse fixture).
from test_browser import (  # noqa: F401 (site: the fixture)
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    _prerequisites,
    async_playwright,
    open_site,
    site,
)
from webapi import PASSWORD, start_mitmweb
from websockets.asyncio.client import connect


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
    web, api = await start_mitmweb(mitmdump, f"rt_supabase_url={local_server.url}")
    ui = api.base
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


async def test_mitmweb_marks_a_refused_channel_and_takes_rt_fault_from_its_options(
    site,  # noqa: F811 (the fixture imported above)
    local_server,
    mitmdump,
    anon_key,
):
    """A page (supabase-js) whose channel is refused: mitmweb's flow list shows the flow marked, with
    the finding in its Comment column; rt_fault set in mitmweb's Options editor reaches the proxy."""
    local_server.config.private_only = True  # public joins: "PrivateOnly: ..."
    web, api = await start_mitmweb(mitmdump, f"rt_supabase_url={local_server.url}", mode=f"reverse:{site}")
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            tab = await open_site(browser, web, anon_key, "direct")
            await tab.page.wait_for_function(
                "() => window.rt.statuses.some(s => s.status === 'CHANNEL_ERROR')", timeout=TIMEOUT * 1000
            )
            await web.wait_for(r"finding join-unauthorized realtime:room1")
            page = await browser.new_page(viewport={"width": 1400, "height": 900})
            await page.goto(f"{api.base}/?token={PASSWORD}")
            row = page.locator("tr", has=page.get_by_text("/realtime/v1/websocket")).first
            await row.locator(
                "td.col-comment",
                has_text="room1 CHANNEL_ERROR · join unauthorized · rtproxy: join-unauthorized",
            ).wait_for(timeout=TIMEOUT * 1000)
            assert (await row.locator("span.marker").inner_text()).strip() == "✖"
            ARTIFACTS.parent.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS.parent / "mitmweb-marked.png"))
            # Options -> Edit Options, as a user would: type the fault into rt_fault's field.
            await page.get_by_text("Options", exact=True).first.click()
            await page.get_by_text("Edit Options").click()
            row = page.locator(
                "div.form-row", has=page.locator("label.control-label", has_text=re.compile("^rt_fault$"))
            )
            field = row.locator("input")
            await field.fill("swallow-heartbeats")
            await field.press("Enter")
            await web.wait_for(r"rt_fault is now swallow-heartbeats: new connections get it")
        finally:
            await browser.close()
