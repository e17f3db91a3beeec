"""Each fault, run with the real `realtime` client through mitmdump + rtproxy, produces its symptom and
the addon diagnoses it with the matching finding code.

Realtime's timers are shortened on both sides (client join timeout 1 s; rt_timers join=1, heartbeat=1)
so the same logic runs in a second instead of 10-25 s.
"""

from __future__ import annotations

import asyncio

import pytest
from realtime import AsyncRealtimeClient
from websockets.exceptions import InvalidStatus

TIMERS = "rt_timers=join=1,heartbeat=1,idle=60"


def client(proxy, key) -> AsyncRealtimeClient:
    return AsyncRealtimeClient(
        f"ws://127.0.0.1:{proxy.port}/realtime/v1", token=key, auto_reconnect=False, max_retries=1, timeout=1
    )


async def subscribe(rt: AsyncRealtimeClient, name="room1", config=None) -> tuple[list[str], object]:
    """Join and return the statuses the client reported (the join's outcome is in by then)."""
    statuses: list[str] = []
    await rt.connect()
    ch = rt.channel(name, {"config": config or {"broadcast": {"self": True}}})
    await ch.subscribe(lambda status, err: statuses.append(status.value))
    return statuses, ch


async def next_status(statuses: list[str], n: int) -> None:
    """Await the n-th status callback (the client reports later outcomes from its own tasks)."""

    async def wait():
        while len(statuses) < n:
            await asyncio.sleep(0)  # yield to the client's tasks; bounded by wait_for below

    await asyncio.wait_for(wait(), 10)


@pytest.fixture
async def through(local_server, mitmdump, anon_key):
    async def start(fault: str):
        proxy = await mitmdump(f"rt_supabase_url={local_server.url}", f"rt_fault={fault}", TIMERS)
        return proxy, client(proxy, anon_key)

    return start


async def test_swallow_heartbeats_heartbeat_timeout(through):
    proxy, rt = await through("swallow-heartbeats")
    statuses, _ = await subscribe(rt)
    assert statuses == ["SUBSCRIBED"]
    await proxy.wait_for(r"hop: fault: swallowed a heartbeat reply")
    await proxy.wait_for(r"finding heartbeat-timeout .*still unanswered")
    await rt.close()


async def test_delay_replies_join_timeout(through):
    proxy, rt = await through("delay-replies=1500")
    statuses, _ = await subscribe(rt)
    assert statuses[0] == "TIMED_OUT"
    await proxy.wait_for(r"finding join-timeout realtime:room1 \(TIMED_OUT\)")
    await proxy.wait_for(
        r"join realtime:room1 ref=\d+ \(join #2\)"
    )  # the client's rejoin after its timeout...
    # ...whose reply is delayed as well: the client times out again (realtime-py: TIMED_OUT, CLOSED,
    # TIMED_OUT). The phx_close between them is the server ending the first join, which it had answered.
    await proxy.wait_for(r"server closed realtime:room1, an earlier join")
    await proxy.wait_for(r"realtime:room1 \(join 2\) join reply \(ok\) came after \d+ ms, past")
    assert "duplicate-join" not in proxy.output  # ...is not a duplicate join
    await rt.close()


async def test_drop_join_join_dropped_by_proxy(through):
    proxy, rt = await through("drop-join")
    statuses, _ = await subscribe(rt)
    assert statuses == ["TIMED_OUT"]
    await proxy.wait_for(r"hop: fault: dropped phx_join for realtime:room1")
    await proxy.wait_for(r"finding join-dropped-by-proxy realtime:room1")
    await rt.close()


async def test_shutdown_named_by_realtimes_message(through):
    """A shutdown in Realtime's words is named for its cause (realtime_channel.ex
    handle_info(:update_rate_counter) sends this one); words Realtime never used are a channel-shutdown."""
    proxy, rt = await through("shutdown=Too many messages per second")
    statuses, _ = await subscribe(rt)
    await next_status(statuses, 3)
    assert statuses[:3] == ["SUBSCRIBED", "CHANNEL_ERROR", "CLOSED"]  # Python: system error, then phx_close
    await proxy.wait_for(r"finding rate-limited realtime:room1 .*Too many messages per second")
    assert not any("finding channel-shutdown" in line for line in proxy.lines)
    await rt.close()


async def test_close_with_code_server_close(through):
    proxy, rt = await through("close=4001:0.5:bye")
    statuses, _ = await subscribe(rt)
    await next_status(statuses, 2)
    assert statuses[:2] == ["SUBSCRIBED", "CHANNEL_ERROR"]
    await proxy.wait_for(r"hop: fault: closed the connection with 4001 'bye' after 0\.5 s \(close\)")
    await proxy.wait_for(r"closed by server: 4001 \(bye\)")
    await proxy.wait_for(r"finding server-close .*4001 \"bye\": a code Realtime itself does not send")
    await rt.close()


async def test_idle_timeout_proxy_idle_timeout(through):
    proxy, rt = await through("idle-timeout=1")
    statuses, _ = await subscribe(rt)
    await next_status(statuses, 2)
    assert statuses[:2] == ["SUBSCRIBED", "CHANNEL_ERROR"]
    await proxy.wait_for(r"closed by network: no close frame")
    await proxy.wait_for(r"finding proxy-idle-timeout .*no frames for 1\.\d s")
    await rt.close()


async def test_max_frame_message_too_large(through):
    proxy, rt = await through("max-frame=2000")
    statuses, ch = await subscribe(rt)
    assert statuses == ["SUBSCRIBED"]
    await ch.send_broadcast("big", {"blob": "x" * 5000})
    await next_status(statuses, 2)
    assert statuses[1] == "CHANNEL_ERROR"
    await proxy.wait_for(r"closed by server: 1009 \(Message is too large\)")
    await proxy.wait_for(r"finding message-too-large")
    await rt.close()


async def test_strip_query_apikey_missing(through):
    proxy, rt = await through("strip-query")
    with pytest.raises(InvalidStatus) as e:
        await rt.connect()
    assert e.value.response.status_code == 401
    await proxy.wait_for(r"upgrade rejected: 401 API key is missing")
    await proxy.wait_for(r"finding apikey-missing")
