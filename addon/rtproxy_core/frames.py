"""Realtime frame codec: vsn 1.0.0 JSON objects, 2.0.0 JSON arrays, 2.0.0 binary kinds 0-4.

Sans-I/O: bytes in, `Message` out (and back). The decoder detects the shape of a frame from the frame
itself (`{` object, `[` array, binary kind byte) instead of trusting the negotiated vsn, so the caller
can tell a serializer mismatch (a 2.0.0 array on a 1.0.0 socket) from garbage.

Binary layouts (realtime-protocol.md §2.3); every length is one unsigned byte counting UTF-8 bytes:
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

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # cheap pre-check on the raw text


def _loads(text: str) -> Any:
    value = json.loads(text)
    # json.loads turns an unpaired \uD800-\uDFFF escape into a lone surrogate: not Unicode text, and no
    # UTF-8 log line, report or terminal can hold it.
    if "\\u" in text and _SURROGATE_ESCAPE.search(text) and _SURROGATE.search(_dumps(value)):
        raise DecodeError("a string holds an unpaired UTF-16 surrogate escape (\\uD800-\\uDFFF): "
                          "not valid Unicode")
    return value


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


# Elixir Version syntax: MAJOR.MINOR.PATCH[-pre][+build]
_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?")


def vsn_family(vsn: str | None) -> str | None:
    """The serializer a Realtime server picks for a vsn query value. Absent means 1.0.0 (Phoenix's
    default). Realtime requires "~> 1.0.0" / "~> 2.0.0": x.0.z, build metadata allowed, pre-releases
    (which sort below x.0.0) refused, so 1.9.3 and 2.0.0-rc.1 get None: the server answers 403."""
    if vsn is None:
        return V1
    m = _VERSION.fullmatch(vsn)
    if m is None or m[4] is not None or m[2] != "0":
        return None
    return {"1": V1, "2": V2}.get(m[1])


def shape_for(vsn: str) -> str:
    return OBJECT if vsn == V1 else ARRAY


# ---------------------------------------------------------------------------------------------- decode


def decode(data: bytes | str, *, binary: bool, from_client: bool, lazy: bool = False) -> Message:
    """Decode one WebSocket message. Raises DecodeError, never anything else.

    lazy: leave the user payload of kinds 3/4 as its raw bytes instead of parsing its JSON (about 40 % of
    a binary frame's decode time) when nobody will print it; Realtime relays those bytes unparsed too."""
    try:
        if binary:
            return _decode_binary(bytes(data) if not isinstance(data, str) else data.encode(), from_client, lazy)
        text = data if isinstance(data, str) else bytes(data).decode("utf-8")
        return _decode_text(text)
    except DecodeError:
        raise
    except UnicodeDecodeError as e:
        raise DecodeError(f"invalid UTF-8 at byte {e.start}") from None
    except (ValueError, RecursionError) as e:  # json errors are ValueErrors
        raise DecodeError(f"invalid JSON: {str(e)[:120]}") from None


def _opt_str(value: Any, field: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # some clients send numeric refs; Phoenix echoes what it got
    raise DecodeError(f"{field} must be a string or null, got {type(value).__name__}")


def _req_str(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise DecodeError(f"{field} must be a string, got {type(value).__name__}")
    return value


def _decode_text(text: str) -> Message:
    head = text.lstrip()[:1]
    if head == "[":
        arr = _loads(text)
        if not isinstance(arr, list) or len(arr) < 5:
            raise DecodeError("2.0.0 array must be [join_ref, ref, topic, event, payload]")
        return Message(
            topic=_req_str(arr[2], "topic"),
            event=_req_str(arr[3], "event"),
            payload=arr[4],
            ref=_opt_str(arr[1], "ref"),
            join_ref=_opt_str(arr[0], "join_ref"),
            shape=ARRAY,
        )
    if head == "{":
        obj = _loads(text)
        if not isinstance(obj, dict):
            raise DecodeError("1.0.0 frame must be a JSON object")
        for key in ("topic", "event", "payload", "ref"):
            if key not in obj:
                raise DecodeError(f"1.0.0 object lacks {key!r}")
        return Message(
            topic=_req_str(obj["topic"], "topic"),
            event=_req_str(obj["event"], "event"),
            payload=obj["payload"],
            ref=_opt_str(obj["ref"], "ref"),
            join_ref=_opt_str(obj.get("join_ref"), "join_ref"),
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
        try:
            return self.take(n, field).decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError(f"{field} is not valid UTF-8") from None

    def rest(self) -> bytes:
        return self.buf[self.pos :]


def _empty_none(s: str) -> str | None:
    return s or None


def _meta(r: _Reader, n: int) -> dict[str, Any] | None:
    if n == 0:
        return None
    meta = _loads(r.text(n, "meta"))
    if not isinstance(meta, dict):
        raise DecodeError("meta must be a JSON object")
    return meta


def _user_payload(enc: int, raw: bytes, lazy: bool = False) -> Any:
    if enc == ENC_BINARY or lazy and enc == ENC_JSON:
        return raw
    if enc == ENC_JSON:
        return _loads(raw.decode("utf-8")) if raw else None
    raise DecodeError(f"unknown payload encoding {enc} (0 binary, 1 JSON)")


def _decode_binary(buf: bytes, from_client: bool, lazy: bool = False) -> Message:
    if not buf:
        raise DecodeError("empty binary frame")
    kind = buf[0]
    r = _Reader(buf)
    if kind == PUSH:
        if from_client:
            jr, ref, topic, event = r.lengths(4)
            join_ref, ref_s = r.text(jr, "join_ref"), r.text(ref, "ref")
        else:
            jr, topic, event = r.lengths(3)
            join_ref, ref_s = r.text(jr, "join_ref"), ""
        t, e = r.text(topic, "topic"), r.text(event, "event")
        return Message(t, e, r.rest(), _empty_none(ref_s), _empty_none(join_ref), BINARY, kind)
    if kind == REPLY:
        jr, ref, topic, status = r.lengths(4)
        join_ref, ref_s = r.text(jr, "join_ref"), r.text(ref, "ref")
        t, st = r.text(topic, "topic"), r.text(status, "status")
        payload = {"status": st, "response": r.rest()}
        return Message(t, "phx_reply", payload, _empty_none(ref_s), _empty_none(join_ref), BINARY, kind)
    if kind == BROADCAST:
        topic, event = r.lengths(2)
        t, e = r.text(topic, "topic"), r.text(event, "event")
        return Message(t, e, r.rest(), None, None, BINARY, kind)
    if kind == USER_PUSH:
        jr, ref, topic, uev, meta_len, enc = r.lengths(6)
        join_ref, ref_s = r.text(jr, "join_ref"), r.text(ref, "ref")
        t, ue = r.text(topic, "topic"), r.text(uev, "user event")
        meta = _meta(r, meta_len)
        payload = _broadcast_payload(ue, _user_payload(enc, r.rest(), lazy), meta)
        return Message(t, "broadcast", payload, _empty_none(ref_s), _empty_none(join_ref), BINARY, kind)
    if kind == USER_BROADCAST:
        topic, uev, meta_len, enc = r.lengths(4)
        t, ue = r.text(topic, "topic"), r.text(uev, "user event")
        meta = _meta(r, meta_len)
        payload = _broadcast_payload(ue, _user_payload(enc, r.rest(), lazy), meta)
        return Message(t, "broadcast", payload, None, None, BINARY, kind)
    raise DecodeError(f"unknown binary kind {kind} (known: 0-4)")


def _broadcast_payload(user_event: str, value: Any, meta: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "broadcast", "event": user_event, "payload": value}
    if meta is not None:
        out["meta"] = meta
    return out


# ---------------------------------------------------------------------------------------------- encode


def encode_text(msg: Message, vsn: str, *, from_client: bool) -> str:
    """Text frame for `vsn`. Servers omit join_ref in 1.0.0 objects and sort keys (Jason); clients keep it."""
    if vsn == V1:
        if from_client:
            obj = {"topic": msg.topic, "event": msg.event, "payload": msg.payload, "ref": msg.ref,
                   "join_ref": msg.join_ref}
        else:
            obj = {"event": msg.event, "payload": msg.payload, "ref": msg.ref, "topic": msg.topic}
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
    return ENC_JSON, _dumps(value).encode("utf-8")


def encode_user_push(topic: str, user_event: str, value: Any, *, join_ref: str | None = None,
                     ref: str | None = None, meta: dict[str, Any] | None = None) -> bytes:
    """Kind 3, as realtime-js sends channel.send({type: "broadcast", ...}) on vsn 2.0.0."""
    jr, rf, t, ue = _b(join_ref, "join_ref"), _b(ref, "ref"), _b(topic, "topic"), _b(user_event, "event")
    m = _b(_dumps(meta), "meta") if meta else b""
    enc, body = _user_parts(value)
    return bytes([USER_PUSH, len(jr), len(rf), len(t), len(ue), len(m), enc]) + jr + rf + t + ue + m + body


def encode_user_broadcast(topic: str, user_event: str, value: Any,
                          meta: dict[str, Any] | None = None) -> bytes:
    """Kind 4, as the server delivers user broadcasts to vsn 2.0.0 sockets."""
    t, ue = _b(topic, "topic"), _b(user_event, "event")
    m = _b(_dumps(meta), "meta") if meta else b""
    enc, body = _user_parts(value)
    return bytes([USER_BROADCAST, len(t), len(ue), len(m), enc]) + t + ue + m + body


def encode_push(topic: str, event: str, payload: bytes, *, join_ref: str | None = None,
                ref: str | None = None, from_client: bool) -> bytes:
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
