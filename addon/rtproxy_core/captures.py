"""HAR captures -> events, one list per WebSocket connection.

Reads HAR as Chrome DevTools exports it (WebSocket entries with `_resourceType: "websocket"` and
`_webSocketMessages: [{type: send|receive, time, opcode: 1|2, data}]`, binary data base64) and as
mitmproxy's savehar writes it (the same shape). Upgrade requests that were refused (no 101) are kept:
their status and body are the evidence. A HAR records no close frame: each connection ends with a
Closed(recorded=False) at the entry's end (its start plus its `time`, or its last message).
(mitmproxy flow files are read in rtproxy_mitm.flowfile, next to mitmproxy's own reader.)
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Iterator
from typing import Any

from .events import Closed, Event, Frame, Handshake, Opened


class CaptureError(ValueError):
    """The capture cannot be read; the text says why, in one line."""


def _time(entry: dict[str, Any]) -> float:
    started = entry.get("startedDateTime")
    if isinstance(started, str):
        try:
            return dt.datetime.fromisoformat(started).timestamp()
        except ValueError:
            pass
    return 0.0


def _dict(value: Any) -> dict[str, Any]:
    """A HAR object that should be one; anything else counts as empty."""
    return value if isinstance(value, dict) else {}


def _headers(items: Any) -> list[tuple[str, str]]:
    if not isinstance(items, list):
        return []
    return [(str(h.get("name", "")), str(h.get("value", ""))) for h in items if isinstance(h, dict)]


def _is_websocket(entry: dict[str, Any]) -> bool:
    if entry.get("_resourceType") == "websocket" or "_webSocketMessages" in entry:
        return True
    req = _dict(entry.get("request"))
    return any(k.lower() == "upgrade" and v.lower() == "websocket" for k, v in _headers(req.get("headers")))


def _body(response: dict[str, Any]) -> bytes:
    content = _dict(response.get("content"))
    text = content.get("text")
    if not isinstance(text, str):
        return b""
    if content.get("encoding") == "base64":
        try:
            return base64.b64decode(text)
        except (binascii.Error, ValueError):
            return b""
    return text.encode("utf-8", "replace")


def _frames(messages: Any) -> Iterator[Frame]:
    if not isinstance(messages, list):
        return
    for m in messages:
        if not isinstance(m, dict) or m.get("type") not in ("send", "receive"):
            continue
        data = m.get("data", "")
        binary = m.get("opcode") == 2
        if not isinstance(data, str):
            continue
        if binary:
            try:
                raw = base64.b64decode(data, validate=False)
            except (binascii.Error, ValueError):
                raw = data.encode("utf-8", "replace")
        else:
            raw = data.encode("utf-8", "surrogatepass")
        t = m.get("time")
        try:
            t = float(t) if isinstance(t, (int, float)) else 0.0
        except OverflowError:  # an integer past float range
            t = 0.0
        yield Frame(m["type"] == "send", binary, raw, t)


def har_connections(har: Any) -> list[tuple[str, list[Event]]]:
    """(url, events) for each WebSocket entry of a parsed HAR document."""
    if not isinstance(har, dict) or not isinstance(har.get("log"), dict):
        raise CaptureError("not a HAR file (no 'log' object)")
    entries = har["log"].get("entries")
    if not isinstance(entries, list):
        raise CaptureError("HAR has no 'entries' list")
    out = []
    for entry in entries:
        if not isinstance(entry, dict) or not _is_websocket(entry):
            continue
        req, resp = _dict(entry.get("request")), _dict(entry.get("response"))
        url = str(req.get("url", ""))
        t = _time(entry)
        # Chrome writes wss:// URLs; the tracker reads the query the same either way.
        events: list[Event] = [Opened(url, _headers(req.get("headers")), t)]
        status = resp.get("status")
        if isinstance(status, int) and status > 0:
            events.append(Handshake(status, _headers(resp.get("headers")), _body(resp), t))
        msgs = list(_frames(entry.get("_webSocketMessages")))
        events.extend(msgs)
        duration = entry.get("time")
        end = max([t] + [m.time for m in msgs])
        if isinstance(duration, (int, float)) and not isinstance(duration, bool) and 0 < duration < 1e10:
            end = max(end, t + duration / 1000)
        if isinstance(status, int) and status == 101:
            events.append(Closed(None, "", None, end, recorded=False))
        out.append((url, events))
    return out
