"""The corpus of real bug reports (tests/corpus/cases.json) as captures: a Chrome-format HAR, and mitmproxy
flows (for a flow file, and to replay through the live tracker).

Each case keeps the thread's URL, the string the user pasted (verbatim), the cause in the thread's words,
the code that must come first, and the connections rebuilt around the string as that era's client sent
them: {url, start, status, response_headers, response_body, frames: [{t, dir, text|hex}], end, close?}.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path
from typing import Any

from mitmproxy import flow, http, io, websocket
from mitmproxy.test import tflow
from wsproto.frame_protocol import Opcode

CORPUS = Path(__file__).parent / "corpus"
CASES_PATH = CORPUS / "cases.json"  # batch 0; batch N is batch-NN.json, added in that order
CASES: list[dict[str, Any]] = [
    case
    for path in [CASES_PATH, *sorted(CORPUS.glob("batch-*.json"))]
    for case in json.loads(path.read_text())
]


def _frame_bytes(fr: dict[str, Any]) -> tuple[bool, bytes]:
    if "hex" in fr:
        return False, bytes.fromhex(fr["hex"])
    return True, fr["text"].encode("utf-8")


def har(case: dict[str, Any]) -> dict[str, Any]:
    """What Chrome's "Save all as HAR with content" writes: no close frames, times in epoch seconds."""
    entries = []
    for c in case["connections"]:
        started = dt.datetime.fromtimestamp(c["start"], dt.UTC)
        messages = []
        for fr in c["frames"]:
            text, data = _frame_bytes(fr)
            messages.append(
                {
                    "type": "send" if fr["dir"] == "send" else "receive",
                    "time": c["start"] + fr["t"],
                    "opcode": 1 if text else 2,
                    "data": data.decode("utf-8") if text else base64.b64encode(data).decode(),
                }
            )
        entries.append(
            {
                "_resourceType": "websocket",
                "request": {
                    "method": "GET",
                    "url": c["url"],
                    "httpVersion": "HTTP/1.1",
                    "headers": [{"name": "Upgrade", "value": "websocket"}],
                },
                "response": {
                    "status": c["status"],
                    "statusText": "",
                    "headers": [{"name": k, "value": v} for k, v in c.get("response_headers") or []],
                    "content": {
                        "size": len(c.get("response_body") or ""),
                        "mimeType": "x-unknown",
                        **({"text": c["response_body"]} if c.get("response_body") else {}),
                    },
                    # A socket that got no answer: status 0 and the browser's net error (Chrome's
                    # localizedFailDescription, e.g. net::ERR_CONNECTION_REFUSED).
                    **({"_error": c["error"]} if c.get("error") else {}),
                },
                "startedDateTime": started.isoformat().replace("+00:00", "Z"),
                "time": (c["end"] * 1000) if c["status"] == 101 else 0,
                "_webSocketMessages": messages if c["status"] == 101 else [],
            }
        )
    return {
        "log": {
            "version": "1.2",
            "creator": {"name": "WebInspector", "version": "537.36"},
            "entries": entries,
        }
    }


def flows(case: dict[str, Any]) -> list[http.HTTPFlow]:
    """The connections as mitmproxy flows, ended as the case says (a connection without `close` was still
    open when the capture ended)."""
    out = []
    for c in case["connections"]:
        url = c["url"].replace("wss://", "https://", 1).replace("ws://", "http://", 1)
        f = tflow.tflow()
        f.request = http.Request.make("GET", url, headers={"Upgrade": "websocket", "Connection": "Upgrade"})
        f.request.timestamp_start = f.request.timestamp_end = c["start"]
        body = (c.get("response_body") or "").encode()
        headers = [(k.encode(), v.encode()) for k, v in c.get("response_headers") or []]
        if c["status"] == 0:  # no answer: the proxy's own error for the flow
            f.response, f.error = None, flow.Error(c.get("error") or "", c["start"] + c.get("end", 0.01))
            out.append(f)
            continue
        f.response = http.Response.make(c["status"], body, headers)
        f.response.timestamp_start = f.response.timestamp_end = c["start"] + 0.01
        if c["status"] == 101:
            ws = websocket.WebSocketData()
            for fr in c["frames"]:
                text, data = _frame_bytes(fr)
                ws.messages.append(
                    websocket.WebSocketMessage(
                        Opcode.TEXT if text else Opcode.BINARY,
                        fr["dir"] == "send",
                        data,
                        c["start"] + fr["t"],
                    )
                )
            close = c.get("close")
            if close is not None:
                ws.timestamp_end = c["start"] + c["end"]
                ws.close_code = close["code"]
                ws.close_reason = close.get("reason", "")
                ws.closed_by_client = close.get("by") == "client"
            f.websocket = ws
        out.append(f)
    return out


def write_flows(case: dict[str, Any], path: Path) -> None:
    with open(path, "wb") as fh:
        w = io.FlowWriter(fh)
        for f in flows(case):
            w.add(f)


def write_capture(case: dict[str, Any], tmp: Path) -> Path:
    """The case as the capture its thread's user could have attached (HAR or flow file), in `tmp`."""
    if case["capture"] == "har":
        path = tmp / f"{case['id']}.har"
        path.write_text(json.dumps(har(case)))
    else:
        path = tmp / f"{case['id']}.flows"
        write_flows(case, path)
    return path
