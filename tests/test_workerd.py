"""The Workers of worker/ in Cloudflare's real runtime: workerd (npm `workerd`, pinned in
worker/package.json), run by the `rtworker` command in front of the local Realtime server, with real
clients: the `realtime` Python client, rtprobe, websockets.

- fixed (worker/src/index.js): the realtime client subscribes and its broadcast comes back; a refused
  upgrade reaches the client as the upstream's own 401 and JSON body; path, query and headers reach the
  upstream (and what workerd itself changes is named); rtprobe passes every check; a bad SUPABASE_URL
  gets a 500 that says why; other requests go to SITE_URL.
- as-written (worker/fixtures/as-written.js): 426 "Expected WebSocket", as rt_mode=as-written says.
- relay (worker/fixtures/relay.js): rtprobe fails what rt_mode=relay predicts (tests/test_rtprobe.py
  test_relay_mode_fails_what_the_design_predicts); behind an upstream that puts the dropped apikey back,
  the defects hidden behind (a) show one by one, and the realtime client's first join is lost when it
  is sent before the upstream leg opens; binary frames and closes without a code, at both dates.
  Where workerd differs from rt_mode=relay, the test's docstring says so.
- rtworker itself: one-line errors, --port 0, SIGINT/SIGTERM stop workerd and remove its config.

Where the runtime's behaviour depends on the compatibility date, both sides of the flag are run: NEW is
worker/wrangler.toml's date, OLD (2025-01-01) comes before websocket_standard_binary_type (2026-03-17:
binary messages arrive as Blob) and web_socket_auto_reply_to_close (2026-04-07).

Prerequisite: `npm ci` in worker/ (scripts/test.sh runs it). Without workerd these tests are skipped,
except under CI (CI=true), where they fail.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
from pathlib import Path
from typing import Self
from urllib.parse import urlsplit

import pytest
from conftest import IN_CI, TIMEOUT, OutputProcess, command, run_to_exit
from realtime import AsyncRealtimeClient
from rtproxy_core import closecodes
from rtproxy_tools import worker as rtworker_module
from rtproxy_tools.worker import WORKERS, Workerd, WorkerError, default_compat_date, find_workerd
from stubs import Upstream
from test_rtprobe import ALL_PASS, CODES, assert_relay_probe, details, failed_codes, probe_json
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus

try:
    find_workerd()
    MISSING = ""
except WorkerError as e:
    MISSING = str(e)
if MISSING and not IN_CI:
    pytest.skip(f"the workerd tests need workerd ({MISSING})", allow_module_level=True)


@pytest.fixture(autouse=True)
def _prerequisites():
    if MISSING:  # only reached under CI: a missing workerd fails every test here, loudly
        pytest.fail(f"CI is set but workerd cannot run: {MISSING}", pytrace=False)


RTWORKER = command("rtworker")
NEW = default_compat_date()  # worker/wrangler.toml's
OLD = "2025-01-01"
DROPPED = "[WS Proxy] ⚠️ Server not ready, dropping message"
UPSTREAM_OPEN = "[WS Proxy] ✅ Upstream open"


class RtWorker(OutputProcess):
    """`rtworker ... --port 0` as a subprocess; `lines` is its output (stdout and stderr) so far."""

    def __init__(self, *args: str) -> None:
        super().__init__([RTWORKER, *args])

    async def start(self) -> RtWorker:
        await self._spawn(dict(os.environ, PYTHONUNBUFFERED="1"))
        m = await self.wait_for(r"listening at http://127\.0\.0\.1:(\d+)$")
        self.port = int(m.group(1))
        return self

    async def wait_for(self, pattern: str, count: int = 1):
        """The `count`-th output line containing `pattern` (a regex if it starts with no '[')."""
        rx = re.compile(re.escape(pattern) if pattern.startswith("[") else pattern)

        async def scan():
            async with self._changed:
                while True:
                    found = [m for line in self.lines if (m := rx.search(line))]
                    if len(found) >= count:
                        return found[count - 1]
                    if self.returncode is not None:
                        raise AssertionError(f"rtworker exited ({self.returncode}) without {pattern!r}")
                    await self._changed.wait()

        try:
            return await asyncio.wait_for(scan(), TIMEOUT)
        except TimeoutError:
            raise AssertionError(f"no line matching {pattern!r} in:\n{self.output}") from None

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def workerd_pid(self) -> int:
        """rtworker's one child process (Linux /proc)."""
        assert self.proc
        kids = [
            int(pid)
            for task in Path(f"/proc/{self.proc.pid}/task").iterdir()
            for pid in (task / "children").read_text().split()
        ]
        assert len(kids) == 1, kids
        return kids[0]

    async def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc
        if self.returncode is None:
            self.proc.send_signal(sig)
            await asyncio.wait_for(self._reader, TIMEOUT)
        assert self.returncode is not None
        return self.returncode


