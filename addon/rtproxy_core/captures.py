"""HAR captures -> events, one list per Realtime WebSocket connection.

What each producer writes for a WebSocket entry, as its exporter's source shows:

- Chrome/Edge DevTools (`front_end/models/har/Log.ts`, `Entry.build`): `_resourceType: "websocket"` and
  `_webSocketMessages: [{type, time, opcode, data}]`, one per `NetworkRequest.frames()`. `type` is "send",
  "receive" or "error": `NetworkRequest.addProtocolFrameError` records a channel failure as
  `{type: Error, text: errorMessage, time: pseudoWallTime(time), opCode: -1}`. `time` is epoch seconds;
  binary data (opcode 2) is base64. `log.creator` is `{name: "WebInspector", version: <WebKit version>}`.
- mitmproxy (`mitmproxy/addons/savehar.py`, `SaveHar.flow_entry`): the same message shape, `opcode` being
  `message.type.value` (1 or 2); a flow that failed before any response gets status 0 and
  `response._error = flow.error.msg`. `export_har` zlib-compresses the file when its name ends in `.zhar`.
  The entry's URL is the flow's, after any reroute (in rt_mode relay, rtproxy's internal relay), and no
  close is kept. With rtproxy loaded, each Realtime entry also has `_rtproxy` (`RTPROXY_KEY`, written by
  rtproxy_mitm.marks.har_entry): `clientUrl` and `clientHeaders`, the upgrade as the client sent it,
  read here in place of the entry's; `upstreamUrl`, what went upstream; `close` (`code`, `reason`, `byClient`, `time`, `endedFirst`), the
  WebSocket's end as a flow file keeps it.
- HTTP Toolkit (`src/model/http/har.ts`, `generateHarHttpEntry`): the same messages plus
  `_webSocketClose: {code?, reason?, timestamp?} | 'aborted'`, see `_close`.
- Firefox (`devtools/client/netmonitor/src/har/har-builder.js`), Safari, Charles and Playwright export the
  upgrade (status 101, `Upgrade: websocket`) and no messages at all: see `har_capture`.

Upgrade requests that were refused (no 101) are kept: their status and body are the evidence. Without a
recorded close (all but HTTP Toolkit) each connection ends with a Closed(recorded=False) at the entry's end
(its start plus its `time`, or its last message). Only WebSockets `is_realtime` names are read, the same
predicate the live tracker and the flow-file reader use. (mitmproxy flow files are read in
rtproxy_mitm.flowfile, next to mitmproxy's own reader.)
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from . import closecodes, frames
from .diagnosis import Connection
from .events import Closed, Event, Frame, FrameError, Handshake, Hop, HopKind, Opened, Upstream
from .session import is_realtime_path

# Why the reader leaves a frame out (the keys of a connection's `frames.dropped` in rtdiagnose --json).
NOT_AN_OBJECT = "not an object"
UNKNOWN_TYPE = "type is not send, receive or error"
DATA_NOT_TEXT = "data is not a string"
NO_TIME = "time is not a number"
NOT_BASE64 = "binary data is not base64"

NO_MESSAGES = "capture holds no WebSocket messages"
SILENT_CANDIDATE = "client-silent, a transport that never saw the socket open"
NO_ANSWER = "no answer (the HAR records status 0 and no error)"
SKIPPED = "{} WebSocket(s) that are not Realtime's (no Realtime path, query or first frame) skipped"
RTPROXY_KEY = "_rtproxy"  # what rtproxy adds to mitmproxy's savehar entries of Realtime flows


def no_realtime(requests: int, websockets: int, what: str = "request") -> str:
    """Why a capture with no Realtime connection has nothing to diagnose (Capture.undiagnosable), saying what
    it does hold: `requests` entries (or flows: `what`), `websockets` of them WebSocket upgrades."""
    if not requests:
        held = f"no {what} at all"
    elif not websockets:
        held = f"{requests} {what}(s), no WebSocket among them"
    else:
        held = f"{websockets} WebSocket(s), none of them Realtime's (no Realtime path, query or first frame)"
    return f"no Realtime connection in it: {held}; record while the app connects to Realtime"


class CaptureError(ValueError):
    """The capture cannot be read; the text says why, in one line."""


@dataclass
class Capture:
    """What a capture file holds: its Realtime connections, who wrote it, and what the user should know
    about what it lacks. `undiagnosable` says why nothing in it can be diagnosed (rtdiagnose exits 2)."""

    connections: list[Connection]
    producer: str = ""
    notes: list[str] = field(default_factory=list)
    undiagnosable: str | None = None


def is_realtime(path: str, websocket: bool, marked: bool = False, first_frame: bytes | None = None) -> bool:
    """Is this a Realtime WebSocket? A WebSocket upgrade whose client says so: to a Realtime path
    (/realtime/v1/websocket, /socket/websocket), with a Realtime client's query (a `vsn` of Phoenix's
    serializers, which realtime-js always sends; an `apikey` on a `…/websocket` path), or whose first
    client frame is a Phoenix message (`first_frame`, where the source has it: a HAR, a flow file); or one
    the Worker marked as Realtime when it rerouted it. A socket at the wrong path is read too, so that
    path-wrong can say so. The one predicate for the live tracker (rtproxy_mitm.flowevents.is_realtime),
    flow files and HAR files, so all three pick the same connections from the same traffic. `path` may be a
    whole URL."""
    if not websocket:
        return False
    if marked:
        return True
    try:
        parts = urlsplit(path)
    except ValueError:
        return False
    if is_realtime_path(parts.path):
        return True
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    if (
        query.get("vsn") in _PHOENIX_VSNS
        or "apikey" in query
        and parts.path.rstrip("/").endswith("/websocket")
    ):
        return True
    return first_frame is not None and is_phoenix_message(first_frame)


_PHOENIX_VSNS = ("1.0.0", "2.0.0")  # the serializers' versions a Phoenix client asks for (Socket.vsn)


def is_phoenix_message(data: bytes) -> bool:
    """Does a client frame decode as a Phoenix message to Realtime (topic `phoenix` or `realtime:…`)?"""
    try:
        msg = frames.decode(data, binary=data[:1] not in (b"{", b"["), from_client=True, lazy=True)
    except frames.DecodeError:
        return False
    return msg.topic == frames.PHOENIX or msg.topic.startswith(frames.TOPIC_PREFIX)


def _first_sent(raw: Any) -> bytes | None:
    """The first message a HAR entry's client sent, as bytes (base64 for a binary one), if any."""
    if not isinstance(raw, list):
        return None
    for m in raw:
        data = m.get("data") if isinstance(m, dict) and m.get("type") == "send" else None
        if isinstance(data, str):
            if m.get("opcode") == 2:
                try:
                    return base64.b64decode(data, validate=True)
                except (binascii.Error, ValueError):
                    return None
            return data.encode("utf-8", "surrogatepass")
    return None


