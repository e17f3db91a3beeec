"""Bounded memory: rt_keep_messages trims long-lived Realtime flows; the tracker's own state is capped."""

import collections
import enum
import json
import sys
import types

import localrt
from conftest import RTPROXY, read_flows
from mitmproxy.test import taddons, tflow
from mitmproxy.websocket import WebSocketMessage
from rtproxy_core import session as session_mod
from rtproxy_core.diagnosis import Diagnoser
from rtproxy_core.events import Closed, Frame, FrameError, Handshake, Hop, HopKind, Opened, PageEvent
from rtproxy_core.session import Session, limits
from rtproxy_mitm.trim import Trim
from websockets.asyncio.client import connect
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


# ------------------------------------------------------------------------------------ bytes, not entries


def deep_size(obj, seen: set[int] | None = None) -> int:
    """The bytes `obj` holds: sys.getsizeof of it and of everything it reaches (containers, dataclass
    fields, slots), each object once. Classes, functions and modules are shared, not the session's."""
    seen = set() if seen is None else seen
    if id(obj) in seen or isinstance(obj, (type, types.FunctionType, types.ModuleType, enum.Enum)):
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(deep_size(k, seen) + deep_size(v, seen) for k, v in obj.items())
    elif isinstance(obj, (list, tuple, set, frozenset, collections.deque)):
        size += sum(deep_size(v, seen) for v in obj)
    elif not isinstance(obj, (str, bytes, int, float, bool, type(None))):
        if hasattr(obj, "__dict__"):
            size += deep_size(vars(obj), seen)
        for cls in type(obj).__mro__:
            for name in getattr(cls, "__slots__", ()):
                if hasattr(obj, name):
                    size += deep_size(getattr(obj, name), seen)
    return size


def _opened_session() -> Session:
    s = Session("c1")
    s.feed(Opened("http://h/realtime/v1/websocket?vsn=2.0.0", [], 0))
    s.feed(Handshake(101, [], b"", 0))
    return s


def test_hostile_client_cannot_grow_a_session_past_its_bytes():
    """The issue's hostile client: 2,000 heartbeats with 100 KB refs never answered, 600 joins with
    5,000-character topics. Each table keeps its entries cap, each entry a fixed size: the session stays
    under SESSION_MAX_BYTES (the README's figure) and far under what it was fed."""
    s = _opened_session()
    fed = 0
    for i in range(2000):
        ref = f"{i:06d}" + "r" * 100_000
        frame = _v2(None, ref, "phoenix", "heartbeat", {}, t=1 + i)
        fed += len(frame.data)
        s.feed(frame)
    for i in range(600):
        topic = f"realtime:{i:04d}" + "t" * 5000
        frame = _v2(str(i), str(i), topic, "phx_join", {}, t=3000 + i)
        fed += len(frame.data)
        s.feed(frame)
    size = deep_size(s)
    assert (
        len(s.heartbeats.pending) == session_mod.MAX_PENDING and len(s.channels) == session_mod.MAX_CHANNELS
    )
    assert size < limits.SESSION_MAX_BYTES and size * 20 < fed, (size, fed)
    print(f"hostile client: fed {fed / 2**20:.0f} MiB, session {size / 2**20:.1f} MiB")
    # Meaning kept: a reply with the same long ref still answers its heartbeat, a long topic's join reply
    # its join (both sides go through limits.key).
    topic = "realtime:0499" + "t" * 5000  # the 500th: the last the channel cap tracks
    s.feed(_v2("499", "499", topic, "phx_reply", {"status": "ok", "response": {}}, client=False, t=3499.5))
    ch = s.current[limits.key(topic)]
    assert ch.state == "joined" and ch.join_latency_ms == 500
    ref = "001999" + "r" * 100_000
    s.feed(_v2(None, ref, "phoenix", "phx_reply", {"status": "ok", "response": {}}, client=False, t=4000))
    assert s.heartbeats.answered == 1
    assert ch.topic.startswith("realtime:0499ttt") and len(ch.topic) < 120 and ch.topic.isascii()


