"""Codec against the frames and binary vectors of realtime-protocol.md §2."""

import json

import pytest
from rtproxy_core import frames
from rtproxy_core.frames import DecodeError, decode

# §2.3 test vectors, verbatim.
KIND3 = bytes([3, 2, 1, 3, 10, 0, 1]) + b"10" + b"1" + b"top" + b"user-event" + b'{"a":"b"}'
KIND4 = bytes([4, 5, 10, 0x11, 0]) + b"topic" + b"user_event" + b'{"replayed":true}' + b"efg"
KIND1 = bytes([1, 3, 2, 3, 2]) + b"100" + b"12" + b"top" + b"ok" + bytes([1, 1])


def test_v1_client_object_from_realtime_js():
    m = decode(b'{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"10"}', binary=False, from_client=True)
    assert (m.topic, m.event, m.payload, m.ref, m.join_ref, m.shape) == ("phoenix", "heartbeat", {}, "10", None,
                                                                          frames.OBJECT)


def test_v1_python_client_object_with_nulls():
    m = decode('{"event":"heartbeat","payload":{},"topic":"phoenix","ref":null,"join_ref":null}',
               binary=False, from_client=True)
    assert m.ref is None and m.event == "heartbeat"


def test_v1_server_object_has_no_join_ref():
    m = decode(b'{"event":"e","payload":"m","ref":null,"topic":"t"}', binary=False, from_client=False)
    assert (m.topic, m.event, m.payload, m.join_ref) == ("t", "e", "m", None)


def test_v2_array():
    m = decode(b'["1","1","realtime:room","phx_join",{"config":{}}]', binary=False, from_client=True)
    assert (m.join_ref, m.ref, m.topic, m.event, m.payload, m.shape) == (
        "1", "1", "realtime:room", "phx_join", {"config": {}}, frames.ARRAY)


def test_kind3_vector():
    m = decode(KIND3, binary=True, from_client=True)
    assert m.kind == 3 and m.as_dict() == {
        "join_ref": "10", "ref": "1", "topic": "top", "event": "broadcast",
        "payload": {"type": "broadcast", "event": "user-event", "payload": {"a": "b"}}}


def test_kind4_vector_binary_payload_with_meta():
    m = decode(KIND4, binary=True, from_client=False)
    assert m.as_dict() == {"join_ref": None, "ref": None, "topic": "topic", "event": "broadcast",
                           "payload": {"type": "broadcast", "event": "user_event",
                                       "payload": {"hex": "656667"}, "meta": {"replayed": True}}}


def test_kind1_vector_reply():
    m = decode(KIND1, binary=True, from_client=False)
    assert (m.event, m.join_ref, m.ref, m.topic) == ("phx_reply", "100", "12", "top")
    assert m.payload == {"status": "ok", "response": b"\x01\x01"}


def test_kind0_layout_depends_on_direction():
    c = frames.encode_push("t", "ev", b"\x00\xff", join_ref="1", ref="2", from_client=True)
    s = frames.encode_push("t", "ev", b"\x00\xff", join_ref="1", from_client=False)
    mc, ms = decode(c, binary=True, from_client=True), decode(s, binary=True, from_client=False)
    assert (mc.ref, mc.join_ref, mc.payload) == ("2", "1", b"\x00\xff")
    assert (ms.ref, ms.join_ref, ms.topic, ms.event, ms.payload) == (None, "1", "t", "ev", b"\x00\xff")


def test_kind2_broadcast():
    m = decode(frames.encode_broadcast("t", "e", b"xyz"), binary=True, from_client=False)
    assert (m.kind, m.topic, m.event, m.payload, m.ref) == (2, "t", "e", b"xyz", None)


def test_roundtrips():
    assert frames.encode_user_push("top", "user-event", {"a": "b"}, join_ref="10", ref="1") == KIND3
    assert frames.encode_user_broadcast("topic", "user_event", b"efg", {"replayed": True}) == KIND4
    assert frames.encode_reply("top", "ok", b"\x01\x01", join_ref="100", ref="12") == KIND1


def test_non_ascii_lengths_count_bytes():
    raw = frames.encode_user_broadcast("realtime:café", "ünï", {"k": "é"})
    m = decode(raw, binary=True, from_client=False)
    assert m.topic == "realtime:café" and m.payload["event"] == "ünï" and m.payload["payload"] == {"k": "é"}


def test_encode_text_shapes():
    msg = frames.Message("realtime:a", "phx_reply", {"status": "ok", "response": {}}, "3", "1")
    assert json.loads(frames.encode_text(msg, frames.V2, from_client=False)) == [
        "1", "3", "realtime:a", "phx_reply", {"status": "ok", "response": {}}]
    v1 = frames.encode_text(msg, frames.V1, from_client=False)
    assert v1.startswith('{"event":"phx_reply","payload"') and "join_ref" not in v1


@pytest.mark.parametrize("data,binary,why", [
    (b"", True, "empty"),
    (bytes([3, 2, 1]), True, "truncated"),
    (bytes([4, 200, 0, 0, 1]) + b"ab", True, "past the end"),
    (bytes([9, 0]), True, "unknown binary kind 9"),
    (bytes([4, 1, 1, 0, 7]) + b"te", True, "encoding 7"),
    (bytes([2, 2, 1]) + b"\xff\xfe" + b"e", True, "UTF-8"),
    (b"\xff\xfe", False, "UTF-8"),
    (b"hello", False, "neither"),
    (b"[1,2]", False, "array must be"),
    (b'{"topic":"t"}', False, "lacks"),
    (b'["1","1",5,"e",{}]', False, "topic must be a string"),
    (b"[" * 100000, False, "invalid JSON"),
])
def test_decode_errors_are_decode_errors(data, binary, why):
    with pytest.raises(DecodeError, match=why):
        decode(data, binary=binary, from_client=False)


def test_vsn_family():
    assert frames.vsn_family(None) == frames.V1
    assert frames.vsn_family("1.0.0") == frames.V1
    assert frames.vsn_family("2.0.0") == frames.V2
    assert frames.vsn_family("3.0.0") is None
    assert frames.vsn_family("abc") is None
    assert frames.vsn_family("1.9.3") is None and frames.vsn_family("2.0.0-rc.1") is None
    assert frames.vsn_family("2.0.0+build") == frames.V2 and frames.vsn_family("1.0.7") == frames.V1


def test_lazy_leaves_user_payload_bytes_unparsed():
    raw = frames.encode_user_broadcast("realtime:r", "cursor", {"x": 1})
    m = decode(raw, binary=True, from_client=False, lazy=True)
    assert m.payload == {"type": "broadcast", "event": "cursor", "payload": b'{"x":1}'}
    assert decode(raw, binary=True, from_client=False).payload["payload"] == {"x": 1}
    # an unknown encoding is still an error when lazy
    with pytest.raises(DecodeError, match="encoding 7"):
        decode(bytes([4, 1, 1, 0, 7]) + b"te", binary=True, from_client=False, lazy=True)
