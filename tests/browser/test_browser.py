"""Real browser end to end: headless Chromium -> a page using supabase-js (UMD) -> mitmdump + rtproxy in
reverse mode as the Worker -> the local Realtime server.

The page (tests/browser/site/index.html) is "the site behind the Worker": a stdlib HTTP server serves it,
and mitmdump's reverse target is that server, so the page's origin is the Worker (mitmdump) and only the
WebSocket upgrade is rerouted. The page subscribes to broadcast (self), presence and postgres_changes on
one channel, either the design's way (its `ProxyWebSocket` wrapper as `realtime.transport`), the direct
way (`createClient(<Worker origin>, key)`), or with the wrapper fixed (binaryType forwarded). It exposes
what it saw on `window.rt`; tests await it with `page.wait_for_function`, never with sleeps.

Prerequisites: /usr/bin/chromium (apt package `chromium`), the Python package `playwright` (its driver
only; no browser download), and `npm ci` in tests/browser/site. Missing ones skip this module, except
under CI (CI=true), where they fail it. Each case leaves artifacts/browser/<case>.png (the page renders
its status) and <case>.txt (window.rt, console and page errors, frames, rtproxy's log).
"""

from __future__ import annotations

import asyncio
import functools
import http.server
import json
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import IN_CI, TIMEOUT

try:
    from playwright.async_api import Error as PlaywrightError
    from playwright.async_api import async_playwright
except ImportError:  # reported below as a missing prerequisite
    async_playwright = None  # type: ignore[assignment]
    PlaywrightError = Exception  # type: ignore[assignment,misc]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SITE = HERE / "site"
BUNDLE = SITE / "node_modules" / "@supabase" / "supabase-js" / "dist" / "umd" / "supabase.js"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
ARTIFACTS = ROOT / "artifacts" / "browser"
WAIT_MS = TIMEOUT * 1000
CHANNEL, TOPIC, TABLE, PRESENCE_KEY = "room1", "realtime:room1", "todos", "alice"
USER_PUSH, USER_BROADCAST = 3, 4  # vsn 2.0.0 binary kinds: client broadcast push, server broadcast

MISSING = [
    what
    for what, ok in (
        (f"{CHROMIUM} (apt-get install -y chromium)", os.path.exists(CHROMIUM)),
        ("the playwright Python package (pip install playwright)", async_playwright is not None),
        (f"{BUNDLE.relative_to(ROOT)} (npm ci --no-audit --no-fund in tests/browser/site)", BUNDLE.is_file()),
    )
    if not ok
]
if MISSING and not IN_CI:
    pytest.skip("real-browser tests need " + "; ".join(MISSING), allow_module_level=True)


@pytest.fixture(autouse=True)
def _prerequisites():
    if MISSING:  # only reached under CI: missing prerequisites fail every test here, loudly
        pytest.fail(
            "CI is set but the real-browser tests cannot run; missing: " + "; ".join(MISSING), pytrace=False
        )