def _time(entry: dict[str, Any]) -> float:
    started = entry.get("startedDateTime")
    if isinstance(started, str):
        try:
            return dt.datetime.fromisoformat(started).timestamp()
        except (ValueError, OverflowError, OSError):
            pass
    return 0.0


def _number(value: Any) -> float | None:
    """A finite JSON number as float; None for anything else (strings, booleans, NaN, ints past float)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        f = float(value)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


def _headers(items: Any) -> list[tuple[str, str]]:
    """HAR headers: [{name, value}], or [name, value] pairs, which mitmproxy's HAR import also accepts
    (`mitmproxy/io/har.py`, `fix_headers`: "Application that uses the [name, value] notation is Slack")."""
    if not isinstance(items, list):
        return []
    out = []
    for h in items:
        if isinstance(h, dict):
            out.append((str(h.get("name", "")), str(h.get("value", ""))))
        elif isinstance(h, list) and len(h) == 2:
            out.append((str(h[0]), str(h[1])))
    return out


def _is_websocket(entry: dict[str, Any]) -> bool:
    if entry.get("_resourceType") == "websocket" or "_webSocketMessages" in entry:
        return True
    req = frames.as_object(entry.get("request"))
    return any(k.lower() == "upgrade" and v.lower() == "websocket" for k, v in _headers(req.get("headers")))


def _body(response: dict[str, Any]) -> bytes:
    content = frames.as_object(response.get("content"))
    text = content.get("text")
    if not isinstance(text, str):
        return b""
    if content.get("encoding") == "base64":
        try:
            return base64.b64decode(text)
        except (binascii.Error, ValueError):
            return b""
    return text.encode("utf-8", "replace")


def _messages(messages: list[Any]) -> list[Event]:
    """`_webSocketMessages` -> Frame events, FrameError for Chrome's error entries, and FrameError(by="reader")
    for what cannot be read. A frame without a usable time is left out, not given a made-up one: a time of 0
    or of the entry's start would invent heartbeat gaps and join latencies; the count says it was there."""
    out: list[Event] = []
    for m in messages:
        if not isinstance(m, dict):
            out.append(FrameError(NOT_AN_OBJECT, by="reader"))
            continue
        kind, data, t = m.get("type"), m.get("data", ""), _number(m.get("time"))
        if kind not in ("send", "receive", "error"):
            out.append(FrameError(UNKNOWN_TYPE, t or 0.0, by="reader"))
        elif not isinstance(data, str):
            out.append(FrameError(DATA_NOT_TEXT, t or 0.0, by="reader"))
        elif t is None:
            out.append(FrameError(NO_TIME, by="reader"))
        elif kind == "error":  # the browser's words, one printable line
            out.append(FrameError("".join(c if c.isprintable() else " " for c in data[:500]), t))
        elif m.get("opcode") == 2:
            try:
                out.append(Frame(kind == "send", True, base64.b64decode(data, validate=False), t))
            except (binascii.Error, ValueError):
                out.append(FrameError(NOT_BASE64, t, by="reader"))
        else:
            out.append(Frame(kind == "send", False, data.encode("utf-8", "surrogatepass"), t))
    return out


