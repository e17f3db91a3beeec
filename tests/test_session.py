"""Tracker transitions, fed frame sequences (no sockets)."""

from rtproxy_core import frames
from rtproxy_core.events import Closed, Frame, Handshake, Hop, Opened, Upstream
from rtproxy_core.session import CLOSED, ERRORED, JOINED, Session, is_realtime_path
from wire import T0, kind3, kind4, v1, v2

URL2 = "http://worker.localhost/realtime/v1/websocket?apikey=secret-key-value&vsn=2.0.0"


def opened(s, url=URL2):
    s.feed(Opened(url, [], T0))
    s.feed(Handshake(101, [], b"", T0))


def texts(notes):
    return [n.text for n in notes]


def test_join_paired_with_reply_latency_and_binding_ids():
    s = Session("c1")
    opened(s)
    join = {"config": {"postgres_changes": [{"event": "*", "schema": "public", "table": "todos"}]}}
    notes = s.feed(v2("1", "1", "realtime:room", "phx_join", join, client=True, t=0.0))
    assert any("join realtime:room ref=1" in t for t in texts(notes))
    notes = s.feed(
        v2(
            "1",
            "1",
            "realtime:room",
            "phx_reply",
            {"status": "ok", "response": {"postgres_changes": [{"id": 42}]}},
            client=False,
            t=0.012,
        )
    )
    ch = s.current["realtime:room"]
    assert ch.state == JOINED and round(ch.join_latency_ms) == 12 and ch.binding_ids == [42]
    assert "realtime:room joined in 12 ms (postgres_changes ids 42)" in texts(notes)


def test_join_error_reason_kept_and_logged():
    s = Session()
    opened(s)
    s.feed(v2("1", "1", "realtime:p", "phx_join", {}, client=True, t=0))
    notes = s.feed(
        v2(
            "1",
            "1",
            "realtime:p",
            "phx_reply",
            {
                "status": "error",
                "response": {"reason": "PrivateOnly: This project only allows private channels"},
            },
            client=False,
            t=5,
        )
    )
    ch = s.current["realtime:p"]
    assert ch.state == ERRORED and ch.reason.startswith("PrivateOnly")
    assert any(n.level == "warning" and "PrivateOnly" in n.text for n in notes)


def test_heartbeats_rtt_and_gap_v1_null_refs():
    s = Session()
    s.feed(Opened("http://h/realtime/v1/websocket?apikey=k&vsn=1.0.0", [], T0))
    s.feed(Handshake(101, [], b"", T0))
    for i, t in enumerate((0, 30, 60)):
        s.feed(v1("phoenix", "heartbeat", {}, None, client=True, t=t))
        if i < 2:
            s.feed(
                v1("phoenix", "phx_reply", {"status": "ok", "response": {}}, None, client=False, t=t + 0.002)
            )
    hb = s.heartbeats
    assert (hb.sent, hb.answered, hb.max_gap_s) == (3, 2, 30)
    assert round(hb.rtt_max_ms) == 2


def test_heartbeat_unanswered_counted_when_next_one_goes_out():
    s = Session()
    opened(s)
    s.feed(v2(None, "1", "phoenix", "heartbeat", {}, client=True, t=0))
    s.feed(v2(None, "2", "phoenix", "heartbeat", {}, client=True, t=25))
    assert s.heartbeats.unanswered_at_next == 1


def test_presence_counts_and_system_and_phx_close_after_system_error():
    s = Session()
    opened(s)
    s.feed(v2("1", "1", "realtime:r", "phx_join", {}, client=True, t=0))
    s.feed(v2("1", "1", "realtime:r", "phx_reply", {"status": "ok", "response": {}}, client=False, t=0.01))
    s.feed(v2("1", None, "realtime:r", "presence_state", {"a": {"metas": []}}, client=False, t=0.02))
    s.feed(
        v2(
            None,
            None,
            "realtime:r",
            "presence_diff",
            {"joins": {"b": {}}, "leaves": {"a": {}}},
            client=False,
            t=0.03,
        )
    )
    assert s.current["realtime:r"].presence == {"b"}
    s.feed(
        v2(
            "1",
            None,
            "realtime:r",
            "system",
            {
                "extension": "system",
                "status": "error",
                "message": "Too many messages per second",
                "channel": "r",
            },
            client=False,
            t=1,
        )
    )
    notes = s.feed(v2("1", "1", "realtime:r", "phx_close", {}, client=False, t=1.01))
    ch = s.current["realtime:r"]
    assert ch.state == CLOSED and ch.closed_by == "server" and ch.reason == "Too many messages per second"
    assert any("closed (phx_close from server): Too many messages per second" in t for t in texts(notes))


