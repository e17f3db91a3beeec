"""Codec against Realtime's wire frames and binary vectors (the V2 serializer's layouts), and the rules of the real peers:
client frames as Realtime's serializers read them (Phoenix.Socket.V1.JSONSerializer, Message.from_map!/1,
RealtimeWeb.Socket.V2Serializer), server frames as realtime-js and realtime-py read them (the differential
test against both is tests/test_codec_clients.py)."""

import json

import pytest
from rtproxy_core import frames
from rtproxy_core.frames import DecodeError, decode

# §2.3 test vectors, verbatim.
KIND3 = bytes([3, 2, 1, 3, 10, 0, 1]) + b"10" + b"1" + b"top" + b"user-event" + b'{"a":"b"}'
KIND4 = bytes([4, 5, 10, 0x11, 0]) + b"topic" + b"user_event" + b'{"replayed":true}' + b"efg"
KIND1 = bytes([1, 3, 2, 3, 2]) + b"100" + b"12" + b"top" + b"ok" + bytes([1, 1])


def test_v1_client_object_from_realtime_js():
    m = decode(
        b'{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"10"}', binary=False, from_client=True
    )
    assert (m.topic, m.event, m.payload, m.ref, m.join_ref, m.shape) == (
        "phoenix",
        "heartbeat",
        {},
        "10",
        None,
        frames.OBJECT,
    )


def test_v1_python_client_object_with_nulls():
    m = decode(
        '{"event":"heartbeat","payload":{},"topic":"phoenix","ref":null,"join_ref":null}',
        binary=False,
        from_client=True,
    )
    assert m.ref is None and m.event == "heartbeat"


def test_v1_server_object_has_no_join_ref():
    m = decode(b'{"event":"e","payload":"m","ref":null,"topic":"t"}', binary=False, from_client=False)
    assert (m.topic, m.event, m.payload, m.join_ref) == ("t", "e", "m", None)


def test_v2_array():
    m = decode(b'["1","1","realtime:room","phx_join",{"config":{}}]', binary=False, from_client=True)
    assert (m.join_ref, m.ref, m.topic, m.event, m.payload, m.shape) == (
        "1",
        "1",
        "realtime:room",
        "phx_join",
        {"config": {}},
        frames.ARRAY,
    )


def test_kind3_vector():
    m = decode(KIND3, binary=True, from_client=True)
    assert m.kind == 3 and m.as_dict() == {
        "join_ref": "10",
        "ref": "1",
        "topic": "top",
        "event": "broadcast",
        "payload": {"type": "broadcast", "event": "user-event", "payload": {"a": "b"}},
    }


def test_kind4_vector_binary_payload_with_meta():
    m = decode(KIND4, binary=True, from_client=False)
    assert m.as_dict() == {
        "join_ref": None,
        "ref": None,
        "topic": "topic",
        "event": "broadcast",
        "payload": {
            "type": "broadcast",
            "event": "user_event",
            "payload": {"hex": "656667"},
            "meta": {"replayed": True},
        },
    }


@pytest.mark.parametrize(
    "raw",
    [
        KIND1,
        frames.encode_broadcast("t", "e", b"xyz"),
        frames.encode_push("t", "ev", b"\x00\xff", join_ref="1", from_client=False),
        KIND3,
    ],
)
def test_server_kinds_0_to_3_are_what_realtime_js_cannot_read(raw):
    """lib/serializer.ts _binaryDecode decodes only kind 4; for the others it returns undefined and
    @supabase/phoenix's onConnMessage throws."""
    with pytest.raises(DecodeError, match=r"kind \d \(.*realtime-js decodes only kind 4"):
        decode(raw, binary=True, from_client=False)


def test_kind0_from_a_client():
    c = frames.encode_push("t", "ev", b"\x00\xff", join_ref="1", ref="2", from_client=True)
    mc = decode(c, binary=True, from_client=True)
    assert (mc.ref, mc.join_ref, mc.payload) == ("2", "1", b"\x00\xff")


@pytest.mark.parametrize("raw", [KIND1, frames.encode_broadcast("t", "e", b"x"), KIND4])
def test_server_layouts_from_a_client_are_refused(raw):
    """V2Serializer.decode_binary/1 has clauses for kinds 0 and 3 only."""
    with pytest.raises(DecodeError, match="server-to-client"):
        decode(raw, binary=True, from_client=True)


# Client frames the real server accepts (v2_serializer.ex decode_binary/1, v1_json_serializer.ex decode!/2)
def test_kind3_any_enc_but_0_is_json():
    raw = bytes.fromhex("0301010a010002") + b"12" + b"realtime:t" + b"e" + b'{"a":1}'
    assert decode(raw, binary=True, from_client=True).payload["payload"] == {"a": 1}


def test_kind3_meta_is_any_json_and_bad_json_payload_is_kept_raw():
    raw = bytes.fromhex("0301010a010301") + b"12" + b"realtime:t" + b"e" + b"[1]" + b'{"a":'
    m = decode(raw, binary=True, from_client=True)
    assert m.payload == {"type": "broadcast", "event": "e", "payload": b'{"a":', "meta": [1]}


def test_kind3_invalid_utf8_user_event_and_empty_refs():
    raw = bytes.fromhex("030000") + bytes([10, 1, 0, 0]) + b"realtime:t" + b"\xff"
    m = decode(raw, binary=True, from_client=True)
    assert m.payload["event"] == "\ufffd" and (m.ref, m.join_ref) == ("", "")  # the server echoes ""


def test_binary_frame_holding_a_v1_object():
    """The 1.0.0 serializer ignores the opcode: a binary frame with a JSON object is a message."""
    m = decode(
        b'{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"1"}', binary=True, from_client=True
    )
    assert (m.shape, m.event, m.ref) == (frames.OBJECT, "heartbeat", "1")


