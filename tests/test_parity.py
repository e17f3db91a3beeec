"""Parity: rtproxy's emulation of each Worker (rt_mode=fixed|relay|as-written) against the Worker itself in
workerd (tests/test_workerd.py runs the same Workers with more checks).

For each Worker and each scenario, two runs:
  (a) runtime:   client -> workerd (the Worker, SUPABASE_URL = rtproxy) -> rtproxy (rt_mode=inspect, reverse
                 to the upstream: it only watches) -> upstream
  (b) emulation: client -> rtproxy (rt_mode=<worker>, rt_supabase_url = the upstream) -> upstream
The upstream is the local Realtime server; for the relay (which drops the query, so the local server
refuses every upgrade it forwards) the scenarios past the refusal use test_workerd.py's KeyAdder, which
puts apikey and vsn back, so the relay's other defects show. The client-visible outcome (HTTP status and
body, or the frames received and the close code and reason) must be the same in (a) and (b), and so must
what rtproxy finds about the upstream's answer (its findings in rt_report).

Where workerd's behaviour depends on the compatibility date, both sides run at both dates: NEW
(worker/wrangler.toml's) and OLD (2025-01-01, before websocket_standard_binary_type and
web_socket_auto_reply_to_close); rtproxy's side gets the same date as rt_compat_date.

Without workerd these tests are skipped, except under CI (CI=true), where they fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ADDON, IN_CI, MITMDUMP, TIMEOUT, Mitmdump, run_to_exit
from realtime import AsyncRealtimeClient
from rtproxy_core.hop import AUTO_CLOSE_DATE, DEFAULT_COMPAT_DATE
from rtproxy_tools.worker import WORKERS, Workerd

# Without workerd this module is skipped, except under CI, where its tests fail (test_workerd's
# prerequisites, imported with it).
from test_workerd import DROPPED, NEW, OLD, KeyAdder, Upstream, _prerequisites  # noqa: F401 (the fixture)
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

WORKER_DATES = [("fixed", NEW), ("fixed", OLD), ("as-written", NEW), ("relay", NEW), ("relay", OLD)]


@dataclass
class Side:
    """Where the client connects (`ws`), the rtproxy that watches, and workerd on the runtime side."""

    ws: str
    proxy: Mitmdump
    report: Path
    workerd: Workerd | None
    join_ref: str = ""  # of the join that was answered

    async def dropped(self, n: int) -> None:
        """The hop has dropped `n` client frames in all (workerd's log line, or rtproxy's hop event)."""
        await self.logged(re.escape(DROPPED), r"hop: frame-dropped", n)

    async def logged(self, in_workerd: str, in_rtproxy: str, n: int = 1) -> None:
        """The hop has logged `n` lines matching: the Worker's in workerd, or rtproxy's emulating it."""
        source, rx = (
            (self.workerd, re.compile(in_workerd))
            if self.workerd is not None
            else (self.proxy, re.compile(in_rtproxy))
        )

        async def scan() -> None:
            async with source._changed:
                while sum(1 for line in source.lines if rx.search(line)) < n:
                    await source._changed.wait()

        await asyncio.wait_for(scan(), TIMEOUT)

    async def findings(self) -> list[list[str]]:
        """rtproxy's finding codes per connection (rt_report, written when it stops)."""
        await self.proxy.stop()
        connections = json.loads(self.report.with_suffix(".json").read_text())["connections"]
        return [sorted({f["code"] for f in c["findings"]}) for c in connections]


@contextlib.asynccontextmanager
async def side(kind: str, worker: str, date: str, upstream: str, tmp: Path, site: str | None = None):
    """One side of a parity run. With `site` (an http origin), what is not an upgrade goes there: the Worker's
    SITE_URL in workerd, rtproxy's reverse target in the emulation, so a page can be loaded from the Worker."""
    report = tmp / f"{kind}.md"
    common = (f"rt_report={report}", "connection_strategy=lazy")
    if kind == "runtime":
        proxy = await Mitmdump(tmp, "rt_mode=inspect", *common, mode=f"reverse:{upstream}").start()
        try:
            async with Workerd(WORKERS[worker], proxy.url, compat_date=date, site_url=site) as w:
                yield Side(f"ws://127.0.0.1:{w.port}", proxy, report, w)
        finally:
            await proxy.stop()
    else:
        sets = (f"rt_mode={worker}", f"rt_supabase_url={upstream}", f"rt_compat_date={date}", *common)
        mode = {"mode": f"reverse:{site}"} if site else {}
        proxy = await Mitmdump(tmp, *sets, **mode).start()
        try:
            yield Side(f"ws://127.0.0.1:{proxy.port}", proxy, report, None)
        finally:
            await proxy.stop()


