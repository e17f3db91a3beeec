"""Realtime frame codec: vsn 1.0.0 JSON objects, 2.0.0 JSON arrays, 2.0.0 binary kinds 0-4.

Sans-I/O: bytes in, `Message` out (and back). The decoder detects the shape of a frame from the frame
itself (`{` object, `[` array, binary kind byte) instead of trusting the negotiated vsn, so the caller
can tell a serializer mismatch (a 2.0.0 array on a 1.0.0 socket) from garbage.

What decodes is what the real peer on the receiving end takes (read in docs/sources.md's commits):
- client frames as Realtime's serializers read them: Phoenix.Socket.V1.JSONSerializer.decode!/2 with
  Message.from_map!/1 (an object with the keys topic, event, payload and ref; join_ref optional; the
  frame's opcode ignored, so a binary frame holding such an object is one) and RealtimeWeb.Socket.
  V2Serializer (decode_text/1: an array of at least 5; decode_binary/1: kinds 0 and 3 only; in kind 3
  any `enc` other than 0 means JSON, `meta` is any JSON, the user payload is never parsed);
- server frames as realtime-js (lib/serializer.ts, @supabase/phoenix onConnMessage) or realtime-py
  (message.py) take them: objects without ref/join_ref/payload (null), arrays of 4 or more, and of the
  binary kinds only 4 (realtime-js' _binaryDecode returns undefined for 0-3 and then throws), whose
  `enc` 1 is JSON and anything else raw bytes.
Both sides: JSON as Jason and the clients parse it (no NaN/Infinity); topic and event are strings.
Refs keep their text: an integer or other scalar ref becomes its JSON text, so a reply echoing it pairs.

Binary layouts; every length is one unsigned byte counting bytes:
  0 push   c->s  0 jr ref topic event | join_ref ref topic event payload
  0 push   s->c  0 jr topic event     | join_ref topic event payload          (no ref)
  1 reply  s->c  1 jr ref topic status | join_ref ref topic status response
  2 bcast  s->c  2 topic event         | topic event payload
  3 user   c->s  3 jr ref topic uev meta enc | join_ref ref topic uev meta payload
  4 user   s->c  4 topic uev meta enc  | topic uev meta payload
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

V1 = "1.0.0"

# Phoenix's channel vocabulary (phoenix/channel.ex; realtime-js lib/constants.ts CHANNEL_EVENTS): the one
# place these strings are spelled.
PHOENIX = "phoenix"  # the socket's own topic: heartbeats and their replies
TOPIC_PREFIX = "realtime:"  # a channel's topic: realtime:<the name the app gave supabase.channel()>
HEARTBEAT = "heartbeat"
PHX_JOIN, PHX_REPLY, PHX_LEAVE = "phx_join", "phx_reply", "phx_leave"
PHX_CLOSE, PHX_ERROR = "phx_close", "phx_error"
# Realtime's own channel events (lib/realtime_web/channels/realtime_channel.ex handle_in/handle_info;
# realtime-js lib/constants.ts). The JSON keys inside payloads are read where they are used, as the source
# reads them.
EV_BROADCAST, EV_PRESENCE, EV_ACCESS_TOKEN = "broadcast", "presence", "access_token"
EV_SYSTEM, EV_POSTGRES_CHANGES = "system", "postgres_changes"
EV_PRESENCE_STATE, EV_PRESENCE_DIFF = "presence_state", "presence_diff"
V2 = "2.0.0"

# Frame shapes, as found on the wire.
OBJECT = "object"  # vsn 1.0.0 text
ARRAY = "array"  # vsn 2.0.0 text
BINARY = "binary"  # vsn 2.0.0 binary

PUSH, REPLY, BROADCAST, USER_PUSH, USER_BROADCAST = range(5)
KIND_NAMES = {
    PUSH: "push",
    REPLY: "reply",
    BROADCAST: "broadcast",
    USER_PUSH: "user broadcast push",
    USER_BROADCAST: "user broadcast",
}
ENC_BINARY, ENC_JSON = 0, 1

# Jason and the clients refuse NaN/Infinity; never write them either.
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # cheap pre-check on the raw text


def _no_constant(name: str) -> Any:
    raise DecodeError(f"invalid JSON: {name} is not a JSON number")


def _float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise DecodeError(f"invalid JSON: the number {text[:40]} overflows (Jason refuses it)")
    return value


_decoder = json.JSONDecoder(parse_constant=_no_constant, parse_float=_float)  # built once
_decode_json = _decoder.decode
_scan_json = _decoder.scan_once  # type: ignore[attr-defined]  # json.scanner's C scanner where CPython has it


def _parse_json(text: str) -> Any:
    """_decode_json(text) for a str: the same value or the same error. A frame is one JSON value with
    nothing around it, so it is scanned directly, without JSONDecoder.decode's two whitespace matches
    (json/decoder.py `decode`, `raw_decode`); text with whitespace around it, or after it, takes the
    whole way (outside the `except`, so its error chains to nothing, as decode's does)."""
    try:
        value, end = _scan_json(text, 0)
    except StopIteration:
        end = -1
    return value if end == len(text) else _decode_json(text)


def _loads(text: str, lenient: bool = False) -> Any:
    value = _parse_json(text)
    # json.loads turns an unpaired \uD800-\uDFFF escape into a lone surrogate: not Unicode text, and no
    # UTF-8 log line, report or terminal can hold it. Jason refuses such a frame; realtime-js' JSON.parse
    # takes it (lenient: the surrogate is shown as U+FFFD).
    if "\\u" in text and _SURROGATE_ESCAPE.search(text) and _SURROGATE.search(_dumps(value)):
        if lenient:
            return _replace_surrogates(value)
        raise DecodeError(
            "a string holds an unpaired UTF-16 surrogate escape (\\uD800-\\uDFFF): not valid Unicode"
        )
    return value


def _replace_surrogates(v: Any) -> Any:
    if isinstance(v, str):
        return _SURROGATE.sub("\ufffd", v)
    if isinstance(v, list):
        return [_replace_surrogates(x) for x in v]
    if isinstance(v, dict):
        return {_replace_surrogates(k): _replace_surrogates(x) for k, x in v.items()}
    return v


class DecodeError(ValueError):
    """The frame is not a Realtime message; the text says why, for a person."""


@dataclass(slots=True)
class Message:
    """One Realtime message. For binary kinds 3/4 the payload has realtime-js' shape:
    {"type": "broadcast", "event": <user event>, "payload": <JSON value or bytes>[, "meta": {...}]};
    kind 1 is event "phx_reply" with payload {"status", "response": bytes}; kinds 0/2 carry bytes."""

    topic: str
    event: str
    payload: Any
    ref: str | None = None
    join_ref: str | None = None
    shape: str = ARRAY
    kind: int | None = None  # binary kind, None for text frames

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe view: bytes become {"hex": "..."}."""
        return {
            "join_ref": self.join_ref,
            "ref": self.ref,
            "topic": self.topic,
            "event": self.event,
            "payload": jsonable(self.payload),
        }


def _hex(raw: bytes) -> dict[str, Any]:
    return {"hex": raw.hex()}


def jsonable(value: Any, show_bytes: Callable[[bytes], Any] = _hex) -> Any:
    """A JSON-safe copy: bytes become show_bytes(bytes) ({"hex": "..."} by default)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return show_bytes(bytes(value))
    if isinstance(value, dict):
        return {str(k): jsonable(v, show_bytes) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v, show_bytes) for v in value]
    return value