# ------------------------------------------------------------------------------------------ fixtures


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture(scope="module")
def site():
    """The site behind the Worker: tests/browser/site over HTTP on 127.0.0.1, in a thread."""
    handler = functools.partial(_Quiet, directory=str(SITE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="browser-e2e-site", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
async def browser():
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


@dataclass
class Tab:
    """A page plus what the browser saw outside the page's own JS: console errors, uncaught exceptions,
    WebSocket frames (Playwright's view of the wire, as DevTools shows it)."""

    page: object
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    sockets: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # HTTP requests (WebSockets are in `sockets`)
    received: list[str | bytes] = field(default_factory=list)
    sent: list[str | bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.changed = asyncio.Event()
        self.page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))
        self.page.on("pageerror", self._page_error)
        self.page.on("websocket", self._socket)
        self.page.on("request", lambda r: self.requests.append(r.url))

    def _page_error(self, e) -> None:
        self.page_errors.append(f"{e.name}: {e.message}")
        self.changed.set()

    def _socket(self, ws) -> None:
        self.sockets.append(re.sub(r"apikey=[^&]*", "apikey=[redacted]", ws.url))
        ws.on("framereceived", lambda payload: self._frame(self.received, payload))
        ws.on("framesent", lambda payload: self._frame(self.sent, payload))

    def _frame(self, into: list, payload: str | bytes) -> None:
        into.append(payload)
        self.changed.set()

    def binary(self, frames: list, kind: int) -> list[bytes]:
        return [f for f in frames if isinstance(f, bytes) and f[:1] == bytes([kind])]

    async def until(self, predicate, what: str) -> None:
        """Await a Python-side observation (frames) that the Playwright event handlers update."""

        async def loop():
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

        try:
            await asyncio.wait_for(loop(), TIMEOUT)
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}\n{await self.state()}") from None

    async def wait(self, js: str, what: str, arg=None) -> None:
        """page.wait_for_function with the page's observations in the failure message."""
        try:
            await self.page.wait_for_function(js, arg=arg, timeout=WAIT_MS)
        except PlaywrightError as e:
            raise AssertionError(
                f"timed out waiting for {what} ({e.message.splitlines()[0]})\n{await self.state()}"
            ) from None

    async def rt(self) -> dict:
        return await self.page.evaluate("() => window.rt")

    async def state(self) -> str:
        try:
            rt = json.dumps(await self.rt(), default=str)
        except PlaywrightError as e:
            rt = f"(page not readable: {e.message})"
        return (
            f"page window.rt: {rt}\nconsole errors: {self.console_errors}\npage errors: {self.page_errors}\n"
            f"sockets: {self.sockets}; frames in {len(self.received)}, out {len(self.sent)}"
        )

    async def save(self, case: str, proxy) -> None:
        """artifacts/browser/<case>.png (the page renders its status), <case>.txt (what the page and the
        browser saw) and <case>.rtproxy.log (mitmdump's output, which rtproxy keeps redacted)."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        try:
            await self.page.screenshot(path=str(ARTIFACTS / f"{case}.png"), full_page=True)
        except PlaywrightError as e:  # keep the test's own failure, if any, in front
            (ARTIFACTS / f"{case}.png").unlink(missing_ok=True)
            print(f"no screenshot for {case}: {e.message}")
        frames = [
            f"{'->' if out else '<-'} " + (f.hex(" ")[:95] if isinstance(f, bytes) else f[:160])
            for out, fs in ((True, self.sent), (False, self.received))
            for f in fs
        ]
        (ARTIFACTS / f"{case}.txt").write_text(
            f"{await self.state()}\nHTTP requests: {self.requests}\n\n"
            "frames (Playwright; sent, then received):\n" + "\n".join(frames) + "\n"
        )
        save_log(case, proxy)


def save_log(case: str, proxy) -> None:
    (ARTIFACTS / f"{case}.rtproxy.log").write_text(proxy.output + "\n")


async def open_site(browser, proxy, anon_key: str, approach: str, **cfg) -> Tab:
    """Open the site through the Worker (mitmdump) and start the page's Realtime client."""
    page = await browser.new_page()
    tab = Tab(page)
    await page.goto(f"{proxy.url}/", wait_until="load")
    assert await page.evaluate("() => typeof supabase === 'object' && typeof supabase.createClient")
    # The key goes in by evaluate, not in the page URL, so mitmproxy's flow lines never carry it.
    await page.evaluate(
        "cfg => window.start(cfg)",
        {
            "approach": approach,
            "key": anon_key,
            "channel": CHANNEL,
            "presenceKey": PRESENCE_KEY,
            "table": TABLE,
            "heartbeatIntervalMs": 1000,
            "timeout": 3000,
            **cfg,
        },
    )
    return tab


def status_js(*wanted: str) -> str:
    return f"() => window.rt.statuses.some(s => {json.dumps(list(wanted))}.includes(s.status))"


# ------------------------------------------------------------------------------------------ tests


