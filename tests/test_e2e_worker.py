"""End to end: real clients -> mitmdump + rtproxy (reverse mode, as the Worker) -> local Realtime server.

Each mode is exercised with the real `realtime` Python client or a raw `websockets` client speaking
vsn 2.0.0; assertions are on what the client saw and what rtproxy logged.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from conftest import TIMEOUT, read_flows
from mitmproxy import http
from realtime import AsyncRealtimeClient
from rtproxy_core import frames
from rtproxy_mitm.flowevents import UPSTREAM_URL
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import InvalidStatus


def rt_client(proxy_url: str, key: str) -> AsyncRealtimeClient:
    return AsyncRealtimeClient(
        f"{proxy_url.replace('http', 'ws', 1)}/realtime/v1",
        token=key,
        auto_reconnect=False,
        max_retries=1,
        timeout=3,
    )


async def until(predicate, what: str, event: asyncio.Event) -> None:
    """Await `event` until `predicate()` holds (callbacks set the event)."""

    async def loop():
        while not predicate():
            event.clear()
            await event.wait()

    try:
        await asyncio.wait_for(loop(), TIMEOUT)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def test_fixed_mode_real_client_subscribes_broadcasts_presence_postgres(
    local_server, mitmdump, anon_key
):
    proxy = await mitmdump(f"rt_supabase_url={local_server.url}")
    client = rt_client(proxy.url, anon_key)
    changed = asyncio.Event()
    seen: dict[str, list] = {"status": [], "broadcast": [], "presence": [], "pg": []}

    def record(kind):
        def cb(*args):
            seen[kind].append(args)
            changed.set()

        return cb

    await client.connect()
    ch = client.channel(
        "room1", {"config": {"broadcast": {"self": True}, "presence": {"key": "alice", "enabled": True}}}
    )
    ch.on_broadcast("cursor", record("broadcast"))
    ch.on_presence_sync(record("presence"))
    ch.on_postgres_changes("INSERT", record("pg"), schema="public", table="todos")
    await ch.subscribe(record("status"))
    assert [s[0].value for s in seen["status"]] == ["SUBSCRIBED"]

    await ch.send_broadcast("cursor", {"x": 1})
    await until(lambda: seen["broadcast"], "own broadcast echoed (self)", changed)
    assert seen["broadcast"][0][0]["payload"] == {"x": 1}, seen["broadcast"]

    await ch.track({"online_at": "now"})
    await until(lambda: "alice" in ch.presence_state(), "presence sync with alice", changed)

    delivered = local_server.emit_postgres_change(
        schema="public", table="todos", type="INSERT", record={"id": 1, "title": "t"}
    )
    assert delivered == 1
    await until(lambda: seen["pg"], "postgres_changes INSERT", changed)
    assert seen["pg"][0][0]["data"]["record"] == {"id": 1, "title": "t"}
    await client.close()

    m = await proxy.wait_for(r"realtime:room1 joined in (\d+) ms \(postgres_changes ids \d+\)")
    assert int(m.group(1)) >= 0
    await proxy.wait_for(r"presence realtime:room1: \d+ present")
    await proxy.wait_for(r"closed by client")
    assert anon_key not in proxy.output  # the apikey travels in the URL; rtproxy prints it redacted
    assert "apikey=[redacted]" in proxy.output


async def test_relay_mode_client_gets_101_but_never_subscribes(local_server, mitmdump, anon_key):
    # Realtime waits 2 s before rejecting an upgrade (CONNECT_ERROR_BACKOFF_MS); keep some of that so the
    # client's first phx_join surely meets a relay whose upstream leg is still connecting.
    local_server.config.connect_error_backoff_ms = 500
    proxy = await mitmdump(f"rt_supabase_url={local_server.url}", "rt_mode=relay")
    client = rt_client(proxy.url, anon_key)
    await client.connect()  # the relay answers 101 at once, before its upstream leg has answered
    statuses: list[str] = []
    ch = client.channel("room1")
    await ch.subscribe(lambda status, err: statuses.append(status.value))
    assert statuses and statuses[0] in ("CHANNEL_ERROR", "TIMED_OUT")
    assert "SUBSCRIBED" not in statuses
    await proxy.wait_for(r"hop: frame-dropped: Server not ready, dropping message")
    await proxy.wait_for(r"upstream ws://127\.0\.0\.1:\d+/realtime/v1/websocket$")  # the query is gone
    await proxy.wait_for(
        r"upstream rejected the hop.s upgrade: 401 API key is missing \(the client got 101 already\)"
    )
    await proxy.wait_for(r"closed by server: 1011 \(Proxy server error\)")
    await client.close()


@pytest.mark.parametrize("mode", ["fixed", "relay"])
async def test_the_flow_shows_the_url_the_client_used(local_server, mitmdump, anon_key, tmp_path, mode):
    """Once the upgrade has gone upstream, the stored flow (mitmweb's list, flow files, HAR) is the request
    as the client sent it, not rtproxy's internal address (the embedded server, the relay's /<flow id>/);
    where it went stays in the metadata and the server connection. The apikey stays sanitized."""
    local_server.config.accept_any_apikey = True
    proxy = await mitmdump(
        f"rt_supabase_url={local_server.url}", f"rt_mode={mode}", extra=("-w", str(tmp_path / "f"))
    )
    path = f"/realtime/v1/websocket?apikey={anon_key}&vsn=2.0.0"
    async with connect(f"ws://127.0.0.1:{proxy.port}{path}"):
        pass  # the relay's upstream refuses a query-less upgrade: only the 101 and the close matter here
    await proxy.wait_for(r"closed by (client|server)")
    await proxy.stop()
    (flow,) = [f for f in read_flows(tmp_path / "f") if isinstance(f, http.HTTPFlow)]
    r = flow.request
    assert (r.scheme, r.host, r.port, r.headers["Host"]) == (
        "http",
        "127.0.0.1",
        proxy.port,
        f"127.0.0.1:{proxy.port}",
    )
    assert r.path.startswith("/realtime/v1/websocket?apikey=") and r.path.endswith("&vsn=2.0.0")
    assert anon_key not in r.path and anon_key.split(".")[1] in r.path  # sanitized: claims kept, no signature
    assert flow.server_conn.address[1] != proxy.port
    if mode == "fixed":
        assert flow.metadata[UPSTREAM_URL].startswith(f"{local_server.url}/realtime/v1/websocket?apikey=")


async def test_as_written_mode_fails_before_101(local_server, mitmdump, anon_key):
    proxy = await mitmdump(f"rt_supabase_url={local_server.url}", "rt_mode=as-written")
    with pytest.raises(InvalidStatus) as e:
        async with connect(f"ws://127.0.0.1:{proxy.port}/realtime/v1/websocket?apikey={anon_key}&vsn=2.0.0"):
            pass
    assert e.value.response.status_code == 426
    assert e.value.response.body == b"Expected WebSocket"
    await proxy.wait_for(r"upgrade rejected: 426 Expected WebSocket")
    await proxy.wait_for(r"finding upgrade-rejected .*request\.webSocket")
    assert "] upstream " not in proxy.output  # the Worker never opened an upstream connection


async def test_raw_v2_client_kind3_gets_kind4_echo_decoded_in_log(local_server, mitmdump, anon_key):
    proxy = await mitmdump(f"rt_supabase_url={local_server.url}", "termlog_verbosity=debug")
    url = f"ws://127.0.0.1:{proxy.port}/realtime/v1/websocket?apikey={anon_key}&vsn=2.0.0"
    async with connect(url) as ws:
        join = {"config": {"broadcast": {"self": True}}}
        await ws.send(json.dumps(["1", "1", "realtime:room2", "phx_join", join]))
        reply = frames.decode(await asyncio.wait_for(ws.recv(), TIMEOUT), binary=False, from_client=False)
        assert (reply.event, reply.payload["status"]) == ("phx_reply", "ok")
        await ws.send(frames.encode_user_push("realtime:room2", "cursor", {"x": 2}, join_ref="1", ref="2"))
        echo = await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert isinstance(echo, bytes) and echo[0] == frames.USER_BROADCAST
        m = frames.decode(echo, binary=True, from_client=False)
        assert m.payload == {"type": "broadcast", "event": "cursor", "payload": {"x": 2}}
    await proxy.wait_for(r"realtime:room2 joined in \d+ ms")
    await proxy.wait_for(
        r"← realtime:room2 broadcast ref=None join_ref=None kind 4 "
        r'\{"type":"broadcast","event":"cursor","payload":\{"x":2\}\}'
    )


@pytest.fixture
async def recording_echo():
    """A plain WebSocket server that records what it receives and echoes it back unchanged."""
    received: list[str | bytes] = []

    async def echo(ws):
        async for m in ws:
            received.append(m)
            await ws.send(m)

    async with serve(echo, "127.0.0.1", 0) as srv:
        yield srv.sockets[0].getsockname()[1], received


async def test_inspect_mode_frames_untouched(recording_echo, mitmdump):
    port, received = recording_echo
    proxy = await mitmdump("rt_mode=inspect", mode=f"reverse:http://127.0.0.1:{port}")
    sent = [
        '["1","1","realtime:r","phx_join",{}]',
        frames.encode_user_push("realtime:r", "e", {"a": 1}),
        b"\xff\x00\xfe not utf-8",
        "x" * 70000,
    ]
    async with connect(f"ws://127.0.0.1:{proxy.port}/realtime/v1/websocket?vsn=2.0.0") as ws:
        for m in sent:
            await ws.send(m)
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == m
    assert received == sent
    await proxy.wait_for(r"join realtime:r ref=1")
    await proxy.wait_for(r"undecodable client frame")
