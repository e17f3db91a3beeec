"""The two-leg view (rt_legs) with the hop being each Worker of worker/ in Cloudflare's real runtime:
workerd (tests/test_workerd.py runs it alone). One mitmdump with two reverse listeners: the client-side
one's target is workerd, whose SUPABASE_URL is the upstream-side one, whose target is the local Realtime
server. A raw websockets client joins, broadcasts (text, and binary kind 3), heartbeats and closes with a
code. What rtproxy says the hop changed:

- fixed (worker/src/index.js): the Host, and nothing else. workerd terminates both WebSocket handshakes
  itself and sends the upstream its own Sec-WebSocket-Key and its own extension offer: per-leg headers
  (rtproxy_core/legs/rules.py PER_LEG_HEADERS), not a change. A refused upgrade comes back as it was.
- relay (worker/fixtures/relay.js): exactly its defects: the query dropped, 101 answered before the
  upstream's, the join sent right after open dropped (made certain by holding the relay's upstream upgrade
  until workerd logged the drop), binary frames turned into the text "[object Blob]" from 2026-03-17
  (websocket_standard_binary_type; at 2025-01-01 binary stays binary). Behind its dropped query the local
  server refuses the upgrade, so KeyAdder (tests/test_workerd.py) sits behind the upstream-side listener
  and puts the apikey back; what the hop sent is what the upstream-side listener saw. A close without a
  code is lost or changed, by date (web_socket_auto_reply_to_close, 2026-04-07). Straight in front of the
  local server, the relay's 101 hides Realtime's 401.
- as-written (worker/fixtures/as-written.js): 426 `Expected WebSocket` and no upstream leg.

Without workerd these tests are skipped, except under CI (CI=true), where they fail (as test_workerd.py).
"""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from conftest import TIMEOUT
from rtproxy_core import frames
from rtproxy_tools.worker import WORKERS, Workerd, default_compat_date

# test_workerd skips (or, under CI, fails) when workerd is missing: importing it skips this module too
from test_workerd import DROPPED, MISSING, UPSTREAM_OPEN, KeyAdder
from webapi import free_port
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus


@pytest.fixture(autouse=True)
def _prerequisites():
    if MISSING:  # only reached under CI: a missing workerd fails every test here, loudly
        pytest.fail(f"CI is set but workerd cannot run: {MISSING}", pytrace=False)


NEW = default_compat_date()  # worker/wrangler.toml's, 2026-11-17
OLD = "2025-01-01"  # before websocket_standard_binary_type (2026-03-17) and web_socket_auto_reply_to_close
TOPIC = "realtime:room1"


async def legs_around(mitmdump, tmp_path, worker: str, upstream_url: str, date: str = NEW):
    """workerd running `worker` with SUPABASE_URL = rtproxy's upstream-side listener B, and one mitmdump
    listening twice: A (the clients') → workerd, B → upstream_url. Returns (proxy, workerd, A); the
    caller stops workerd (the mitmdump fixture stops mitmdump)."""
    a = free_port()
    b = next(p for p in iter(free_port, None) if p != a)
    w = Workerd(WORKERS[worker], f"http://127.0.0.1:{b}", compat_date=date)
    await w.start()
    try:
        proxy = await mitmdump(
            f"rt_legs={a},{b}",
            f"rt_report={tmp_path / 'report'}",
            mode=f"reverse:http://127.0.0.1:{w.port}@{a}",
            extra=("--mode", f"reverse:{upstream_url}@{b}"),
        )
        await proxy.wait_for(rf"rtproxy: legs: clients connect to http://127\.0\.0\.1:{a}, which forwards")
    except BaseException:
        await w.stop()
        raise
    return proxy, w, a


async def recv_ref(ws, ref: str) -> list:
    """The next 2.0.0 text reply whose ref is `ref` (other frames skipped)."""
    while True:
        m = await asyncio.wait_for(ws.recv(), TIMEOUT)
        if isinstance(m, str) and json.loads(m)[1] == ref:
            return json.loads(m)