@pytest.mark.parametrize("approach", ["direct", "wrapper", "wrapper-fixed"])
async def test_fixed_mode(approach, site, browser, local_server, mitmdump, anon_key):
    """fixed: SUBSCRIBED every way. The binary (kind 4) echo of the page's own broadcast reaches the
    browser every way, but the design's wrapper hands supabase-js a Blob, which it drops silently."""
    proxy = await mitmdump(f"rt_supabase_url={local_server.url}", mode=f"reverse:{site}")
    tab = await open_site(browser, proxy, anon_key, approach)
    case = f"fixed-{approach}"
    try:
        await tab.wait(status_js("SUBSCRIBED", "CHANNEL_ERROR", "TIMED_OUT", "CLOSED"), "a channel status")
        assert [s["status"] for s in (await tab.rt())["statuses"]] == ["SUBSCRIBED"], await tab.state()
        assert len(tab.sockets) == 1 and tab.sockets[0].startswith(
            f"ws://127.0.0.1:{proxy.port}/realtime/v1/websocket?"
        ), tab.sockets
        assert "vsn=2.0.0" in tab.sockets[0]

        # 1. broadcast to self: out as binary kind 3, back as binary kind 4 - on the wire in every case.
        assert await tab.page.evaluate("() => window.sendBroadcast({x: 1})") == "ok"
        await tab.until(lambda: tab.binary(tab.sent, USER_PUSH), "the page's broadcast sent as binary kind 3")
        await tab.until(
            lambda: tab.binary(tab.received, USER_BROADCAST),
            "the broadcast echo received by the browser as binary kind 4",
        )
        echo = tab.binary(tab.received, USER_BROADCAST)[0]
        assert b'"x":1' in echo or b'"x": 1' in echo, echo
        if approach != "wrapper":
            await tab.wait("() => window.rt.broadcasts.length >= 1", "the broadcast callback")
            assert (await tab.rt())["broadcasts"] == [{"x": 1}]

        # 2. presence (JSON frames), after the kind-4 frame reached the browser.
        await tab.page.evaluate("() => window.track({online_at: 'now'})")
        await tab.wait(f"() => window.rt.presenceKeys.includes({json.dumps(PRESENCE_KEY)})", "presence sync")

        # 3. postgres_changes (JSON frames), emitted by the test.
        delivered = local_server.emit_postgres_change(
            schema="public", table=TABLE, type="INSERT", record={"id": 1, "title": "t"}
        )
        assert delivered == 1
        await tab.wait("() => window.rt.postgres.length >= 1", "the postgres_changes INSERT")
        rt = await tab.rt()
        assert rt["postgres"] == [{"eventType": "INSERT", "table": TABLE, "new": {"id": 1, "title": "t"}}]

        # 4. a heartbeat answered (1 s interval): the wrapper's readyState copy keeps supabase-js sending.
        await tab.until(
            lambda: any('"phoenix","phx_reply"' in f for f in tab.received if isinstance(f, str)),
            "a heartbeat reply",
        )

        if approach == "wrapper":
            # The kind-4 frame reached the browser before the presence and postgres frames, which the page
            # did get: its broadcast callback had its chance and never fired.
            assert rt["broadcasts"] == [], rt
            assert "Blob" in rt["dataTypes"] and "ArrayBuffer" not in rt["dataTypes"], rt["dataTypes"]
        elif approach == "wrapper-fixed":
            assert "ArrayBuffer" in rt["dataTypes"] and "Blob" not in rt["dataTypes"], rt["dataTypes"]
        # The page came from the site through the Worker; nothing was fetched from SUPABASE_URL.
        assert tab.requests and all(u.startswith(f"{proxy.url}/") for u in tab.requests), tab.requests
        # The loss is silent: no console error, no uncaught exception.
        assert tab.console_errors == [] and tab.page_errors == [], await tab.state()

        await proxy.wait_for(rf"{TOPIC} joined in \d+ ms")
        await proxy.wait_for(rf"presence {TOPIC}: \d+ present")
    finally:
        await tab.save(case, proxy)
    await tab.page.close()  # the tab goes away: the browser closes the socket
    await proxy.wait_for(r"heartbeats: [1-9]\d* sent, [1-9]\d* answered")
    await proxy.wait_for(rf"  {TOPIC}: ")  # the per-channel summary, the connection's last line
    save_log(case, proxy)
    assert anon_key not in proxy.output
    # Nothing is wrong on the wire in fixed mode, the wrapper's loss included: rtproxy has nothing to say.
    assert " finding " not in proxy.output, proxy.output