# Elixir's Version.parse/1: numeric parts without leading zeros; pre-release and build identifiers are
# dot-separated, non-empty, [0-9A-Za-z-]; numeric pre-release identifiers without leading zeros.
_NUM = r"(0|[1-9][0-9]*)"
_IDENT = r"[0-9A-Za-z-]+"
_VERSION = re.compile(
    rf"{_NUM}\.{_NUM}\.{_NUM}(?:-({_IDENT}(?:\.{_IDENT})*))?(?:\+({_IDENT}(?:\.{_IDENT})*))?"
)


def as_object(value: Any) -> dict[str, Any]:
    """A payload field that should be a JSON object: itself, else an empty one (a client may send null, a
    list or a string where Realtime expects an object)."""
    return value if isinstance(value, dict) else {}


def vsn_family(vsn: str | None) -> str | None:
    """The serializer a Realtime server picks for a vsn query value, None if it refuses (403).

    Absent means 1.0.0 (Phoenix.Socket: params["vsn"] || "1.0.0"). The endpoint's requirements are
    "~> 1.0.0" and "~> 2.0.0" (endpoint.ex), matched by Version.match?/2 with pre-releases allowed:
    x.0.z with z >= 0 and build metadata allowed; a pre-release only above x.0.0 (2.0.1-rc.1 is 2.0.0's
    family, 2.0.0-rc.1 sorts below 2.0.0 and is refused)."""
    if vsn is None:
        return V1
    m = _VERSION.fullmatch(vsn)
    if m is None or m[2] != "0":
        return None
    pre = m[4]
    if pre is not None and (
        m[3] == "0" or any(p.isdigit() and len(p) > 1 and p[0] == "0" for p in pre.split("."))
    ):
        return None
    return {"1": V1, "2": V2}.get(m[1])