def test_refs_keep_their_text():
    m = decode('[null,true,"phoenix","heartbeat",{}]', binary=False, from_client=True)
    assert m.ref == "true"
    assert decode('{"topic":"t","event":"e","payload":{},"ref":7}', binary=False, from_client=True).ref == "7"


def test_v1_client_object_needs_the_four_keys_but_not_join_ref():
    for missing in ("topic", "event", "payload", "ref"):
        obj = {"topic": "t", "event": "e", "payload": {}, "ref": None}
        del obj[missing]
        with pytest.raises(DecodeError, match=f"lacks '{missing}'"):
            decode(json.dumps(obj), binary=False, from_client=True)


def test_v1_server_object_without_ref_decodes():
    m = decode('{"topic":"realtime:t","event":"broadcast","payload":{}}', binary=False, from_client=False)
    assert (m.ref, m.join_ref) == (None, None)


@pytest.mark.parametrize(
    "text",
    [
        '[null,"1","phoenix","heartbeat",{"a":NaN}]',
        '[null,"1","phoenix","heartbeat",{"a":Infinity}]',
        '[null,"1","phoenix","heartbeat",{"a":1e999}]',
    ],
)
def test_numbers_jason_refuses(text):
    with pytest.raises(DecodeError, match="invalid JSON"):
        decode(text, binary=False, from_client=True)


def test_encoder_never_writes_nan():
    with pytest.raises(ValueError):
        frames.encode_text(frames.Message("t", "e", {"a": float("nan")}), frames.V2, from_client=True)


def test_user_push_of_nothing_sends_an_empty_object_like_realtime_js():
    assert frames.encode_user_push("t", "e", None).endswith(b"{}")


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
        "1",
        "3",
        "realtime:a",
        "phx_reply",
        {"status": "ok", "response": {}},
    ]
    v1 = frames.encode_text(msg, frames.V1, from_client=False)
    assert v1.startswith('{"ref":"3","event":"phx_reply","payload"') and "join_ref" not in v1


@pytest.mark.parametrize(
    "data,binary,why",
    [
        (b"", True, "empty"),
        (bytes([3, 2, 1]), True, "truncated"),
        (bytes([4, 200, 0, 0, 1]) + b"ab", True, "past the end"),
        (bytes([9, 0]), True, "unknown binary kind 9"),
        (bytes([4, 1, 1, 0, 1]) + b"te", True, "marked JSON .enc 1. but is not JSON .empty"),
        (bytes([2, 2, 1]) + b"\xff\xfe" + b"e", True, "realtime-js decodes only kind 4"),
        (b"\xff\xfe", False, "UTF-8"),
        (b"hello", False, "neither"),
        (b"[1,2]", False, "array must be"),
        (b'{"topic":"t"}', False, "lacks"),
        (b'["1","1",5,"e",{}]', False, "topic must be a string"),
        (b"[" * 100000, False, "invalid JSON"),
    ],
)
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
    # Elixir Version.match?/2 with pre-releases allowed: "~> 2.0.0" is >= 2.0.0 and < 2.1.0-0
    assert frames.vsn_family("2.0.1-rc.1") == frames.V2 and frames.vsn_family("1.0.3-beta") == frames.V1
    # Version.parse/1 refuses leading zeros and empty identifiers
    assert frames.vsn_family("1.0.01") is None and frames.vsn_family("2.0.0+a..b") is None


def test_lazy_leaves_a_clients_user_payload_unparsed_and_means_the_same():
    raw = frames.encode_user_push("realtime:r", "cursor", {"x": 1}, join_ref="1", ref="2")
    m = decode(raw, binary=True, from_client=True, lazy=True)
    assert m.payload == {"type": "broadcast", "event": "cursor", "payload": b'{"x":1}'}
    assert decode(raw, binary=True, from_client=True).payload["payload"] == {"x": 1}
    # A server's kind 4 marked JSON that is not: realtime-js throws on it, lazy or not.
    bad = frames.encode_user_broadcast("realtime:r", "cursor", {"x": 1})[:-1]
    for lazy in (False, True):
        with pytest.raises(frames.DecodeError, match="not JSON"):
            decode(bad, binary=True, from_client=False, lazy=lazy)


def test_kind4_encodings_other_than_1_are_raw_bytes():
    """realtime-js: `payloadEncoding === this.JSON_ENCODING ? JSON.parse(...) : payload`."""
    assert (
        decode(bytes([4, 1, 1, 0, 7]) + b"te" + b"\x01", binary=True, from_client=False).payload["payload"]
        == b"\x01"
    )


def _outcome(parse, text):
    try:
        return "value", parse(text)
    except (ValueError, RecursionError) as e:  # the same type, words and chain, either path
        return type(e).__name__, str(e), type(e.__context__).__name__


@pytest.mark.parametrize(
    "text",
    [
        '["1","2","realtime:room","broadcast",{"x":1.5}]',
        ' ["1",null,"t","e",{}]',  # whitespace before: JSONDecoder.decode skips it
        '{"topic":"t"}\n',  # and after
        "[1] [2]",  # extra data
        "[1,]",  # invalid inside
        "",
        "   ",
        "NaN",
        "[Infinity]",
        "[1e999]",  # Jason refuses the overflow
        '"\\ud800"',
        "nul",
        '{"a":1}x',
    ],
)
def test_json_fast_path_means_what_jsondecoder_decode_means(text):
    # frames._parse_json skips JSONDecoder.decode's whitespace matches for a bare value; anything it
    # accepts or refuses must come out as the decoder's own decode would give it.
    assert _outcome(frames._parse_json, text) == _outcome(frames._decode_json, text)
