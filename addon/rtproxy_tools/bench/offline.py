"""rtbench offline: a synthetic capture (joins, heartbeats, text and binary broadcasts, presence,
postgres_changes) decoded + tracked (Session.feed) + diagnosed (Diagnoser.check on every logged note and
once per capture second, as the live tracker does) vs plain json.loads of the same frames' JSON; plus
Session.feed per frame type in microseconds and rtproxy's mitmproxy hooks per message (in-process, no
sockets)."""

from __future__ import annotations

import gc
import json
import math
import time
from typing import Any

from rtproxy_core import frames
from rtproxy_core.diagnosis import Diagnoser
from rtproxy_core.events import Closed, Frame, Handshake, Opened, Upstream
from rtproxy_core.session import Session

from . import kit

P_TEXT = (
    f'["1","%d","realtime:room","broadcast",{{"type":"broadcast","event":"cursor",'
    f'"payload":{kit.PAYLOAD_JSON}}}]'
)
P_ECHO = (
    f'[null,null,"realtime:room","broadcast",{{"event":"cursor","payload":{kit.PAYLOAD_JSON},'
    f'"type":"broadcast"}}]'
).encode()
PG = json.dumps(
    [
        None,
        None,
        "realtime:room",
        "postgres_changes",
        {
            "data": {
                "columns": [{"name": "id", "type": "int8"}, {"name": "title", "type": "text"}],
                "commit_timestamp": "2026-11-25T12:00:00Z",
                "errors": None,
                "record": {"id": 7, "title": "buy milk"},
                "schema": "public",
                "table": "todos",
                "type": "INSERT",
            },
            "ids": [38712345],
        },
    ],
    separators=(",", ":"),
).encode()
PRESENCE = json.dumps(
    [
        None,
        None,
        "realtime:room",
        "presence_diff",
        {
            "joins": {"u7": {"metas": [{"phx_ref": "F_3xkQ", "online_at": "2026-11-25T12:00:00Z"}]}},
            "leaves": {},
        },
    ],
    separators=(",", ":"),
).encode()
KIND4 = frames.encode_user_broadcast("realtime:room", "cursor", kit.PAYLOAD)


def _kind3(ref: int) -> bytes:
    return frames.encode_user_push("realtime:room", "cursor", kit.PAYLOAD, join_ref="1", ref=str(ref))


def synthetic_capture(total_frames: int, per_conn: int = 20_000) -> list[list]:
    """Connections of realistic traffic: join, then per 20 ms step one of: text broadcast + echo (40 %),
    kind 3 + kind 4 (40 %), a postgres_changes (10 %), a presence_diff (10 %); a heartbeat every 25 s."""
    conns = []
    t0 = 1_764_000_000.0
    left = total_frames
    while left > 0:
        n = min(per_conn, left)
        t = t0
        url = "http://worker.localhost/realtime/v1/websocket?apikey=x&vsn=2.0.0"
        ev: list = [
            Opened(url, [], t),
            Upstream(url.replace("worker.localhost", "ref.supabase.co"), [], t),
            Handshake(101, [], b"", t + 0.01),
        ]
        join = b'["1","1","realtime:room","phx_join",{"config":{"broadcast":{"self":true},"presence":{"key":""}}}]'
        ev += [
            Frame(True, False, join, t + 0.02),
            Frame(
                False,
                False,
                b'["1","1","realtime:room","phx_reply",{"response":{"postgres_changes":[]},"status":"ok"}]',
                t + 0.03,
            ),
        ]
        ref, next_hb, frames_n, step = 2, t + 25, 2, 0
        while frames_n < n:
            t += 0.02
            step += 1
            if t >= next_hb:
                ev += [
                    Frame(True, False, f'[null,"{ref}","phoenix","heartbeat",{{}}]'.encode(), t),
                    Frame(
                        False,
                        False,
                        f'[null,"{ref}","phoenix","phx_reply",{{"response":{{}},"status":"ok"}}]'.encode(),
                        t + 0.001,
                    ),
                ]
                ref, next_hb, frames_n = ref + 1, next_hb + 25, frames_n + 2
                continue
            r = step % 10
            if r < 4:
                ev += [Frame(True, False, (P_TEXT % ref).encode(), t), Frame(False, False, P_ECHO, t + 0.001)]
                ref, frames_n = ref + 1, frames_n + 2
            elif r < 8:
                ev += [Frame(True, True, _kind3(ref), t), Frame(False, True, KIND4, t + 0.001)]
                ref, frames_n = ref + 1, frames_n + 2
            elif r == 8:
                ev.append(Frame(False, False, PG, t))
                frames_n += 1
            else:
                ev.append(Frame(False, False, PRESENCE, t))
                frames_n += 1
        ev.append(Closed(1000, "", True, t + 0.1))
        conns.append(ev)
        left -= frames_n
    return conns