def test_leave_then_close_is_client_initiated():
    s = Session()
    opened(s)
    s.feed(v2("1", "1", "realtime:r", "phx_join", {}, client=True, t=0))
    s.feed(v2("1", "1", "realtime:r", "phx_reply", {"status": "ok", "response": {}}, client=False, t=0.01))
    s.feed(v2("1", "2", "realtime:r", "phx_leave", {}, client=True, t=1))
    s.feed(v2("1", "2", "realtime:r", "phx_reply", {"status": "ok", "response": {}}, client=False, t=1.01))
    s.feed(v2("1", "1", "realtime:r", "phx_close", {}, client=False, t=1.02))
    assert s.current["realtime:r"].closed_by == "client"


def test_duplicate_join_counted_and_old_close_ignored():
    s = Session()
    opened(s)
    s.feed(v2("1", "1", "realtime:r", "phx_join", {}, client=True, t=0))
    s.feed(v2("3", "3", "realtime:r", "phx_join", {}, client=True, t=0.001))
    s.feed(v2("1", "1", "realtime:r", "phx_close", {}, client=False, t=0.002))
    ch = s.current["realtime:r"]
    assert ch.duplicate_joins == 1 and ch.state != CLOSED and ch.join_ref == "3"


def test_serializer_mismatch_noted_once():
    s = Session()
    s.feed(Opened("http://h/realtime/v1/websocket?apikey=k&vsn=2.0.0", [], T0))
    s.feed(Upstream("https://x.supabase.co/realtime/v1/websocket", [], T0))  # query lost on the way
    s.feed(Handshake(101, [], b"", T0))
    n1 = s.feed(v2("1", "1", "realtime:r", "phx_join", {}, client=True, t=0))
    n2 = s.feed(kind3("realtime:r", "e", {"x": 1}, t=1))
    assert s.vsn == "1.0.0" and s.shape_mismatches == 2 and s.binary_on_v1 == 1
    assert sum("upstream URL asks for vsn 1.0.0" in n.text for n in n1 + n2) == 1


def test_binary_broadcast_counts_both_ways():
    s = Session()
    opened(s)
    s.feed(v2("1", "1", "realtime:r", "phx_join", {}, client=True, t=0))
    s.feed(kind3("realtime:r", "cursor", {"x": 1}, t=1))
    s.feed(kind4("realtime:r", "cursor", {"x": 1}, t=1.001))
    ch = s.current["realtime:r"]
    assert (ch.broadcasts_sent, ch.broadcasts_received) == (1, 1)


def test_rejected_handshake_keeps_error_text():
    s = Session()
    s.feed(Opened("http://h/realtime/v1/websocket", [], T0))
    notes = s.feed(Handshake(401, [], b'{"error":"API key is missing"}', T0 + 2))
    assert s.rejection == "API key is missing" and "upgrade rejected: 401 API key is missing" in texts(notes)
    assert s.apikey is None


def test_close_summarises_and_errors_open_channels():
    s = Session()
    opened(s)
    s.feed(v2("1", "1", "realtime:r", "phx_join", {}, client=True, t=0))
    notes = s.feed(Closed(1000, "heartbeat timeout", True, T0 + 30))
    assert "closed by client: 1000 (heartbeat timeout) after 30.0 s" in texts(notes)
    assert s.current["realtime:r"].state == ERRORED


def test_undecodable_frame_noted_not_raised():
    s = Session()
    opened(s)
    notes = s.feed(Frame(False, True, bytes([4, 200]), T0))
    assert s.decode_errors == 1 and "undecodable server frame" in notes[0].text


def test_secrets_never_in_notes():
    s = Session(debug=True)
    notes = s.feed(Opened(URL2, [], T0))
    notes += s.feed(Hop("frame-dropped", "apikey=secret-key-value"))  # hop text is redacted too
    notes += s.feed(
        v2("1", "1", "realtime:r", "phx_join", {"access_token": "secret-key-value"}, client=True, t=0)
    )
    assert notes and not any("secret-key-value" in n.text for n in notes)


