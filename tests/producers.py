"""HAR files as each producer writes them, built by us from the producer's exporter source (never copied):

- Chrome/Edge DevTools: front_end/models/har/Log.ts, `Entry.build` (`_resourceType`, `_webSocketMessages`
  of {type: send|receive|error, time, opcode, data}; an error is `addProtocolFrameError`'s opcode -1);
- HTTP Toolkit: httptoolkit-ui src/model/http/har.ts, `generateHarHttpEntry` (the same messages, and
  `_webSocketClose: {code, reason, timestamp} | 'aborted'`, timestamp on mockttp's relative clock);
- Firefox: devtools/client/netmonitor/src/har/har-builder.js (`buildEntry`: the upgrade, no messages);
  Safari, Charles and Playwright: the plain HAR 1.2 entry, no messages either, each with its log.creator;
- mitmproxy: its own writer, `mitmproxy.addons.savehar.SaveHar` (in .venv), over flows built here.

A connection is a `Conn`: times are seconds after its start; frames are (t, "send"|"receive"|"error", data),
data being text, or bytes for a binary frame.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from mitmproxy import http, websocket
from mitmproxy.addons.savehar import SaveHar
from mitmproxy.test import tflow
from wsproto.frame_protocol import Opcode

T0 = 1.8e9
REALTIME_URL = "wss://abcdefghijklmnopqrst.supabase.co/realtime/v1/websocket?apikey=k&vsn=1.0.0"
VITE_URL = "ws://localhost:5173/?token=abc"  # a dev server's hot reload socket: not Realtime


def push(topic: str, event: str, payload: dict, ref: str | None, join_ref: str | None = None) -> str:
    return json.dumps({"topic": topic, "event": event, "payload": payload, "ref": ref, "join_ref": join_ref})


def reply(topic: str, ref: str, status: str = "ok", response: dict | None = None) -> str:
    return push(topic, "phx_reply", {"status": status, "response": response or {}}, ref, "1")


def joined(topic: str = "realtime:room") -> list[tuple[float, str, str | bytes]]:
    """A join answered ok, and a heartbeat answered."""
    return [
        (0.1, "send", push(topic, "phx_join", {"config": {}}, "1", "1")),
        (0.2, "receive", reply(topic, "1", response={"postgres_changes": []})),
        (25.1, "send", push("phoenix", "heartbeat", {}, "2")),
        (25.2, "receive", reply("phoenix", "2")),
    ]


@dataclass
class Conn:
    url: str = REALTIME_URL
    frames: list[tuple[float, str, Any]] = field(default_factory=joined)
    status: int = 101
    body: str = ""
    start: float = T0
    end: float = 30.0
    close: Any = None  # HTTP Toolkit's _webSocketClose: {"code", "reason"} or "aborted"; None: not written


def _iso(t: float, tz: dt.tzinfo = dt.UTC) -> str:
    return dt.datetime.fromtimestamp(t, tz).isoformat(timespec="milliseconds")


def _headers(pairs: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in pairs]


REQUEST_HEADERS = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Version", "13")]


def _request(c: Conn) -> dict[str, Any]:
    return {
        "method": "GET",
        "url": c.url,
        "httpVersion": "HTTP/1.1",
        "headers": _headers(REQUEST_HEADERS),
        "queryString": [],
        "cookies": [],
        "headersSize": -1,
        "bodySize": 0,
    }


def _response(c: Conn) -> dict[str, Any]:
    content: dict[str, Any] = {"size": len(c.body), "mimeType": "application/json" if c.body else "x-unknown"}
    if c.body:
        content["text"] = c.body
    return {
        "status": c.status,
        "statusText": "Switching Protocols" if c.status == 101 else "",
        "httpVersion": "HTTP/1.1",
        "headers": _headers(
            [("Upgrade", "websocket")] if c.status == 101 else [("Content-Type", "application/json")]
        ),
        "cookies": [],
        "content": content,
        "redirectURL": "",
        "headersSize": -1,
        "bodySize": len(c.body),
    }


def _message(c: Conn, t: float, kind: str, data: Any) -> dict[str, Any]:
    if kind == "error":  # NetworkRequest.addProtocolFrameError
        return {"type": "error", "time": c.start + t, "opcode": -1, "data": data}
    binary = isinstance(data, bytes)
    return {
        "type": kind,
        "time": c.start + t,
        "opcode": 2 if binary else 1,
        "data": base64.b64encode(data).decode() if binary else data,
    }


def _log(creator: dict[str, str], entries: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"log": {"version": "1.2", "creator": creator, **extra, "pages": [], "entries": entries}}


def chrome(conns: list[Conn]) -> dict[str, Any]:
    """Chrome DevTools' "Save all as HAR with content" (Log.ts, Entry.build)."""
    entries = []
    for c in conns:
        entries.append(
            {
                "_initiator": {"type": "script"},
                "_priority": "High",
                "_resourceType": "websocket",
                "_webSocketMessages": [_message(c, *f) for f in c.frames] if c.status == 101 else [],
                "cache": {},
                "connection": "1234",
                "request": _request(c),
                "response": _response(c) | {"_transferSize": 0, "_error": None},
                "serverIPAddress": "104.18.1.1",
                "startedDateTime": _iso(c.start).replace("+00:00", "Z"),
                "time": 0,  # the handshake's timings only: the socket's life is not in it
                "timings": {
                    "blocked": -1,
                    "dns": -1,
                    "ssl": -1,
                    "connect": -1,
                    "send": 0,
                    "wait": 0,
                    "receive": 0,
                },
            }
        )
    return _log({"name": "WebInspector", "version": "537.36"}, entries)