@pytest.fixture
async def rtworker():
    """Factory: `await rtworker("fixed", supabase_url, *more_args)`; all are stopped after the test."""
    started: list[RtWorker] = []

    async def start(which: str, supabase_url: str, *more: str) -> RtWorker:
        w = RtWorker("--worker", which, "--port", "0", "--supabase-url", supabase_url, *more)
        started.append(w)
        return await w.start()

    yield start
    for w in started:
        if w.proc and w.returncode is None:
            await w.stop()


def realtime_client(w: RtWorker, key: str, timeout: float = 3) -> AsyncRealtimeClient:
    return AsyncRealtimeClient(
        f"{w.ws}/realtime/v1", token=key, auto_reconnect=False, max_retries=1, timeout=timeout
    )


class Statuses:
    """A channel's status callback: `seen` is the statuses so far."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.changed = asyncio.Event()

    def __call__(self, status, err) -> None:
        self.seen.append(status.value)
        self.changed.set()

    async def until(self, status: str) -> None:
        async def wait():
            while status not in self.seen:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), TIMEOUT)


async def subscribe_and_broadcast(client: AsyncRealtimeClient, statuses: Statuses) -> dict:
    """Join room1 with broadcast self (rejoins included) and send one broadcast once SUBSCRIBED; return the
    payload that comes back."""
    ch = client.channel("room1", {"config": {"broadcast": {"self": True}}})
    got: asyncio.Future = asyncio.get_running_loop().create_future()
    ch.on_broadcast("cursor", lambda m: got.done() or got.set_result(m))
    await ch.subscribe(statuses)
    await statuses.until("SUBSCRIBED")
    await ch.send_broadcast("cursor", {"x": 1})
    return (await asyncio.wait_for(got, TIMEOUT))["payload"]


async def refusal(url: str) -> tuple[int, str, bytes]:
    with pytest.raises(InvalidStatus) as e:
        async with connect(url, proxy=None):
            pass
    r = e.value.response
    return r.status_code, r.headers.get("Content-Type", ""), r.body


class KeyAdder:
    """An upstream for the relay: it puts back the query the relay dropped (apikey, vsn) and pumps frames to
    and from the local server, so the relay's other defects can be seen. The first upgrade it gets is held
    until `release` is set (a slow upstream, deterministic)."""

    def __init__(self, local_url: str, key: str, vsn: str, hold_first: bool) -> None:
        self.target = f"{local_url.replace('http', 'ws', 1)}/realtime/v1/websocket?apikey={key}&vsn={vsn}"
        self.release = asyncio.Event()
        if not hold_first:
            self.release.set()
        self.requests = 0

    async def process_request(self, conn: ServerConnection, request):
        self.requests += 1
        if self.requests == 1:
            await self.release.wait()

    async def handler(self, client: ServerConnection) -> None:
        async with connect(self.target, compression=None, max_size=None, proxy=None) as up:

            async def pump(src, dst) -> None:
                try:
                    async for m in src:
                        await dst.send(m)
                except ConnectionClosed:
                    pass
                code = src.close_code
                if code is None or not closecodes.websockets_can_send(code):  # 1005/1006: nothing to pass on
                    code = closecodes.NORMAL
                await dst.close(code, src.close_reason or "")

            await asyncio.gather(pump(client, up), pump(up, client), return_exceptions=True)

    async def __aenter__(self) -> str:
        self._server = await serve(
            self.handler, "127.0.0.1", 0, process_request=self.process_request, compression=None
        )
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc) -> None:
        self.release.set()
        self._server.close()
        await self._server.wait_closed()


# ------------------------------------------------------------------------------------------ fixed


async def test_fixed_realtime_client_subscribes_and_its_broadcast_comes_back(
    local_server, rtworker, anon_key
):
    w = await rtworker("fixed", local_server.url)
    client = realtime_client(w, anon_key)
    await client.connect()
    statuses = Statuses()
    assert await subscribe_and_broadcast(client, statuses) == {"x": 1}
    assert statuses.seen == ["SUBSCRIBED"]
    await client.close()
    assert anon_key not in w.output


async def test_fixed_passes_the_upstreams_refusal_through(local_server, rtworker, anon_key):
    """The client gets the upstream's own answer: the local server's 401 with its JSON body, the same
    status, content type and bytes as without the Worker."""
    w = await rtworker("fixed", local_server.url)
    upstream = local_server.url.replace("http", "ws", 1)
    refusals = {
        "apikey=not-a-jwt&vsn=2.0.0": "The token provided is not a valid JWT",
        "vsn=2.0.0": "API key is missing",
    }
    for query, error in refusals.items():
        path = f"/realtime/v1/websocket?{query}"
        direct = await refusal(upstream + path)
        through = await refusal(w.ws + path)
        assert through == direct, (through, direct)
        status, content_type, body = through
        assert status == 401 and content_type.startswith("application/json")
        assert json.loads(body) == {"error": error}
    await w.wait_for(r"realtime upgrade /realtime/v1/websocket: upstream answered 401$", count=2)
    assert "apikey" not in w.output  # the Worker logs the path, never the query


async def test_fixed_keeps_path_query_and_headers(rtworker):
    """What the upstream receives through the corrected Worker: the path and query byte for byte (also a
    path the design's rule would rewrite), every header the client sent; Host is the upstream's. workerd
    itself, not the Worker, terminates both handshakes: the upstream gets workerd's own Sec-WebSocket-Key,
    and the extension offer rewritten (`client_max_window_bits` given its value, 15)."""
    up = Upstream()
    async with up as upstream:
        w = await rtworker("fixed", upstream)
        for path in (
            "/realtime/v1/websocket?apikey=a%2Bb&vsn=2.0.0&log_level=info&x=%20y",
            "/socket/websocket?vsn=1.0.0",  # the design's rule would make this /realtime/v1
            "//127.0.0.1:9/realtime/v1/websocket?vsn=2.0.0",  # a path, not another host
        ):
            async with connect(
                w.ws + path,
                proxy=None,
                subprotocols=["phoenix"],
                additional_headers={"X-Client-Info": "realtime-py/2.34.1", "Cookie": "a=b"},
            ) as client:
                server_leg = await asyncio.wait_for(up.conns.get(), TIMEOUT)
                assert server_leg.request.path == path
                sent = {k.lower(): v for k, v in client.request.headers.raw_items()}
                got = {k.lower(): v for k, v in server_leg.request.headers.raw_items()}
                assert (
                    got.pop("host") == urlsplit(upstream).netloc
                    and sent.pop("host") == urlsplit(w.url).netloc
                )
                assert got.pop("sec-websocket-key") != sent.pop("sec-websocket-key")
                assert sent.pop("sec-websocket-extensions") == "permessage-deflate; client_max_window_bits"
                assert got.pop("sec-websocket-extensions") == "permessage-deflate; client_max_window_bits=15"
                assert got == sent
                assert client.subprotocol is None  # the upstream selected none, and the client was told so


@pytest.mark.parametrize("date", [NEW, OLD])
async def test_rtprobe_passes_every_check_through_the_fixed_worker(local_server, rtworker, anon_key, date):
    w = await rtworker("fixed", local_server.url, "--compat-date", date)
    code, report, statuses = await probe_json(w.url, anon_key)
    assert statuses == ALL_PASS and code == 0, report
    d = details(report)
    assert "binary kind 4 back" in d["f-binary"]  # no JS per frame: binary stays binary at every date
    assert '401 {"error": "The token provided is not a valid JWT"}' in d["c-upstream-status"]
    assert anon_key not in w.output


async def test_fixed_worker_rejects_a_bad_supabase_url():
    """SUPABASE_URL that is not an http(s) origin: 500 with a body saying so (rtworker refuses such a value,
    so the Worker is started here directly). An upstream that is down: 502. No site: 404."""
    cases = {
        "": "SUPABASE_URL is not set",
        "ftp://example.com": "SUPABASE_URL must be an http(s) URL, not ftp://",
        "wss://example.supabase.co": "SUPABASE_URL must be an http(s) URL, not wss://",
        "https://example.supabase.co/realtime": "without a path or query",
        "not a url": "SUPABASE_URL is not a URL",
    }
    for value, said in cases.items():
        async with Workerd(WORKERS["fixed"], value) as w:
            for target, headers in (("/realtime/v1/websocket?vsn=2.0.0", UPGRADE), ("/rest/v1/todos", {})):
                status, _, body = await http_get(w.port, target, headers)
                assert status == 500 and said in body.decode(), (value, target, body)
    with socket.socket() as dead:  # bound, not listening: connections are refused
        dead.bind(("127.0.0.1", 0))
        async with Workerd(WORKERS["fixed"], f"http://127.0.0.1:{dead.getsockname()[1]}") as w:
            status, _, body = await http_get(w.port, "/realtime/v1/websocket", UPGRADE)
            assert status == 502 and body.startswith(b"Worker could not reach SUPABASE_URL (127.0.0.1:")
            status, _, body = await http_get(w.port, "/index.html?x=1", {})
            assert status == 404 and b"no site is configured" in body


async def test_fixed_worker_routes_supabase_apis_and_the_site():
    """Supabase's HTTP APIs (the prefixes supabase-js uses under the project URL) go to SUPABASE_URL, so a
    page can call createClient(workerOrigin, key); every other request goes to SITE_URL. Path and query
    verbatim, a path starting with // included (it stays a path, it never names another host)."""
    async with (
        HttpStub("supabase") as supabase,
        HttpStub("site") as site,
        Workerd(WORKERS["fixed"], supabase.url, site_url=site.url) as w,
    ):
        for target, stub in (
            ("/rest/v1/todos?select=*&id=eq.1", supabase),
            ("/auth/v1/token?grant_type=refresh_token", supabase),
            ("/storage/v1/object/public/a%20b.png", supabase),
            ("/functions/v1/hello", supabase),
            ("/realtime/v1/api/broadcast", supabase),
            ("/graphql/v1", supabase),
            ("/stats2.html?x=1", site),
            ("/rest/v10", site),
            ("/", site),
            ("//127.0.0.1:9/rest/v1/x", site),
            ("//127.0.0.1:9/realtime/v1/websocket", site),
        ):
            status, _, body = await http_get(w.port, target, {"X-Client-Info": "supabase-js/2"})
            assert (status, body) == (200, f"{stub.name} {target}".encode()), target
            assert stub.seen[-1] == (target, urlsplit(stub.url).netloc, "supabase-js/2")


class HttpStub:
    """An HTTP server that answers every request 200 "<name> <target>"; `seen` is (target, Host,
    X-Client-Info) of each request."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.seen: list[tuple[str, str, str]] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        target = head[0].split()[1]
        fields = {k.lower(): v for k, _, v in (line.partition(": ") for line in head[1:] if line)}
        self.seen.append((target, fields.get("host", ""), fields.get("x-client-info", "")))
        body = f"{self.name} {target}".encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n")
        writer.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc) -> None:
        self._server.close()
        await self._server.wait_closed()


UPGRADE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


async def http_get(port: int, target: str, headers: dict[str, str]) -> tuple[int, str, bytes]:
    """One HTTP/1.1 GET on a fresh connection: (status, content type, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [f"GET {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    raw = await asyncio.wait_for(reader.read(), TIMEOUT)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    fields = dict(line.split(": ", 1) for line in head.decode("latin-1").split("\r\n")[1:] if ": " in line)
    fields = {k.lower(): v for k, v in fields.items()}
    if fields.get("transfer-encoding") == "chunked":
        body = dechunk(body)
    return status, fields.get("content-type", ""), body


def dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size, _, rest = body.partition(b"\r\n")
        n = int(size.split(b";")[0], 16)
        if n == 0:
            break
        out, body = out + rest[:n], rest[n + 2 :]
    return out


# ------------------------------------------------------------------------------------------ as written


async def test_as_written_answers_426_expected_websocket(local_server, rtworker, anon_key):
    w = await rtworker("as-written", local_server.url)
    status, content_type, body = await refusal(f"{w.ws}/realtime/v1/websocket?apikey={anon_key}&vsn=2.0.0")
    assert (status, body) == (426, b"Expected WebSocket")  # rt_mode=as-written's status and body
    assert content_type == "text/plain;charset=UTF-8"  # workerd's for a string body (rtproxy: text/plain)
    # rtprobe names what test_rtprobe.py's test_as_written_mode_426 names for the emulation
    code, report, statuses = await probe_json(w.url, anon_key)
    assert code == 1 and "426 Expected WebSocket" in details(report)["a-query"]
    assert statuses["h-subprotocol"] == statuses["c-upstream-status"] == "skip"  # every upgrade: the same 426
    assert failed_codes(report) == {"a-query": "upgrade-rejected"}
    await w.wait_for(
        r"Proxying WebSocket: /realtime/v1/websocket → wss://127\.0\.0\.1:\d+/realtime/v1/websocket$"
    )
    assert "Client accepted" not in w.output  # the guard returned before accept()
    assert anon_key not in w.output


# ------------------------------------------------------------------------------------------ relay


async def test_relay_rtprobe_fails_what_rt_mode_relay_predicts(local_server, rtworker, anon_key):
    """The same statuses, failure codes and details as rtproxy's emulation gives (tests/test_rtprobe.py
    test_relay_mode_fails_what_the_design_predicts)."""
    w = await rtworker("relay", local_server.url)
    code, report, statuses = await probe_json(w.url, anon_key)
    assert_relay_probe(code, report, statuses)
    # the query is gone from the upstream URL, and workerd's own words for the upstream's 401
    await w.wait_for(
        r"Proxying WebSocket: /realtime/v1/websocket → ws://127\.0\.0\.1:\d+/realtime/v1/websocket$"
    )
    await w.wait_for(
        "Failed to establish the WebSocket connection: expected server to reply with HTTP status code 101 "
        r"\(switching protocols\), but received 401 instead\."
    )
    assert anon_key not in w.output


@pytest.mark.parametrize("date", [NEW, OLD])
async def test_relay_defects_behind_its_dropped_query(local_server, rtworker, anon_key, date):
    """With the apikey put back upstream (KeyAdder), (a) passes and what it hid shows: the join sent right
    after open dropped while the upstream connects (d, made certain by holding that upgrade until workerd
    logged the drop), and binary frames: from 2026-03-17
    (websocket_standard_binary_type) the relay gets a Blob and send() turns it into the text
    "[object Blob]" (f fails); before it, binary stays binary (f passes). rt_mode=relay follows
    rt_compat_date the same way (tests/test_parity.py). c is not checked: with KeyAdder's key upstream the
    invalid-key socket works (a heartbeat is answered), which is key substitution, not early-101's
    evidence (a 101 followed by a close or silence)."""
    stub = KeyAdder(local_server.url, anon_key, "2.0.0", hold_first=True)
    async with stub as upstream:
        w = await rtworker("relay", upstream, "--compat-date", date)
        probe = asyncio.create_task(probe_json(w.url, anon_key, "--timeout", "2"))
        await w.wait_for(DROPPED)  # the probe's first phx_join, while its upstream leg is held
        stub.release.set()
        code, report, statuses = await probe
    binary = "fail" if date >= "2026-03-17" else "pass"
    want = {**ALL_PASS, "c-upstream-status": "skip", "d-early-frames": "fail", "f-binary": binary}
    assert statuses == want, report
    assert failed_codes(report) == {n: CODES[n] for n, s in want.items() if s == "fail"}
    assert "the same join sent later was answered" in details(report)["d-early-frames"]
    assert "the relay replaces the client's apikey" in details(report)["c-upstream-status"]
    assert code == 1


async def test_relay_realtime_client_loses_a_join_sent_before_the_upstream_opens(
    local_server, rtworker, anon_key
):
    """realtime-py sends a heartbeat as soon as it connects and phx_join when subscribe() is called. The relay
    answers 101 at once: both frames arrive while its upstream leg connects and are dropped; the join
    times out (TIMED_OUT) and the client's rejoin, sent after the upstream opened, is answered."""
    stub = KeyAdder(local_server.url, anon_key, "1.0.0", hold_first=True)
    async with stub as upstream:
        w = await rtworker("relay", upstream)
        client = realtime_client(w, anon_key, timeout=1)
        await client.connect()
        statuses = Statuses()

        async def release_after_the_join_is_dropped():
            await w.wait_for(DROPPED, count=2)  # the heartbeat and the phx_join
            stub.release.set()

        releaser = asyncio.create_task(release_after_the_join_is_dropped())
        assert await subscribe_and_broadcast(client, statuses) == {"x": 1}
        await releaser
        assert statuses.seen[0] == "TIMED_OUT" and statuses.seen[-1] == "SUBSCRIBED", statuses.seen
        await client.close()


async def test_relay_realtime_client_subscribes_when_the_upstream_opened_first(
    local_server, rtworker, anon_key
):
    async with KeyAdder(local_server.url, anon_key, "1.0.0", hold_first=False) as upstream:
        w = await rtworker("relay", upstream)
        client = realtime_client(w, anon_key)
        await client.connect()
        await w.wait_for(UPSTREAM_OPEN)
        statuses = Statuses()
        assert await subscribe_and_broadcast(client, statuses) == {"x": 1}
        assert statuses.seen == ["SUBSCRIBED"]
        await client.close()


async def test_relay_upstream_down_closes_the_client_1011(rtworker):
    with socket.socket() as dead:  # bound, not listening: connections are refused
        dead.bind(("127.0.0.1", 0))
        w = await rtworker("relay", f"http://127.0.0.1:{dead.getsockname()[1]}")
        async with connect(f"{w.ws}/realtime/v1/websocket", proxy=None) as ws:  # 101 first
            with pytest.raises(ConnectionClosedError) as e:
                await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert e.value.rcvd is not None and (e.value.rcvd.code, e.value.rcvd.reason) == (
            1011,
            "Proxy server error",
        )


async def relay_legs(rtworker, up: Upstream, upstream: str, date: str):
    """rtworker relay in front of `up`; one client connection and its upstream leg, both open."""
    w = await rtworker("relay", upstream, "--compat-date", date)
    client = await connect(f"{w.ws}/realtime/v1/websocket", proxy=None, compression=None)
    server_leg = await asyncio.wait_for(up.conns.get(), TIMEOUT)
    await w.wait_for(UPSTREAM_OPEN)
    return w, client, server_leg


@pytest.mark.parametrize("date", [NEW, OLD])
async def test_relay_binary_frames(rtworker, date):
    """From 2026-03-17 (websocket_standard_binary_type) the relay's message handlers get a Blob, and
    send(blob) puts the text "[object Blob]" on the wire, both ways; before that date binary stays binary.
    rt_mode=relay does the same by rt_compat_date (relay.py; tests/test_parity.py holds the two together)."""
    up = Upstream()
    async with up as upstream:
        _, client, server_leg = await relay_legs(rtworker, up, upstream, date)
        kind4 = b"\x04\x05\x07\x00\x01room1cursor{}"
        kind3 = b"\x03\x00\x00\x05\x06\x00\x01room1cursor{}"
        await server_leg.send(kind4)
        await client.send(kind3)
        to_client = await asyncio.wait_for(client.recv(), TIMEOUT)
        to_server = await asyncio.wait_for(up.received.get(), TIMEOUT)
        if date >= "2026-03-17":
            assert (to_client, to_server) == ("[object Blob]", "[object Blob]")
        else:
            assert (to_client, to_server) == (kind4, kind3)
        await client.close()


@pytest.mark.parametrize("date", [NEW, OLD])
async def test_relay_upstream_closes_without_a_code(rtworker, date):
    """The upstream's close frame without a code (1005) makes the relay's clientWebSocket.close(1005)
    throw "Invalid WebSocket close code: 1005.", which its handler catches. From 2026-04-07
    (web_socket_auto_reply_to_close) workerd answers the close itself, then fires "Network connection
    lost." on the upstream socket, whose error handler closes the client 1011 "Proxy server error".
    Before that date the client leg stays open. rt_mode=relay keeps it open at every date
    (relay.py _close_client)."""
    up = Upstream()
    async with up as upstream:
        w, client, server_leg = await relay_legs(rtworker, up, upstream, date)
        closing = asyncio.create_task(server_leg.close(None))  # None: a close frame without a code
        await w.wait_for(r"Error closing client: DOMException")
        if date >= "2026-04-07":
            with pytest.raises(ConnectionClosedError) as e:
                await asyncio.wait_for(client.recv(), TIMEOUT)
            assert (e.value.rcvd.code, e.value.rcvd.reason) == (1011, "Proxy server error")
            await w.wait_for(r"message: 'Uncaught Error: Network connection lost\.'")
            await asyncio.wait_for(closing, TIMEOUT)  # workerd answered the upstream's close
        else:
            await asyncio.wait_for(await client.ping(), TIMEOUT)  # the client leg is still open
            for leg in (client, server_leg):  # nothing will answer either close: end both connections
                leg.transport.abort()
            await closing


@pytest.mark.parametrize("date", [NEW, OLD])
async def test_relay_client_closes_without_a_code(rtworker, date):
    """The client's close frame without a code makes the relay's serverWebSocket.close(1005) throw in a
    handler that does not catch it. Before 2026-04-07 workerd turns that uncaught throw into an error event
    on the client socket, whose handler closes the upstream 1011 "Client connection error" (and nothing
    answers the client's close). From 2026-04-07 workerd answers the client's close and the upstream leg
    stays open, still relayed into a closed socket. rt_mode=relay keeps the upstream leg open at every date
    and always answers the client's close (relay.py _handle, close_throws)."""
    up = Upstream()
    async with up as upstream:
        w, client, server_leg = await relay_legs(rtworker, up, upstream, date)
        closing = asyncio.create_task(client.close(None))
        await w.wait_for(r"Client closed: 1005")
        if date >= "2026-04-07":
            await asyncio.wait_for(closing, TIMEOUT)
            assert client.protocol.close_rcvd is not None and client.protocol.close_rcvd.code == 1005
            await server_leg.send("still here")  # the upstream leg is open: the relay still pumps it,
            await w.wait_for(r"Error sending to client")  # into the closed client socket
            server_leg.transport.abort()
        else:
            assert await asyncio.wait_for(up.closed[server_leg], TIMEOUT) == (1011, "Client connection error")
            client.transport.abort()  # nothing will answer its close
            await closing


# ------------------------------------------------------------------------------------------ rtworker


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_rtworker_stops_cleanly(rtworker, sig):
    w = await rtworker("fixed", "http://127.0.0.1:9")
    pid = w.workerd_pid()
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    config = Path(next(a.decode() for a in argv if a.endswith(b".capnp")))
    assert config.is_file() and "http://127.0.0.1:9" in config.read_text()
    assert await w.stop(sig) == 0
    assert not config.exists() and not config.parent.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", w.port)


async def test_workerd_dies_with_a_killed_rtworker_even_with_a_socket_open(rtworker, local_server, anon_key):
    """rtworker killed outright (SIGKILL, an OOM kill) cannot stop workerd; the kernel does (PR_SET_PDEATHSIG)
    with SIGKILL, since workerd would drain a SIGTERM until every open WebSocket ends: forever here."""
    w = await rtworker("fixed", local_server.url)
    async with connect(f"{w.ws}/realtime/v1/websocket?apikey={anon_key}&vsn=1.0.0"):
        pid = w.workerd_pid()
        gone = asyncio.get_running_loop().create_future()
        fd = os.pidfd_open(pid)
        asyncio.get_running_loop().add_reader(fd, lambda: gone.done() or gone.set_result(None))
        try:
            assert w.proc is not None
            w.proc.kill()
            await asyncio.wait_for(gone, TIMEOUT)  # readable once the process has exited
        finally:
            asyncio.get_running_loop().remove_reader(fd)
            os.close(fd)


async def test_rtworker_one_line_errors(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        good = ["--port", "0", "--supabase-url", "http://127.0.0.1:9"]
        cases = [
            (["--worker", "nope", *good], 2, "--worker 'nope': use fixed, relay, as-written or the path"),
            (["--worker", "fixed", "--port", "0", "--supabase-url", "ftp://x"], 2, "expected an http(s) URL"),
            (
                ["--worker", "fixed", "--port", "0", "--supabase-url", "https://x.supabase.co/rest"],
                2,
                "give the origin alone, without a path or query",
            ),
            (["--worker", "fixed", *good, "--site-url", "site"], 2, "--site-url 'site': expected an http(s)"),
            (
                ["--worker", "fixed", "--port", port, "--supabase-url", "http://127.0.0.1:9"],
                1,
                f"port {port} on 127.0.0.1 is in use: pick another --port",
            ),
            (
                ["--worker", "fixed", *good, "--compat-date", "soon"],
                2,
                "--compat-date 'soon': expected YYYY-MM-DD",
            ),
        ]
        for args, status, said in cases:
            code, out = await run_to_exit([RTWORKER, *args])
            assert code == status and out.count("\n") == 1 and out.startswith("rtworker: "), (args, out)
            assert said in out, (args, out)


def test_rtworker_says_how_to_install_workerd(tmp_path, monkeypatch, capsys):
    """Where $RTPROXY_DATA_DIR says (the installed package's rule: tests/test_wheel.py), no workerd: the
    one line names the folder it looked in and the command that installs it there."""
    monkeypatch.setenv("RTPROXY_DATA_DIR", str(tmp_path))
    assert (
        rtworker_module.main(["--worker", "fixed", "--port", "0", "--supabase-url", "http://127.0.0.1:9"])
        == 1
    )
    err = capsys.readouterr().err
    assert err == (
        f"rtworker: workerd is not installed (looked in {tmp_path / 'worker' / 'node_modules'}): run "
        "`rtworker install` (npm ci of rtproxy's worker/package.json there; needs Node.js's npm; "
        "$RTPROXY_DATA_DIR picks another folder)\n"
    )
