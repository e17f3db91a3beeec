"""A hostile load in front of one proxy (issue #27): healthy clients measured while misbehaving ones,
reset upgrades and stalled upgrades hit the same proxy.

`attack(port, scale, ...)` runs, against a reverse proxy at 127.0.0.1:port in front of the local Realtime
server (rtbench --hostile starts both; tests/test_hostile.py too):

- `scale.healthy` healthy clients, each joined to its own channel with broadcast self, sending a heartbeat
  and a broadcast every `cadence_s` and recording each heartbeat's round trip and each echo; for
  `baseline_s` alone, then while the attack runs;
- the attack: `scale.misbehaving` connections, one kind each, round-robin over `scale.kinds` (KINDS: big
  valid broadcasts, invalid JSON, wrong shapes, deep nesting, random binary kinds, mass joins with distinct
  topics, heartbeats with huge refs), each sending `scale.frames` frames (`scale.joins` for a join
  flood) spread over `attack_s`; `scale.resets` connections reset (RST) right after their 101;
  `scale.stalled` upgrade requests sent half-way and left open until the end;
- then the healthy clients stop sending and their outstanding answers are awaited (at most `drain_s`).

Everything is bounded in count and time, connects only to 127.0.0.1, and starts no process. The result
(`Result`) says what the healthy clients got, the proxy's RSS (`pid`), how many stalled upgrades the proxy
left open, and what its log (`log_text`) holds.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from . import kit

KINDS = ("big", "invalid", "shapes", "deep", "binary", "joins", "refs")
KIND_NAMES = {
    "big": "big valid broadcasts",
    "invalid": "invalid JSON",
    "shapes": "wrong shapes",
    "deep": "deep nesting",
    "binary": "random binary kinds",
    "joins": "joins, distinct topics",
    "refs": "heartbeats with huge refs",
}
TRACEBACK = "Traceback (most recent call last)"


@dataclass
class Scale:
    """The attack's size; every count and time is a bound."""

    healthy: int = 40
    misbehaving: int = 20
    resets: int = 500
    stalled: int = 50
    baseline_s: float = 10.0
    attack_s: float = 20.0
    cadence_s: float = 1.0  # the healthy clients' heartbeat and broadcast interval
    drain_s: float = 15.0  # at most this long for the healthy clients' outstanding answers
    kinds: tuple[str, ...] = KINDS
    frames: int = 40  # frames per misbehaving connection (not joins), over attack_s
    joins: int = 500  # joins per join-flood connection, over attack_s
    big_bytes: int = 1_000_000  # a big broadcast's payload; an invalid frame is a tenth of it
    ref_bytes: int = 100_000
    depth: int = 10_000
    seed: int = 27
    # At the end, wait up to this long for the proxy to close the stalled upgrades (a header timeout such as
    # rtproxy's rt_header_timeout) before counting those still open; 0: count at once.
    stalled_wait_s: float = 0.0


@dataclass
class Result:
    heartbeats_sent: int = 0
    heartbeats_answered: int = 0
    broadcasts_sent: int = 0
    broadcasts_echoed: int = 0
    p50_baseline_ms: float = float("nan")
    p99_baseline_ms: float = float("nan")
    p50_attack_ms: float = float("nan")
    p99_attack_ms: float = float("nan")
    rss_baseline_mib: float | None = None
    rss_end_mib: float | None = None
    rss_peak_mib: float | None = None
    cpu_baseline_s: float | None = None  # the proxy's CPU time during the baseline
    cpu_attack_s: float | None = None  # and from the attack's start to the end of the drain
    stalled_open_at_end: int = 0
    stalled: int = 0
    resets_done: int = 0
    attack_frames: dict[str, int] = field(default_factory=dict)
    attack_reconnects: int = 0
    log_lines: int = 0
    log_longest_line: int = 0
    log_tracebacks: int = 0
    wall_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# ------------------------------------------------------------------------------------------ healthy