def shape_for(vsn: str) -> str:
    return OBJECT if vsn == V1 else ARRAY


# ---------------------------------------------------------------------------------------------- decode


def decode(data: bytes | str, *, binary: bool, from_client: bool, lazy: bool = False) -> Message:
    """Decode one WebSocket message as the peer receiving it would (see the module docstring). Raises
    DecodeError, never anything else.

    lazy: leave the user payload of a client's kind 3 as its raw bytes instead of parsing its JSON (about
    40 % of a binary frame's decode time) when nobody will print it. It changes nothing but the payload's
    form: Realtime relays those bytes unparsed, so they are never an error. A server's kind 4 is parsed
    either way, since realtime-js throws on one marked JSON that is not: lazy or not, decoding means one
    thing."""
    try:
        if binary:
            buf = bytes(data) if not isinstance(data, str) else data.encode()
            if buf[:1] == b"{":  # the 1.0.0 serializer JSON-decodes a frame whatever its opcode
                return _decode_text(buf.decode("utf-8"), from_client)
            return _decode_binary(buf, from_client, lazy)
        text = data if isinstance(data, str) else bytes(data).decode("utf-8")
        return _decode_text(text, from_client)
    except DecodeError:
        raise
    except UnicodeDecodeError as e:
        raise DecodeError(f"invalid UTF-8 at byte {e.start}") from None
    except (ValueError, RecursionError) as e:  # json errors are ValueErrors
        raise DecodeError(f"invalid JSON: {str(e)[:120]}") from None


