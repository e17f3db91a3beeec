"""Write a HAR the way Chrome DevTools exports one ("Save all as HAR with content"), from mitmproxy flows.

DevTools records a WebSocket as one entry: the upgrade request with a wss:// (or ws://) URL as the page
opened it, the 101 response, `_resourceType: "websocket"` and `_webSocketMessages`, each
{type: "send"|"receive", time: <epoch seconds>, opcode: 1|2, data: <text, or base64 for binary>}.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

from mitmproxy import http, io


def _headers(h) -> list[dict]:
    return [{"name": k, "value": v} for k, v in h.items(multi=True)]


def entry(flow: http.HTTPFlow) -> dict:
    url = flow.metadata.get("rtproxy.original_url", flow.request.pretty_url)
    url = url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
    started = dt.datetime.fromtimestamp(flow.request.timestamp_start, dt.UTC)
    resp = flow.response
    out = {
        "_initiator": {"type": "script"},
        "_priority": "High",
        "_resourceType": "websocket",
        "cache": {},
        "connection": "0",
        "request": {
            "method": "GET",
            "url": url,
            "httpVersion": "HTTP/1.1",
            "headers": _headers(flow.request.headers),
            "queryString": [{"name": k, "value": v} for k, v in flow.request.query.items(multi=True)],
            "cookies": [],
            "headersSize": -1,
            "bodySize": 0,
        },
        "response": {
            "status": resp.status_code if resp else 0,
            "statusText": resp.reason if resp else "",
            "httpVersion": "HTTP/1.1",
            "headers": _headers(resp.headers) if resp else [],
            "cookies": [],
            "content": {
                "size": len(resp.raw_content or b"") if resp else 0,
                "mimeType": "x-unknown",
                **({"text": resp.get_text(strict=False)} if resp and resp.raw_content else {}),
            },
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": -1,
            "_transferSize": 0,
            "_error": None,
        },
        "serverIPAddress": "127.0.0.1",
        "startedDateTime": started.isoformat().replace("+00:00", "Z"),
        "time": 0,
        "timings": {"blocked": -1, "dns": -1, "ssl": -1, "connect": -1, "send": 0, "wait": 0, "receive": 0},
    }
    if flow.websocket is not None:
        out["_webSocketMessages"] = [
            {
                "type": "send" if m.from_client else "receive",
                "time": m.timestamp,
                "opcode": 1 if m.is_text else 2,
                "data": m.content.decode("utf-8") if m.is_text else base64.b64encode(m.content).decode(),
            }
            for m in flow.websocket.messages
            if not (m.dropped and not m.from_client)  # the page never got it
        ]
    return out


def write_chrome_har(flowfile: Path, out: Path) -> None:
    with open(flowfile, "rb") as f:
        flows = [fl for fl in io.FlowReader(f).stream() if isinstance(fl, http.HTTPFlow)]
    har = {
        "log": {
            "version": "1.2",
            "creator": {"name": "WebInspector", "version": "537.36"},
            "pages": [],
            "entries": [entry(fl) for fl in flows],
        }
    }
    out.write_text(json.dumps(har, indent=2))