def httptoolkit(conns: list[Conn]) -> dict[str, Any]:
    """HTTP Toolkit's HAR export (har.ts, generateHarHttpEntry): messages typed from the client's side,
    `time` the whole exchange (wsClosedTimestamp - startTimestamp, ms), `_webSocketClose`'s timestamp
    wsClosedTimestamp / 1000 on mockttp's relative clock."""
    clock = 5000.0  # mockttp's now() when the exchange started, in seconds: not epoch
    entries = []
    for c in conns:
        entry: dict[str, Any] = {
            "pageref": "Chrome",
            "startedDateTime": _iso(c.start, dt.timezone(dt.timedelta(hours=2))),
            "time": c.end * 1000,
            "request": _request(c),
            "response": _response(c),
            "cache": {},
            "timings": {
                "blocked": -1,
                "dns": -1,
                "connect": -1,
                "ssl": -1,
                "send": 0,
                "wait": 0,
                "receive": 0,
            },
            "_resourceType": "websocket",
            "_webSocketMessages": [_message(c, *f) for f in c.frames if f[1] != "error"],
        }
        if isinstance(c.close, dict):
            entry["_webSocketClose"] = {**c.close, "timestamp": clock + c.end}
        elif c.close is not None:
            entry["_webSocketClose"] = c.close
        entries.append(entry)
    return _log({"name": "HTTP Toolkit", "version": "1.19.0"}, entries, _tlsErrors=[])


# The producers that export WebSocket upgrades with no messages: log.creator as each writes it.
NO_MESSAGES = {
    "Firefox": {"name": "Firefox", "version": "128.0"},  # har-builder.js: appInfo.name / appInfo.version
    "Safari": {"name": "WebKit Web Inspector", "version": "18.2"},
    "Charles": {"name": "Charles Proxy", "version": "4.6.7"},
    "Playwright": {"name": "Playwright", "version": "1.49.1"},
}


def without_messages(producer: str, conns: list[Conn]) -> dict[str, Any]:
    """A HAR 1.2 entry per upgrade (har-builder.js `buildEntry` for Firefox): no `_resourceType`, no
    messages; the upgrade is known by its Upgrade header and its 101."""
    entries = []
    for c in conns:
        entries.append(
            {
                "pageref": "page_1",
                "startedDateTime": _iso(c.start, dt.timezone(dt.timedelta(hours=1))),
                "time": 85,
                "request": _request(c),
                "response": _response(c),
                "cache": {},
                "timings": {
                    "blocked": 0,
                    "dns": 0,
                    "connect": 20,
                    "ssl": 30,
                    "send": 0,
                    "wait": 35,
                    "receive": 0,
                },
                "serverIPAddress": "104.18.1.1",
                "connection": "443",
            }
        )
    creator = NO_MESSAGES[producer]
    extra = {"browser": creator} if producer == "Firefox" else {}
    return _log(creator, entries, **extra)


def flows(conns: list[Conn], closed: bool = True) -> list[http.HTTPFlow]:
    """The connections as mitmproxy flows (what mitmdump -w keeps), closed by the client with 1000."""
    out = []
    for c in conns:
        url = c.url.replace("wss://", "https://", 1).replace("ws://", "http://", 1)
        f = tflow.tflow()
        f.request = http.Request.make("GET", url, headers=dict(REQUEST_HEADERS))
        f.request.timestamp_start = f.request.timestamp_end = c.start
        f.response = http.Response.make(c.status, c.body.encode(), [(b"Upgrade", b"websocket")])
        f.response.timestamp_start = f.response.timestamp_end = c.start + 0.01
        if c.status == 101:
            ws = websocket.WebSocketData()
            for t, kind, data in c.frames:
                if kind == "error":
                    continue  # a browser's; mitmproxy has no such message
                binary = isinstance(data, bytes)
                ws.messages.append(
                    websocket.WebSocketMessage(
                        Opcode.BINARY if binary else Opcode.TEXT,
                        kind == "send",
                        data if binary else data.encode(),
                        c.start + t,
                    )
                )
            if closed:
                ws.timestamp_end, ws.close_code, ws.close_reason, ws.closed_by_client = (
                    c.start + c.end,
                    1000,
                    "",
                    True,
                )
            f.websocket = ws
        out.append(f)
    return out


def mitmproxy_har(fl: list[http.HTTPFlow]) -> dict[str, Any]:
    """What `mitmdump --set hardump=x.har` writes for these flows: mitmproxy's own SaveHar."""
    return SaveHar().make_har(fl)
