"""Invariants of the diagnosis, under hypothesis over generated sessions:

- a healthy session (joins answered, heartbeats at the client's cadence with ordinary jitter, a tab switch
  within the client's tolerance, broadcasts, leaves and rejoins, a clean close, a reconnect after it)
  yields no error or warning;
- any session: every channel instance that did not end joined-then-left-cleanly has at least one finding
  (its own, or the connection's when the channel failed with its socket), a failed connection has one,
  and no rule raises.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rtproxy_core.diagnosis import Diagnoser
from rtproxy_core.events import Closed, Frame, Handshake, Opened
from rtproxy_core.rules import Severity, clean_end
from rtproxy_core.session import Session

T0 = 1_800_000_000.0
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
REPLY_OK = {"status": "ok", "response": {"postgres_changes": []}}


class Wire:
    """Frames as realtime-js (vsn 2.0.0 arrays) or realtime-py (1.0.0 objects, null heartbeat refs) send them."""

    def __init__(self, js: bool):
        self.js = js
        self.url = "https://abcdefghijklmnopqrst.supabase.co/realtime/v1/websocket?apikey=k" + (
            "&vsn=2.0.0" if js else ""
        )
        self.ref = 0

    def next_ref(self) -> str:
        self.ref += 1
        return str(self.ref)

    def client(self, topic, event, payload, ref, join_ref, t) -> Frame:
        if self.js:
            data = [join_ref, ref, topic, event, payload]
        else:
            data = {"topic": topic, "event": event, "payload": payload, "ref": ref, "join_ref": None}
        return Frame(True, False, json.dumps(data).encode(), T0 + t)

    def server(self, topic, event, payload, ref, join_ref, t) -> Frame:
        if self.js:
            data = [join_ref, ref, topic, event, payload]
        else:
            data = {"event": event, "payload": payload, "ref": ref, "topic": topic}
        return Frame(False, False, json.dumps(data).encode(), T0 + t)

    def heartbeat(self, t: float, answered: bool, rtt: float) -> list[Frame]:
        ref = self.next_ref() if self.js else None
        out = [self.client("phoenix", "heartbeat", {}, ref, None, t)]
        if answered:
            out.append(
                self.server("phoenix", "phx_reply", {"status": "ok", "response": {}}, ref, None, t + rtt)
            )
        return out


def diagnose(connections: list[list]) -> list[Session]:
    d = Diagnoser()
    out = []
    for events in connections:
        s = Session(conn=str(len(out)))
        for e in events:
            d.feed(s, e)
        d.end(s)
        out.append(s)
    return out


# ------------------------------------------------------------------------------------------- healthy


@st.composite
def healthy_connection(draw, start: float = 0.0) -> list:
    js = draw(st.booleans())
    w = Wire(js)
    interval = draw(st.sampled_from([25.0, 25.0, 15.0, 30.0, 5.0]))
    duration = draw(st.floats(min_value=interval * 0.5, max_value=interval * 8))
    events: list = [Opened(w.url, [], T0 + start), Handshake(101, [], b"", T0 + start + 0.05)]
    frames: list[Frame] = []
    topics = [f"realtime:room{i}" for i in range(draw(st.integers(1, 3)))]
    joined: dict[str, str] = {}
    t = start + 0.1
    for topic in topics:
        ref = w.next_ref()
        frames.append(
            w.client(
                topic,
                "phx_join",
                {
                    "config": {
                        "broadcast": {"ack": False, "self": False},
                        "presence": {"key": "", "enabled": False},
                        "private": False,
                    }
                },
                ref,
                ref if js else None,
                t,
            )
        )
        rtt = draw(st.floats(0.005, 0.8))
        frames.append(w.server(topic, "phx_reply", REPLY_OK, ref, ref if js else None, t + rtt))
        joined[topic] = ref
        t += 0.01
    # heartbeats at the client's cadence, jitter up to 1 s, one tab switch of up to 1.8 intervals; realtime-js
    # sends its first one interval after the socket opened (@supabase/phoenix Socket.resetHeartbeat),
    # realtime-py at once (realtime/_async/client.py _heartbeat: send, then sleep)
    hb_t = start + 0.1 + (interval if js else 0.0)
    switched = js and draw(st.booleans())  # a background tab throttles a browser's timers, not Python's
    end = start + 0.1 + duration
    while hb_t < end:
        frames += w.heartbeat(hb_t, True, draw(st.floats(0.001, 0.5)))
        step = interval + draw(st.floats(-1.0, 1.0))
        if switched and draw(st.booleans()):
            step, switched = interval * draw(st.floats(1.0, 1.8)), False
        hb_t += step
    # broadcasts each way, a leave and a rejoin a backoff later
    for _ in range(draw(st.integers(0, 4))):
        topic = draw(st.sampled_from(topics))
        bt = draw(st.floats(start + 1, end))
        frames.append(
            w.client(
                topic,
                "broadcast",
                {"type": "broadcast", "event": "e", "payload": {}},
                w.next_ref(),
                joined[topic] if js else None,
                bt,
            )
        )
        frames.append(
            w.server(
                topic, "broadcast", {"type": "broadcast", "event": "e", "payload": {}}, None, None, bt + 0.01
            )
        )
    if draw(st.booleans()) and end - start > 10:
        # a leave and a re-subscribe: a backoff later, or at once (a React effect whose deps changed:
        # removeChannel not awaited, the new join out before the old channel's phx_close)
        topic = topics[0]
        lt = draw(st.floats(start + 5, end - 3))
        ref = w.next_ref()
        at_once = js and draw(st.booleans())
        rt = lt + (0.001 if at_once else draw(st.floats(1.0, 2.0)))
        frames.append(w.client(topic, "phx_leave", {}, ref, joined[topic] if js else None, lt))
        frames.append(
            w.server(
                topic,
                "phx_reply",
                {"status": "ok", "response": {}},
                ref,
                joined[topic] if js else None,
                lt + 0.01,
            )
        )
        frames.append(
            w.server(
                topic,
                "phx_close",
                {},
                joined[topic] if js else None,
                joined[topic] if js else None,
                lt + 0.02,
            )
        )
        rj = w.next_ref()
        frames.append(w.client(topic, "phx_join", {"config": {}}, rj, rj if js else None, rt))
        frames.append(w.server(topic, "phx_reply", REPLY_OK, rj, rj if js else None, rt + 0.05))
        joined[topic] = rj
    if js and draw(st.booleans()):
        # React StrictMode at mount: join, leave and join again at once; the client sends join_refs, so the
        # old channel's phx_close (its join_ref) does not touch the new one
        topic, a, b = "realtime:strict", w.next_ref(), w.next_ref()
        c2 = w.next_ref()
        frames += [
            w.client(topic, "phx_join", {"config": {}}, a, a, start + 0.1),
            w.client(topic, "phx_leave", {}, b, a, start + 0.1),
            w.client(topic, "phx_join", {"config": {}}, c2, c2, start + 0.1),
            w.server(topic, "phx_reply", REPLY_OK, a, a, start + 0.2),
            w.server(topic, "phx_reply", {"status": "ok", "response": {}}, b, a, start + 0.2),
            w.server(topic, "phx_close", {}, a, a, start + 0.2),
            w.server(topic, "phx_reply", REPLY_OK, c2, c2, start + 0.21),
        ]
    frames.sort(key=lambda f: f.time)
    events += frames
    last = max([f.time - T0 for f in frames] + [end])
    if draw(st.booleans()):
        events.append(Closed(1000, "", True, T0 + last + 0.05))
    else:  # a HAR: the end is not recorded
        events.append(Closed(None, "", None, T0 + last, recorded=False))
    return events


@SETTINGS
@given(st.lists(healthy_connection(), min_size=1, max_size=2))
def test_a_healthy_session_has_no_error_or_warning(conns):
    # a reconnect after a clean close: the second connection opens after the first ended
    shifted = []
    offset = 0.0
    for events in conns:
        base = events[0].time
        moved = []
        for e in events:
            e = type(e)(**{k: getattr(e, k) for k in e.__slots__})
            e.time = e.time - base + T0 + offset
            moved.append(e)
        offset = moved[-1].time - T0 + 1.0
        shifted.append(moved)
    for s in diagnose(shifted):
        bad = [f for f in s.findings if f.severity in (Severity.ERROR, Severity.WARNING)]
        assert not bad, [(f.code, f.evidence) for f in bad]


# ------------------------------------------------------------------------------------------- any session

REASONS = [
    "Unknown Error on Channel",
    "PrivateOnly: This project only allows private channels",
    "RealtimeRestarting: Realtime is restarting, please standby",
    "something new",
    "join crashed",
    "InvalidJWTToken: Token has expired 30 seconds ago",
]
SYSTEM = ["Too many messages per second", "%MatchError{term: nil}", "Token has expired 0 seconds ago"]


@st.composite
def any_connection(draw) -> list:
    js = draw(st.booleans())
    w = Wire(js)
    status = draw(st.sampled_from([101, 101, 101, 403, 401, 500, 502]))
    events: list = [Opened(w.url, [], T0)]
    events.append(
        Handshake(
            status, [], draw(st.sampled_from([b"", b'{"error":"Token has expired"}', b"oops"])), T0 + 0.05
        )
    )
    if status != 101:
        return events
    t = 0.1
    for _ in range(draw(st.integers(0, 12))):
        t += draw(st.floats(0.0, 20.0))
        topic = draw(st.sampled_from(["realtime:a", "realtime:b"]))
        ref = w.next_ref()
        jr = ref if js else None
        what = draw(
            st.sampled_from(
                ["join", "join-ok", "join-err", "leave", "close", "error", "system", "hb", "hb-ok", "bcast"]
            )
        )
        if what.startswith("join"):
            events.append(w.client(topic, "phx_join", {"config": {}}, ref, jr, t))
            if what == "join-ok":
                events.append(w.server(topic, "phx_reply", REPLY_OK, ref, jr, t + draw(st.floats(0, 12))))
            elif what == "join-err":
                events.append(
                    w.server(
                        topic,
                        "phx_reply",
                        {"status": "error", "response": {"reason": draw(st.sampled_from(REASONS))}},
                        ref,
                        jr,
                        t + draw(st.floats(0, 6)),
                    )
                )
        elif what == "leave":
            events.append(w.client(topic, "phx_leave", {}, ref, draw(st.sampled_from([jr, "9"])), t))
        elif what == "close":
            events.append(w.server(topic, "phx_close", {}, draw(st.sampled_from([jr, None])), None, t))
        elif what == "error":
            events.append(w.server(topic, "phx_error", {}, jr, jr, t))
        elif what == "system":
            events.append(
                w.server(
                    topic,
                    "system",
                    {
                        "extension": "system",
                        "status": "error",
                        "message": draw(st.sampled_from(SYSTEM)),
                        "channel": "a",
                    },
                    None,
                    jr,
                    t,
                )
            )
        elif what.startswith("hb"):
            events += w.heartbeat(t, what == "hb-ok", 0.01)
        else:
            events.append(
                w.client(topic, "broadcast", {"type": "broadcast", "event": "e", "payload": {}}, ref, jr, t)
            )
    events.sort(key=lambda e: e.time)
    code = draw(st.sampled_from([1000, 1001, 1006, 1011, 1012, 4000, None]))
    events.append(
        Closed(
            None if code == 1006 else code,
            draw(st.sampled_from(["", "heartbeat timeout"])),
            draw(st.sampled_from([True, False, None])),
            T0 + t + draw(st.floats(0, 90)),
            ended_first=draw(st.sampled_from([None, "client", "server", "hop"])),
            recorded=draw(st.booleans()),
        )
    )
    return events


@SETTINGS
@given(st.lists(any_connection(), min_size=1, max_size=3))
def test_no_failure_is_left_unexplained(conns):
    for s in diagnose(conns):
        assert not [f for f in s.findings if f.code == "rule-failed"], [f.evidence for f in s.findings]
        topics = {f.topic for f in s.findings}
        conn_level = any(f.topic is None for f in s.findings)
        for ch in s.channels.values():
            if clean_end(s, ch, True) is not False:
                continue
            explained = (
                ch.topic in topics or conn_level and (ch.reason is None or ch.reason.startswith("socket"))
            )
            assert explained, (ch.label, ch.state, ch.reason, [(f.code, f.topic) for f in s.findings])
        if s.failed:
            assert s.findings, "a failed connection without a finding"
