"""The "Supabase Realtime" content view: WebSocket messages of Realtime flows, decoded.

mitmweb and mitmproxy console (and mitmdump at flow_detail >= 3) render each WebSocket message with
the best content view. For a Realtime flow (rerouted by rtproxy, or a path like /realtime/v1/websocket)
this view wins over the JSON and raw views and shows the frame the way Realtime sees it:

    # 2.0.0 binary kind 3 (user broadcast push), client → server
    topic: realtime:room1
    event: broadcast
    join_ref: "1"
    ref: "2"
    payload: {
      "type": "broadcast",
      ...
    }

Secrets in the payload (access_token, JWTs, sb_ keys) are redacted unless rt_show_secrets is set. A
frame that is not a Realtime message is shown as an `error:` line and its raw content, never as a
traceback. Decoding is rtproxy_core.frames; nothing here knows the wire format.

`RealtimeView` is the addon: registers the view on load and really removes it on done (mitmproxy 12's
`contentviews.remove` is a deprecated no-op).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from mitmproxy import contentviews, ctx, http
from mitmproxy.contentviews import Contentview, Metadata
from rtproxy_core import frames, legs
from rtproxy_core.hop import BLOB_TEXT
from rtproxy_core.redact import Redactor

from . import internals
from .flowevents import is_realtime

logger = logging.getLogger("rtproxy")

NAME = "Supabase Realtime"
PRIORITY = 2.0  # JSON gives at most 1 (and 0 to WebSocket messages: no content type), raw 0.1
MAX_RAW = 4096  # bytes of an undecodable frame shown

_SHAPES = {frames.OBJECT: "1.0.0 object", frames.ARRAY: "2.0.0 array"}
_BLOB_HINT = (
    f"the text {BLOB_TEXT!r}: a JavaScript relay received a binary frame as a Blob and "
    "sent it on with send(blob), which stringifies it; relay event.data as an ArrayBuffer "
    "(or set the socket's binaryType to 'arraybuffer') so binary frames stay binary"
)


def show_secrets() -> bool:
    """The rt_show_secrets option, read defensively: no master, or an option rtproxy never declared
    (the view used without the Tracker addon), both mean redact."""
    try:
        opts = getattr(ctx, "options", None)
        return bool(opts is not None and "rt_show_secrets" in opts and opts.rt_show_secrets)
    except Exception:  # noqa: BLE001 - a content view must render whatever the options look like
        return False


def _bytes_view(raw: bytes) -> dict[str, Any]:
    """Bytes in a payload: their length, hex, and the text when they are UTF-8."""
    out: dict[str, Any] = {"bytes": len(raw), "hex": raw.hex()}
    try:
        out["utf8"] = raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    return out


def _q(value: str | None) -> str:
    """A scalar as JSON (so refs read as "1", absent ones as null, and odd characters stay escaped)."""
    return json.dumps(value, ensure_ascii=False)


class RealtimeContentview(Contentview):
    name = NAME
    syntax_highlight = "yaml"  # YAML is a superset of JSON: the payload block highlights as JSON

    def render_priority(self, data: bytes, metadata: Metadata) -> float:
        if metadata.websocket_message is None or not (
            isinstance(metadata.flow, http.HTTPFlow) and is_realtime(metadata.flow)
        ):
            return -1
        return PRIORITY

    def prettify(self, data: bytes, metadata: Metadata) -> str:
        msg = metadata.websocket_message
        if msg is not None:
            binary, from_client = not msg.is_text, msg.from_client
        else:  # picked by hand for something that is not a WebSocket message: guess
            binary, from_client = data[:1] not in (b"{", b"[", b" ", b"\n", b"\t"), True
        direction = "client → server" if from_client else "server → client"
        redactor = Redactor(show_secrets=show_secrets())
        text = self._pretty(data, binary, from_client, direction, redactor)
        leg = metadata.flow.metadata.get(legs.METADATA) if isinstance(metadata.flow, http.HTTPFlow) else None
        if isinstance(leg, dict):  # a leg of a hop rtproxy watches from both sides (rt_legs)
            at = msg.timestamp if msg is not None else None
            text = "\n".join([*legs.view_lines(leg, at, from_client), text])
        return redactor.output(text)

    def _pretty(
        self, data: bytes, binary: bool, from_client: bool, direction: str, redactor: Redactor
    ) -> str:
        try:
            m = frames.decode(data, binary=binary, from_client=from_client)
        except frames.DecodeError as e:
            return self._undecodable(data, binary, direction, str(e), redactor)
        if m.kind is not None:
            shape = f"2.0.0 binary kind {m.kind} ({frames.KIND_NAMES[m.kind]})"
        else:
            shape = _SHAPES.get(m.shape, m.shape)
        payload = frames.jsonable(redactor.payload(m.payload), _bytes_view)
        body = json.dumps(payload, indent=2, ensure_ascii=False)
        return "\n".join(
            [
                f"# {shape}, {direction}",
                f"topic: {_q(m.topic)}",
                f"event: {_q(m.event)}",
                f"join_ref: {_q(m.join_ref)}",
                f"ref: {_q(m.ref)}",
                f"payload: {body}",
            ]
        )

    @staticmethod
    def _undecodable(data: bytes, binary: bool, direction: str, reason: str, redactor: Redactor) -> str:
        kind = "binary" if binary else "text"
        lines = [f"error: undecodable {kind} frame ({direction}): {reason}"]
        if not binary and data.strip() == BLOB_TEXT.encode():
            lines.append(f"hint: {_BLOB_HINT}")
        shown = data[:MAX_RAW]
        more = f" (first {MAX_RAW} of {len(data)} bytes)" if len(data) > MAX_RAW else ""
        if binary:
            lines.append(f"hex{more}: {shown.hex()}")
        else:
            lines.append(f"raw{more}: {redactor.text(shown.decode('utf-8', 'replace'))}")
        return "\n".join(lines)


class RealtimeView:
    """Addon: the Supabase Realtime content view, present while the addon is loaded."""

    def __init__(self) -> None:
        self.view = RealtimeContentview()

    def load(self, loader) -> None:
        contentviews.add(self.view)

    def done(self) -> None:
        internals.remove_view(self.view)
