"""rt_page_probe in Chromium: the page's side of the socket joined with the wire (issue 25).

The site (tests/browser/site) through rtproxy in reverse mode, as test_browser.py runs it, with the probe on:
the design's ProxyWebSocket wrapper hands supabase-js a Blob for the binary echo of its own broadcast, and
rtproxy names that broadcast lost (binary-delivered-as-blob) with the page's Blob evidence; the same page
connecting directly gets no such finding. With the probe off the page passes byte-identical; a page with a
strict Content-Security-Policy still runs the probe and keeps its policy but for the probe's hash.
"""

from __future__ import annotations

import asyncio
import functools
import http.server
import json
import signal
import threading
import urllib.request
from pathlib import Path

import pytest
from conftest import TIMEOUT
from rtproxy_core.page import PROBE_HASH, PROBE_PATH
from test_browser import (  # noqa: F401 - fixtures
    SITE,
    TOPIC,
    USER_BROADCAST,
    _Quiet,
    browser,
    open_site,
    save_log,
    site,
    status_js,
)


def get(url: str) -> tuple[bytes, dict[str, str]]:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read(), {k.lower(): v for k, v in r.headers.items()}


async def probing(mitmdump, local_server, site: str, *sets: str):  # noqa: F811
    """mitmdump with the page probe on, in reverse mode before `site`, rerouting to the local server."""
    return await mitmdump(
        f"rt_supabase_url={local_server.url}", "rt_page_probe=true", *sets, mode=f"reverse:{site}"
    )


@pytest.mark.parametrize("approach", ["wrapper", "direct"])
async def test_blob_delivery_named(approach, site, browser, local_server, mitmdump, anon_key):  # noqa: F811
    proxy = await probing(mitmdump, local_server, site)
    tab = await open_site(browser, proxy, anon_key, approach)
    try:
        assert await tab.page.evaluate("() => WebSocket.__rtproxyProbe === true")
        await tab.wait(status_js("SUBSCRIBED", "CHANNEL_ERROR", "TIMED_OUT", "CLOSED"), "a channel status")
        assert [s["status"] for s in (await tab.rt())["statuses"]] == ["SUBSCRIBED"], await tab.state()
        await proxy.wait_for(r"page: socket ws://127\.0\.0\.1:\d+/realtime/v1/websocket\?apikey=\[redacted\]")
        assert await tab.page.evaluate("() => window.sendBroadcast({x: 1})") == "ok"
        await tab.until(lambda: tab.binary(tab.received, USER_BROADCAST), "the kind-4 echo in the browser")
        if approach == "wrapper":
            m = await proxy.wait_for(r"finding binary-delivered-as-blob (\S+) .*")
            assert m.group(1) == TOPIC, m.group(0)
            assert "as a Blob" in m.group(0) and 'event "cursor"' in m.group(0), m.group(0)
            assert (
                "page: a binary frame was delivered to the app as a Blob (native binaryType blob)"
                in proxy.output
            )
            assert (await tab.rt())["broadcasts"] == []
        else:
            await tab.wait("() => window.rt.broadcasts.length >= 1", "the broadcast callback")
    finally:
        await tab.save(f"page-probe-{approach}", proxy)
    await tab.page.close()
    await proxy.wait_for(rf"  {TOPIC}: ")  # the connection's last line
    await proxy.wait_for(r"page: tab hidden")  # the closing tab's last report (the page never sees its close)
    save_log(f"page-probe-{approach}", proxy)
    assert anon_key not in proxy.output
    if approach == "direct":
        assert "binary-delivered-as-blob" not in proxy.output, proxy.output
        assert "page: a binary frame was delivered" not in proxy.output


async def test_probe_off_pages_byte_identical(site, mitmdump, local_server):  # noqa: F811
    proxy = await mitmdump(f"rt_supabase_url={local_server.url}", mode=f"reverse:{site}")
    for path in ("/", "/index.html"):
        assert get(proxy.url + path)[0] == get(site + path)[0]
    on = await probing(mitmdump, local_server, site)
    body, headers = get(on.url + "/")
    assert body != get(site + "/")[0] and int(headers["content-length"]) == len(body)
    assert body.index(b"<script>") < body.index(b"<meta charset")  # first in <head>