def _close(value: Any, start: float, end: float) -> Closed | None:
    """HTTP Toolkit's `_webSocketClose`, written by `generateHarHttpEntry` (httptoolkit-ui
    src/model/http/har.ts):

        _webSocketClose: exchange.closeState && exchange.closeState !== 'aborted'
            ? { code: exchange.closeState.closeCode, reason: exchange.closeState.closeReason,
                timestamp: timingEvents.wsClosedTimestamp ? timingEvents.wsClosedTimestamp / 1000 : undefined }
            : exchange.closeState

    closeState comes from mockttp (src/server/mockttp-server.ts, `trackWebSocketEvents`): on the client
    socket's `close` event, code 1006 ("Not a clean close!") is an abort, so 'aborted'; otherwise the close
    handshake's code, `undefined` for 1005 ("Clean close, but with a close frame with no status"). Neither
    says which side sent the first close frame: by_client is None, except for the codes only a server sends
    and realtime-js's own `close(1000, "heartbeat timeout")` (the reason the heartbeat-timeout rule reads).
    `timestamp` is on mockttp's relative clock (`now()`, not epoch: the messages' times are converted with
    `startTime + (t - startTimestamp)`, the close's is not), so the close time is the entry's end (its
    `time` is `wsClosedTimestamp - startTimestamp`), unless `timestamp` does read as a time within it."""
    if value == "aborted":
        return Closed(None, "", None, end)
    if not isinstance(value, dict):
        return None  # still open when it was exported, or another producer: how it ended is not recorded
    code = _number(value.get("code"))
    code = (
        int(code)
        if code is not None and code == int(code) and closecodes.in_range(int(code))
        else closecodes.NO_CODE
    )
    raw_reason = value.get("reason")
    reason = raw_reason if isinstance(raw_reason, str) else ""
    by_client = False if code in closecodes.SERVER_ONLY else True if reason == "heartbeat timeout" else None
    t = _number(value.get("timestamp"))
    return Closed(code, reason[:200], by_client, t if t is not None and start <= t <= end + 60 else end)