class Healthy:
    """One well-behaved client: heartbeat and broadcast every cadence, round trips by phase."""

    def __init__(self, ws: ClientConnection, topic: str) -> None:
        self.ws, self.topic = ws, topic
        self.hb_sent: dict[str, tuple[float, str]] = {}  # ref -> (sent at, phase)
        self.rtt: dict[str, list[float]] = {"baseline": [], "attack": []}
        self.bc_sent: set[int] = set()
        self.echoed: set[int] = set()
        self.settled = asyncio.Event()  # set when everything sent has been answered
        self.stopped = False

    def _check_settled(self) -> None:
        if self.stopped and not self.hb_sent and self.bc_sent <= self.echoed:
            self.settled.set()

    async def send(self, phase: list[str], cadence: float, offset: float) -> None:
        await asyncio.sleep(offset)  # spread the clients over the interval
        n = 0
        while not self.stopped:
            n += 1
            ref = f"h{n}"
            self.hb_sent[ref] = (time.perf_counter(), phase[0])
            await self.ws.send(f'[null,"{ref}","phoenix","heartbeat",{{}}]')
            self.bc_sent.add(n)
            body = {"type": "broadcast", "event": "tick", "payload": {"n": n}}
            await self.ws.send(json.dumps(["1", f"b{n}", self.topic, "broadcast", body]))
            await asyncio.sleep(cadence)  # the traffic's own cadence

    async def receive(self) -> None:
        async for raw in self.ws:
            now = time.perf_counter()
            msg = json.loads(raw)
            if msg[2] == "phoenix" and msg[3] == "phx_reply":
                sent = self.hb_sent.pop(msg[1], None)
                if sent is not None:
                    self.rtt[sent[1]].append((now - sent[0]) * 1000)
            elif msg[3] == "broadcast" and msg[2] == self.topic:
                self.echoed.add(msg[4]["payload"]["n"])
            self._check_settled()


# ------------------------------------------------------------------------------------------ attack


def _join(topic: str, ref: str = "1") -> str:
    cfg = {"config": {"broadcast": {"self": False}, "presence": {"enabled": False}, "postgres_changes": []}}
    return json.dumps([ref, ref, topic, "phx_join", cfg], separators=(",", ":"))