def test_realtime_paths():
    assert is_realtime_path("/realtime/v1/websocket?apikey=x")
    assert is_realtime_path("/socket/websocket")
    assert not is_realtime_path("/api/ws")


def test_what_a_frame_counts_for_does_not_depend_on_the_log_level():
    """The tracker decodes lazily unless debug lines are on: that may change nothing but their text."""
    good = kind4("realtime:r", "cursor", {"x": 1}, t=1)
    bad_json = good.data[:-1]  # marked JSON (enc 1), cut short
    outcomes = []
    for debug in (False, True):
        s = Session("t", debug=debug)
        opened(s)
        s.feed(v2("1", "1", "realtime:r", "phx_join", {}, client=True, t=0))
        s.feed(v2("1", "1", "realtime:r", "phx_reply", {"status": "ok", "response": {}}, client=False, t=0.1))
        s.feed(Frame(False, True, bad_json, T0 + 1))
        push = frames.encode_user_push("realtime:r", "c", {"x": 1}, join_ref="1", ref="2")
        s.feed(Frame(True, True, push[:-1], T0 + 2))  # marked JSON, cut short: Realtime relays it as is
        ch = s.current["realtime:r"]
        outcomes.append((s.decode_errors, ch.received, ch.sent, ch.broadcasts_sent))
    assert outcomes[0] == outcomes[1] == (1, 1, 2, 1), outcomes


def test_pushes_without_a_ref_are_answered_in_order():
    """supabase-kt 3.0 joins with "ref": null: Phoenix echoes the push's ref, so each null-ref reply answers
    the oldest null-ref push of its topic, and two joins without a ref are two joins."""
    import json as _json

    from rtproxy_core.events import Frame, Handshake, Opened

    s = Session("kt")
    s.feed(Opened("wss://x.supabase.co/realtime/v1/websocket?apikey=k&vsn=1.0.0", [], 0.0))
    s.feed(Handshake(101, [], b"", 0.01))
    join = {"topic": "realtime:lobby", "event": "phx_join", "payload": {}, "ref": None}
    reply = {
        "ref": None,
        "event": "phx_reply",
        "payload": {"status": "ok", "response": {}},
        "topic": "realtime:lobby",
    }
    s.feed(Frame(True, False, _json.dumps(join).encode(), 0.1))
    s.feed(Frame(False, False, _json.dumps(reply).encode(), 0.15))
    first = s.current["realtime:lobby"]
    assert first.state == JOINED and round(first.join_latency_ms) == 50
    s.feed(Frame(True, False, _json.dumps(join).encode(), 2.1))
    assert s.current["realtime:lobby"] is not first and s.current["realtime:lobby"].duplicate_joins == 1


def test_a_channels_outcome_is_the_last_status_its_client_reported():
    """Channel.outcome (rt.channels' OUTCOME column) speaks rules.Outcome's words: joined, refused, a join
    unanswered past the client's timeout (still, or answered late), closed."""
    from rtproxy_core.rules import Outcome

    s = Session(join_timeout_s=10)
    opened(s)
    for n, topic in enumerate(
        ("realtime:ok", "realtime:no", "realtime:slow", "realtime:late", "realtime:bye")
    ):
        s.feed(v2(str(n), str(n), topic, "phx_join", {}, client=True, t=0))
    s.feed(v2("0", "0", "realtime:ok", "phx_reply", {"status": "ok", "response": {}}, client=False, t=0.1))
    no = {"status": "error", "response": {"reason": "Unauthorized: You do not have permissions"}}
    s.feed(v2("1", "1", "realtime:no", "phx_reply", no, client=False, t=0.1))
    s.feed(v2("3", "3", "realtime:late", "phx_reply", {"status": "ok", "response": {}}, client=False, t=12))
    s.feed(v2("4", "4", "realtime:bye", "phx_reply", {"status": "ok", "response": {}}, client=False, t=0.1))
    s.feed(v2("4", "4", "realtime:bye", "phx_close", {}, client=False, t=1))
    at = {topic: ch.outcome(T0 + 5, 10) for topic, ch in s.current.items()}
    assert at == {
        "realtime:ok": Outcome.SUBSCRIBED,
        "realtime:no": Outcome.CHANNEL_ERROR,
        "realtime:slow": None,  # still waiting
        "realtime:late": Outcome.TIMED_OUT,
        "realtime:bye": Outcome.CLOSED,
    }
    assert s.current["realtime:slow"].outcome(T0 + 10, 10) == Outcome.TIMED_OUT