def _json_part(f: Frame) -> bytes:
    """The JSON text of a frame: the whole text frame, or a binary kind 3/4 frame's JSON payload."""
    if not f.binary:
        return f.data
    d = f.data
    if d[0] == frames.USER_PUSH:
        return d[7 + sum(d[1:6]) :]
    if d[0] == frames.USER_BROADCAST:
        return d[5 + sum(d[1:4]) :]
    return b"null"


def _analyze(conns: list[list], mode: str) -> tuple[int, float]:
    """(frames, seconds). mode: 'tracker' (Diagnoser.feed: rules on logged notes and once per second of
    event time, as the live tracker and rtdiagnose run them), 'every' (rules after every event, for
    comparison)."""
    n = 0
    d = Diagnoser()
    t0 = time.perf_counter()
    for events in conns:
        s = Session(conn="x")
        for ev in events:
            if mode == "every":
                s.feed(ev)
                d.check(s, ev.time)
            else:
                d.feed(s, ev)
            if type(ev) is Frame:
                n += 1
        d.end(s)
    return n, time.perf_counter() - t0


def _best(fn, repeat: int):
    best = None
    for _ in range(repeat):
        gc.collect()
        r = fn()
        if best is None or r[1] < best[1]:
            best = r
    return best


def analyzer(total: int, repeat: int) -> dict[str, Any]:
    conns = synthetic_capture(total)
    all_frames = [ev for c in conns for ev in c if type(ev) is Frame]
    parts = [_json_part(f) for f in all_frames]
    n = len(all_frames)

    def loads() -> tuple[int, float]:
        t0 = time.perf_counter()
        for p in parts:
            json.loads(p)
        return n, time.perf_counter() - t0

    def decode() -> tuple[int, float]:
        t0 = time.perf_counter()
        for f in all_frames:
            frames.decode(f.data, binary=f.binary, from_client=f.from_client)
        return n, time.perf_counter() - t0

    out: dict[str, Any] = {
        "frames": n,
        "connections": len(conns),
        "bytes_avg": sum(len(f.data) for f in all_frames) / n,
    }
    for key, fn in (
        ("json_loads", loads),
        ("decode", decode),
        ("tracker_rate", lambda: _analyze(conns, "tracker")),
    ):
        frames_n, secs = _best(fn, repeat)
        out[key] = {"frames_per_s": frames_n / secs, "us_per_frame": secs / frames_n * 1e6}
    sub = synthetic_capture(min(total, 20_000))  # checking after every frame is slow: a smaller capture
    frames_n, secs = _best(lambda: _analyze(sub, "every"), 1)
    out["every_frame"] = {
        "frames_per_s": frames_n / secs,
        "us_per_frame": secs / frames_n * 1e6,
        "frames": frames_n,
    }
    out["ratio_tracker_vs_json"] = out["tracker_rate"]["us_per_frame"] / out["json_loads"]["us_per_frame"]
    out["ratio_decode_vs_json"] = out["decode"]["us_per_frame"] / out["json_loads"]["us_per_frame"]
    return out


def _joined_session() -> Session:
    s = Session(conn="x")
    for ev in synthetic_capture(1)[0][:5]:  # open, upstream, 101, phx_join, its ok reply
        s.feed(ev)
    assert s.current["realtime:room"].state == "joined"
    return s