class Frames:
    """The misbehaving frames, built once per run."""

    def __init__(self, s: Scale) -> None:
        rng = random.Random(s.seed)
        blob = base64.b64encode(rng.randbytes(s.big_bytes * 3 // 4 + 3)).decode()[: s.big_bytes]
        body = {"type": "broadcast", "event": "big", "payload": {"blob": blob}}
        self.big = json.dumps(["1", "2", "realtime:hostile-big", "broadcast", body], separators=(",", ":"))
        cut = max(s.big_bytes // 10, 64)
        self.invalid = self.big[:cut]  # an unterminated string: not JSON
        self.shapes = [
            '{"a":1}',
            "[]",
            "[1,2,3]",
            '"realtime"',
            "[null,null,1,2,3]",
            '{"topic":1,"event":2,"payload":3,"ref":4}',
            '[null,"1","realtime:hostile","phx_join","not an object"]',
            '["1","1","realtime:hostile","broadcast",[1,2]]',
        ]
        d = s.depth
        self.deep = [
            "[" * d + "]" * d,
            '["1","3","realtime:hostile","broadcast",' + '{"a":' * d + "1" + "}" * d + "]",
        ]
        self.rng = rng
        self.ref = "r" * s.ref_bytes

    def binary(self) -> bytes:
        n = self.rng.randrange(1, 4096)
        return bytes([self.rng.randrange(256)]) + self.rng.randbytes(n)


async def _drain(ws: ClientConnection) -> None:
    try:
        async for _ in ws:
            pass
    except ConnectionClosed:
        pass


async def _misbehave(port: int, kind: str, i: int, s: Scale, fr: Frames, res: Result) -> None:
    count = s.joins if kind == "joins" else s.frames
    gap = s.attack_s / max(count, 1)
    ws: ClientConnection | None = None
    reader: asyncio.Task | None = None
    t0 = time.perf_counter()
    try:
        for n in range(count):
            if ws is None:
                ws = await connect(kit.ws_url(port), compression=None, max_size=None, ping_interval=None)
                reader = asyncio.create_task(_drain(ws))
                if kind == "big":
                    await ws.send(_join("realtime:hostile-big"))
            frame: str | bytes
            if kind == "big":
                frame = fr.big
            elif kind == "invalid":
                frame = fr.invalid
            elif kind == "shapes":
                frame = fr.shapes[n % len(fr.shapes)]
            elif kind == "deep":
                frame = fr.deep[n % 2]
            elif kind == "binary":
                frame = fr.binary()
            elif kind == "joins":
                frame = _join(f"realtime:hostile-{i}-{n}", str(n + 1))
            else:
                frame = f'[null,"{fr.ref}{n}","phoenix","heartbeat",{{}}]'
            try:
                await ws.send(frame)
                res.attack_frames[kind] = res.attack_frames.get(kind, 0) + 1
            except ConnectionClosed:
                res.attack_reconnects += 1
                ws = None
            # Paced, so each proxy gets the same attack however fast it forwards it.
            await asyncio.sleep(max(0.0, t0 + (n + 1) * gap - time.perf_counter()))
    finally:
        if ws is not None:
            await ws.close()
        if reader is not None:
            await reader


def _upgrade_request(port: int, half: bool = False) -> bytes:
    key = base64.b64encode(random.randbytes(16)).decode()
    target = kit.ws_url(port).split(str(port), 1)[1]
    head = (
        f"GET {target} HTTP/1.1\r\nHost: worker.invalid\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
    ).encode()
    return head[: len(head) // 2] if half else head


async def _reset_one(port: int) -> bool:
    """An upgrade, its 101 read, then an RST (SO_LINGER 0): a client that vanished right away."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(_upgrade_request(port))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        return head.startswith(b"HTTP/1.1 101")
    finally:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()


async def _resets(port: int, s: Scale, res: Result) -> None:
    """s.resets of them over attack_s, at most 10 at a time."""
    sem = asyncio.Semaphore(10)
    gap = s.attack_s / max(s.resets, 1)

    async def one(k: int) -> None:
        await asyncio.sleep(k * gap)
        async with sem:
            try:
                if await _reset_one(port):
                    res.resets_done += 1
            except (OSError, TimeoutError, asyncio.IncompleteReadError):
                pass

    await asyncio.gather(*(one(k) for k in range(s.resets)))


class Stalled:
    """s.stalled upgrade requests sent half-way; each watched until the proxy closes it."""

    def __init__(self) -> None:
        self.writers: list[asyncio.StreamWriter] = []
        self.watchers: list[asyncio.Task] = []

    async def open(self, port: int, n: int) -> None:
        for _ in range(n):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(_upgrade_request(port, half=True))
            await writer.drain()
            self.writers.append(writer)
            self.watchers.append(asyncio.create_task(self._closed(reader)))

    @staticmethod
    async def _closed(reader: asyncio.StreamReader) -> None:
        try:
            while await reader.read(4096):
                pass
        except OSError:
            pass

    def still_open(self) -> int:
        return sum(not t.done() for t in self.watchers)

    def close(self) -> None:
        for w in self.writers:
            w.transport.abort()
        for t in self.watchers:
            t.cancel()


# ------------------------------------------------------------------------------------------ the run


async def attack(
    port: int, s: Scale, *, pid: int | None = None, log_text: Callable[[], str] | None = None
) -> Result:
    res = Result(stalled=s.stalled)
    t_start = time.perf_counter()
    fr = Frames(s)
    clients = [
        Healthy(await kit.open_joined(port, f"realtime:healthy-{i}"), f"realtime:healthy-{i}")
        for i in range(s.healthy)
    ]
    phase = ["baseline"]
    receivers = [asyncio.create_task(c.receive()) for c in clients]
    senders = [
        asyncio.create_task(c.send(phase, s.cadence_s, s.cadence_s * i / max(s.healthy, 1)))
        for i, c in enumerate(clients)
    ]
    peak: list[float] = []

    async def sample() -> None:
        while pid is not None:
            peak.append(kit.rss_mib(pid))
            await asyncio.sleep(0.5)  # a measurement interval

    sampler = asyncio.create_task(sample())
    stalled = Stalled()
    cpu0 = kit.cpu_seconds(pid) if pid else 0.0
    try:
        await asyncio.sleep(s.baseline_s)  # the baseline is this long of healthy traffic
        res.rss_baseline_mib = kit.rss_mib(pid) if pid else None
        cpu1 = kit.cpu_seconds(pid) if pid else 0.0
        phase[0] = "attack"
        await stalled.open(port, s.stalled)
        kinds = [s.kinds[i % len(s.kinds)] for i in range(s.misbehaving)]
        await asyncio.wait_for(
            asyncio.gather(
                *(_misbehave(port, k, i, s, fr, res) for i, k in enumerate(kinds)),
                _resets(port, s, res),
            ),
            s.attack_s * 3 + 60,
        )
        for c in clients:
            c.stopped = True
        await asyncio.gather(*senders)
        for c in clients:
            c._check_settled()
        try:
            await asyncio.wait_for(asyncio.gather(*(c.settled.wait() for c in clients)), s.drain_s)
        except TimeoutError:
            pass  # what never came is counted below
        if s.stalled_wait_s and stalled.watchers:
            # each watcher ends when the proxy closes its socket
            await asyncio.wait(stalled.watchers, timeout=s.stalled_wait_s)
        res.stalled_open_at_end = stalled.still_open()
        if pid:
            res.rss_end_mib = kit.rss_mib(pid)
            res.cpu_baseline_s, res.cpu_attack_s = cpu1 - cpu0, kit.cpu_seconds(pid) - cpu1
    finally:
        sampler.cancel()
        stalled.close()
        for c in clients:
            c.stopped = True
            await c.ws.close()
        for t in senders + receivers:
            t.cancel()
        await asyncio.gather(*senders, *receivers, return_exceptions=True)
    res.rss_peak_mib = max(peak) if peak else None
    res.heartbeats_sent = sum(len(c.rtt["baseline"]) + len(c.rtt["attack"]) + len(c.hb_sent) for c in clients)
    res.heartbeats_answered = sum(len(c.rtt["baseline"]) + len(c.rtt["attack"]) for c in clients)
    res.broadcasts_sent = sum(len(c.bc_sent) for c in clients)
    res.broadcasts_echoed = sum(len(c.echoed & c.bc_sent) for c in clients)
    base = [x for c in clients for x in c.rtt["baseline"]]
    hot = [x for c in clients for x in c.rtt["attack"]]
    res.p50_baseline_ms, res.p99_baseline_ms = kit.percentile(base, 50), kit.percentile(base, 99)
    res.p50_attack_ms, res.p99_attack_ms = kit.percentile(hot, 50), kit.percentile(hot, 99)
    if log_text is not None:
        lines = log_text().splitlines()
        res.log_lines = len(lines)
        res.log_longest_line = max((len(x) for x in lines), default=0)
        res.log_tracebacks = sum(TRACEBACK in x for x in lines)
    res.wall_s = time.perf_counter() - t_start
    return res


# ------------------------------------------------------------------------------------------ rtbench --hostile

CONFIGS = {
    "bare": "bare mitmdump (reroute only)",
    "launcher": "rtproxy command",
    "rtproxy": "mitmdump -s rtproxy",
}


async def compare(s: Scale, tmp: Path, names: list[str], repeat: int = 1) -> dict[str, Any]:
    """The same attack on each configuration in turn (interleaved `repeat` times, so a burst of load
    elsewhere on the machine hits each alike; each number is then the median of the runs), one local
    Realtime server for all; each proxy started fresh (rtbench's flow_detail=0 for mitmdump) and stopped
    by its pid."""
    from .live import _median

    server = kit.start_server(tmp)
    out: dict[str, Any] = {"scale": dict(s.__dict__), "repeat": repeat, "runs": {}}
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    try:
        for rep in range(repeat):
            for name in names:
                kit.log(
                    f"hostile: {CONFIGS[name]}: {s.healthy} healthy, {s.misbehaving} misbehaving, "
                    f"{s.resets} resets, {s.stalled} stalled, {s.baseline_s:g} s + {s.attack_s:g} s"
                    + (f" (repeat {rep + 1}/{repeat})" if repeat > 1 else "")
                    + " ..."
                )
                proxy = kit.start_mitmdump(
                    tmp,
                    f"hostile-{name}-{rep}",
                    server.port,
                    rtproxy=name != "bare",
                    launcher=name == "launcher",
                )
                try:
                    r = await attack(proxy.port, s, pid=proxy.pid, log_text=proxy.text)
                finally:
                    proxy.stop()
                runs[name].append({"config": CONFIGS[name], **r.as_dict()})
    finally:
        server.stop()
    for name in names:
        out["runs"][name] = _median(runs[name])
        if repeat > 1:
            out["runs"][name]["each"] = runs[name]
    bare, rt = out["runs"].get("bare"), out["runs"].get("launcher")
    if bare and rt and bare["p99_attack_ms"] > 0:
        out["ratio_p99_attack_launcher_vs_bare"] = rt["p99_attack_ms"] / bare["p99_attack_ms"]
    return out