def _rtproxy_close(value: Any) -> Closed | None:
    """`_rtproxy.close`: the Closed event rtproxy_mitm.flowevents.closed_event made of the flow's end."""
    if not isinstance(value, dict):
        return None
    t, code = _number(value.get("time")), _number(value.get("code"))
    if t is None:
        return None
    reason, by_client, first = value.get("reason"), value.get("byClient"), value.get("endedFirst")
    return Closed(
        int(code) if code is not None and code == int(code) and closecodes.in_range(int(code)) else None,
        reason[:200] if isinstance(reason, str) else "",
        by_client if isinstance(by_client, bool) else None,
        t,
        ended_first=first if first in ("client", "server", "hop") else None,
    )


def _error_events(response: dict[str, Any], mitmproxy: bool, t: float) -> list[Event]:
    """An upgrade that got no response (status 0) and its `_error`. mitmproxy writes flow.error.msg there,
    which its flow files carry as the flow's error: the same events as `flowevents.error_events`. Chrome's
    `_error` is the browser's failure (`localizedFailDescription`), not a hop's. Status 0 is the HAR
    format's "no response" (HAR 1.2, response.status): without an `_error` the socket still got no answer,
    and says so."""
    error = response.get("_error")
    if not isinstance(error, str) or not error:
        return [Closed(None, "", None, t, NO_ANSWER)]
    error = error[:500]
    events: list[Event] = [Hop(HopKind.UPSTREAM_UNREACHABLE, error, t)] if mitmproxy else []
    return [*events, Closed(None, "", None, t, error)]


def _producer(log: dict[str, Any]) -> str:
    creator = frames.as_object(log.get("creator"))
    words = [creator.get("name"), creator.get("version")]
    text = " ".join(str(w) for w in words if isinstance(w, (str, int, float)) and str(w).strip())
    return "".join(c for c in text if c.isprintable())[:80]