async def recv_binary(ws) -> bytes:
    while not isinstance(m := await asyncio.wait_for(ws.recv(), TIMEOUT), bytes):
        pass
    return m


async def ended(proxy, start: int = 0) -> tuple[str, list[str]]:
    """Await a pair's end (logged from output line `start` on): (client leg conn, its hop-* findings in
    order). hop-frames-delayed is left out: workerd on a loaded machine may take a second to pass a frame,
    and then the finding is right (tests/test_legs.py tests the threshold)."""
    m = await proxy.wait_for(
        r"\[rt (\w+)\] legs: client leg \w+ and (?:upstream leg \w+|no upstream leg) ended", start=start
    )
    conn = m.group(1)
    found = re.findall(rf"\[rt {conn}\] finding (hop-[a-z0-9-]+)", proxy.output)
    return conn, [code for code in found if code != "hop-frames-delayed"]


async def logged(w: Workerd, line: str, count: int) -> None:
    """Until workerd has logged `line` `count` times (Workerd.wait_for finds the first)."""

    async def scan() -> None:
        async with w._changed:  # Workerd notifies it at each line
            while sum(line in seen for seen in w.lines) < count:
                await w._changed.wait()

    await asyncio.wait_for(scan(), TIMEOUT)


def finding(proxy, conn: str, code: str) -> str:
    """The evidence of `code` on client leg `conn`, as logged."""
    m = re.search(rf"\[rt {conn}\] finding {code} \(.*?\)(?: \[\w+\])?: (.*?)\. Fix: ", proxy.output)
    assert m, (code, proxy.output)
    return m.group(1)


JOIN = ["1", "1", TOPIC, "phx_join", {"config": {"broadcast": {"self": True}}}]


async def test_the_fixed_worker_changes_only_the_host(local_server, mitmdump, tmp_path, anon_key):
    """The corrected Worker passes the upgrade through (fetch(new Request(upstreamURL, request))): path,
    query and the client's headers reach Realtime, its 101 or its refusal comes back, frames both ways and
    the close code pass as they were. workerd sends the upstream its own Sec-WebSocket-Key and extension
    offer (tests/test_workerd.py test_fixed_keeps_path_query_and_headers): per-leg, not a change."""
    proxy, w, a = await legs_around(mitmdump, tmp_path, "fixed", local_server.url)
    try:
        url = f"ws://127.0.0.1:{a}/realtime/v1/websocket?apikey={anon_key}&vsn=2.0.0"
        async with connect(url, proxy=None, additional_headers={"X-Client-Info": "realtime-py/2"}) as ws:
            # the offer workerd rewrites to `client_max_window_bits=15` on its own upstream handshake
            assert (
                ws.request.headers["Sec-WebSocket-Extensions"] == "permessage-deflate; client_max_window_bits"
            )
            await ws.send(json.dumps(JOIN))
            assert (await recv_ref(ws, "1"))[4]["status"] == "ok"
            text = ["1", "2", TOPIC, "broadcast", {"type": "broadcast", "event": "e", "payload": {"x": 1}}]
            await ws.send(json.dumps(text))
            assert (await recv_ref(ws, None))[4]["payload"] == {"x": 1}
            await ws.send(frames.encode_user_push(TOPIC, "cursor", {"x": 2}, join_ref="1", ref="3"))
            assert (await recv_binary(ws))[0] == 4  # the user broadcast, back as binary
            await ws.send(json.dumps([None, "4", "phoenix", "heartbeat", {}]))
            await recv_ref(ws, "4")
            await ws.close(4000, "bye")
        conn, found = await ended(proxy)
        assert found == ["hop-host-rewritten"]
        assert re.search(
            rf"\[rt {conn}\] legs: paired with upstream leg \w+ by time, same path and query$",
            proxy.output,
            re.MULTILINE,
        )
        mark = len(proxy.lines)
        with pytest.raises(InvalidStatus) as refused:  # no apikey: Realtime's 401, passed through
            async with connect(f"ws://127.0.0.1:{a}/realtime/v1/websocket?vsn=2.0.0", proxy=None):
                pass
        assert refused.value.response.status_code == 401
        _, found = await ended(proxy, start=mark)
        assert found == ["hop-host-rewritten"]
    finally:
        await proxy.stop()
        await w.stop()
    first, second = json.loads((tmp_path / "report.json").read_text())["legs"]["pairs"]
    assert first["client"]["close"]["code"] == first["upstream"]["close"]["code"] == 4000
    for arrow, n in (("client → upstream", 4), ("upstream → client", 4)):
        counts = {k: v for k, v in first["frames"][arrow].items() if k != "delayed"}
        assert counts == {
            "sent": n,
            "got": n,
            **dict.fromkeys(("dropped", "as_text", "altered", "injected", "reordered"), 0),
        }, arrow
    assert second["client"]["status"] == second["upstream"]["status"] == 401
    assert anon_key not in proxy.output


