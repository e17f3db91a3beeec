"""A Realtime WebSocket lost on one side (TCP closed, no close frame) is lost on the other side too, in every
mode: rtproxy passes the loss on as a Worker or nginx does, where mitmproxy alone would send the other side
a close frame 1000 (rtproxy_mitm/lost.py, internals.pass_lost_connections). Real sockets both ways."""

from __future__ import annotations

import asyncio

import pytest
from conftest import TIMEOUT
from stubs import Upstream
from websockets.asyncio.client import connect

MODES = {
    "fixed": lambda up: {"sets": (f"rt_supabase_url={up}",)},
    "inspect": lambda up: {"sets": ("rt_mode=inspect",), "mode": f"reverse:{up}"},
}


@pytest.mark.parametrize("lost", ["server", "client"])
@pytest.mark.parametrize("mode", list(MODES))
async def test_a_lost_connection_is_lost_on_the_other_side(mitmdump, mode, lost):
    stub = Upstream()
    async with stub as up:
        cfg = MODES[mode](up)
        proxy = await mitmdump(
            *cfg["sets"], "connection_strategy=lazy", **({"mode": cfg["mode"]} if "mode" in cfg else {})
        )
        url = f"ws://127.0.0.1:{proxy.port}/realtime/v1/websocket?apikey=k&vsn=2.0.0"
        client = await connect(url, proxy=None, compression=None)
        leg = await asyncio.wait_for(stub.conns.get(), TIMEOUT)
        await leg.send("hello")
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == "hello"
        gone, other = (leg, client) if lost == "server" else (client, leg)
        gone.transport.abort()
        await asyncio.wait_for(other.wait_closed(), TIMEOUT)
        assert other.protocol.close_rcvd is None, other.protocol.close_rcvd  # not mitmproxy's 1000
        await proxy.wait_for(rf"closed by network: no close frame \(the {lost}'s side ended first\)")
        if lost == "server":
            await proxy.wait_for(r"finding server-gone ")
        else:
            await proxy.wait_for(r"finding client-gone ")


async def test_relay_stop_ends_both_legs_and_reports_no_close_of_its_own():
    """Relay.stop (mitmproxy stopping, or the script reloading) ends the client legs and the relay's own
    upstream connections at once, and does not emulate a Worker's close() for them (no close-throws hop)."""
    from rtproxy_core.hop import parse_supabase_url
    from rtproxy_mitm.relay import Relay

    events: list = []
    stub = Upstream()
    async with stub as up:
        relay = Relay(lambda flow_id, event: events.append(event))
        relay.start(parse_supabase_url(up))
        client = await connect(f"ws://127.0.0.1:{relay.port}/flowid/realtime/v1/websocket", proxy=None)
        leg = await asyncio.wait_for(stub.conns.get(), TIMEOUT)
        await leg.send("hello")
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == "hello"
        relay.stop()
        await asyncio.wait_for(leg.wait_closed(), TIMEOUT)
        await asyncio.wait_for(client.wait_closed(), TIMEOUT)
        assert leg.protocol.close_rcvd is None and client.protocol.close_rcvd is None  # aborted, both
        assert not [e for e in events if getattr(e, "what", "") == "close-throws"], events
