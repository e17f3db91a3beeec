"""Helpers for tests against the local Realtime server over real sockets (its `srv` fixture is in
conftest.py): frame builders in both serializers, and a way to prove that nothing else was queued (a
heartbeat's reply arrives next)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from contextlib import asynccontextmanager

from rtproxy_local.jwt import dev_anon_key
from websockets.asyncio.client import connect

T = 5  # safety-net timeout for awaiting events, never a threshold
KEY = dev_anon_key()
CLI_ANON_KEY = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJpc3MiOiJzdXBhYmFzZS1kZW1vIiwicm9sZSI6ImFub24iLCJleHAiOjE5ODM4MTI5OTZ9"
    ".CRXP1A7WOeoJeXxjNni43kdQwgnWNReilDMblYTn_I0"
)


def ws_url(
    srv, vsn: str | None = "1.0.0", apikey: str | None = KEY, path: str = "/realtime/v1/websocket"
) -> str:
    q = [f"apikey={apikey}"] if apikey is not None else []
    q += [f"vsn={vsn}"] if vsn is not None else []
    return f"ws://127.0.0.1:{srv.port}{path}?{'&'.join(q)}"


@asynccontextmanager
async def sock(srv, vsn: str = "1.0.0", max_size: int | None = 2**20, **kw):
    async with connect(ws_url(srv, vsn, **kw), compression=None, max_size=max_size) as ws:
        yield ws


async def raw_get(srv, target: str, headers: dict[str, str] | None = None, upgrade: bool = True):
    """One HTTP/1.1 GET; returns (status, lower-cased headers, body)."""
    r, w = await asyncio.open_connection("127.0.0.1", srv.port)
    hdrs = {"Host": f"127.0.0.1:{srv.port}"}
    if upgrade:
        hdrs |= {
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        }
    hdrs |= headers or {}
    lines = [f"GET {target} HTTP/1.1"] + [f"{k}: {v}" for k, v in hdrs.items()]
    w.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = (await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), T)).decode()
    lines = head.split("\r\n")
    status = int(lines[0].split()[1])
    h = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
    body = await asyncio.wait_for(r.readexactly(int(h.get("content-length", 0))), T)
    w.close()
    return status, h, body


async def recv(ws):
    data = await asyncio.wait_for(ws.recv(), T)
    return data if isinstance(data, bytes) else json.loads(data)


def v1(topic, event, payload, ref=None, join_ref=None) -> str:
    return json.dumps({"topic": topic, "event": event, "payload": payload, "ref": ref, "join_ref": join_ref})


def v2(topic, event, payload, ref=None, join_ref=None) -> str:
    return json.dumps([join_ref, ref, topic, event, payload])


def enc(vsn, *a, **kw) -> str:
    return v1(*a, **kw) if vsn == "1.0.0" else v2(*a, **kw)


def as_dict(frame, vsn) -> dict:
    """Server frame -> {join_ref?, ref, topic, event, payload} (V1 objects have no join_ref)."""
    if vsn == "1.0.0":
        return frame
    jr, ref, topic, event, payload = frame
    return {"join_ref": jr, "ref": ref, "topic": topic, "event": event, "payload": payload}


async def join(ws, topic="realtime:room", vsn="1.0.0", ref="1", config=None, **extra):
    payload = {
        "config": config
        or {
            "broadcast": {"self": False, "ack": False},
            "presence": {"key": "", "enabled": False},
            "private": False,
        },
        **extra,
    }
    await ws.send(enc(vsn, topic, "phx_join", payload, ref=ref, join_ref=ref))
    return as_dict(await recv(ws), vsn)


async def heartbeat_is_next(ws, vsn="1.0.0", ref="hb"):
    """Prove nothing else was queued for this socket: the next frame is this heartbeat's reply."""
    await ws.send(enc(vsn, "phoenix", "heartbeat", {}, ref=ref))
    got = as_dict(await recv(ws), vsn)
    assert (got["topic"], got["event"], got["ref"]) == ("phoenix", "phx_reply", ref), got
    assert got["payload"] == {"response": {}, "status": "ok"}