@pytest.mark.parametrize("date", [NEW, OLD])
async def test_the_design_relay_shows_exactly_its_defects(local_server, mitmdump, tmp_path, anon_key, date):
    """The relay (worker/fixtures/relay.js) behind KeyAdder, which puts back the apikey the relay drops.
    One connection: the join sent right after open is dropped while the upstream connects (held until
    workerd logged the drop), the join sent again once it opened is answered; a binary broadcast reaches
    Realtime as "[object Blob]" from 2026-03-17, as binary before; close 4000 is forwarded. A second
    connection closes without a code (1005), which the relay's serverWebSocket.close(1005) cannot send
    on: from 2026-04-07 workerd answers the client and the upstream leg stays open (hop-close-lost);
    before, the uncaught throw closes the upstream 1011 "Client connection error" (hop-close-changed)
    and nothing answers the client (tests/test_workerd.py test_relay_client_closes_without_a_code)."""
    stub = KeyAdder(local_server.url, anon_key, "2.0.0", hold_first=True)
    async with stub as upstream:
        proxy, w, a = await legs_around(mitmdump, tmp_path, "relay", upstream, date)
        try:
            url = f"ws://127.0.0.1:{a}/realtime/v1/websocket?apikey={anon_key}&vsn=2.0.0"
            async with connect(url, proxy=None) as ws:
                await ws.send(json.dumps(JOIN))
                await w.wait_for(re.escape(DROPPED), TIMEOUT)
                stub.release.set()
                await w.wait_for(re.escape(UPSTREAM_OPEN), TIMEOUT)
                await ws.send(json.dumps(["2", "2", *JOIN[2:]]))
                assert (await recv_ref(ws, "2"))[4]["status"] == "ok"
                await ws.send(frames.encode_user_push(TOPIC, "cursor", {"x": 2}, join_ref="2", ref="3"))
                if date < "2026-03-17":
                    assert (await recv_binary(ws))[0] == 4  # binary stays binary, both ways
                await ws.send(json.dumps([None, "4", "phoenix", "heartbeat", {}]))
                await recv_ref(ws, "4")
                await ws.close(4000, "bye")
            conn, found = await ended(proxy)
            blob = ["hop-binary-as-text"] if date >= "2026-03-17" else []
            defects = ["hop-query-rewritten", "hop-host-rewritten", "hop-headers-rewritten", "hop-early-101"]
            assert found == [*defects, "hop-frames-dropped", *blob]
            assert finding(proxy, conn, "hop-query-rewritten").endswith("(lost apikey, vsn)")
            assert finding(proxy, conn, "hop-headers-rewritten").endswith(": removed user-agent")
            assert re.fullmatch(
                rf"client leg {conn} got 101 [\d.]+ s before upstream leg \w+ was answered 101 \(the hop sent "
                "that upgrade only after answering the client\\)",
                finding(proxy, conn, "hop-early-101"),
            )
            assert finding(proxy, conn, "hop-frames-dropped").startswith(
                "1 client frame(s) never reached the upstream, 1 sent before the upstream leg was open: "
                "#1 realtime:room1 phx_join ref 1 (text, "
            )
            if blob:
                assert finding(proxy, conn, "hop-binary-as-text").startswith(
                    "1 binary client frame(s) reached the upstream as text: #3 realtime:room1 broadcast ref 3 "
                    "(binary, 36 B) → #2 '[object Blob]' (text, 13 B)"
                )

            mark = len(proxy.lines)
            ws = await connect(url, proxy=None)
            await logged(w, UPSTREAM_OPEN, 2)  # the relay's serverWebSocket is OPEN
            closing = asyncio.create_task(ws.close(None))  # a close frame without a code
            if date >= "2026-04-07":
                await asyncio.wait_for(closing, TIMEOUT)  # answered by workerd; the upstream leg stays open
                await proxy.stop()  # rtproxy stops: the pair ends with the run
            else:
                await proxy.wait_for(r"closed by client: 1011 \(Client connection error\)", start=mark)
                ws.transport.abort()  # nothing answers its close
                await closing
            conn, found = await ended(proxy, start=mark)
            if date >= "2026-04-07":
                assert found == [*defects, "hop-close-lost"]
                assert finding(proxy, conn, "hop-close-lost").startswith(
                    f"the client closed client leg {conn} with 1005; upstream leg "
                )
            else:
                assert found == [*defects, "hop-close-changed"]
                assert re.fullmatch(
                    rf"the client closed client leg {conn} with 1005; the hop closed upstream leg \w+ with "
                    "1011 'Client connection error'",
                    finding(proxy, conn, "hop-close-changed"),
                )
        finally:
            await proxy.stop()
            await w.stop()
    assert anon_key not in proxy.output