def frame_costs(iterations: int) -> dict[str, Any]:
    """Per frame type: frames.decode, Session.feed (decode + track), json.loads of its JSON; µs."""
    hb = [
        (
            Frame(True, False, f'[null,"{i}","phoenix","heartbeat",{{}}]'.encode(), 1.0),
            Frame(
                False,
                False,
                f'[null,"{i}","phoenix","phx_reply",{{"response":{{}},"status":"ok"}}]'.encode(),
                1.001,
            ),
        )
        for i in range(iterations)
    ]
    kinds = {
        "text broadcast (client array)": [
            Frame(True, False, (P_TEXT % (i + 10)).encode(), 1.0) for i in range(iterations)
        ],
        "text broadcast echo (server array)": [Frame(False, False, P_ECHO, 1.0)] * iterations,
        "kind 3 user broadcast (client)": [Frame(True, True, _kind3(i + 10), 1.0) for i in range(iterations)],
        "kind 4 user broadcast (server)": [Frame(False, True, KIND4, 1.0)] * iterations,
        "heartbeat + phx_reply (pair, per frame)": [f for pair in hb for f in pair],
        "postgres_changes (server)": [Frame(False, False, PG, 1.0)] * iterations,
        "presence_diff (server)": [Frame(False, False, PRESENCE, 1.0)] * iterations,
    }
    out: dict[str, Any] = {}

    def loads(fl: list[Frame], parts: list[bytes], s: Session) -> None:
        for p in parts:
            json.loads(p)

    def decode(fl: list[Frame], parts: list[bytes], s: Session) -> None:
        for f in fl:
            frames.decode(f.data, binary=f.binary, from_client=f.from_client)

    def feed(fl: list[Frame], parts: list[bytes], s: Session) -> None:
        for f in fl:
            s.feed(f)

    for name, fl in kinds.items():
        parts = [_json_part(f) for f in fl]
        row = {}
        for what, fn in (("json_loads", loads), ("decode", decode), ("feed", feed)):
            best = math.inf
            for _ in range(3):
                s = _joined_session()
                gc.collect()
                t0 = time.perf_counter()
                fn(fl, parts, s)
                best = min(best, time.perf_counter() - t0)
            row[what + "_us"] = best / len(fl) * 1e6
        out[name] = row
    s = _joined_session()
    for f in kinds["text broadcast (client array)"][:1000]:
        s.feed(f)  # steady state: 1000 unanswered broadcast refs pending, as a long-lived client has
    d = Diagnoser()
    t0 = time.perf_counter()
    for _ in range(2000):
        d.check(s, 5.0)
    out["_diagnoser_check_us"] = {"pending_1000": (time.perf_counter() - t0) / 2000 * 1e6}
    s.pending.clear()
    t0 = time.perf_counter()
    for _ in range(2000):
        d.check(s, 5.0)
    out["_diagnoser_check_us"]["pending_0"] = (time.perf_counter() - t0) / 2000 * 1e6
    out["_hooks"] = hook_costs(iterations)
    return out


def hook_costs(iterations: int) -> dict[str, float]:
    """rtproxy's mitmproxy hooks per WebSocket message, called directly on a test flow (no proxy): what
    rtproxy adds to each message on top of mitmproxy's own work. µs per message."""
    from mitmproxy import flowfilter, websocket
    from mitmproxy.test import tflow
    from mitmproxy.version import VERSION
    from rtproxy_mitm.faults import Faults
    from rtproxy_mitm.flowevents import REALTIME
    from rtproxy_mitm.quiet import REALTIME_FLOWS_HIDDEN
    from rtproxy_mitm.sanitize import Sanitize, messages_not_sanitized
    from rtproxy_mitm.tracker import Tracker
    from rtproxy_mitm.trim import Trim
    from wsproto.frame_protocol import Opcode

    flow = tflow.twebsocketflow(messages=False)
    flow.request.path = "/realtime/v1/websocket?apikey=x&vsn=2.0.0"
    flow.metadata[REALTIME] = True
    tracker = Tracker()
    faults = Faults(report=tracker.report_event)
    s = _joined_session()
    tracker.live[flow.id] = s
    trim = Trim()
    sanitizer = Sanitize()
    sanitizer.messages = messages_not_sanitized(VERSION) is None  # as its load sets it
    sanitizer.flows[flow.id] = {}  # as after the upgrade's response hook
    msgs = []
    for i in range(iterations):
        if i % 2 == 0:
            data, op, fc = (
                ((P_TEXT % (i + 10)).encode(), Opcode.TEXT, True)
                if i % 4 == 0
                else (_kind3(i + 10), Opcode.BINARY, True)
            )
        else:
            data, op, fc = (P_ECHO, Opcode.TEXT, False) if i % 4 == 1 else (KIND4, Opcode.BINARY, False)
        msgs.append(websocket.WebSocketMessage(op, fc, data, 1_764_000_000.0 + i * 1e-3))
    filt = flowfilter.parse(REALTIME_FLOWS_HIDDEN)
    out: dict[str, float] = {}
    steps = [
        ("faults.websocket_message", faults.websocket_message),
        ("tracker.websocket_message", tracker.websocket_message),
        ("trim.websocket_message (rt_keep_messages default)", trim.websocket_message),
        ("sanitize.websocket_message", sanitizer.websocket_message),
        ("dumper_filter match (flow_detail>=1)", lambda f: flowfilter.match(filt, f)),
    ]
    ws = flow.websocket
    assert ws is not None
    for name, hook in steps:
        ws.messages.clear()
        gc.collect()
        t_total = 0.0
        for m in msgs:
            ws.messages.append(m)
            t0 = time.perf_counter()
            hook(flow)
            t_total += time.perf_counter() - t0
        out[name] = t_total / len(msgs) * 1e6
    out["total"] = sum(v for k, v in out.items() if not k.startswith("dumper"))
    return out


