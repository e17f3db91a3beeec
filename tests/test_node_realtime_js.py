"""realtime-js (the client inside supabase-js) in Node, through mitmdump + rtproxy as the Worker, against the
local Realtime server: vsn 2.0.0 as the library defaults, so its broadcast goes out as a binary kind-3 frame
and comes back as kind 4.

Needs `npm ci --prefix tests/node` (scripts/test.sh runs it). Without tests/node/node_modules the tests
skip, except under CI (env CI set), where they fail.
"""

from __future__ import annotations

import asyncio
import json
import os

import pytest
from conftest import NODE_DIR, TIMEOUT

CLIENT = NODE_DIR / "client.mjs"
pytestmark = pytest.mark.usefixtures("node_available")


async def run_client(proxy_url: str, key: str, channel: str) -> tuple[int, list[dict], str]:
    env = dict(os.environ, SUPABASE_ANON_KEY=key)
    endpoint = proxy_url.replace("http://", "ws://", 1) + "/realtime/v1"
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(CLIENT),
        endpoint,
        channel,
        cwd=NODE_DIR,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 2 * TIMEOUT)  # safety net only
    except TimeoutError:
        proc.kill()
        raise
    events = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    return proc.returncode, events, err.decode()


async def test_realtime_js_subscribes_and_broadcasts_binary_through_fixed_mode(
    local_server, mitmdump, anon_key
):
    proxy = await mitmdump(f"rt_supabase_url={local_server.url}", "termlog_verbosity=debug")
    code, events, err = await run_client(proxy.url, anon_key, "node-room")
    assert code == 0, (events, err)
    statuses = [e["status"] for e in events if e["event"] == "status"]
    assert statuses[0] == "SUBSCRIBED", events
    broadcasts = [e for e in events if e["event"] == "broadcast"]
    assert broadcasts == [
        {"event": "broadcast", "payload": {"x": 1, "from": "node"}, "type": "broadcast", "name": "cursor"}
    ], events
    assert {"event": "heartbeat", "status": "ok"} in events  # answered through the proxy (1 s interval)
    assert {"event": "done", "ok": True} in events

    # What rtproxy saw: realtime-js' defaults (vsn 2.0.0), its join, and the binary round trip.
    await proxy.wait_for(
        r"\] connect http://\S+/realtime/v1/websocket\?apikey=\[redacted\]&vsn=2\.0\.0 "
        r"\(vsn 2\.0\.0, apikey <jwt role=anon"
    )
    await proxy.wait_for(r"\] join realtime:node-room ref=\d+")
    await proxy.wait_for(r"\] realtime:node-room joined in \d+ ms")
    await proxy.wait_for(
        r"\] → realtime:node-room broadcast ref=\d+ join_ref=\d+ kind 3 "
        r'\{"type":"broadcast","event":"cursor","payload":\{"x":1,"from":"node"\}\}'
    )
    await proxy.wait_for(
        r"\] ← realtime:node-room broadcast ref=None join_ref=None kind 4 "
        r'\{"type":"broadcast","event":"cursor","payload":\{"x":1,"from":"node"\}\}'
    )
    await proxy.wait_for(r"\] closed by client")
    assert anon_key not in proxy.output


async def test_realtime_js_through_relay_mode_never_subscribes(local_server, mitmdump, anon_key):
    """The design's relay: 101 at once, the join dropped, then 1011 when Realtime refuses the keyless
    upgrade. realtime-js reports CHANNEL_ERROR with the close, never SUBSCRIBED."""
    proxy = await mitmdump(f"rt_supabase_url={local_server.url}", "rt_mode=relay")
    code, events, err = await run_client(proxy.url, anon_key, "node-room")
    assert code == 1, (events, err)
    statuses = [e for e in events if e["event"] == "status"]
    assert statuses and statuses[0]["status"] == "CHANNEL_ERROR", events
    assert statuses[0].get("error") == "socket closed: 1011 (Proxy server error)", statuses
    assert not any(e["event"] == "broadcast" for e in events)
    await proxy.wait_for(r"closed by server: 1011 \(Proxy server error\)")
