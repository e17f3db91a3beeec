"""No open relay: rtproxy reroutes only upgrades aimed at the configured worker host(s) (in reverse mode:
every upgrade arriving at the listener), and only ever to the configured Supabase URL. Nothing the client
controls (Host header, absolute-form URL, userinfo, path, percent-encoding, query, forwarding headers,
CRLF tricks) makes it connect anywhere else.

Two loopback servers: `good` is rt_supabase_url (a WebSocket server recording each upgrade it gets);
`evil` records every TCP connection it accepts. Requests are written raw over asyncio sockets, so nothing
sanitises them on the way. After each batch: evil saw no connection at all, good saw exactly the upgrades
that were meant for it, and rtproxy never logged an upstream other than good.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re

import pytest
from conftest import TIMEOUT
from websockets.asyncio.server import serve


class Evil:
    """Accepts and records every connection (and what arrives on it)."""

    def __init__(self) -> None:
        self.connections: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections.append(b"")
        try:
            self.connections[-1] = await asyncio.wait_for(reader.read(4096), 1)
        except TimeoutError:
            pass
        writer.close()

    @property
    def port(self) -> int:
        assert self.server
        return self.server.sockets[0].getsockname()[1]


@pytest.fixture
async def evil():
    e = Evil()
    e.server = await asyncio.start_server(e._handle, "127.0.0.1", 0)
    async with e.server:
        yield e


@pytest.fixture
async def good():
    """rt_supabase_url: records (path, Host) of each upgrade, then closes it normally."""
    seen: list[tuple[str, str]] = []

    def record(connection, request):
        seen.append((request.path, request.headers.get("Host", "")))

    async def handler(ws):
        await ws.close()

    async with serve(handler, "127.0.0.1", 0, process_request=record) as srv:
        yield srv.sockets[0].getsockname()[1], seen


def upgrade_head(target: str, host: str, *extra: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {target} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def raw(port: int, data: bytes, tunnel: bytes | None = None) -> str:
    """Send raw bytes to the proxy; return the status line of the answer ('' if the connection closed
    without one). `tunnel`: a CONNECT request sent first (its 200 is read and skipped)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        if tunnel:
            writer.write(tunnel)
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
            assert head.startswith(b"HTTP/1.1 200"), head
        writer.write(data)
        await writer.drain()
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        except asyncio.IncompleteReadError as e:
            head = e.partial
        return head.split(b"\r\n", 1)[0].decode("latin-1")
    finally:
        writer.close()


def check_log(proxy, good_port: int) -> None:
    """Every upstream rtproxy logged (fixed: the rerouted URL; relay: its upstream leg) is good's."""
    upstreams = re.findall(r"\] upstream (\S+)", proxy.output)
    assert upstreams, proxy.output
    bad = [u for u in upstreams if not re.match(rf"(https?|wss?)://127\.0\.0\.1:{good_port}/", u)]
    assert not bad, bad


GOOD, REFUSED, EITHER = "reaches good", "refused", "reaches good or refused"


def reverse_cases(e: int) -> list[tuple[str, bytes, str]]:
    """(name, raw request, expected outcome in fixed mode) for reverse mode. `refused`: mitmproxy (or good)
    answers an error; nothing is rerouted anywhere else."""
    ev = f"127.0.0.1:{e}"
    path = "/realtime/v1/websocket?vsn=1.0.0&apikey=k"
    return [
        ("spoofed Host", upgrade_head(f"{path}&case=host", ev), GOOD),
        ("absolute-form URL to evil", upgrade_head(f"http://{ev}{path}&case=absolute", ev), GOOD),
        (
            "absolute-form with userinfo",
            upgrade_head(f"http://worker.invalid@{ev}{path}&case=userinfo", ev),
            REFUSED,
        ),
        ("path that looks like an authority", upgrade_head(f"//{ev}{path}&case=slashes", "x"), GOOD),
        ("dot segments", upgrade_head(f"/realtime/v1/../../../{ev}/websocket?case=dots", ev), GOOD),
        (
            "percent-encoded authority",
            upgrade_head(f"/%2F%2F{ev.replace(':', '%3A')}/realtime/v1/websocket?case=percent", ev),
            GOOD,
        ),
        (
            "percent-encoded dots",
            upgrade_head(f"/realtime/v1/%2e%2e/%2e%2e/{ev}/websocket?case=pdots", ev),
            GOOD,
        ),
        ("backslashes", upgrade_head(f"/\\\\{ev}\\realtime/v1/websocket?case=backslash", ev), GOOD),
        ("@ in the path", upgrade_head(f"/@{ev}/realtime/v1/websocket?case=at", ev), GOOD),
        (
            "host in the query",
            upgrade_head(f"{path}&case=query&host={ev}&url=ws://{ev}/&redirect=http%3A%2F%2F{ev}&@{ev}", ev),
            GOOD,
        ),
        (
            "forwarding headers",
            upgrade_head(
                f"{path}&case=forwarded",
                "worker.invalid",
                f"X-Forwarded-Host: {ev}",
                f"Forwarded: host={ev};proto=http",
                f"X-Original-URL: http://{ev}/",
                f"X-Rewrite-URL: http://{ev}/",
            ),
            GOOD,
        ),
        ("two Host headers", upgrade_head(f"{path}&case=twohosts", "worker.invalid", f"Host: {ev}"), GOOD),
        ("non-UTF-8 bytes in the target", upgrade_head(f"{path}&case=latin1&x=\xff\xfe", ev), GOOD),
        ("NUL in the target", upgrade_head("/realtime/v1/web\x00socket?case=nul", ev), GOOD),
        # Malformed on purpose: whatever mitmproxy makes of them, they may reach good or be refused.
        (
            "bare LF splitting a header",
            upgrade_head(f"{path}&case=lf", "worker.invalid", f"X-A: 1\nHost: {ev}"),
            EITHER,
        ),
        (
            "bare CR splitting a header",
            upgrade_head(f"{path}&case=cr", "worker.invalid", f"X-A: 1\rHost: {ev}"),
            EITHER,
        ),
        (
            "header folding",
            upgrade_head(f"{path}&case=fold", "worker.invalid", "X-A: 1", f" Host: {ev}"),
            EITHER,
        ),
        (
            "CRLF in the request target",
            upgrade_head(f"{path}&case=target\r\nHost: {ev}", "worker.invalid"),
            REFUSED,
        ),
        # A second request smuggled after the upgrade (a body on a GET, chunked and Content-Length).
        (
            "smuggled request",
            upgrade_head(
                f"{path}&case=smuggle", "worker.invalid", "Transfer-Encoding: chunked", "Content-Length: 4"
            )[:-2]
            + f"\r\n0\r\n\r\nGET http://{ev}/ HTTP/1.1\r\nHost: {ev}\r\n\r\n".encode(),
            REFUSED,
        ),
    ]


