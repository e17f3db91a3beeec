"""Each fault, run with the real `realtime` client through mitmweb + rtproxy, produces its symptom and
the addon diagnoses it with the matching finding code.

One mitmweb serves every case: rt_fault changes at runtime (mitmweb's option editor, `PUT /options`), as
test_commands.py checks it does for new connections. A case sets its fault before its client connects
and sees only the log lines from then on; after it, every client connection it made has ended and
rt_fault is empty again, both seen in the log (`rt_fault is now ...` names no open connection).

Realtime's timers are shortened on both sides (client join timeout 1 s; rt_timers join=1, heartbeat=1)
so the same logic runs in a second instead of 10-25 s.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from conftest import Mitmdump, fast_config
from realtime import AsyncRealtimeClient
from rtproxy_local.server import LocalRealtime
from webapi import WebApi, start_mitmweb
from websockets.exceptions import InvalidStatus

TIMERS = "rt_timers=join=1,heartbeat=1,idle=60"
pytestmark = pytest.mark.asyncio(loop_scope="module")


def client(proxy, key) -> AsyncRealtimeClient:
    return AsyncRealtimeClient(
        f"ws://127.0.0.1:{proxy.port}/realtime/v1", token=key, auto_reconnect=False, max_retries=1, timeout=1
    )


class Statuses(list[str]):
    """The statuses the client reported, in order (a list); `reached(n)` awaits the n-th."""

    def __init__(self) -> None:
        super().__init__()
        self._added = asyncio.Event()

    def report(self, status, err) -> None:  # the channel's subscribe callback, on the client's own tasks
        self.append(status.value)
        self._added.set()

    async def reached(self, n: int) -> None:
        async def wait() -> None:
            while len(self) < n:
                self._added.clear()
                await self._added.wait()

        await asyncio.wait_for(wait(), 10)


async def subscribe(rt: AsyncRealtimeClient, name="room1", config=None) -> tuple[Statuses, object]:
    """Join and return the statuses the client reported (the join's outcome is in by then)."""
    statuses = Statuses()
    await rt.connect()
    ch = rt.channel(name, {"config": config or {"broadcast": {"self": True}}})
    await ch.subscribe(statuses.report)
    return statuses, ch


class Case:
    """The shared proxy as one case sees it: its port, and its output from the case's first line."""

    def __init__(self, proxy: Mitmdump) -> None:
        self.proxy = proxy
        self.api: WebApi
        self.start = len(proxy.lines)
        self.port = proxy.port

    @property
    def lines(self) -> list[str]:
        return self.proxy.lines[self.start :]

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    async def wait_for(self, pattern: str) -> re.Match:
        return await self.proxy.wait_for(pattern, start=self.start)

    async def shown(self) -> list[str]:
        """The newest Realtime flow's messages as mitmweb shows them (the Supabase Realtime view)."""
        flow = [f for f in await self.api.flows() if f.get("websocket")][-1]
        return [m["text"] for m in await self.api.messages(flow["id"])]

    async def fault_is(self, fault: str) -> None:
        """rt_fault is now `fault`, with no connection open (the line would count them)."""
        await self.wait_for(
            rf"rtproxy: rt_fault is now {re.escape(fault or 'none')}: new connections get it$"
        )

    async def connections_ended(self) -> None:
        """Every client connection made in this case has ended (mitmproxy logs each one's end)."""

        def ended(_lines: list[str]) -> bool:
            lines = self.lines
            return sum(line.endswith("] client connect") for line in lines) == sum(
                line.endswith("] client disconnect") for line in lines
            )

        await self.proxy.wait_until(ended, "every client connection of the case ended")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared(tmp_path_factory) -> AsyncIterator[tuple[Mitmdump, WebApi]]:
    """One local Realtime server and one mitmweb with rtproxy in front of it, no fault set."""
    started: list[Mitmdump] = []

    async def start(*sets: str, **kw) -> Mitmdump:
        m = await Mitmdump(tmp_path_factory.mktemp("e2e-faults"), *sets, **kw).start()
        started.append(m)
        return m

    async with LocalRealtime(fast_config()).running("127.0.0.1", 0) as server:
        try:
            yield await start_mitmweb(start, f"rt_supabase_url={server.url}", TIMERS)
        finally:
            for m in started:
                await m.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def through(shared, anon_key):
    """`await through(fault)`: (the case's view of the proxy, a client) with rt_fault=fault in effect."""
    proxy, api = shared
    case = Case(proxy)
    clients: list[AsyncRealtimeClient] = []

    async def start(fault: str):
        assert (await api.set_options(rt_fault=fault)) in (None, {})
        await case.fault_is(fault)
        clients.append(client(case, anon_key))
        case.api = api
        return case, clients[-1]

    yield start
    for rt in clients:
        await rt.close()
    await case.connections_ended()
    assert (await api.set_options(rt_fault="")) in (None, {})
    await case.fault_is("")


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
    # mitmweb's Realtime view says which replies rtproxy held back and which copies it sent late.
    shown = await proxy.shown()
    held = "◷ HELD BACK by rtproxy (fault delay-replies, 1500 ms): the client got it later, marked SENT LATE"
    assert any(text.startswith(f"{held}\n← phx_reply realtime:room1 ") for text in shown), shown
    assert any(text.startswith("◷ SENT LATE by rtproxy (fault delay-replies, 1500 ms)") for text in shown)
    await rt.close()


async def test_drop_join_join_dropped_by_proxy(through):
    proxy, rt = await through("drop-join")
    statuses, _ = await subscribe(rt)
    assert statuses == ["TIMED_OUT"]
    await proxy.wait_for(r"hop: fault: dropped phx_join for realtime:room1")
    await proxy.wait_for(r"finding join-dropped-by-proxy realtime:room1")
    dropped = "✂ DROPPED by rtproxy (fault drop-join): the server never got it\n→ phx_join realtime:room1 "
    assert any(text.startswith(dropped) for text in await proxy.shown())
    await rt.close()


async def test_shutdown_named_by_realtimes_message(through):
    """A shutdown in Realtime's words is named for its cause (realtime_channel.ex
    handle_info(:update_rate_counter) sends this one), first; the stop itself (the phx_close after it) is
    channel-shutdown, a symptom that follows it."""
    proxy, rt = await through("shutdown=Too many messages per second")
    statuses, _ = await subscribe(rt)
    await statuses.reached(3)
    assert statuses[:3] == ["SUBSCRIBED", "CHANNEL_ERROR", "CLOSED"]  # Python: system error, then phx_close
    cause = await proxy.wait_for(r"finding rate-limited realtime:room1 .*Too many messages per second")
    stop = await proxy.wait_for(r"finding channel-shutdown realtime:room1")
    assert proxy.lines.index(cause.string) < proxy.lines.index(stop.string)
    injected = [t for t in await proxy.shown() if t.startswith("✚ INJECTED by rtproxy (fault shutdown)")]
    assert [t.splitlines()[1].split(" {")[0] for t in injected] == [
        "← system realtime:room1",  # vsn 1.0.0: no join_ref on the wire
        "← phx_close realtime:room1 ref=1",
    ], injected
    await rt.close()


async def test_close_with_code_server_close(through):
    proxy, rt = await through("close=4001:0.5:bye")
    statuses, _ = await subscribe(rt)
    await statuses.reached(2)
    assert statuses[:2] == ["SUBSCRIBED", "CHANNEL_ERROR"]
    await proxy.wait_for(r"hop: fault: closed the connection with 4001 'bye' after 0\.5 s \(close\)")
    await proxy.wait_for(r"closed by server: 4001 \(bye\)")
    await proxy.wait_for(r"finding server-close .*4001 \"bye\": a code Realtime itself does not send")
    await rt.close()


async def test_idle_timeout_proxy_idle_timeout(through):
    proxy, rt = await through("idle-timeout=1")
    statuses, _ = await subscribe(rt)
    await statuses.reached(2)
    assert statuses[:2] == ["SUBSCRIBED", "CHANNEL_ERROR"]
    await proxy.wait_for(r"closed by network: no close frame")
    await proxy.wait_for(r"finding proxy-idle-timeout .*no frames for 1\.\d s")
    await rt.close()


async def test_max_frame_message_too_large(through):
    proxy, rt = await through("max-frame=2000")
    statuses, ch = await subscribe(rt)
    assert statuses == ["SUBSCRIBED"]
    await ch.send_broadcast("big", {"blob": "x" * 5000})
    await statuses.reached(2)
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