async def test_the_design_worker_as_written_has_no_upstream_leg(local_server, mitmdump, tmp_path, anon_key):
    proxy, w, a = await legs_around(mitmdump, tmp_path, "as-written", local_server.url)
    try:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"ws://127.0.0.1:{a}/realtime/v1/websocket?apikey={anon_key}&vsn=2.0.0"):
                pass
        assert refused.value.response.status_code == 426
        conn, found = await ended(proxy)
        assert found == ["hop-no-upstream-leg"]
        assert finding(proxy, conn, "hop-no-upstream-leg") == (
            f"client leg {conn} (/realtime/v1/websocket) was answered 426 'Expected WebSocket'; no upgrade "
            "arrived on the upstream-side listener while it was open"
        )
    finally:
        await proxy.stop()
        await w.stop()


async def test_the_design_relay_hides_realtimes_401_behind_its_101(
    local_server, mitmdump, tmp_path, anon_key
):
    """Straight in front of Realtime the relay's query-less upgrade is refused (401 `API key is missing`):
    the client got 101 already, then 1011 "Proxy server error"."""
    proxy, w, a = await legs_around(mitmdump, tmp_path, "relay", local_server.url)
    try:
        url = f"ws://127.0.0.1:{a}/realtime/v1/websocket?apikey={anon_key}&vsn=2.0.0"
        async with connect(url, proxy=None) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1011, "Proxy server error")
        conn, found = await ended(proxy)
        assert found == [
            "hop-query-rewritten",
            "hop-host-rewritten",
            "hop-headers-rewritten",
            "hop-early-101",
        ]
        assert re.fullmatch(
            rf"client leg {conn} got 101; upstream leg \w+ was answered 401 'API key is missing'",
            finding(proxy, conn, "hop-early-101"),
        )
    finally:
        await proxy.stop()
        await w.stop()