@pytest.mark.parametrize("approach", ["direct", "wrapper"])
async def test_relay_mode(approach, site, browser, local_server, mitmdump, anon_key):
    """relay (the design's JS relay as intended): 101 at once, the query dropped, so Realtime refuses the
    keyless upgrade and the client is closed with 1011: the page never subscribes."""
    proxy = await mitmdump(f"rt_supabase_url={local_server.url}", "rt_mode=relay", mode=f"reverse:{site}")
    tab = await open_site(browser, proxy, anon_key, approach)
    case = f"relay-{approach}"
    try:
        await tab.wait(status_js("CHANNEL_ERROR", "TIMED_OUT", "SUBSCRIBED"), "a channel status")
        rt = await tab.rt()
        statuses = [s["status"] for s in rt["statuses"]]
        assert statuses[0] in ("CHANNEL_ERROR", "TIMED_OUT") and "SUBSCRIBED" not in statuses, rt
        await proxy.wait_for(r"finding apikey-missing ")
        await proxy.wait_for(r"finding early-101 ")
        await proxy.wait_for(r"finding vsn-missing ")  # the dropped query took vsn=2.0.0 with it
        await proxy.wait_for(r"closed by server: 1011 \(Proxy server error\)")
        if re.search(r"hop: frame-dropped", proxy.output):  # the join raced the upstream's refusal and lost
            await proxy.wait_for(rf"finding join-dropped-by-proxy {TOPIC} ")
        await tab.page.evaluate("() => window.client.removeAllChannels()")  # end the reconnect loop
        assert "SUBSCRIBED" not in [s["status"] for s in (await tab.rt())["statuses"]]
        assert tab.page_errors == [], tab.page_errors
        assert anon_key not in proxy.output
    finally:
        await tab.save(case, proxy)


async def test_fixed_mode_wrapper_with_logger(site, browser, local_server, mitmdump, anon_key):
    """With a Realtime `logger` set, the same lost frame surfaces: supabase-js decodes the Blob to an empty
    message and its log line reads `payload.status` of undefined, an uncaught TypeError (a `pageerror`,
    not a console message). Still no broadcast callback."""
    proxy = await mitmdump(f"rt_supabase_url={local_server.url}", mode=f"reverse:{site}")
    tab = await open_site(browser, proxy, anon_key, "wrapper", logger=True)
    try:
        await tab.wait(status_js("SUBSCRIBED", "CHANNEL_ERROR", "TIMED_OUT", "CLOSED"), "a channel status")
        assert [s["status"] for s in (await tab.rt())["statuses"]] == ["SUBSCRIBED"], await tab.state()
        assert tab.page_errors == [], tab.page_errors  # JSON frames are logged fine
        assert await tab.page.evaluate("() => window.sendBroadcast({x: 2})") == "ok"
        await tab.until(lambda: tab.binary(tab.received, USER_BROADCAST), "the kind-4 echo in the browser")
        await tab.until(lambda: tab.page_errors, "an uncaught exception for the Blob frame")
        assert len(tab.page_errors) == 1 and tab.page_errors[0].startswith("TypeError: "), tab.page_errors
        assert "'status'" in tab.page_errors[0], tab.page_errors
        await tab.page.evaluate("() => window.track({online_at: 'now'})")  # a JSON event after it arrives
        await tab.wait(f"() => window.rt.presenceKeys.includes({json.dumps(PRESENCE_KEY)})", "presence sync")
        assert (await tab.rt())["broadcasts"] == []
        assert tab.console_errors == [], tab.console_errors
    finally:
        await tab.save("fixed-wrapper-logger", proxy)
