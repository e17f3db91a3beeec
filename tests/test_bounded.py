"""Bounded memory: rt_keep_messages trims long-lived Realtime flows; the tracker's own state is capped."""

import json

from mitmproxy.test import taddons, tflow
from mitmproxy.websocket import WebSocketMessage
from rtproxy_core import session as session_mod
from rtproxy_core.events import Frame, Handshake, Opened
from rtproxy_core.session import Session
from rtproxy_mitm.trim import Trim
from wsproto.frame_protocol import Opcode


def realtime_flow():
    f = tflow.twebsocketflow()
    f.request.path = "/realtime/v1/websocket?vsn=2.0.0"
    return f


async def test_trim_keeps_the_newest_n_messages():
    trim = Trim()
    with taddons.context(trim) as tctx:
        tctx.configure(trim, rt_keep_messages=5)
        f = realtime_flow()
        trim.websocket_start(f)
        for i in range(20):
            f.websocket.messages.append(WebSocketMessage(Opcode.TEXT, True, f"m{i}".encode()))
            trim.websocket_message(f)
        assert [m.content for m in f.websocket.messages] == [f"m{i}".encode() for i in range(15, 20)]


async def test_trim_zero_keeps_all_and_other_flows_untouched():
    trim = Trim()
    with taddons.context(trim) as tctx:
        tctx.configure(trim, rt_keep_messages=0)
        f = realtime_flow()
        trim.websocket_start(f)
        for i in range(20):
            f.websocket.messages.append(WebSocketMessage(Opcode.TEXT, True, b"x"))
            trim.websocket_message(f)
        assert len(f.websocket.messages) == 23  # twebsocketflow starts with 3
        tctx.configure(trim, rt_keep_messages=2)
        other = tflow.twebsocketflow()  # path /ws: not Realtime
        trim.websocket_start(other)
        other.websocket.messages.append(WebSocketMessage(Opcode.TEXT, True, b"x"))
        trim.websocket_message(other)
        assert len(other.websocket.messages) == 4


def _feed(trim, f, *sizes: int) -> None:
    for size in sizes:
        f.websocket.messages.append(WebSocketMessage(Opcode.TEXT, True, b"x" * size))
        trim.websocket_message(f)


def _kept_bytes(f) -> int:
    return sum(len(m.content) for m in f.websocket.messages)


async def test_trim_byte_cap_keeps_the_newest_within_the_cap():
    trim = Trim()
    with taddons.context(trim) as tctx:
        tctx.configure(trim, rt_keep_messages=0, rt_keep_bytes=1000)
        f = realtime_flow()
        f.websocket.messages.clear()
        trim.websocket_start(f)
        _feed(trim, f, *[300] * 10)
        assert [len(m.content) for m in f.websocket.messages] == [300, 300, 300]
        _feed(trim, f, 5000)  # bigger than the cap: kept alone (the dumper reads messages[-1])
        assert [len(m.content) for m in f.websocket.messages] == [5000]
        _feed(trim, f, 10, 20)
        assert [len(m.content) for m in f.websocket.messages] == [10, 20]
        assert trim.flows[f.id].total == _kept_bytes(f) == 30


async def test_trim_both_caps_whichever_bites_first():
    trim = Trim()
    with taddons.context(trim) as tctx:
        tctx.configure(trim, rt_keep_messages=4, rt_keep_bytes=1000)
        f = realtime_flow()
        f.websocket.messages.clear()
        trim.websocket_start(f)
        _feed(trim, f, *[10] * 10)  # the count bites
        assert len(f.websocket.messages) == 4 and trim.flows[f.id].total == 40
        _feed(trim, f, 600, 600)  # the bytes bite
        assert [len(m.content) for m in f.websocket.messages] == [600]
        assert trim.flows[f.id].total == _kept_bytes(f)


async def test_trim_byte_total_follows_a_replaced_newest_message():
    """Sanitize runs after Trim and may put a (shorter) sanitized copy in the newest message's place: the
    running total counts the list as it stands, so the cap holds on what is really kept."""
    trim = Trim()
    with taddons.context(trim) as tctx:
        tctx.configure(trim, rt_keep_messages=0, rt_keep_bytes=1000)
        f = realtime_flow()
        f.websocket.messages.clear()
        trim.websocket_start(f)
        for i in range(50):
            _feed(trim, f, 200)
            if i % 2:
                f.websocket.messages[-1] = WebSocketMessage(Opcode.TEXT, True, b"y" * 50)
        _feed(trim, f, 1)
        assert trim.flows[f.id].total == _kept_bytes(f) <= 1000
        assert _kept_bytes(f) + 200 > 1000  # and not less is kept than the cap allows


def _v2(*fields, client=True, t=0.0):
    return Frame(client, False, json.dumps(list(fields)).encode(), t)


def test_session_state_is_capped():
    s = Session()
    s.feed(Opened("http://h/realtime/v1/websocket?vsn=2.0.0", [], 0))
    s.feed(Handshake(101, [], b"", 0))
    for i in range(session_mod.MAX_CHANNELS + 100):
        s.feed(_v2(str(i), str(i), f"realtime:c{i}", "phx_join", {}))
    assert len(s.channels) == session_mod.MAX_CHANNELS and s.dropped_channels == 100
    for i in range(session_mod.MAX_PENDING * 3):
        s.feed(_v2(None, f"h{i}", "phoenix", "heartbeat", {}))
    assert len(s.pending) <= session_mod.MAX_PENDING
    ch = s.current["realtime:c0"]
    for i in range(200):
        s.feed(
            _v2(
                "0",
                None,
                "realtime:c0",
                "system",
                {"extension": "system", "status": "ok", "message": "m"},
                client=False,
            )
        )
    assert len(ch.system) == session_mod.MAX_HISTORY
    assert len(s.heartbeats.gaps) <= 64
