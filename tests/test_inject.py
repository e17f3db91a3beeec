"""rtproxy_core.inject: messages composed for a live connection, encoded as it speaks, refs as its peer
expects them (no sockets; tests/test_commands.py sends them through mitmweb to real clients)."""

import json

import pytest
from rtproxy_core import frames, inject
from rtproxy_core.events import Handshake, Opened
from rtproxy_core.session import Session, limits
from wire import T0, kind3, v1, v2

V2_URL = "http://w/realtime/v1/websocket?apikey=k&vsn=2.0.0"
V1_URL = "http://w/realtime/v1/websocket?apikey=k"


def joined(url=V2_URL, topic="realtime:room1") -> Session:
    s = Session()
    s.feed(Opened(url, [], T0))
    s.feed(Handshake(101, [], b"", T0))
    if "vsn=2" in url:
        s.feed(v2("3", "3", topic, "phx_join", {"config": {}}, client=True, t=0))
        s.feed(v2("3", "3", topic, "phx_reply", {"status": "ok", "response": {}}, client=False, t=0.01))
    else:
        s.feed(v1(topic, "phx_join", {"config": {}}, "3", client=True, t=0, join_ref="3"))
        s.feed(v1(topic, "phx_reply", {"status": "ok", "response": {}}, "3", client=False, t=0.01))
    return s


def test_server_push_carries_the_join_ref_and_no_ref_in_the_connections_vsn():
    c = inject.compose(joined(), True, "realtime:room1", "presence_state", {})
    assert json.loads(c.data) == ["3", None, "realtime:room1", "presence_state", {}]
    # Fastlaned past the channel process (message_dispatcher.ex): no join_ref either.
    for event in ("broadcast", "presence_diff", "postgres_changes"):
        c = inject.compose(joined(), True, "realtime:room1", event, {})
        assert json.loads(c.data)[:2] == [None, None], event
    c = inject.compose(joined(V1_URL), True, "realtime:room1", "system", {"status": "error"})
    # A 1.0.0 server object: no join_ref key, the server's key order (frames.encode_text).
    assert c.data == '{"ref":null,"event":"system","payload":{"status":"error"},"topic":"realtime:room1"}'


def test_a_reply_answers_the_newest_push_awaiting_one():
    s = joined()
    s.feed(v2("3", "7", "realtime:room1", "broadcast", {"event": "e", "payload": {}}, client=True, t=1))
    with pytest.raises(ValueError, match="no push on 'realtime:room1' is awaiting a reply"):
        inject.compose(s, True, "realtime:room1", "phx_reply", {"status": "error", "response": {}})
    s.feed(
        v2("3", "8", "realtime:room1", "presence", {"type": "presence", "event": "track"}, client=True, t=2)
    )
    c = inject.compose(s, True, "realtime:room1", "phx_reply", {"status": "error", "response": {}})
    assert (c.message.join_ref, c.message.ref) == ("3", "8")


def test_a_topic_or_ref_kept_only_as_its_digest_is_refused_not_sent_wrong():
    """A topic or ref over limits.MAX_KEY characters is kept as a digest key (bounded memory): a frame
    composed from it would name the wrong channel or answer nothing, so the command says why instead."""
    topic = "realtime:" + "r" * 300
    s = joined(topic=topic)
    assert s.current[limits.key(topic)].state == "joined"  # the session still pairs them
    with pytest.raises(
        ValueError, match="digest of a value over 256 characters.*topic or join_ref is too long"
    ):
        inject.compose(s, True, topic, "system", {"status": "error"})
    s = joined()
    s.feed(v2(None, "h" * 300, "phoenix", "heartbeat", {}, client=True, t=1))
    with pytest.raises(ValueError, match="the ref it answers is too long"):
        inject.compose(s, True, "phoenix", "phx_reply", {"status": "ok", "response": {}})


def test_phx_close_carries_the_join_ref_as_both_refs():
    c = inject.compose(joined(), True, "realtime:room1", "phx_close", {})
    assert json.loads(c.data)[:2] == ["3", "3"]


def test_client_pushes_get_rtproxys_own_refs():
    c = inject.compose(joined(), False, "realtime:room1", "broadcast", {"event": "e", "payload": {}}, n=4)
    assert json.loads(c.data)[:2] == ["3", "rtproxy-4"]
    c = inject.compose(joined(V1_URL), False, "realtime:room1", "broadcast", {"event": "e"}, n=5)
    assert json.loads(c.data)["ref"] == "rtproxy-5" and json.loads(c.data)["join_ref"] == "3"


def test_a_broadcast_goes_binary_where_that_side_sends_binary():
    s = joined()
    s.feed(kind3("realtime:room1", "cursor", {"x": 1}, join_ref="3", ref="4", t=1))
    body = {"type": "broadcast", "event": "cursor", "payload": {"x": 2}}
    c = inject.compose(s, False, "realtime:room1", "broadcast", body)
    assert c.binary and c.data[0] == frames.USER_PUSH
    msg = frames.decode(c.data, binary=True, from_client=True)
    assert (msg.join_ref, msg.payload["payload"]) == ("3", {"x": 2})
    c = inject.compose(s, True, "realtime:room1", "broadcast", body)  # the server has sent no binary yet
    assert not c.binary


def test_unknown_topic_and_empty_names_are_refused():
    with pytest.raises(
        ValueError, match=r"no channel 'realtime:x' on this connection \(channels: realtime:room1\)"
    ):
        inject.compose(joined(), True, "realtime:x", "broadcast", {})
    with pytest.raises(ValueError, match="must not be empty"):
        inject.compose(joined(), True, "realtime:room1", "", {})


@pytest.mark.parametrize(
    ("text", "why"),
    [("[]", "must be a JSON object"), ("NaN", "no JSON"), ("{", "no JSON"), ('"x"', "object")],
)
def test_payload_must_be_a_json_object(text, why):
    with pytest.raises(ValueError, match=why):
        inject.parse_payload(text)


def test_expire_is_the_servers_sequence():
    s = joined()
    s.current["realtime:room1"].token_exp = T0 - 30
    system, close = inject.expire(s, None, T0)
    payload = json.loads(system.data)[4]
    # realtime_channel.ex shutdown_response/2 -> push_system_message/5: extension, status, message, channel
    assert payload == {
        "channel": "room1",
        "extension": "system",
        "message": "Token has expired 30 seconds ago",
        "status": "error",
    }
    assert json.loads(close.data) == ["3", "3", "realtime:room1", "phx_close", {}]
    with pytest.raises(ValueError, match="no joined channel"):
        inject.expire(Session(), None, T0)


def test_a_heartbeat_reply_answers_the_pending_heartbeat():
    s = joined()
    with pytest.raises(ValueError, match="no push on 'phoenix' is awaiting a reply"):
        inject.compose(s, True, "phoenix", "phx_reply", {"status": "ok", "response": {}})
    s.feed(v2(None, "9", "phoenix", "heartbeat", {}, client=True, t=1))
    c = inject.compose(s, True, "phoenix", "phx_reply", {"status": "ok", "response": {}})
    assert json.loads(c.data)[:3] == [None, "9", "phoenix"]


def test_nothing_from_the_server_for_a_channel_that_has_ended():
    s = joined()
    s.feed(v2("3", "3", "realtime:room1", "phx_close", {}, client=False, t=1))
    with pytest.raises(ValueError, match=r"realtime:room1 has ended \(closed\)"):
        inject.compose(s, True, "realtime:room1", "broadcast", {})
    c = inject.compose(s, False, "realtime:room1", "broadcast", {}, n=1)  # a client may still push there
    assert json.loads(c.data)[2] == "realtime:room1"
