"""rtproxy_core.closecodes says what the libraries really do: wsproto as mitmproxy runs it, websockets, and
a real client through mitmdump. workerd cannot run here; its rule is quoted in the module and pinned."""

from __future__ import annotations

import asyncio
import re

import pytest
import wsproto
from conftest import TIMEOUT
from mitmproxy.proxy.layers.websocket import WebsocketConnection
from rtproxy_core import closecodes
from rtproxy_mitm.relay import close_throws
from websockets.asyncio.client import connect
from websockets.exceptions import ProtocolError
from websockets.frames import Close

ALL_CODES = range(2**16)  # every value the 2-byte code field can hold


def mitmproxy_passes(code: int) -> tuple[bool, str]:
    """Feed a server's close frame with `code` to the wsproto connection mitmproxy's WebSocket layer uses
    (WebsocketLayer.relay_messages: src_ws.receive_data, src_ws.events). (passed, reason it forwards)."""
    ws = WebsocketConnection(wsproto.ConnectionType.CLIENT, conn=None)
    ws.receive_data(bytes([0x88, 3]) + code.to_bytes(2, "big") + b"r")
    (event,) = ws.events()
    if (event.code, event.reason) == (code, "r"):
        return True, ""
    assert event.code == closecodes.PROTOCOL_ERROR
    return False, event.reason


def test_sendable_is_what_mitmproxy_forwards():
    wrong = [code for code in ALL_CODES if mitmproxy_passes(code)[0] != closecodes.sendable(code)]
    assert wrong == []


def test_unsendable_quotes_the_reason_mitmproxy_closes_with():
    for code in ALL_CODES:
        passed, reason = mitmproxy_passes(code)
        if passed:
            assert closecodes.unsendable(code) is None
        else:
            assert f'1002 "{reason}"' in closecodes.unsendable(code), code
            assert closecodes.unsendable(code).endswith(f"use {closecodes.SENDABLE}")


def test_websockets_can_send_is_websockets_own_check():
    def passes(code: int) -> bool:
        try:
            Close(code, "").check()
        except ProtocolError:
            return False
        return True

    assert [code for code in ALL_CODES if passes(code) != closecodes.websockets_can_send(code)] == []
    # The one code the local server's library sends that mitmproxy refuses:
    assert [c for c in ALL_CODES if closecodes.websockets_can_send(c) and not closecodes.sendable(c)] == [
        1014
    ]


def test_sendable_spelled_for_messages():
    spelled = [range(int(a), int(b) + 1) for a, b in re.findall(r"(\d+)-(\d+)", closecodes.SENDABLE)]
    assert [c for c in ALL_CODES if any(c in r for r in spelled)] == [
        c for c in ALL_CODES if closecodes.sendable(c)
    ]


@pytest.mark.parametrize(
    "code, throws",
    # workerd WebSocket::close: c >= 1000 && c < 5000 && c != 1004 && c != 1005 && c != 1006 && c != 1015
    [(999, True), (1000, False), (1003, False), (1004, True), (1005, True), (1006, True), (1014, False)]
    + [(1015, True), (1016, False), (2999, False), (4999, False), (5000, True), (None, True)],
)
def test_relay_throws_where_a_worker_does(code, throws):
    error = close_throws(code, "")
    assert (error is not None) == throws
    if throws:  # the relay reports no code (no close frame) as close(1006)
        assert error == f"Invalid WebSocket close code: {code or 1006}."


# A few sendable codes, from each end of each range the module names.
@pytest.mark.parametrize("code", [1000, 1003, 1007, 1010, 1013, 3000, 4999])
async def test_a_sendable_code_reaches_a_real_client_through_mitmdump(local_server, mitmdump, anon_key, code):
    assert closecodes.sendable(code)
    proxy = await mitmdump(f"rt_supabase_url={local_server.url}", f"rt_fault=close={code}:0:bye {code}")
    url = f"ws://127.0.0.1:{proxy.port}/realtime/v1/websocket?apikey={anon_key}&vsn=2.0.0"
    async with connect(url) as ws:
        await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
    assert ws.protocol.close_rcvd is not None  # a close frame came, not a dropped connection
    assert (ws.close_code, ws.close_reason) == (code, f"bye {code}")
    await proxy.wait_for(rf"closed the connection with {code} 'bye {code}'")


async def test_1014_from_upstream_reaches_the_client_as_1002(local_server, mitmdump, anon_key):
    """websockets (the local server) sends 1014; mitmproxy refuses it, as `sendable` says."""
    local_server.config.close_after_s, local_server.config.close_code = 0, 1014
    proxy = await mitmdump(f"rt_supabase_url={local_server.url}")
    url = f"ws://127.0.0.1:{proxy.port}/realtime/v1/websocket?apikey={anon_key}&vsn=2.0.0"
    async with connect(url) as ws:
        await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
    assert ws.close_code == closecodes.PROTOCOL_ERROR
    assert f'"{ws.close_reason}"' in closecodes.unsendable(1014)


def test_a_long_reason_is_cut_without_splitting_a_character():
    reason = "é" * 100  # 200 bytes
    clipped = closecodes.clip_reason(reason)
    assert len(clipped) <= closecodes.MAX_REASON_BYTES and clipped.decode("utf-8") == "é" * 61
    assert closecodes.clip_reason("bye") == b"bye"