def case_of(path: str) -> str | None:
    m = re.search(r"case=(\w+)", path)
    return m[1] if m else None


@pytest.mark.parametrize("rt_mode", ["fixed", "relay"])
async def test_reverse_mode_only_ever_reaches_the_supabase_url(rt_mode, good, evil, mitmdump):
    good_port, seen = good
    proxy = await mitmdump(f"rt_supabase_url=http://127.0.0.1:{good_port}", f"rt_mode={rt_mode}")
    cases = reverse_cases(evil.port)
    statuses = {name: await raw(proxy.port, data) for name, data, _ in cases}

    assert evil.connections == [], f"rtproxy connected to the evil server: {evil.connections}\n{statuses}"
    assert all(hosts == f"127.0.0.1:{good_port}" for _, hosts in seen), seen  # one Host, good's
    reached = {case_of(p) for p, _ in seen}
    if rt_mode == "fixed":  # the hop's answer is good's: 101 exactly for what reached good
        for name, data, expected in cases:
            upgraded = statuses[name].startswith("HTTP/1.1 101")
            assert upgraded == (case_of(data.decode("latin-1")) in reached), (name, statuses[name], seen)
            if expected != EITHER:
                assert upgraded == (expected == GOOD), (name, expected, statuses[name], proxy.output)
    else:  # the relay answers 101 itself; its own upstream leg goes to good (path rule: /realtime...)
        assert seen and all(p.startswith("/realtime") for p, _ in seen), seen
    check_log(proxy, good_port)
    assert "internal error" not in proxy.output and "Addon error" not in proxy.output, proxy.output


async def test_regular_mode_reroutes_only_the_worker_host(good, evil, mitmdump):
    """mode=regular, rt_worker_host=worker.test: upgrades to worker.test go to good whatever the Host header,
    query or userinfo say; an upgrade to another host is not rerouted (it goes where the client asked, which
    here does not resolve); nothing reaches evil."""
    good_port, seen = good
    ev = f"127.0.0.1:{evil.port}"
    proxy = await mitmdump(
        f"rt_supabase_url=http://127.0.0.1:{good_port}", "rt_worker_host=worker.test", mode="regular"
    )
    path = "/realtime/v1/websocket?vsn=1.0.0&apikey=k"
    rerouted = {
        "absolute-form, spoofed Host": upgrade_head(f"http://worker.test{path}&case=r1", ev),
        "absolute-form, host in the query": upgrade_head(
            f"http://worker.test{path}&case=r2&host={ev}&@{ev}", ev
        ),
        "absolute-form, case and trailing dot": upgrade_head(f"http://WORKER.test{path}&case=r3", "x"),
        "forwarding headers": upgrade_head(
            f"http://worker.test{path}&case=r4",
            "worker.test",
            f"X-Forwarded-Host: {ev}",
            f"Forwarded: host={ev}",
        ),
    }
    not_rerouted = {
        "another host, Host says worker.test": upgrade_head(
            f"http://other.invalid{path}&case=n1", "worker.test"
        ),
        "userinfo worker.test@other": upgrade_head(
            f"http://worker.test@other.invalid{path}&case=n2", "worker.test"
        ),
        "worker.test as a subdomain": upgrade_head(
            f"http://worker.test.other.invalid{path}&case=n3", "worker.test"
        ),
        "worker.test in the path": upgrade_head(
            f"http://other.invalid/worker.test{path}&case=n4", "worker.test"
        ),
    }
    statuses = {name: await raw(proxy.port, data) for name, data in {**rerouted, **not_rerouted}.items()}
    # Inside a CONNECT tunnel to worker.test:80, a request whose Host names evil: still worker.test's.
    statuses["CONNECT tunnel, spoofed Host"] = await raw(
        proxy.port,
        upgrade_head(f"{path}&case=r5", ev),
        tunnel=b"CONNECT worker.test:80 HTTP/1.1\r\nHost: worker.test:80\r\n\r\n",
    )

    assert evil.connections == [], f"rtproxy connected to the evil server: {evil.connections}\n{statuses}"
    for name in [*rerouted, "CONNECT tunnel, spoofed Host"]:
        assert statuses[name].startswith("HTTP/1.1 101"), (name, statuses[name], proxy.output)
    for name in not_rerouted:
        assert not statuses[name].startswith("HTTP/1.1 101"), (name, statuses[name])
    got = sorted(m[1] for p, _ in seen if (m := re.search(r"case=(\w+)", p)))
    assert got == ["r1", "r2", "r3", "r4", "r5"], seen  # exactly the worker.test upgrades, none of the others
    check_log(proxy, good_port)
