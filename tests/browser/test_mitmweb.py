"""mitmweb with rtproxy, driven in Chromium: Realtime frames decoded by the "Supabase Realtime" content
views (compact and full), a refused channel marked and commented, and the mitmweb walkthrough of docs/mitmweb.md run
as written (its screenshots go to artifacts/; with RT_UPDATE_DOCS=1 the walkthrough's two replace
docs/mitmweb-flow-list.png and docs/mitmweb-realtime-view.png, so a test run leaves the tree as it was)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
from pathlib import Path

from conftest import ADDON, MITMWEB, ROOT, TIMEOUT, Mitmdump, OutputProcess
from realtime import AsyncRealtimeClient
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
from webapi import PASSWORD, WebApi, free_port, start_mitmweb
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
            # The compact form (auto's pick): one line per frame.
            echo = page.get_by_text(
                '← broadcast realtime:room1 (binary kind 4) {"type": "broadcast", "event": "cursor"'
            )
            await echo.wait_for(timeout=TIMEOUT * 1000)
            text = await page.locator("body").inner_text()
            assert '→ broadcast realtime:room1 join_ref=1 ref=2 (binary kind 3) {"type": "broadcast"' in text
            assert (
                "→ phx_join realtime:room1 join_ref=1 ref=1 {" in text
                and "← phx_reply realtime:room1" in text
            )
            # The full form, picked in the View menu by its name.
            await page.get_by_text("View:").click()
            await page.get_by_text("supabase realtime full", exact=True).click()
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


# ------------------------------------------------------------- the docs' mitmweb walkthrough

WALKTHROUGH = ROOT / "docs" / "mitmweb.md"  # README.md shows the same command (tests/test_readme.py)
# The walkthrough's screenshots: rewritten only on request, else beside the other artifacts.
DOCS = ROOT / "docs" if os.environ.get("RT_UPDATE_DOCS") == "1" else ARTIFACTS.parent
MARK = "<!-- mitmweb-command:"


def readme_command() -> list[str]:
    """The mitmweb command of docs/mitmweb.md: the fenced block after its MARK comment."""
    text = WALKTHROUGH.read_text()
    block = text[text.index(MARK) :].split("```bash\n", 1)[1].split("```", 1)[0]
    return shlex.split(block.replace("\\\n", " "))


def with_ports(args: list[str], proxy: int, web: int, confdir: Path) -> list[str]:
    """The walkthrough's command, as a test must run it: its own free ports, mitmproxy's CA in a temporary
    confdir, no browser opened by mitmweb itself; this checkout's programs and addon."""
    out = list(args)
    assert out[0] == ".venv/bin/mitmweb" and out[1:3] == ["-s", "addon/rtproxy.py"], out
    out[0], out[2] = MITMWEB, ADDON
    out[out.index("-p") + 1] = str(proxy)
    out[out.index("--web-port") + 1] = str(web)
    return [*out, "--set", f"confdir={confdir}", "--set", "web_open_browser=false"]


class ReadmeMitmweb(Mitmdump):
    """mitmweb started from exactly the walkthrough's arguments (with_ports)."""

    def __init__(self, args: list[str], proxy_port: int) -> None:
        OutputProcess.__init__(self, args)
        self.port = proxy_port

    async def start(self) -> ReadmeMitmweb:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop("SUPABASE_URL", None)
        await self._spawn(env)
        await self.wait_for(rf"listening at 127\.0\.0\.1:{self.port}\b")
        return self


COMMENT = "orders TIMED_OUT · join dropped by proxy · rtproxy: join-dropped-by-proxy"
# Does the cell show TEXT (its start) uncut, inside the window? mitmweb cuts a cell's text with an ellipsis.
SHOWS = """([el, text]) => {
    const style = getComputedStyle(el), ctx = document.createElement("canvas").getContext("2d");
    ctx.font = `${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
    const room = el.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    const width = ctx.measureText(text).width, whole = text === el.innerText;
    const inside = el.getBoundingClientRect().left + width <= window.innerWidth;
    return inside && (whole ? width <= room : width + ctx.measureText("…").width <= room);
}"""


async def shows(cell, text: str) -> bool:
    return await cell.page.evaluate(SHOWS, [await cell.element_handle(), text])


