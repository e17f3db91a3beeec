"""The "Supabase Realtime" content views: WebSocket messages of Realtime flows, decoded.

mitmweb and mitmproxy console (and mitmdump at flow_detail >= 3) render each WebSocket message with
the best content view. For a Realtime flow (rerouted by rtproxy, or a path like /realtime/v1/websocket)
these views win over the JSON and raw views and show the frame the way Realtime sees it. Two forms, both
in mitmweb's View menu: "Supabase Realtime", picked by default, one line per frame (direction, event,
topic, refs, the payload in one line):

    → broadcast realtime:room1 join_ref=1 ref=2 (binary kind 3) {"type": "broadcast", "event": "cursor", ...}

and "Supabase Realtime full", every field on its own line and the payload pretty-printed:

    # 2.0.0 binary kind 3 (user broadcast push), client → server
    topic: realtime:room1
    event: broadcast
    join_ref: "1"
    ref: "2"
    payload: {
      "type": "broadcast",
      ...
    }

A frame rtproxy dropped, held back or sent itself says so above it, in both forms (framenotes.py):

    ✂ DROPPED by rtproxy (fault drop-join): the server never got it
    ✚ INJECTED by rtproxy (rt.inject.server): the server never sent it

The full form also names, above every frame, the connection's findings whose evidence came from the page
(rt_page_probe; marks.PAGE_FINDINGS):

    # handler-threw (seen by the page probe): the app's message handler threw on 2 frame(s) …

Secrets in the payload (access_token, JWTs, sb_ keys) are redacted unless rt_show_secrets is set. A
frame that is not a Realtime message is shown as an `error:` line and its raw content, never as a
traceback. Decoding is rtproxy_core.frames; nothing here knows the wire format.

`RealtimeView` is the addon: registers the views on load and really removes them on done (mitmproxy 12's
`contentviews.remove` is a deprecated no-op).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from mitmproxy import contentviews, ctx, http, websocket
from mitmproxy.contentviews import Contentview, Metadata, SyntaxHighlight
from rtproxy_core import frames, legs
from rtproxy_core.hop import BLOB_TEXT
from rtproxy_core.redact import Redactor
from rtproxy_core.rules import SEEN_BY_PAGE

from . import framenotes, internals, marks
from .flowevents import is_realtime

logger = logging.getLogger("rtproxy")

NAME = "Supabase Realtime"  # the compact form, auto's pick
FULL_NAME = "Supabase Realtime full"  # no parentheses: mitmweb's content route takes [0-9a-zA-Z_%-]
PRIORITY = 2.0  # JSON gives at most 1 (and 0 to WebSocket messages: no content type), raw 0.1
MAX_RAW = 4096  # bytes of an undecodable frame shown
MAX_LINE = 400  # characters of a compact payload shown; the full form has the rest

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


def labels(flow: object, msg: websocket.WebSocketMessage | None) -> list[str]:
    """What rtproxy (or anyone but the peers) did to this message, one line each: dropped, held back,
    sent late, injected (framenotes.py; a live command's frames by the flow's COMMANDS)."""
    if msg is None or not isinstance(flow, http.HTTPFlow):
        return []
    sender, receiver = ("client", "server") if msg.from_client else ("server", "client")
    lines = []
    for kind, by in framenotes.notes_of(flow, msg):
        if kind == framenotes.DROPPED:
            lines.append(f"✂ DROPPED by rtproxy ({by}): the {receiver} never got it")
        elif kind == framenotes.DELAYED:
            lines.append(f"◷ HELD BACK by rtproxy ({by}): the {receiver} got it later, marked SENT LATE")
        elif kind == framenotes.LATE:
            lines.append(f"◷ SENT LATE by rtproxy ({by}): the frame marked HELD BACK, now on its way")
        else:
            lines.append(f"✚ INJECTED by rtproxy ({by}): the {sender} never sent it")
    if msg.injected and not lines:
        command = framenotes.injected_by(flow, msg)
        by = f"by rtproxy ({command})" if command else "(a script's inject.websocket)"
        lines.append(f"✚ INJECTED {by}: the {sender} never sent it")
    if msg.dropped and not lines:
        lines.append(f"✂ DROPPED (by a script, not rtproxy): the {receiver} never got it")
    return lines


def page_lines(flow: http.HTTPFlow) -> list[str]:
    """The full form's lines for the connection's findings that came from the page (marks.PAGE_FINDINGS)."""
    return [
        f"# {code} ({SEEN_BY_PAGE}): {evidence}"
        for code, evidence in flow.metadata.get(marks.PAGE_FINDINGS) or []
    ]


class RealtimeContentview(Contentview):
    """The compact form: one line per frame, under what rtproxy did to it."""

    name = NAME
    syntax_highlight: SyntaxHighlight = "none"
    priority = PRIORITY
    compact = True

    def render_priority(self, data: bytes, metadata: Metadata) -> float:
        if metadata.websocket_message is None or not (
            isinstance(metadata.flow, http.HTTPFlow) and is_realtime(metadata.flow)
        ):
            return -1
        return self.priority

    def prettify(self, data: bytes, metadata: Metadata) -> str:
        msg = metadata.websocket_message
        if msg is not None:
            binary, from_client = not msg.is_text, msg.from_client
        else:  # picked by hand for something that is not a WebSocket message: guess
            binary, from_client = data[:1] not in (b"{", b"[", b" ", b"\n", b"\t"), True
        redactor = Redactor(show_secrets=show_secrets())
        text = self._pretty(data, binary, from_client, redactor)
        lines = labels(metadata.flow, msg)
        if not self.compact:
            lines = [f"# {line}" for line in lines]
        if not self.compact and isinstance(metadata.flow, http.HTTPFlow):
            lines += page_lines(metadata.flow)
        leg = metadata.flow.metadata.get(legs.METADATA) if isinstance(metadata.flow, http.HTTPFlow) else None
        if isinstance(leg, dict):  # a leg of a hop rtproxy watches from both sides (rt_legs)
            at = msg.timestamp if msg is not None else None
            about = legs.view_lines(leg, at, from_client)
            # The compact form keeps the frame's own fate; the full one the pair too.
            lines += [line for line in about if line.startswith("# this frame:")] if self.compact else about
        return redactor.output("\n".join([*lines, text]))

    def _pretty(self, data: bytes, binary: bool, from_client: bool, redactor: Redactor) -> str:
        direction = "client → server" if from_client else "server → client"
        try:
            m = frames.decode(data, binary=binary, from_client=from_client)
        except frames.DecodeError as e:
            return self._undecodable(data, binary, direction, str(e), redactor)
        payload = frames.jsonable(redactor.payload(m.payload), _bytes_view)
        if self.compact:
            return self._line(m, from_client, payload)
        if m.kind is not None:
            shape = f"2.0.0 binary kind {m.kind} ({frames.KIND_NAMES[m.kind]})"
        else:
            shape = _SHAPES.get(m.shape, m.shape)
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
    def _line(m: frames.Message, from_client: bool, payload: Any) -> str:
        """`→ phx_join realtime:room1 join_ref=1 ref=1 {"config": …}` (→ client to server, ← back)."""
        words = ["→" if from_client else "←", m.event, m.topic]
        words += [f"{name}={value}" for name, value in (("join_ref", m.join_ref), ("ref", m.ref)) if value]
        if m.kind is not None:
            words.append(f"(binary kind {m.kind})")
        body = json.dumps(payload, ensure_ascii=False, separators=(", ", ": "))
        if len(body) > MAX_LINE:
            body = f"{body[:MAX_LINE]}… ({len(body) - MAX_LINE} more characters: {FULL_NAME})"
        return " ".join([*words, body])

    def _undecodable(self, data: bytes, binary: bool, direction: str, reason: str, redactor: Redactor) -> str:
        kind = "binary" if binary else "text"
        lines = [f"error: undecodable {kind} frame ({direction}): {reason}"]
        if not binary and data.strip() == BLOB_TEXT.encode():
            lines.append(f"hint: {_BLOB_HINT}")
        limit = MAX_LINE if self.compact else MAX_RAW
        shown = data[:limit]
        more = f" (first {limit} of {len(data)} bytes)" if len(data) > limit else ""
        if binary:
            lines.append(f"hex{more}: {shown.hex()}")
        else:
            lines.append(f"raw{more}: {redactor.text(shown.decode('utf-8', 'replace'))}")
        return "\n".join(lines)


class RealtimeFullContentview(RealtimeContentview):
    """The full form: every field on its own line, the payload pretty-printed."""

    name = FULL_NAME
    syntax_highlight: SyntaxHighlight = "yaml"  # YAML is a superset of JSON: the payload highlights as JSON
    priority = PRIORITY - 0.1  # auto picks the compact form
    compact = False


class RealtimeView:
    """Addon: the Supabase Realtime content views, present while the addon is loaded."""

    def __init__(self) -> None:
        self.view = RealtimeContentview()
        self.full = RealtimeFullContentview()

    def load(self, loader) -> None:
        contentviews.add(self.view)
        contentviews.add(self.full)

    def done(self) -> None:
        internals.remove_view(self.view)
        internals.remove_view(self.full)