def hostile_frames(big: int = 1_000_000) -> dict[str, tuple[bytes, bool]]:
    """Issue #27's misbehaving frames, client to server: (bytes, is text)."""
    import base64
    import random

    rng = random.Random(27)
    blob = base64.b64encode(rng.randbytes(big * 3 // 4)).decode()[:big]

    def bcast(payload: Any) -> bytes:
        body = {"type": "broadcast", "event": "big", "payload": payload}
        return json.dumps(["1", "5", "realtime:room", "broadcast", body], separators=(",", ":")).encode()

    t, ue = b"realtime:room", b"big"
    k3 = bytes([frames.USER_PUSH, 1, 1, len(t), len(ue), 0, frames.ENC_JSON]) + b"15" + t + ue
    join = ["7", "7", "realtime:flood", "phx_join", {"config": {"broadcast": {"self": True}}}]
    return {
        "1 MB broadcast, base64 string payload": (bcast({"blob": blob}), True),
        "1 MB broadcast, JSON rows payload": (
            bcast({"rows": [{"id": i, "v": "abcdefgh"} for i in range(big // 22)]}),
            True,
        ),
        "1 MB invalid JSON (cut broadcast)": (bcast({"blob": blob})[:-3], True),
        "deep nesting, 10,000 levels": (b"[" * 10_000 + b"]" * 10_000, True),
        "1 MB binary kind 3, JSON payload": (k3 + json.dumps({"blob": blob}).encode(), False),
        "join, 500 on one socket (distinct topics)": (json.dumps(join).encode(), True),
        "heartbeat, 100 KB ref": (b'[null,"' + b"7" * 100_000 + b'","phoenix","heartbeat",{}]', True),
    }


def hostile_costs(iterations: int = 20) -> dict[str, dict[str, float]]:
    """rtproxy's per-message hooks on each of issue #27's misbehaving frames, in-process on a test flow
    (no proxy, no sockets), µs per frame: Faults, Tracker (decode, session, diagnosis), Trim, Sanitize.
    A join gets a distinct topic each time, as a join flood sends them, 500 of them: what one join costs
    grows with the channels the connection already has."""
    from mitmproxy import websocket
    from mitmproxy.test import tflow
    from mitmproxy.version import VERSION
    from rtproxy_mitm.faults import Faults
    from rtproxy_mitm.flowevents import REALTIME
    from rtproxy_mitm.sanitize import Sanitize, messages_not_sanitized
    from rtproxy_mitm.tracker import Tracker
    from rtproxy_mitm.trim import Trim
    from wsproto.frame_protocol import Opcode

    out: dict[str, dict[str, float]] = {}
    for name, (data, text) in hostile_frames().items():
        flow = tflow.twebsocketflow(messages=False)
        flow.request.path = "/realtime/v1/websocket?apikey=x&vsn=2.0.0"
        flow.metadata[REALTIME] = True
        tracker = Tracker()
        tracker.live[flow.id] = _joined_session()
        sanitizer = Sanitize()
        sanitizer.messages = messages_not_sanitized(VERSION) is None
        sanitizer.flows[flow.id] = {}
        hooks = {
            "faults": Faults(report=tracker.report_event).websocket_message,
            "tracker": tracker.websocket_message,
            "trim": Trim().websocket_message,
            "sanitize": sanitizer.websocket_message,
        }
        spent = dict.fromkeys(hooks, 0.0)
        ws = flow.websocket
        assert ws is not None
        gc.collect()
        n = 500 if "join" in name else iterations
        for i in range(n):
            d = data.replace(b"realtime:flood", f"realtime:flood-{i}".encode()) if "join" in name else data
            ws.messages.append(
                websocket.WebSocketMessage(
                    Opcode.TEXT if text else Opcode.BINARY, True, d, 1.0 + i * 0.01
                )  # 100 frames a second
            )
            for hook_name, hook in hooks.items():
                t0 = time.perf_counter()
                hook(flow)
                spent[hook_name] += time.perf_counter() - t0
        row = {k: v / n * 1e6 for k, v in spent.items()}
        row["total"] = sum(row.values())
        row["bytes"] = len(data)
        out[name] = row
    return out