def test_every_table_full_of_the_longest_values_stays_under_the_bound():
    """Everything a peer can put in a Session's tables at once, each value longer than its clip: the deep
    size stays under limits.SESSION_MAX_BYTES, the figure the README states."""
    long = "x" * 600  # longer than any clip (limits.MAX_TEXT) or kept key (limits.MAX_KEY)
    s = Session("c1")
    s.feed(Opened("http://h/realtime/v1/websocket?vsn=2.0.0&apikey=" + "k" * 100_000, [], 0))
    s.feed(Handshake(401, [(f"h{i}-{long}", long) for i in range(300)], b"{}", 0))
    s.feed(Handshake(101, [], b"", 0))
    d = Diagnoser()
    t = 1.0

    def feed(ev):
        nonlocal t
        t += 0.001
        ev.time = t
        s.feed(ev)  # the rules run once, at the end: their findings are bounded by codes × topics

    binding = {f"k{j}-{long}": f"v{j}-{long}" for j in range(20)} | {"filter": {"deep": [long] * 20}}
    for i in range(session_mod.MAX_CHANNELS):
        topic, jr = f"realtime:{i}-{long}", f"{i}-{long}"
        config = {"postgres_changes": [binding] * 5, "broadcast": {"ack": True}}
        feed(_v2(jr, jr, topic, "phx_join", {"config": config}))
        pg = {"postgres_changes": [binding | {"id": long}] * 5}
        feed(_v2(jr, jr, topic, "phx_reply", {"status": "ok", "response": pg}, client=False))
        for k in range(session_mod.MAX_HISTORY + 2):
            feed(_v2(jr, f"{k}-{long}", topic, f"ev-{long}", {}))
            feed(_v2(jr, f"{k}-{long}", topic, "phx_reply", {"status": long, "response": long}, client=False))
            feed(
                _v2(
                    jr,
                    None,
                    topic,
                    "system",
                    {"extension": long, "status": "error", "message": long},
                    client=False,
                )
            )
            change = {"type": long, "errors": [long] * 10}
            feed(_v2(jr, None, topic, "postgres_changes", {"data": change}, client=False))
        presence = {f"{i}-{p}-{long}": {} for p in range(30)}
        feed(_v2(jr, None, topic, "presence_state", presence, client=False))
        feed(
            _v2(
                jr,
                None,
                topic,
                "presence_diff",
                {"joins": presence | {"more": {}}, "leaves": {}},
                client=False,
            )
        )
    for i in range(session_mod.MAX_PENDING + 10):
        feed(_v2(None, f"{i}-{long}", "phoenix", "heartbeat", {}))
        feed(_v2(None, None, "phoenix", "heartbeat", {}))
        feed(_v2(None, None, f"realtime:0-{long}", "phx_leave", {}))
    for i in range(session_mod.MAX_HISTORY * 2):
        feed(Hop(HopKind.FRAME_DROPPED, long * 10, 0, Frame(True, False, b"y" * 1_000_000)))
        feed(FrameError(f"{i} {long}", 0, by="browser"))
        feed(FrameError(f"{i} {long}", 0, by="reader"))
        for what, detail in (
            ("socket", {"asked": long * 30, "url": long * 30, "binaryType": long}),
            ("threw", {"type": long, "error": long * 10}),
            ("visibility", {"state": f"{i}{long}"}),
            ("message", {"type": f"{i}{long}", "binaryType": long}),
            ("send-not-open", {"readyState": i * 1000}),
            ("close", {"code": 1000, "reason": long * 10, **{f"{k}{long}": long for k in range(30)}}),
        ):
            feed(PageEvent(what, 1, detail))
    feed(Closed(1006, long * 100, False, error=long * 100))
    d.check(s, t + 100, final=True)
    size = deep_size(s)
    assert size < limits.SESSION_MAX_BYTES, size
    print(f"worst-case session: {size / 2**20:.1f} MiB")


async def test_rtproxy_keeps_a_flows_messages_within_rt_keep_bytes(local_server, mitmdump, tmp_path):
    """The rtproxy command in front of the local Realtime server, rt_keep_bytes small, a client sending
    1 MB broadcasts (echoed: broadcast.self): the flow mitmproxy keeps (written when it ends, as
    save_stream_file writes it) holds the newest messages within the cap, however many went through."""
    cap, flows, big = 2_500_000, tmp_path / "flows", "b" * 1_000_000
    proxy = await mitmdump(
        f"rt_supabase_url={local_server.url}",
        f"rt_keep_bytes={cap}",
        f"save_stream_file={flows}",
        program=RTPROXY,
    )
    url = f"ws://127.0.0.1:{proxy.port}/realtime/v1/websocket?apikey={localrt.KEY}&vsn=1.0.0"
    async with connect(url, compression=None, max_size=None) as ws:
        config = {"broadcast": {"self": True, "ack": False}, "presence": {"key": ""}, "private": False}
        assert (await localrt.join(ws, config=config))["payload"]["status"] == "ok"
        for i in range(6):
            await ws.send(
                localrt.v1(
                    "realtime:room",
                    "broadcast",
                    {"type": "broadcast", "event": "e", "payload": {"n": i, "big": big}},
                    ref=f"b{i}",
                )
            )
            echo = await localrt.recv(ws)
            assert echo["payload"]["payload"]["n"] == i
        await localrt.heartbeat_is_next(ws)
    await proxy.wait_for(r"closed by client: 1000")
    await proxy.stop()  # the flow is in the file once its websocket ended
    (flow,) = [f for f in read_flows(flows) if getattr(f, "websocket", None)]
    kept = [len(m.content) for m in flow.websocket.messages]
    # 2 join frames + 12 broadcasts of ~1 MB + 2 heartbeat frames went through; the newest within the cap
    # are kept: the heartbeat and its reply, and the two newest broadcasts (a third would pass the cap).
    assert sum(kept) <= cap and len(kept) == 4 and min(kept[:2]) > 1_000_000, kept
    assert b"phx_reply" in flow.websocket.messages[-1].content