STRICT = "default-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'"
STRICT_PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>strict</title><script src="app.js"></script></head>
<body><p id="s">-</p></body></html>"""
STRICT_JS = b"""window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => window.cspViolations.push(e.violatedDirective));
window.openSocket = (key) => {
  const ws = new WebSocket(location.origin.replace("http", "ws") + "/realtime/v1/websocket?apikey=" + key + "&vsn=2.0.0");
  ws.onopen = () => { window.opened = true; ws.close(1000, "done"); };
  ws.onclose = (e) => { window.closed = e.code; };
};"""


class _Strict(_Quiet):
    def do_GET(self):
        body, kind = (
            (STRICT_JS, "text/javascript") if self.path.startswith("/app.js") else (STRICT_PAGE, "text/html")
        )
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Security-Policy", STRICT)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def strict_site():
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Strict, directory=str(SITE))
    )
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def test_strict_csp_runs_the_probe(strict_site, browser, local_server, mitmdump, anon_key):  # noqa: F811
    proxy = await probing(mitmdump, local_server, strict_site)
    _, headers = get(proxy.url + "/")
    # The policy is the upstream's with the probe's hash in script-src, nothing else.
    assert headers["content-security-policy"] == STRICT.replace(
        "script-src 'self'", f"script-src 'self' {PROBE_HASH}"
    )
    page = await browser.new_page()
    try:
        await page.goto(f"{proxy.url}/", wait_until="load")
        assert await page.evaluate("() => WebSocket.__rtproxyProbe === true")  # the probe ran
        # The policy still holds for everything else: an inline script of the page's own is refused.
        assert (
            await page.evaluate(
                """() => new Promise((ok) => { const s = document.createElement("script");
              s.textContent = "window.inlineRan = true"; document.head.append(s);
              setTimeout(() => ok(window.inlineRan === true), 100); })"""
            )
            is False
        )
        await page.evaluate("key => window.openSocket(key)", anon_key)
        await page.wait_for_function("() => window.closed !== undefined", timeout=10000)
        await proxy.wait_for(r"page: close seen by the page: 1000 done wasClean=True")
        violations = await page.evaluate("() => window.cspViolations")
        assert violations == ["script-src-elem"], violations  # the page's own inline script, not the probe
        assert not any(PROBE_PATH in line and "40" in line for line in proxy.lines if " << " in line)
    finally:
        await page.close()
    assert anon_key not in proxy.output


HEARTBEAT_MS = 500  # realtime-js's heartbeatIntervalMs in the cases below: a gap is > 2 of them, + 1 s
FROZEN_S = 2.5  # how long the page's timers stand still: the gap on the wire


def heartbeats(frames: list) -> int:
    return sum(1 for f in frames if isinstance(f, str) and '"phoenix","heartbeat"' in f)


async def set_hidden(page, hidden: bool) -> None:
    """The tab hidden or shown as the page sees it: document.visibilityState and a visibilitychange. Headless
    Chromium 156 never hides a page itself (Page.setWebLifecycleState, a minimized window, a second tab in
    front: visibilityState stays "visible", no freeze event, timers run on)."""
    await page.evaluate(
        """hidden => {
          Object.defineProperty(document, "visibilityState", { value: hidden ? "hidden" : "visible", configurable: true });
          Object.defineProperty(document, "hidden", { value: hidden, configurable: true });
          document.dispatchEvent(new Event("visibilitychange"));
        }""",
        hidden,
    )


async def freeze(page, seconds: float) -> None:
    """Stop the page's timers for `seconds`, as a frozen or throttled background tab has them: the page
    paused in DevTools' debugger (CDP Debugger.pause, at the next script it runs: its next timer) and
    resumed. What a hidden tab's throttling does to realtime-js's heartbeat timer, for real."""
    cdp = await page.context.new_cdp_session(page)
    paused = asyncio.Event()
    cdp.on("Debugger.paused", lambda _: paused.set())
    await cdp.send("Debugger.enable")
    await cdp.send("Debugger.pause")
    await asyncio.wait_for(paused.wait(), TIMEOUT)
    await asyncio.sleep(seconds)  # the freeze itself: its length is the gap under test, not a wait
    await cdp.send("Debugger.resume")
    await cdp.detach()


@pytest.mark.parametrize("probe", [True, False], ids=["probe", "no-probe"])
async def test_hidden_tab_gap_is_certain(probe, site, browser, local_server, mitmdump, anon_key):  # noqa: F811
    sets = [f"rt_supabase_url={local_server.url}"] + (["rt_page_probe=true"] if probe else [])
    proxy = await mitmdump(*sets, mode=f"reverse:{site}")
    tab = await open_site(browser, proxy, anon_key, "direct", heartbeatIntervalMs=HEARTBEAT_MS)
    try:
        await tab.wait(status_js("SUBSCRIBED"), "SUBSCRIBED")
        # The wire learns the client's cadence from its heartbeats (Session.heartbeat_interval).
        await tab.until(lambda: heartbeats(tab.sent) >= 4, "four heartbeats")
        await set_hidden(tab.page, True)
        if probe:
            await proxy.wait_for(r"page: tab hidden")
        before = heartbeats(tab.sent)
        await freeze(tab.page, FROZEN_S)
        await tab.until(lambda: heartbeats(tab.sent) > before, "a heartbeat after the freeze")
        await set_hidden(tab.page, False)
        m = await proxy.wait_for(r"finding heartbeat-gap .*")
        line = m.group(0)
        assert "passed between two heartbeats" in line, line
        if probe:
            # Certain (no "[likely]" after the outcome), with the page's evidence.
            assert "server idle close): client heartbeats every 0.5 s" in line, line
            assert (
                "the page's probe saw the tab hidden from" in line
                and "a hidden tab's timers are throttled" in line
            ), line
            await proxy.wait_for(r"page: tab visible")
        else:
            assert "server idle close) [likely]: client heartbeats every 0.5 s" in line, line
            assert "page" not in line.split("Fix:")[0], line
    finally:
        await tab.save(f"page-probe-hidden-{'probe' if probe else 'no-probe'}", proxy)
    assert anon_key not in proxy.output


def comments(har: Path) -> list[str]:
    """The flows' comments as mitmproxy's savehar wrote them on exit (hardump; rtproxy adds the comment)."""
    return [e["comment"] for e in json.loads(har.read_text())["log"]["entries"] if e.get("comment")]


async def test_offline_drop_is_the_network(site, browser, local_server, mitmdump, anon_key, tmp_path):  # noqa: F811
    har = tmp_path / "flows.har"
    proxy = await probing(mitmdump, local_server, site, f"hardump={har}")
    tab = await open_site(browser, proxy, anon_key, "direct", heartbeatIntervalMs=HEARTBEAT_MS)
    try:
        await tab.wait(status_js("SUBSCRIBED"), "SUBSCRIBED")
        await proxy.wait_for(r"page: socket ws://")
        # Chromium's offline mode fires `offline` and stops the open socket's frames (it does not close it):
        # the heartbeat's reply never reaches realtime-js, which closes 1000 "heartbeat timeout".
        await tab.page.context.set_offline(True)
        await tab.wait(status_js("CHANNEL_ERROR"), "the channel's error")
        await tab.page.context.set_offline(False)  # the probe sends what it kept at `online`
        m = await proxy.wait_for(r"finding dropped-while-offline .*")
        line = m.group(0)
        assert "(seen by the page probe): the page went offline (the browser's `offline` event)" in line, line
        assert "before its socket closed (1000 heartbeat timeout, wasClean=True, as the page saw it)" in line
        assert 'the wire saw a close 1000 "heartbeat timeout" from the client' in line, line
        assert "back online" in line, line
        # The wire alone blames the hop (heartbeat-timeout); it follows the offline now.
        assert "finding heartbeat-timeout" in proxy.output
    finally:
        await tab.save("page-probe-offline", proxy)
    await tab.page.close()
    await proxy.stop()
    assert any("dropped while offline (seen by the page probe)" in c for c in comments(har)), comments(har)
    assert anon_key not in proxy.output and anon_key not in har.read_text()


async def test_send_on_a_closing_socket_through_the_wrapper(site, browser, local_server, mitmdump, anon_key):  # noqa: F811
    proxy = await probing(mitmdump, local_server, site)
    tab = await open_site(browser, proxy, anon_key, "wrapper", heartbeatIntervalMs=HEARTBEAT_MS)
    try:
        await tab.wait(status_js("SUBSCRIBED"), "SUBSCRIBED")
        await proxy.wait_for(r"page: socket ws://")
        # The path goes silent (mitmdump stopped: its sockets stay open, nothing answers): the heartbeat
        # times out, realtime-js closes, the native socket waits in CLOSING for the close's answer, and the
        # wrapper's readyState copy still says OPEN, so realtime-js's next sends go to the closing socket.
        assert proxy.proc is not None
        proxy.proc.send_signal(signal.SIGSTOP)
        try:
            await tab.wait("() => window.rt.sendStates.includes(2)", "a send on the CLOSING native socket")
        finally:
            proxy.proc.send_signal(signal.SIGCONT)
        m = await proxy.wait_for(r"finding send-on-closed-socket .*")
        line = m.group(0)
        assert "(seen by the page probe): the app sent" in line and "readyState CLOSING" in line, line
        assert "the wire never saw them" in line, line
    finally:
        await tab.save("page-probe-send-on-closed", proxy)
    assert anon_key not in proxy.output


async def test_handler_threw(site, browser, local_server, mitmdump, anon_key, tmp_path):  # noqa: F811
    har = tmp_path / "flows.har"
    proxy = await probing(mitmdump, local_server, site, f"hardump={har}")
    tab = await open_site(browser, proxy, anon_key, "wrapper-logging")
    try:
        await tab.wait(status_js("SUBSCRIBED"), "SUBSCRIBED")
        await proxy.wait_for(r"page: socket ws://")
        assert await tab.page.evaluate("() => window.sendBroadcast({x: 1})") == "ok"
        await tab.until(lambda: tab.binary(tab.received, USER_BROADCAST), "the kind-4 echo in the browser")
        m = await proxy.wait_for(r"finding handler-threw .*")
        line = m.group(0)
        assert "(seen by the page probe): the app's message handler threw on 1 frame(s)" in line, line
        assert "(ArrayBuffer ×1)" in line and "SyntaxError" in line, line
        assert (await tab.rt())["broadcasts"] == []
    finally:
        await tab.save("page-probe-handler-threw", proxy)
    await tab.page.close()
    await proxy.stop()
    assert any("handler threw (seen by the page probe)" in c for c in comments(har)), comments(har)
    assert anon_key not in proxy.output and anon_key not in har.read_text()