async def test_mitmweb_from_the_readme_shows_the_failed_channel_and_what_rtproxy_did(tmp_path, anon_key):
    """The walkthrough's mitmweb command (README.md shows it too), run as written (its own ports): the login
    URL mitmweb prints opens the UI; a realtime-py client joins `orders`, which the fault drops (TIMED_OUT); rt.inject.server sends it a
    frame through mitmweb's command API. The flow list names the channel, the outcome and the cause
    without the flow being opened; inside it, the Realtime view labels the dropped and the injected frame.
    Screenshots at 1280 px: docs/mitmweb-flow-list.png, docs/mitmweb-realtime-view.png."""
    args = readme_command()
    assert "--listen-host" in args and args[args.index("--listen-host") + 1] == "127.0.0.1"
    port, web_port = free_port(), free_port()
    web = await ReadmeMitmweb(with_ports(args, port, web_port, tmp_path), port).start()
    rt = AsyncRealtimeClient(
        f"ws://127.0.0.1:{port}/realtime/v1", token=anon_key, auto_reconnect=False, max_retries=1, timeout=1
    )
    try:
        login = (
            await web.wait_for(rf"Web server listening at (http://127\.0\.0\.1:{web_port}/\?token=\w+)$")
        ).group(1)
        api = WebApi(login.split("/?")[0], token=login.split("token=")[1])

        statuses: list[str] = []
        joined = asyncio.Event()
        await rt.connect()
        channel = rt.channel("orders")
        await channel.subscribe(lambda status, err: (statuses.append(status.value), joined.set()))
        await asyncio.wait_for(joined.wait(), TIMEOUT)
        assert statuses == ["TIMED_OUT"]
        conn = (await web.wait_for(r"\[rt (\w{6})\] finding join-dropped-by-proxy realtime:orders")).group(1)
        whole = f"{COMMENT} [rt {conn}]"  # the connection's id last, as the log prints it
        payload = json.dumps({"type": "broadcast", "event": "new_order", "payload": {"id": 42}})
        answer = await api.command("rt.inject.server", conn, "realtime:orders", "broadcast", payload)
        assert answer == {"value": None}, answer
        await web.wait_for(r"hop: command: rt\.inject\.server: sent the client broadcast on realtime:orders")
        await rt.close()
        await web.wait_for(r"closed by client")

        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 560})
                await page.goto(login)  # the URL as mitmweb printed it: it logs in
                row = page.locator("tr", has=page.locator("td.col-comment", has_text="orders TIMED_OUT"))
                await row.wait_for(timeout=TIMEOUT * 1000)
                # Found by its comment's channel and outcome, without opening it: all of it is there.
                comment = row.locator("td.col-comment")
                assert (await comment.inner_text()) == whole
                path = row.locator("td.col-path")
                assert f"http://127.0.0.1:{port}/realtime/v1/websocket?apikey=" in await path.inner_text()
                assert (await row.locator("span.marker").inner_text()).strip() == "✖"
                # mitmweb's Comment column starts 150 px wide (rtproxy puts it before Path): about 17
                # characters, the channel and the outcome's start. A double click on its header's edge
                # fits it to the comments (mitmweb keeps the width): all of it, inside the window.
                assert await shows(comment, "orders") and not await shows(comment, whole)
                await page.locator("th.col-comment .col-resize-handle").dblclick()
                await page.wait_for_function(SHOWS, arg=[await comment.element_handle(), whole])
                DOCS.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=str(DOCS / "mitmweb-flow-list.png"))

                await row.click()
                await page.get_by_text("WebSocket", exact=True).click()
                dropped = page.get_by_text("✂ DROPPED by rtproxy (fault drop-join): the server never got it")
                injected = page.get_by_text(
                    "✚ INJECTED by rtproxy (rt.inject.server): the server never sent it"
                )
                await dropped.first.wait_for(timeout=TIMEOUT * 1000)
                await injected.wait_for(timeout=TIMEOUT * 1000)
                text = await page.locator("body").inner_text()
                assert "→ phx_join realtime:orders join_ref=1 ref=1 {" in text
                assert '← broadcast realtime:orders {"type": "broadcast", "event": "new_order"' in text
                await page.set_viewport_size({"width": 1280, "height": 720})
                await page.screenshot(path=str(DOCS / "mitmweb-realtime-view.png"))
                # The full form is one pick away in the View menu, under a name that reads as one.
                await page.get_by_text("View:").click()
                await page.get_by_text("supabase realtime full", exact=True).click()
                await page.get_by_text(
                    "# ✂ DROPPED by rtproxy (fault drop-join): the server never got it"
                ).first.wait_for(timeout=TIMEOUT * 1000)
                assert "# 1.0.0 object, client → server" in await page.locator("body").inner_text()
                # Where docs/mitmweb.md says the command bar is.
                await page.get_by_text("Options", exact=True).first.click()
                await page.get_by_text("Display Command Bar").click()
                await page.locator("input[placeholder='Enter command']").wait_for(timeout=TIMEOUT * 1000)
            finally:
                await browser.close()
    finally:
        await web.stop()
