"""Faults of the environment, not of Realtime: the upstream refuses, resets, answers garbage, drops the TCP
connection after 101, stalls in the middle of a frame; the client vanishes mid-handshake or mid-frame; the
Supabase-side server process is killed. For each: a healthy connection running alongside keeps working,
mitmdump keeps running and answers new connections, the case ends in a clear log line or finding, and
nothing hangs (every wait is bounded by TIMEOUT).

The upstream is a `Chaos` server on loopback: it reads the upgrade request and misbehaves as its query
says (`case=...`); `case=healthy` is spliced through to a real WebSocket echo server.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import signal
import socket
import struct
from typing import Self
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import TIMEOUT, command
from rtproxy_core import frames
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def rst(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0) instead of a FIN."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class Chaos:
    def __init__(self, echo_port: int) -> None:
        self.echo_port = echo_port
        self.reached: dict[str, asyncio.Event] = {}  # case -> set when the misbehaviour happened
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    def event(self, case: str) -> asyncio.Event:
        return self.reached.setdefault(case, asyncio.Event())

    @property
    def port(self) -> int:
        assert self.server
        return self.server.sockets[0].getsockname()[1]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        target = head.split(b" ", 2)[1].decode("latin-1")
        case = parse_qs(urlsplit(target).query).get("case", ["healthy"])[0]
        headers = dict(
            line.split(": ", 1) for line in head.decode("latin-1").split("\r\n")[1:] if ": " in line
        )
        key = next((v for k, v in headers.items() if k.lower() == "sec-websocket-key"), "")
        switching = (
            f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n"
        ).encode()
        if case == "healthy":
            await self.splice(head, reader, writer)
            return
        if case == "reset":  # RST during the handshake, before any answer
            rst(writer)
        elif case == "garbage":  # not HTTP at all
            writer.write(os.urandom(64) + b"\r\n\r\n")
            await writer.drain()
            writer.close()
        elif case == "drop-after-101":  # the TCP connection ends right after 101: no close frame (1006)
            writer.write(switching)
            await writer.drain()
            await reader.read(1)  # the client's first frame proves the upgrade went through
            writer.close()
        elif case == "stall":  # 101, then the first 3 bytes of a 256-byte text frame, then nothing
            writer.write(switching + b"\x81\x7e\x01")
            await writer.drain()
            self.event(case).set()
            await reader.read()  # until the proxy gives up on us
            writer.close()
        self.event(case).set()

    async def splice(self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.echo_port)
        up_writer.write(head)

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            except ConnectionError:
                pass
            finally:
                w.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@pytest.fixture
async def echo_port():
    async def echo(ws):
        async for m in ws:
            await ws.send(m)

    async with serve(echo, "127.0.0.1", 0) as srv:
        yield srv.sockets[0].getsockname()[1]


@pytest.fixture
async def chaos(echo_port):
    c = Chaos(echo_port)
    c.server = await asyncio.start_server(c.handle, "127.0.0.1", 0)
    async with c.server:
        yield c
        for w in c.writers:
            w.close()


def ws_url(proxy, case: str) -> str:
    return f"ws://127.0.0.1:{proxy.port}/realtime/v1/websocket?vsn=2.0.0&case={case}"


class Healthy:
    """A Realtime-shaped connection that must keep echoing whatever happens to the others."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.n = 0

    async def __aenter__(self) -> Self:
        self._cm = connect(self.url)
        self.ws = await self._cm.__aenter__()
        await self.check()
        return self

    async def check(self) -> None:
        self.n += 1
        frame = json.dumps(["1", str(self.n), "realtime:healthy", "broadcast", {"n": self.n}])
        await self.ws.send(frame)
        assert await asyncio.wait_for(self.ws.recv(), TIMEOUT) == frame

    async def __aexit__(self, *exc) -> None:
        await self._cm.__aexit__(*exc)


async def still_serving(proxy) -> None:
    """mitmdump runs, and a brand-new connection works end to end."""
    assert proxy.returncode is None, proxy.output
    async with Healthy(ws_url(proxy, "healthy")) as h:
        await h.check()


async def test_upstream_misbehaves_others_unaffected(chaos, mitmdump):
    proxy = await mitmdump(f"rt_supabase_url=http://127.0.0.1:{chaos.port}")
    async with Healthy(ws_url(proxy, "healthy")) as healthy:
        # Reset during the handshake, and garbage instead of HTTP: the client gets mitmproxy's 502.
        for case, finding in (
            ("reset", r"finding upstream-unreachable .*connecting upstream failed: .+"),
            ("garbage", r"finding upstream-unreachable .*connecting upstream failed: .+"),
        ):
            mark = len(proxy.lines)
            with pytest.raises(InvalidStatus) as e:
                async with connect(ws_url(proxy, case), open_timeout=TIMEOUT):
                    pass
            assert e.value.response.status_code == 502, case
            await proxy.wait_for(finding, start=mark)
            await healthy.check()

        # TCP drop right after 101: the client sees 1006; rtproxy says there was no close frame.
        mark = len(proxy.lines)
        async with connect(ws_url(proxy, "drop-after-101"), open_timeout=TIMEOUT) as ws:
            await ws.send(json.dumps(["1", "1", "realtime:drop", "phx_join", {}]))
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), TIMEOUT)
        await proxy.wait_for(r"closed by network: no close frame", start=mark)
        await healthy.check()

        # Stall in the middle of a frame: the client gives up (its close gets no answer from upstream);
        # mitmproxy must not hang on the half frame, and the others go on.
        mark = len(proxy.lines)
        async with connect(ws_url(proxy, "stall"), open_timeout=TIMEOUT, close_timeout=1) as ws:
            await asyncio.wait_for(chaos.event("stall").wait(), TIMEOUT)
            await healthy.check()
        await proxy.wait_for(r"\[rt \w+\] closed by client: 1000", start=mark)
        await healthy.check()
    await still_serving(proxy)
    assert "Addon error" not in proxy.output and "internal error" not in proxy.output, proxy.output