def har_capture(har: Any) -> Capture:
    """The Realtime connections of a parsed HAR document, and what the file lacks.

    A HAR whose upgraded Realtime sockets carry no messages at all (Firefox, Safari, Charles and Playwright
    export none) can say nothing about them: they are left out and `notes` says so, naming the producer.
    Its refused upgrades (status and body), upgrades that failed (`_error`) and recorded closes are still
    evidence; when there is none of those either, `undiagnosable` says why."""
    if not isinstance(har, dict) or not isinstance(har.get("log"), dict):
        raise CaptureError("not a HAR file (no 'log' object)")
    log = har["log"]
    entries = log.get("entries")
    if not isinstance(entries, list):
        raise CaptureError("HAR has no 'entries' list")
    producer = _producer(log)
    mitmproxy = producer.split(" ")[0] == "mitmproxy"
    out: list[Connection] = []
    silent: list[int] = []  # upgraded connections with no message, which nothing else says anything about
    listed = messages = skipped = websockets = 0
    commented: dict[int, tuple[str, Any]] = {}  # id of a connection: (HAR 1.2 comment, mitmproxy's _marked)
    for entry in entries:
        if not isinstance(entry, dict) or not _is_websocket(entry):
            continue
        websockets += 1
        req, resp = frames.as_object(entry.get("request")), frames.as_object(entry.get("response"))
        ours = frames.as_object(entry.get(RTPROXY_KEY))
        client, upstream = ours.get("clientUrl"), ours.get("upstreamUrl")
        # rtproxy's clientUrl: the entry's own URL is the flow's, which a reroute rewrote.
        url = client if isinstance(client, str) and client else str(req.get("url", ""))
        raw = entry.get("_webSocketMessages")
        if not is_realtime(url, websocket=True, marked=bool(ours), first_frame=_first_sent(raw)):
            skipped += 1
            continue
        t = _time(entry)
        # Chrome writes wss:// URLs; the tracker reads the query the same either way.
        sent = ours.get("clientHeaders")
        events: list[Event] = [
            Opened(url, _headers(sent if isinstance(sent, list) else req.get("headers")), t)
        ]
        if isinstance(upstream, str) and upstream:
            events.append(Upstream(upstream, _headers(req.get("headers")), t))
        status = resp.get("status")
        status = status if isinstance(status, int) and not isinstance(status, bool) else 0
        if status > 0:
            events.append(Handshake(status, _headers(resp.get("headers")), _body(resp), t))
        else:
            events.extend(_error_events(resp, mitmproxy, t))
        listed += isinstance(raw, list)
        msgs = _messages(raw) if isinstance(raw, list) else []
        messages += len(msgs)
        events.extend(msgs)
        end = max([t] + [m.time for m in msgs])
        duration = _number(entry.get("time"))
        if duration is not None and 0 < duration < 1e10:
            end = max(end, t + duration / 1000)
        if status == 101:
            closed = _rtproxy_close(ours.get("close")) or _close(entry.get("_webSocketClose"), t, end)
            events.append(closed or Closed(None, "", None, end, recorded=False))
            if not msgs and closed is None:
                silent.append(len(out))
        out.append((url, events))
        comment, marker = entry.get("comment"), entry.get("_marked")
        if isinstance(comment, str) and comment.strip() or isinstance(marker, str) and marker.strip():
            commented[id(out[-1])] = (comment if isinstance(comment, str) else "", marker)
    capture = Capture(out, producer)
    if skipped:
        capture.notes.append(SKIPPED.format(skipped))
    if silent and messages:
        # Other sockets carry their frames: this producer keeps them, so a 101 socket without any sent none.
        for i in silent:
            url, events = out[i]
            last = events[-1]
            assert isinstance(last, Closed)
            last.frames_kept = True
    if silent and not messages:
        who = f"written by {producer}" if producer else "written by a producer its log.creator does not name"
        if not listed:
            why = f"{NO_MESSAGES} ({who}, which does not export them)"
            hint = "save the HAR from Chrome or Edge DevTools, or record a flow file with mitmdump -w"
        else:
            # The producer keeps messages (its entries have the list) yet none has any: either it was not
            # recording while the sockets ran (DevTools lists a socket's messages only while it is open),
            # or the clients sent nothing, which is client-silent. Both are named; neither is evidence.
            why = (
                f"{NO_MESSAGES} ({who}; its WebSocket entries list none): it may not have been recording "
                f"them, or the client sent none (candidate: {SILENT_CANDIDATE})"
            )
            hint = "keep DevTools open while the socket runs, or record a flow file with mitmdump -w"
        left_out = set(silent)
        out[:] = [c for i, c in enumerate(out) if i not in left_out]
        if not out:
            capture.undiagnosable = f"{why}: nothing in it can be diagnosed; {hint}"
        else:
            capture.notes.append(
                f"{why}: {len(silent)} upgraded connection(s) left out, {len(out)} diagnosed from the "
                f"upgrade alone; {hint}"
            )
    if not out and capture.undiagnosable is None:
        capture.undiagnosable = no_realtime(len(entries), websockets)
    for n, conn in enumerate(out, 1):  # what mitmweb showed on the flow: rtproxy's top finding, or the user's
        if id(conn) in commented:
            capture.notes.append(comment_note(n, *commented[id(conn)]))
    return capture


def comment_note(n: int, comment: str, marker: Any) -> str:
    """The note for a Realtime connection whose flow has a comment or a marker (mitmproxy's; rtproxy writes
    the connection's top finding there live): savehar writes them into the entry (HAR 1.2 `comment`,
    `_marked`) with rtproxy loaded, flow files keep them."""
    said = " ".join(comment.split())[:300]
    mark = f"the marker {marker.strip()[:40]}" if isinstance(marker, str) and marker.strip() else ""
    both = " and ".join(w for w in (f"the comment {said!r}" if said else "", mark) if w)
    return f"Realtime connection {n} of this capture has {both}"


def har_connections(har: Any) -> list[Connection]:
    """(url, events) for each Realtime WebSocket entry of a parsed HAR document."""
    return har_capture(har).connections