# ------------------------------------------------------------------------------------------ outcomes


def closed(ws) -> tuple:
    rcvd = ws.protocol.close_rcvd
    return ("closed", rcvd.code, rcvd.reason) if rcvd else ("closed", "no close frame")


async def receive(ws, n: int = 1) -> list:
    """The next `n` messages (text as parsed JSON, binary as bytes), then ('closed', ...) if it closes."""
    out: list = []
    try:
        for _ in range(n):
            m = await asyncio.wait_for(ws.recv(), TIMEOUT)
            out.append(json.loads(m) if isinstance(m, str) and m.startswith(("[", "{")) else m)
    except ConnectionClosed:
        out.append(closed(ws))
    return out


async def open_or_refused(url: str):
    """(ws, None), or (None, ("refused", status, body, content type)) when the upgrade is refused."""
    try:
        return await connect(url, proxy=None, compression=None, max_size=None, close_timeout=TIMEOUT), None
    except InvalidStatus as e:
        r = e.response
        return None, ("refused", r.status_code, r.body, r.headers.get("content-type"))


def join(ref: str, topic: str = "realtime:room1") -> str:
    payload = {"config": {"broadcast": {"self": True}}}
    return json.dumps([ref, ref, topic, "phx_join", payload])


async def joined(s: Side, ws, release: asyncio.Event | None) -> list:
    """Send phx_join at once; each time the hop drops it (the relay while its upstream leg is not open: the
    first upgrade is held until the first drop), release the upstream and send it again. What happened,
    then the reply."""
    out: list = []
    ref = 0
    while True:  # ends with a reply, or a wait that finds neither reply nor drop (TIMEOUT)
        ref += 1
        await ws.send(join(str(ref)))
        reply = asyncio.ensure_future(receive(ws))
        drop = asyncio.ensure_future(s.dropped(ref))
        done, _ = await asyncio.wait({reply, drop}, timeout=TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        if reply in done:
            drop.cancel()
            s.join_ref = str(ref)
            # how many joins were dropped depends on how fast the upstream opens: not compared
            return out + [
                [ref is not None for ref in m[:2]] + m[2:] if isinstance(m, list) else m
                for m in reply.result()
            ]
        reply.cancel()
        if drop not in done:
            raise AssertionError("no reply to the join, and the hop dropped nothing")
        if not out:
            out.append("join dropped")
        if release is not None:
            release.set()


def wsurl(s: Side, key: str, vsn: str = "2.0.0") -> str:
    return f"{s.ws}/realtime/v1/websocket?apikey={key}&vsn={vsn}"


async def refused_upgrade(s: Side, key: str, release) -> list:
    ws, refused = await open_or_refused(f"{s.ws}/realtime/v1/websocket?apikey=not-a-jwt&vsn=2.0.0")
    if refused:
        return [refused]
    return ["101", *await receive(ws)]


async def early_join(s: Side, key: str, release) -> list:
    ws, refused = await open_or_refused(wsurl(s, key))
    if refused:
        return [refused]
    out = await joined(s, ws, release)
    await ws.close()
    return ["101", *out]


def kind3(join_ref: str) -> bytes:
    """A user broadcast push (realtime-js serializer.ts _encodeUserBroadcastPush): kind 3, join_ref, no
    ref, topic, event, no metadata, JSON payload."""
    topic, event = b"realtime:room1", b"cursor"
    head = bytes([3, len(join_ref), 0, len(topic), len(event), 0, 1])
    return head + join_ref.encode() + topic + event + b'{"x":1}'


HEARTBEAT = json.dumps([None, "hb", "phoenix", "heartbeat", {}])


async def binary(s: Side, key: str, release) -> list:
    ws, refused = await open_or_refused(wsurl(s, key))
    if refused:
        return [refused]
    out = await joined(s, ws, release)
    await ws.send(kind3(s.join_ref))
    await ws.send(HEARTBEAT)  # its reply ends what the broadcast brought back
    while (m := (await receive(ws))[0]) and not (isinstance(m, list) and m[1] == "hb" or m[0] == "closed"):
        out.append(m)
    out.append("heartbeat answered" if isinstance(m, list) else m)
    await ws.close()
    return ["101", *out]


async def close_with_code(s: Side, key: str, release) -> list:
    ws, refused = await open_or_refused(wsurl(s, key))
    if refused:
        return [refused]
    out = await joined(s, ws, release)
    await ws.close(4000, "bye")
    return ["101", *out, closed(ws)]


async def join_and_broadcast(s: Side, key: str, release) -> list:
    """realtime-py: subscribe to room1 (broadcast self), send one broadcast, get it back."""
    if release is not None:
        release.set()  # realtime-py rejoins a dropped join by itself
    client = AsyncRealtimeClient(
        f"{s.ws}/realtime/v1", token=key, auto_reconnect=False, max_retries=1, timeout=1
    )
    try:
        await client.connect()
    except Exception as e:  # noqa: BLE001 - the outcome
        return ["connect failed", type(e).__name__]
    statuses: list[str] = []
    changed = asyncio.Event()
    ch = client.channel("room1", {"config": {"broadcast": {"self": True}}})
    got: asyncio.Future = asyncio.get_running_loop().create_future()
    ch.on_broadcast("cursor", lambda m: got.done() or got.set_result(m["payload"]))

    def on_status(status, err):
        statuses.append(status.value)
        changed.set()

    await ch.subscribe(on_status)

    async def settled() -> None:
        while "SUBSCRIBED" not in statuses and "CHANNEL_ERROR" not in statuses:
            changed.clear()
            await changed.wait()

    await asyncio.wait_for(settled(), TIMEOUT)
    out = ["SUBSCRIBED" in statuses]
    if out[0]:
        await ch.send_broadcast("cursor", {"x": 1})
        out.append(await asyncio.wait_for(got, TIMEOUT))
    await client.close()
    return out


SCENARIOS = {
    "join-and-broadcast": join_and_broadcast,
    "refused-upgrade": refused_upgrade,
    "early-join": early_join,
    "binary": binary,
    "close-with-code": close_with_code,
}


async def run(kind: str, worker: str, date: str, scenario: str, local_url: str, key: str, tmp: Path):
    """(client-visible outcome, rtproxy's findings) of one scenario on one side."""
    tmp = tmp / kind
    tmp.mkdir()
    if worker == "relay" and scenario != "refused-upgrade":
        # realtime-py speaks vsn 1.0.0 (JSON objects), the raw scenarios 2.0.0
        vsn = "1.0.0" if scenario == "join-and-broadcast" else "2.0.0"
        stub = KeyAdder(local_url, key, vsn, hold_first=True)
    else:
        stub = None
    async with contextlib.AsyncExitStack() as stack:
        upstream = await stack.enter_async_context(stub) if stub else local_url
        s = await stack.enter_async_context(side(kind, worker, date, upstream, tmp))
        outcome = await SCENARIOS[scenario](s, key, stub.release if stub else None)
        return outcome, await s.findings()


# What rtproxy finds in front of the hop (the emulation) that it cannot see behind it (the runtime side
# watches the Worker's upstream leg): the hop's own 101 or refusal, the query it dropped, frames it
# dropped or turned into text.
IN_FRONT_ONLY = {"early-101", "vsn-missing", "join-dropped-by-proxy", "duplicate-join", "binary-as-text"}
IN_FRONT_ONLY |= {"upgrade-rejected"}  # as-written: the Worker's 426, never reaching rtproxy behind it
IN_FRONT_ONLY |= {"reserved-close-code"}  # the relay's close() threw: an action of the hop, seen in front
# ... and behind it only: the relay's upstream URL has no vsn, so 2.0.0 frames on it look mismatched.
BEHIND_ONLY = {"serializer-mismatch", "binary-on-v1"}


def front_only(conn: list[str]) -> set[str]:
    """Of one connection's codes in front of the hop, those that cannot be seen behind it: a join the hop
    dropped never reached the upstream leg, so neither did its timeout."""
    return IN_FRONT_ONLY | ({"join-timeout"} if "join-dropped-by-proxy" in conn else set())


def same_findings(runtime: list[list[str]], emulated: list[list[str]]) -> None:
    behind = {c for conn in runtime for c in conn} - BEHIND_ONLY
    in_front = {c for conn in emulated for c in set(conn) - front_only(conn)} - BEHIND_ONLY
    assert behind == in_front, (runtime, emulated)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize(("worker", "date"), WORKER_DATES)
async def test_parity(local_server, anon_key, tmp_path, worker, date, scenario):
    runtime = await run("runtime", worker, date, scenario, local_server.url, anon_key, tmp_path)
    emulated = await run("emulation", worker, date, scenario, local_server.url, anon_key, tmp_path)
    print(worker, date, scenario, "\n  runtime  ", runtime, "\n  emulation", emulated)
    assert emulated[0] == runtime[0]
    same_findings(runtime[1], emulated[1])


@pytest.mark.parametrize(("worker", "date"), WORKER_DATES)
async def test_parity_upstream_down(anon_key, tmp_path, worker, date):
    with socket.socket() as dead:  # bound, not listening: connections are refused
        dead.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{dead.getsockname()[1]}"
        out = {}
        for kind in ("runtime", "emulation"):
            (tmp_path / kind).mkdir()
            async with side(kind, worker, date, url, tmp_path / kind) as s:
                ws, refused = await open_or_refused(wsurl(s, anon_key))
                out[kind] = [refused[:2]] if refused else ["101", *await receive(ws)]
                out[kind] = (out[kind], await s.findings())
    print(worker, date, out)
    assert out["runtime"][0] == out["emulation"][0]
    same_findings(out["runtime"][1], out["emulation"][1])


# ------------------------------------------------------------------------------------------ closes

# What each Worker in workerd does when one side's connection ends without a close frame (a drop) or with
# a close frame without a code (1005), as tests/test_workerd.py shows it: what the other side gets (a
# close frame (code, reason), "no close frame", or "open": the leg stays open, and still answers a ping).
# The relay's close(1005|1006) throws; what follows depends on web_socket_auto_reply_to_close.
CLOSES = ["upstream-drops", "client-drops", "upstream-closes-without-code", "client-closes-without-code"]


def expected_close(worker: str, date: str, case: str):
    if worker == "fixed":  # the runtime passes each on as it is
        return {
            "upstream-drops": "no close frame",
            "client-drops": "no close frame",
            "upstream-closes-without-code": (1005, ""),
            "client-closes-without-code": (1005, ""),
        }[case]
    auto_reply = date >= AUTO_CLOSE_DATE
    return {
        "upstream-drops": "open",
        "client-drops": "open",
        "upstream-closes-without-code": (1011, "Proxy server error") if auto_reply else "open",
        "client-closes-without-code": "open" if auto_reply else (1011, "Client connection error"),
    }[case]


# The relay's close(1005|1006) has thrown: its log line in workerd, or rtproxy's hop event.
THREW_CLIENT_CLOSE = (r"Error closing client: DOMException", r"hop: close-throws: clientWebSocket\.close")
THREW_SERVER_CLOSE = (r"Client closed: 100[56]", r"hop: close-throws: serverWebSocket\.close")


async def close_case(s: Side, up: Upstream, case: str, expected, unanswered: bool) -> tuple:
    """One close case on one side: (what the other side got, whether the client's own close was answered).
    `unanswered`: nothing will answer the client's close (workerd's relay before 2026-04-07), so that is
    read once the upstream has its close, not awaited."""
    ws = await connect(wsurl(s, "any-key"), proxy=None, compression=None, close_timeout=TIMEOUT)
    leg = await asyncio.wait_for(up.conns.get(), TIMEOUT)
    await leg.send("hello")  # once it is through, both legs are open, in the relay too
    assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "hello"
    from_upstream = case.startswith("upstream")
    closing = None
    if case == "upstream-drops":
        leg.transport.abort()
    elif case == "client-drops":
        ws.transport.abort()
    elif from_upstream:
        closing = asyncio.ensure_future(leg.close(None))  # None: a close frame without a code
    else:
        closing = asyncio.ensure_future(ws.close(None))
    watched = ws if from_upstream else leg
    if expected == "open":
        await s.logged(*(THREW_CLIENT_CLOSE if from_upstream else THREW_SERVER_CLOSE))
        await asyncio.wait_for(await watched.ping(), TIMEOUT)
        got = "open"
    else:
        await asyncio.wait_for(watched.wait_closed(), TIMEOUT)
        rcvd = watched.protocol.close_rcvd
        got = (rcvd.code, rcvd.reason) if rcvd else "no close frame"
    answered = None
    if closing is not None and not from_upstream:
        if not unanswered:
            await asyncio.wait_for(asyncio.shield(closing), TIMEOUT)
        answered = ws.protocol.close_rcvd is not None
    for c in (ws, leg):  # what is left open ends here
        c.transport.abort()
    if closing is not None:
        await asyncio.gather(closing, return_exceptions=True)
    return got, answered


@pytest.mark.parametrize("case", CLOSES)
@pytest.mark.parametrize(("worker", "date"), [(w, d) for w, d in WORKER_DATES if w != "as-written"])
async def test_parity_closes(tmp_path, worker, date, case):
    expected = expected_close(worker, date, case)
    # Before 2026-04-07 nothing in workerd answers a client's close the relay could not forward (the client
    # ends with 1006 after its close timeout); through rtproxy, mitmproxy answers every close itself
    # (proxy/layers/websocket.py, WebsocketLayer.relay_messages): the one difference rtproxy cannot take away.
    unanswered = worker == "relay" and date < AUTO_CLOSE_DATE and case == "client-closes-without-code"
    out = {}
    for kind in ("runtime", "emulation"):
        (tmp_path / kind).mkdir()
        up = Upstream()
        async with up as upstream, side(kind, worker, date, upstream, tmp_path / kind) as s:
            got = await close_case(s, up, case, expected, unanswered and kind == "runtime")
            out[kind] = (got, await s.findings())
    print(worker, date, case, out)
    (got, answered), runtime = out["runtime"]
    (emulated_got, emulated_answered), emulation = out["emulation"]
    assert got == expected and emulated_got == got, out
    if answered is not None:
        assert answered is not unanswered and emulated_answered is True, out
    if worker == "fixed":
        same_findings(runtime, emulation)
    else:
        # The relay decouples its legs: rtproxy behind it and in front of it see different connections
        # end. In front, the emulation names why one leg outlived the other.
        assert "reserved-close-code" in {c for conn in emulation for c in conn}, out


# ------------------------------------------------------------------------------- realtime-js in Node


def js_outcome(code: int, events: list[dict]) -> list:
    """What tests/node/client.mjs showed: its exit code, the first channel status (with its error), the
    broadcasts it got back and whether a heartbeat was answered. Later statuses and heartbeat timing are
    left out: they depend on timers, not on the hop."""
    statuses = [(e["status"], e.get("error")) for e in events if e["event"] == "status"]
    broadcasts = [e["payload"] for e in events if e["event"] == "broadcast"]
    return [code, statuses[:1], broadcasts, {"event": "heartbeat", "status": "ok"} in events]


@pytest.mark.parametrize(("worker", "date"), WORKER_DATES)
async def test_parity_realtime_js(local_server, anon_key, tmp_path, worker, date):
    """realtime-js (vsn 2.0.0: its broadcast goes out binary, kind 3) with its own timing, straight at the
    local server: the corrected Worker subscribes and gets its broadcast back, the design's Workers fail
    the way a user of them sees."""
    from conftest import node_missing
    from test_node_realtime_js import run_client

    if missing := node_missing():
        (pytest.fail if IN_CI else pytest.skip)("missing " + ", ".join(missing))
    out = {}
    for kind in ("runtime", "emulation"):
        (tmp_path / kind).mkdir()
        async with side(kind, worker, date, local_server.url, tmp_path / kind) as s:
            code, events, _ = await run_client(s.ws.replace("ws://", "http://", 1), anon_key, "node-room")
            out[kind] = (js_outcome(code, events), await s.findings())
    print(worker, date, out)
    assert out["runtime"][0] == out["emulation"][0]
    same_findings(out["runtime"][1], out["emulation"][1])
    if worker == "fixed":
        assert out["runtime"][0] == [0, [("SUBSCRIBED", None)], [{"x": 1, "from": "node"}], True]


def test_default_compat_date_is_wrangler_tomls():
    assert DEFAULT_COMPAT_DATE == NEW


@pytest.mark.parametrize("value", ["soon", "2026-13-01", "2026-1-1", ""])
async def test_rt_compat_date_is_checked(tmp_path, value):
    code, out = await run_to_exit(
        [MITMDUMP, "-n", "-s", ADDON, "--set", f"confdir={tmp_path}", "--set", f"rt_compat_date={value}"]
    )
    assert code != 0 and "rt_compat_date" in out and "expected a date YYYY-MM-DD" in out, out