async def raw_upgrade_head(proxy, case: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET /realtime/v1/websocket?vsn=2.0.0&case={case} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


async def test_client_vanishes_mid_handshake_and_mid_frame(chaos, mitmdump):
    proxy = await mitmdump(f"rt_supabase_url=http://127.0.0.1:{chaos.port}")
    async with Healthy(ws_url(proxy, "healthy")) as healthy:
        # Half an upgrade request, then a reset.
        mark = len(proxy.lines)
        head = await raw_upgrade_head(proxy, "healthy")
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(head[: len(head) // 2])
        await writer.drain()
        rst(writer)
        await proxy.wait_for(r"Client closed connection before completing request headers", start=mark)
        await healthy.check()

        # A full upgrade, 101, then half a (masked) frame and a reset.
        mark = len(proxy.lines)
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(await raw_upgrade_head(proxy, "healthy"))
        assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)).startswith(b"HTTP/1.1 101")
        await proxy.wait_for(r"upgraded \(101\)", start=mark)
        # (a zero mask keeps the partial payload valid UTF-8: the frame is cut, not invalid)
        writer.write(b"\x81\xfe\x01\x00" + bytes(4) + b"only part of the 256 bytes")
        await writer.drain()
        rst(writer)
        await proxy.wait_for(r"closed by network: no close frame", start=mark)
        await healthy.check()
    await still_serving(proxy)
    assert "Addon error" not in proxy.output and "internal error" not in proxy.output, proxy.output


async def test_upstream_refuses_connection(echo_port, mitmdump):
    """Nothing listens at rt_supabase_url: 502 and a finding; a non-rerouted connection through the same
    proxy (regular mode) keeps working."""
    with socket.socket() as s:  # a port that was free a moment ago: connection refused
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    proxy = await mitmdump(
        f"rt_supabase_url=http://127.0.0.1:{closed}", "rt_worker_host=worker.test", mode="regular"
    )
    direct = f"ws://127.0.0.1:{echo_port}/realtime/v1/websocket?vsn=2.0.0"
    async with connect(direct, proxy=f"http://127.0.0.1:{proxy.port}") as healthy:
        with pytest.raises((InvalidStatus, InvalidMessage)) as e:
            async with connect(
                "ws://worker.test/realtime/v1/websocket?vsn=2.0.0",
                proxy=f"http://127.0.0.1:{proxy.port}",
                open_timeout=TIMEOUT,
            ):
                pass
        if isinstance(e.value, InvalidStatus):
            assert e.value.response.status_code == 502
        await proxy.wait_for(
            r"finding upstream-unreachable .*connecting upstream failed: .*(refused|Connect)"
        )
        await healthy.send("still here")
        assert await asyncio.wait_for(healthy.recv(), TIMEOUT) == "still here"
    assert proxy.returncode is None
    assert "Addon error" not in proxy.output and "internal error" not in proxy.output, proxy.output


async def start_local_realtime(port: int = 0) -> tuple[asyncio.subprocess.Process, int]:
    proc = await asyncio.create_subprocess_exec(
        command("rtlocal"),
        "--port",
        str(port),
        "--connect-error-backoff-ms",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout
    line = await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)
    url = line.decode().split("listening at ", 1)[1].split()[0]
    return proc, int(url.rsplit(":", 1)[1])


async def test_supabase_side_server_killed(mitmdump, anon_key):
    server, port = await start_local_realtime()
    proxy = await mitmdump(f"rt_supabase_url=http://127.0.0.1:{port}")
    url = f"ws://127.0.0.1:{proxy.port}/realtime/v1/websocket?apikey={anon_key}&vsn=2.0.0"
    try:
        async with connect(url) as ws:
            await ws.send(json.dumps(["1", "1", "realtime:k", "phx_join", {"config": {}}]))
            reply = frames.decode(await asyncio.wait_for(ws.recv(), TIMEOUT), binary=False, from_client=False)
            assert reply.payload["status"] == "ok"
            await proxy.wait_for(r"realtime:k joined in")
            server.send_signal(signal.SIGKILL)
            await asyncio.wait_for(server.wait(), TIMEOUT)
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), TIMEOUT)
        await proxy.wait_for(r"closed by network: no close frame")
        # While it is down: 502 and a finding, not a hang.
        with pytest.raises(InvalidStatus) as e:
            async with connect(url, open_timeout=TIMEOUT):
                pass
        assert e.value.response.status_code == 502
        await proxy.wait_for(r"finding upstream-unreachable")
        # Back on the same port: rtproxy needs no restart.
        server, _ = await start_local_realtime(port)
        async with connect(url) as ws:
            await ws.send(json.dumps(["1", "1", "realtime:k2", "phx_join", {"config": {}}]))
            reply = frames.decode(await asyncio.wait_for(ws.recv(), TIMEOUT), binary=False, from_client=False)
            assert reply.payload["status"] == "ok"
        await proxy.wait_for(r"realtime:k2 joined in")
    finally:
        if server.returncode is None:
            server.terminate()
            await asyncio.wait_for(server.wait(), TIMEOUT)
    assert proxy.returncode is None
    assert "Addon error" not in proxy.output and "internal error" not in proxy.output, proxy.output
