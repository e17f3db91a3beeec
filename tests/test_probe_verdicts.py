"""rtprobe names the right cause for Workers users really deployed, each reproduced as a small module Worker
(written to tmp_path) run in workerd (the pinned npm package) in front of the local Realtime server.

- A Worker that throws: workerd answers every upgrade `500 Internal Server Error` (body the same 21 bytes,
  `Connection: close`, no Content-Type; cloudflare/workerd worker-entrypoint.c++, the synthetic 500),
  Cloudflare its error 1101 page: worker-exception, not upgrade-rejected's "forward the Upgrade headers",
  and c/h are not checked (every upgrade is refused alike: no early 101).
- A Worker that puts its own apikey in the upstream URL: the invalid-key socket works, which is no early
  101: c is not checked and says the relay replaces the client's apikey.
- A Worker with no close handling (accepts both sockets, forwards messages, never listens for close): the
  client's close never reaches the upstream, at both sides of web_socket_auto_reply_to_close (2026-04-07).
  Before it the client's close goes unanswered; from it the runtime answers it itself, and only a second
  socket on the channel (no presence leave) shows the server kept the socket: close-not-forwarded, not
  reserved-close-code.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from conftest import TIMEOUT
from rtproxy_core.rules import upgrade
from rtproxy_tools.worker import WORKERS, Workerd, default_compat_date
from test_rtprobe import details, failed_codes, probe_json

# test_workerd skips (or, under CI, fails) when workerd is missing: importing it skips this module too
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

NEW = default_compat_date()  # worker/wrangler.toml's
OLD = "2025-01-01"  # before web_socket_auto_reply_to_close (2026-04-07)

# What each Worker does wrong, the exception workerd logs for it.
THROWING = {
    # the common https:// -> wss:// rewrite before fetch(): workerd's fetch() takes http(s) URLs only
    "fetch-wss": (
        """const url = new URL(request.url);
    return fetch(env.SUPABASE_URL.replace(/^http/, "ws") + url.pathname + url.search, request);""",
        "TypeError: Fetch API cannot load: ws://",
    ),
    "status-101": (
        "return new Response(null, { status: 101 });",
        "RangeError: Responses may only be constructed with status codes in the range 200 to 599",
    ),
    "request-websocket": (
        "request.webSocket.accept();\n    return new Response(null, { status: 101, webSocket: request.webSocket });",
        "TypeError: Cannot read properties of undefined (reading 'accept')",
    ),
    "missing-env-var": (
        "return new Response(env.SUPABASE_KEY.split(',')[0]);",
        "TypeError: Cannot read properties of undefined (reading 'split')",
    ),
}


def module(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.js"
    path.write_text(f"export default {{\n  async fetch(request, env) {{\n    {body}\n  }},\n}};\n")
    return path


@pytest.mark.parametrize("name", list(THROWING))
async def test_a_throwing_worker_is_worker_exception(name, tmp_path, local_server, anon_key):
    body, logged = THROWING[name]
    async with Workerd(module(tmp_path, name, body), local_server.url) as w:
        with pytest.raises(InvalidStatus) as e:
            async with connect(
                f"{w.url.replace('http', 'ws', 1)}/realtime/v1/websocket?vsn=2.0.0", proxy=None
            ):
                pass
        r = e.value.response
        assert (r.status_code, r.reason_phrase, bytes(r.body)) == (
            500,
            "Internal Server Error",
            b"Internal Server Error",
        )
        assert dict(r.headers) == {"connection": "close", "content-length": "21"}  # no Content-Type
        code, report, statuses = await probe_json(w.url, anon_key)
        assert logged in w.output
    assert code == 1
    assert failed_codes(report) == {"a-query": "worker-exception"}, report
    d = details(report)
    assert d["a-query"].startswith(
        "upgrade refused: 500 Internal Server Error (workerd's answer when the Worker throws)"
    )
    for check in ("c-upstream-status", "h-subprotocol"):  # every upgrade refused alike: no early 101
        assert (
            statuses[check] == "skip"
            and d[check] == "not checked: refused with 500 like every upgrade (see a-query)"
        )


CLOUDFLARE_1101 = (
    '<!DOCTYPE html>\n<html class="no-js" lang="en-US">\n<head>\n<title>Worker threw exception | '
    'myapp.example.com | Cloudflare</title>\n<meta charset="UTF-8" />\n</head>\n<body>\n<div id="cf-wrapper">'
    '<h1><span class="cf-error-code">1101</span></h1><h2>Worker threw exception</h2></div>\n</body>\n</html>\n'
)


async def test_cloudflares_1101_page_is_worker_exception_not_a_web_page(tmp_path, local_server, anon_key):
    """Deployed, Cloudflare answers a throwing Worker with its error 1101 page (HTML): not "not a Realtime
    endpoint". The page's shape (title, cf-error-code, h2) is Cloudflare's; a Worker serves it here."""
    assert upgrade.worker_threw(CLOUDFLARE_1101) and upgrade.worker_threw("Internal Server Error")
    assert not upgrade.worker_threw('{"error":"Internal server error"}') and not upgrade.worker_threw("")
    body = f"return new Response({CLOUDFLARE_1101!r}, {{ status: 500, headers: {{ 'Content-Type': 'text/html; charset=UTF-8' }} }});"
    async with Workerd(module(tmp_path, "cf1101", body), local_server.url) as w:
        code, report, statuses = await probe_json(w.url, anon_key)
    assert code == 1 and failed_codes(report) == {"a-query": "worker-exception"}, report
    assert "Cloudflare's error 1101 page" in details(report)["a-query"]
    assert statuses["c-upstream-status"] == statuses["h-subprotocol"] == "skip"