def _ref(value: Any, field: str) -> str | None:
    """A ref as text: strings as they are, null as None, any other JSON value as its JSON text (Realtime
    echoes whatever it got, so a reply's ref reads the same)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return _dumps(value)


def _req_str(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise DecodeError(f"{field} must be a string, got {_json_type(value)}")
    return value


def _json_type(v: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(v), "a number"
    )


def _decode_text(text: str, from_client: bool) -> Message:
    m = _decode_text_shape(text, from_client)
    if m.event == PHX_REPLY and m.payload is None and not from_client:
        raise DecodeError(
            "a phx_reply without a payload: realtime-js' Push reads its status and response and throws"
        )
    return m


def _decode_text_shape(text: str, from_client: bool) -> Message:
    head = text.lstrip()[:1]
    if head == "[":
        arr = _loads(text, lenient=not from_client)
        need = 5 if from_client else 4  # V2Serializer.decode_text; realtime-js destructures any array
        if not isinstance(arr, list) or len(arr) < need:
            raise DecodeError("2.0.0 array must be [join_ref, ref, topic, event, payload]")
        return Message(
            topic=_req_str(arr[2], "topic"),
            event=_req_str(arr[3], "event"),
            payload=arr[4] if len(arr) > 4 else None,
            ref=_ref(arr[1], "ref"),
            join_ref=_ref(arr[0], "join_ref"),
            shape=ARRAY,
        )
    if head == "{":
        obj = _loads(text, lenient=not from_client)
        if not isinstance(obj, dict):
            raise DecodeError("1.0.0 frame must be a JSON object")
        # Message.from_map!/1 fetches these four; the clients need only topic and event.
        for key in ("topic", "event", "payload", "ref") if from_client else ("topic", "event"):
            if key not in obj:
                raise DecodeError(f"1.0.0 object lacks {key!r}")
        return Message(
            topic=_req_str(obj["topic"], "topic"),
            event=_req_str(obj["event"], "event"),
            payload=obj.get("payload"),
            ref=_ref(obj.get("ref"), "ref"),
            join_ref=_ref(obj.get("join_ref"), "join_ref"),
            shape=OBJECT,
        )
    raise DecodeError("text frame is neither a JSON object (1.0.0) nor a JSON array (2.0.0)")


class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 1  # after the kind byte

    def lengths(self, n: int) -> tuple[int, ...]:
        if len(self.buf) < self.pos + n:
            raise DecodeError(f"binary header truncated: kind {self.buf[0]} needs {n} length bytes")
        out = tuple(self.buf[self.pos : self.pos + n])
        self.pos += n
        return out

    def take(self, n: int, field: str) -> bytes:
        end = self.pos + n
        if end > len(self.buf):
            raise DecodeError(f"{field} length {n} runs past the end of the frame")
        out = self.buf[self.pos : end]
        self.pos = end
        return out

    def text(self, n: int, field: str) -> str:
        # Realtime keeps these as raw binaries and realtime-js decodes them with a non-fatal TextDecoder:
        # invalid UTF-8 is shown as U+FFFD, not refused.
        return self.take(n, field).decode("utf-8", "replace")

    def rest(self) -> bytes:
        return self.buf[self.pos :]


def _meta(r: _Reader, n: int, lenient: bool) -> Any:
    """Kind 3/4 metadata: any JSON (the server Jason.decode!s it, realtime-js JSON.parses what its
    non-fatal TextDecoder made of it); absent: None."""
    if n == 0:
        return None
    raw = r.take(n, "meta")
    return _loads(raw.decode("utf-8", "replace" if lenient else "strict"), lenient)


def _user_payload(json_payload: bool, raw: bytes, lazy: bool, from_client: bool) -> Any:
    if not json_payload or (lazy and from_client):
        return raw
    try:
        return _loads(raw.decode("utf-8"), lenient=not from_client)
    except (ValueError, UnicodeDecodeError) as e:
        if from_client:  # the server relays the bytes unparsed: not an error on its side
            return raw
        raise DecodeError(
            f"user payload is marked JSON (enc 1) but is not JSON "
            f"({'empty' if not raw else str(e)[:80]}); realtime-js' JSON.parse throws on it"
        ) from None


_FROM_SERVER_ONLY = {REPLY: "reply", BROADCAST: "broadcast", USER_BROADCAST: "user broadcast"}


def _decode_binary(buf: bytes, from_client: bool, lazy: bool = False) -> Message:
    if not buf:
        raise DecodeError("empty binary frame")
    kind = buf[0]
    r = _Reader(buf)
    if from_client:
        if kind in _FROM_SERVER_ONLY:
            raise DecodeError(
                f"kind {kind} ({_FROM_SERVER_ONLY[kind]}) is a server-to-client layout; "
                "Realtime's V2 serializer decodes only kinds 0 and 3 from clients"
            )
        if kind == PUSH:
            jr, ref, topic, event = r.lengths(4)
            join_ref, ref_s = r.text(jr, "join_ref"), r.text(ref, "ref")
            t, e = r.text(topic, "topic"), r.text(event, "event")
            # Zero-length refs are "" to the server (it echoes "" in its reply), not nil.
            return Message(t, e, r.rest(), ref_s, join_ref, BINARY, kind)
        if kind == USER_PUSH:
            jr, ref, topic, uev, meta_len, enc = r.lengths(6)
            join_ref, ref_s = r.text(jr, "join_ref"), r.text(ref, "ref")
            t, ue = r.text(topic, "topic"), r.text(uev, "user event")
            meta = _meta(r, meta_len, lenient=False)
            value = _user_payload(enc != ENC_BINARY, r.rest(), lazy, True)  # "if == 0 :binary, else :json"
            return Message(
                t, EV_BROADCAST, _broadcast_payload(ue, value, meta), ref_s, join_ref, BINARY, kind
            )
        raise DecodeError(f"unknown binary kind {kind} (clients send 0 and 3)")
    if kind == USER_BROADCAST:
        topic, uev, meta_len, enc = r.lengths(4)
        t, ue = r.text(topic, "topic"), r.text(uev, "user event")
        meta = _meta(r, meta_len, lenient=True)
        value = _user_payload(enc == ENC_JSON, r.rest(), lazy, False)  # realtime-js: only 1 is JSON
        return Message(t, EV_BROADCAST, _broadcast_payload(ue, value, meta), None, None, BINARY, kind)
    if kind in (PUSH, REPLY, BROADCAST, USER_PUSH):
        raise DecodeError(
            f"{_describe_server_kind(buf)}: realtime-js decodes only kind 4 from a server and "
            "throws on this one (realtime-py takes no binary kinds)"
        )
    raise DecodeError(f"unknown binary kind {kind} (known: 0-4)")


def _describe_server_kind(buf: bytes) -> str:
    """What a kind 0-3 server frame says, for the error that realtime-js cannot read it."""
    kind, name = buf[0], KIND_NAMES.get(buf[0], "?")
    try:
        r = _Reader(buf)
        n = {PUSH: 3, REPLY: 4, BROADCAST: 2, USER_PUSH: 6}[kind]
        lens = r.lengths(n)
        if kind in (PUSH, REPLY, USER_PUSH):
            r.take(lens[0], "join_ref")
        if kind in (REPLY, USER_PUSH):
            r.take(lens[1], "ref")
        topic_i = {PUSH: 1, REPLY: 2, BROADCAST: 0, USER_PUSH: 2}[kind]
        topic = r.text(lens[topic_i], "topic")
        event = r.text(lens[topic_i + 1], "event")
        return f"kind {kind} ({name}) {topic} {event!r}"
    except DecodeError:
        return f"kind {kind} ({name}), truncated"


def _broadcast_payload(user_event: str, value: Any, meta: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "broadcast", "event": user_event, "payload": value}
    if meta is not None:
        out["meta"] = meta
    return out


# ---------------------------------------------------------------------------------------------- encode


def encode_text(msg: Message, vsn: str, *, from_client: bool) -> str:
    """Text frame for `vsn`. Servers omit join_ref in 1.0.0 objects; clients keep it. The server's key
    order is Jason's over the atom-keyed map Map.take/2 builds: since Realtime runs on OTP 26 (2024-05)
    atom keys iterate in atom-table order, which users' pastes show as ref, event, payload, topic
    (realtime #1111, supabase-py #1297/#1311); OTP 25 sorted them (event, payload, ref, topic)."""
    if vsn == V1:
        if from_client:
            obj = {
                "topic": msg.topic,
                "event": msg.event,
                "payload": msg.payload,
                "ref": msg.ref,
                "join_ref": msg.join_ref,
            }
        else:
            obj = {"ref": msg.ref, "event": msg.event, "payload": msg.payload, "topic": msg.topic}
        return _dumps(obj)
    return _dumps([msg.join_ref, msg.ref, msg.topic, msg.event, msg.payload])


def _b(s: str | None, field: str) -> bytes:
    raw = (s or "").encode("utf-8")
    if len(raw) > 255:
        raise ValueError(f"{field} is {len(raw)} bytes; binary frames allow 255")
    return raw


def _user_parts(value: Any) -> tuple[int, bytes]:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return ENC_BINARY, bytes(value)
    # realtime-js: JSON.stringify(message.payload?.payload ?? {})
    return ENC_JSON, _dumps({} if value is None else value).encode("utf-8")


def encode_user_push(
    topic: str,
    user_event: str,
    value: Any,
    *,
    join_ref: str | None = None,
    ref: str | None = None,
    meta: dict[str, Any] | None = None,
) -> bytes:
    """Kind 3, as realtime-js sends channel.send({type: "broadcast", ...}) on vsn 2.0.0."""
    jr, rf, t, ue = _b(join_ref, "join_ref"), _b(ref, "ref"), _b(topic, "topic"), _b(user_event, "event")
    m = _b(_dumps(meta), "meta") if meta else b""
    enc, body = _user_parts(value)
    return bytes([USER_PUSH, len(jr), len(rf), len(t), len(ue), len(m), enc]) + jr + rf + t + ue + m + body


def encode_user_broadcast(
    topic: str, user_event: str, value: Any, meta: dict[str, Any] | None = None
) -> bytes:
    """Kind 4, as the server delivers user broadcasts to vsn 2.0.0 sockets."""
    t, ue = _b(topic, "topic"), _b(user_event, "event")
    m = _b(_dumps(meta), "meta") if meta else b""
    enc, body = _user_parts(value)
    return bytes([USER_BROADCAST, len(t), len(ue), len(m), enc]) + t + ue + m + body


def encode_push(
    topic: str,
    event: str,
    payload: bytes,
    *,
    join_ref: str | None = None,
    ref: str | None = None,
    from_client: bool,
) -> bytes:
    """Kind 0; the server-to-client layout has no ref."""
    jr, t, e = _b(join_ref, "join_ref"), _b(topic, "topic"), _b(event, "event")
    if from_client:
        rf = _b(ref, "ref")
        return bytes([PUSH, len(jr), len(rf), len(t), len(e)]) + jr + rf + t + e + payload
    return bytes([PUSH, len(jr), len(t), len(e)]) + jr + t + e + payload


def encode_reply(topic: str, status: str, response: bytes, *, join_ref: str | None, ref: str | None) -> bytes:
    """Kind 1."""
    jr, rf, t, st = _b(join_ref, "join_ref"), _b(ref, "ref"), _b(topic, "topic"), _b(status, "status")
    return bytes([REPLY, len(jr), len(rf), len(t), len(st)]) + jr + rf + t + st + response


def encode_broadcast(topic: str, event: str, payload: bytes) -> bytes:
    """Kind 2."""
    t, e = _b(topic, "topic"), _b(event, "event")
    return bytes([BROADCAST, len(t), len(e)]) + t + e + payload
