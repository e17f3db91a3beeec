"""The real clients as the oracle of "what the user saw" (issue 21): each corpus case's server side is
replayed (rtreplay's Replayer, the code behind `rtreplay --serve`) behind rtproxy, and realtime-js in Node
and realtime-py join the channels the captured client joined; the statuses they report are what the
capture's first finding claims to explain (Rule.outcome).

One replay server holds every case: a client says which case and which client it is in its query
(`rtcase`, `rtclient`, passed as the clients' own `params`, which rtproxy forwards), and gets a Replayer of
its own for that case. Every side runs at the same scale S: the replay at --speed S and each client with
its own defaults divided by S (join timeout 10 s, heartbeat 25 s, reconnect backoff), so a capture meets
the timers its client had.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from conftest import NODE_DIR, TIMEOUT
from corpus import write_capture
from realtime import AsyncRealtimeClient
from rtproxy_core import frames
from rtproxy_core.diagnosis import diagnose_captures, ranked
from rtproxy_core.redact import Redactor
from rtproxy_core.replay import SERVER, Script
from rtproxy_core.rules import FAILURES, Finding, Outcome, Timers
from rtproxy_tools.captures import read_capture
from rtproxy_tools.replay import Out, Replayer, ordered
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

ORACLE_JS = NODE_DIR / "oracle.mjs"
JOIN_TIMEOUT_S = (
    10.0  # realtime-js DEFAULT_TIMEOUT (lib/constants.js); realtime-py DEFAULT_TIMEOUT (types.py)
)
HEARTBEAT_S = (
    25.0  # realtime-js CONNECTION_TIMEOUTS.HEARTBEAT_INTERVAL; realtime-py DEFAULT_HEARTBEAT_INTERVAL
)
SCALE = 10.0  # every side's time divided by this
MANY_CHANNELS = 10  # more channels than this: the clocks run slower (plan())
LONGEST_S = 8.0  # a capture longer than this at SCALE is played faster; the clients' timers stay at SCALE
# After the capture's timeline: what the clients' own timers can still bring (a join timeout, a heartbeat
# that goes unanswered), in the client's time.
HORIZON_S = JOIN_TIMEOUT_S + 2 * HEARTBEAT_S
HEARTBEAT_FLOOR_S = 0.25  # a live heartbeat no more often than this, however fast the replay
DEFAULT_TOPIC = "realtime:oracle"  # joined where the captured client joined nothing but failed (_channels)


@dataclass
class Channel:
    topic: str
    config: dict[str, Any]
    postgres_changes: list[dict[str, Any]]


@dataclass
class Plan:
    """One corpus case as the oracle plays it."""

    case_id: str
    connection: int  # 1-based, in the order the capture's connections opened
    script: Script
    finding: Finding | None
    channels: list[Channel]
    scale: float
    slow: float = 1.0  # slowed(): how many times slower than the plan's own clock

    def slowed(self, factor: float) -> Plan:
        """The same case on a clock `factor` times slower (every side's), under its own name: a
        disagreement seen under load is confirmed there before it counts, since a contradiction of the
        claim does not depend on the clock while a late reply on a loaded machine does."""
        return dataclasses.replace(
            self, case_id=f"{self.case_id}@{factor:g}x", scale=self.scale / factor, slow=self.slow * factor
        )

    @property
    def client_scale(self) -> float:
        """The clients' timers are divided by SCALE at most: a capture played faster (hours of answered
        heartbeats) compresses its idle stretches, not the clients' timeouts (realtime-py's `timeout` is
        also its connect timeout)."""
        return min(self.scale * self.slow, SCALE) / self.slow

    @property
    def captured_heartbeat_s(self) -> float:
        """The captured client's heartbeat interval (its median gap), else the clients' default."""
        beats = [s.time for s in self.script.client_steps if s.heartbeat]
        gaps = sorted(b - a for a, b in itertools.pairwise(beats) if b > a)
        return gaps[len(gaps) // 2] if gaps else HEARTBEAT_S

    @property
    def heartbeat_s(self) -> float:
        """The live heartbeat follows the captured one on the replay's scale: each live heartbeat the
        replay matches to a captured one anchors the capture's timeline there (ServerPlayer._anchored), so
        a slower live cadence would stretch the capture (deadline_s allows for the floor's stretch)."""
        return max(self.captured_heartbeat_s / self.scale, HEARTBEAT_FLOOR_S * self.slow)

    @property
    def deadline_s(self) -> float:
        """Live seconds after which nothing the capture or the clients' timers hold is still to come."""
        stretch = self.captured_heartbeat_s / self.scale / self.heartbeat_s  # < 1: the floor slows them
        return (self.script.latency + self.script.end) / self.scale / stretch + HORIZON_S / self.client_scale


@dataclass
class Seen:
    """What one client reported: each (topic, status, error) its subscribe callbacks gave, or why it
    could not connect (realtime-py's connect() raises where realtime-js reports CHANNEL_ERROR)."""

    client: str
    statuses: list[tuple[str, str, str]] = field(default_factory=list)
    raised: str = ""
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    done: bool = False  # the run is over: what the teardown (unsubscribe, close) brings is not the outcome

    def add(self, topic: str, status: str, error: str) -> None:
        if self.done:
            return
        self.statuses.append((topic, status, error))
        self.changed.set()

    def outcome(self, topic: str | None) -> tuple[str, str]:
        """(status, error): the first failure status on `topic` (any topic when None), else SUBSCRIBED when
        it subscribed, else "nothing"; Outcome.CONNECT_RAISES when connect() raised."""
        if self.raised:
            return Outcome.CONNECT_RAISES, self.raised
        mine = [s for s in self.statuses if topic is None or s[0] == topic]
        failed = [s for s in mine if s[1] in FAILURES]
        if failed:
            return failed[0][1], failed[0][2]
        return ("SUBSCRIBED", "") if mine else ("nothing", "")


def _channels(script: Script) -> list[Channel]:
    out: dict[str, Channel] = {}
    for step in script.client_steps:
        m = step.msg
        if m is None or m.event != frames.PHX_JOIN or not m.topic.startswith("realtime:") or m.topic in out:
            continue
        payload = frames.as_object(m.payload)
        config = dict(frames.as_object(payload.get("config")))
        pcs = [frames.as_object(p) for p in config.pop("postgres_changes", None) or []]
        out[m.topic] = Channel(m.topic, config, [p for p in pcs if p.get("event")])
    if out or (script.status == 101 and script.closer != SERVER):
        return list(out.values())
    # A refused upgrade, or a socket the server ended, that joined nothing: one channel to be told of it.
    return [Channel(DEFAULT_TOPIC, {}, [])]


def plan(case: dict[str, Any], tmp: Path) -> Plan:
    capture = read_capture(write_capture(case, tmp))
    conns = ordered(capture)
    sessions = diagnose_captures([conns], Redactor(), Timers())
    per_conn = [ranked(s.findings) for s in sessions]
    n = case.get("connection")
    if n is None:
        n = next((i for i, fs in enumerate(per_conn) if fs), 0)
    url, events = conns[n]
    script = Script.from_connection(url, events)
    finding = per_conn[n][0] if per_conn[n] else None
    channels = _channels(script)
    # The clients' and rtproxy's work per frame is not scaled: a capture with many channels runs nearer
    # its own time, so a hundred joins through the proxy fit in the clients' join timeout as they did.
    scale = SCALE * min(1.0, MANY_CHANNELS / max(1, len(channels)))
    scale = max(scale, (script.latency + script.end) / LONGEST_S)
    return Plan(case["id"], n + 1, script, finding, channels, scale)


# What the replay did that fails a client, in its log lines (rtproxy_tools.replay: Replayer, ServerPlayer's
# actions); "(plausible)" lines answer the live client's own frames, not the capture's server.
_FAILING = re.compile(
    r"\] answered \d{3}|the capture's upgrade got no answer|-> close|-> dropping the TCP connection"
    r"|-> \S+ (?:phx_close|phx_error) (?!.*\(plausible\))|-> (?!.*\(plausible\)).*\"status\":\"error\""
)


def met(lines: list[str]) -> str:
    """The first thing the replay did to a live client that fails one (a refusal, no answer, a close, an
    error, a phx_close), or "" when it did none of them."""
    return next((line for line in lines if _FAILING.search(line)), "")


class _Lines(Out):
    def __init__(self) -> None:
        super().__init__(Redactor())
        self.lines: list[str] = []

    def __call__(self, line: str, err: bool = False) -> None:
        self.lines.append(self.redactor.output(line))


class Router:
    """One replay server for every plan: a connection's query names its case and client."""

    def __init__(self, plans: list[Plan]) -> None:
        self.replayers: dict[tuple[str, str], Replayer] = {}
        self.owner: dict[ServerConnection, Replayer] = {}
        for p in plans:
            self.add(p)

    def add(self, p: Plan) -> None:
        for client in ("js", "py"):
            self.replayers[(p.case_id, client)] = Replayer(p.script, p.scale, _Lines())

    def log(self, case_id: str, client: str) -> list[str]:
        out = self.replayers[(case_id, client)].out
        assert isinstance(out, _Lines)
        return out.lines

    async def process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        q = dict(parse_qsl(urlsplit(request.path).query))
        r = self.replayers.get((q.get("rtcase", ""), q.get("rtclient", "")))
        if r is None:
            return Response(404, "Not Found", Headers([("Content-Length", "0")]), b"")
        self.owner[ws] = r
        return await r.process_request(ws, request)

    async def handler(self, ws: ServerConnection) -> None:
        await self.owner.pop(ws).handler(ws)

    def serve(self):  # type: ignore[no-untyped-def]
        return serve(
            self.handler,
            "127.0.0.1",
            0,
            process_request=self.process_request,
            compression=None,
            ping_interval=None,
            max_size=5_000_000,
            server_header=None,
        )


async def _settle(seen: Seen, p: Plan) -> None:
    """Await the client's failure status on the finding's topic (any, for a connection's finding), at most
    the plan's deadline: past it, neither the capture nor the client's own timers hold anything more."""
    topic = p.finding.topic if p.finding is not None else None

    async def wait() -> None:
        while seen.outcome(topic)[0] not in FAILURES:
            seen.changed.clear()
            await seen.changed.wait()

    try:
        await asyncio.wait_for(wait(), p.deadline_s)
    except TimeoutError:
        pass


async def run_py(proxy_port: int, key: str, p: Plan) -> Seen:
    seen = Seen("realtime-py")
    client = AsyncRealtimeClient(
        f"ws://127.0.0.1:{proxy_port}/realtime/v1",
        token=key,
        params={"rtcase": p.case_id, "rtclient": "py"},
        hb_interval=p.heartbeat_s,  # type: ignore[arg-type]  # seconds; a float sleeps as well
        timeout=JOIN_TIMEOUT_S / p.client_scale,  # type: ignore[arg-type]
        initial_backoff=1.0 / p.client_scale,
    )
    try:
        await client.connect()
    except Exception as e:  # noqa: BLE001  # what the app sees from connect(), whatever its class
        seen.raised = f"{type(e).__name__}: {e}"
        return seen
    try:
        for ch in p.channels:
            channel = client.channel(ch.topic.removeprefix("realtime:"), {"config": ch.config})  # type: ignore[typeddict-item]
            for pc in ch.postgres_changes:
                channel.on_postgres_changes(
                    pc["event"], lambda _: None, pc.get("table"), pc.get("schema"), pc.get("filter")
                )

            def report(status, err, topic=ch.topic) -> None:  # type: ignore[no-untyped-def]
                seen.add(topic, status.value, str(err) if err else "")

            await channel.subscribe(report)
        await _settle(seen, p)
    finally:
        seen.done = True
        await client.close()
    return seen


async def run_js(proxy_port: int, key: str, p: Plan) -> Seen:
    seen = Seen("realtime-js")
    spec = {
        "params": {"rtcase": p.case_id, "rtclient": "js"},
        "scale": p.client_scale,
        "heartbeatMs": p.heartbeat_s * 1000,
        "channels": [
            {"topic": c.topic, "config": c.config, "postgres_changes": c.postgres_changes} for c in p.channels
        ],
    }
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(ORACLE_JS),
        f"ws://127.0.0.1:{proxy_port}/realtime/v1",
        json.dumps(spec),
        cwd=NODE_DIR,
        env=dict(os.environ, SUPABASE_ANON_KEY=key),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdin and proc.stdout

    async def read() -> None:
        assert proc.stdout
        async for line in proc.stdout:
            if line.startswith(b"{"):
                e = json.loads(line)
                if e.get("event") == "status":
                    seen.add(e["topic"], e["status"], e.get("error", ""))

    reader = asyncio.create_task(read())
    await _settle(seen, p)
    seen.done = True
    proc.stdin.close()
    try:
        await asyncio.wait_for(proc.wait(), TIMEOUT)
    except TimeoutError:
        proc.kill()
        raise
    await reader
    return seen