KEY_SUBSTITUTING = """const url = new URL(request.url);
    url.searchParams.set("apikey", "{key}");  // the Worker's own key: the client's never reaches Realtime
    const upstream = new URL(url.pathname + url.search, env.SUPABASE_URL);
    return fetch(new Request(upstream, request));"""


async def test_a_worker_that_puts_its_own_apikey_is_not_early_101(tmp_path, local_server, anon_key):
    path = module(tmp_path, "own-key", KEY_SUBSTITUTING.replace("{key}", anon_key))
    async with Workerd(path, local_server.url) as w:
        code, report, statuses = await probe_json(w.url, anon_key)
    assert "early-101" not in failed_codes(report).values() and failed_codes(report) == {}, report
    assert statuses["c-upstream-status"] == "skip"
    d = details(report)["c-upstream-status"]
    assert (
        "the relay replaces the client's apikey with its own" in d
        and "server never sees the client's key" in d
    )
    assert code == 1  # a skip is not a pass


NO_CLOSE_HANDLING = """const url = new URL(request.url);
    const resp = await fetch(env.SUPABASE_URL + url.pathname + url.search, { headers: { Upgrade: "websocket" } });
    const upstream = resp.webSocket;
    if (!upstream) return resp;  // the upstream's refusal, as it came
    upstream.accept();
    const [client, server] = Object.values(new WebSocketPair());
    server.accept();
    server.binaryType = upstream.binaryType = "arraybuffer";  // binary stays binary at both dates
    server.addEventListener("message", (e) => upstream.send(e.data));
    upstream.addEventListener("message", (e) => server.send(e.data));
    return new Response(null, { status: 101, webSocket: client });"""


@pytest.mark.parametrize("date", [NEW, OLD])
async def test_a_worker_without_close_handling_is_close_not_forwarded(date, tmp_path, local_server, anon_key):
    path = module(tmp_path, "no-close", NO_CLOSE_HANDLING)
    async with Workerd(path, local_server.url, compat_date=date) as w:
        # what the upstream receives of a client's close 4000: nothing, the socket stays open
        url = f"{w.url.replace('http', 'ws', 1)}/realtime/v1/websocket?apikey={anon_key}&vsn=2.0.0"
        ws = await connect(url, proxy=None, close_timeout=2)
        await ws.send('[null,"1","phoenix","heartbeat",{}]')
        assert '"status":"ok"' in await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert local_server.connections == 1
        await ws.close(4000, "probe")
        answer = ws.protocol.close_rcvd
        if date == NEW:  # web_socket_auto_reply_to_close: the runtime echoes the client's close
            assert answer is not None and (answer.code, answer.reason) == (4000, "probe")
        else:  # nothing answers it: the client gives up after its close timeout
            assert answer is None
        await asyncio.sleep(1)
        assert local_server.connections == 1  # the upstream was told nothing
        # The probe's bound for each answer (its close, the presence watch's join, track and leave): at 2 s
        # the watch could miss its set-up on a loaded machine, and g-close then judges by the answer alone.
        code, report, statuses = await probe_json(w.url, anon_key, "--timeout", "5")
        assert local_server.connections > 1  # the probe's sockets too stay open upstream
    assert code == 1 and statuses["g-close"] == "fail"
    assert failed_codes(report) == {"g-close": "close-not-forwarded"}, report
    d = details(report)["g-close"]
    if date == NEW:
        assert d.startswith("close 4000 was answered with 4000, but the server kept the socket"), d
    else:
        assert d.startswith(
            "close 4000 got no close frame back within 5 s: the relay neither answers nor forwards"
        ), d
    assert "reserved-close-code" not in failed_codes(report).values()


async def test_a_worker_that_passes_the_socket_through_lets_the_server_see_the_close(local_server, anon_key):
    async with Workerd(WORKERS["fixed"], local_server.url) as w:
        code, report, _ = await probe_json(w.url, anon_key)
    assert code == 0, report
    assert details(report)["g-close"].endswith(
        "the server let the socket go (a second socket saw its presence leave)"
    )
