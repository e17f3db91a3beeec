"""rtproxy performance, side by side on loopback (issue #5).

    rtbench [--json] [--messages N] [--quick]
    rtbench --memory [--messages 1000000] [--keep 100,0]
    rtbench --profile OUT.prof [--messages N] [--profile-of mitmdump|launcher]

Live: the same messages (vsn 2.0.0; text broadcast arrays and binary kind-3 user broadcasts alternating,
each with a ~110-byte JSON payload, on a channel joined with broadcast self, so the server echoes every
one: an array without refs, or kind 4) go over one WebSocket through
  (1) nothing: client <-> local Realtime server (rtlocal, its own process);
  (2) mitmdump with bare_reroute.py only (reroutes the upgrade, nothing else);
  (3) mitmdump -s addon/rtproxy.py --set rt_supabase_url=<the server>, rtproxy's default logging and
      diagnosis.
(2) and (3) both run with --set flow_detail=0 (mitmproxy's own per-flow/per-message lines off) and the
default termlog_verbosity (info), so the difference is rtproxy's work. The full run adds reference rows
(2b)/(3b) with mitmdump's default flow_detail=1: bare mitmdump then prints a line per message; rtproxy's
dumper_filter hides its Realtime lines, but mitmdump still evaluates that filter per message.
For each: ping-pong round trips (p50/p99, msg/s), pipelined throughput (window of --window messages in
flight), proxy CPU seconds (/proc/<pid>/stat) and RSS. One "message" is one client frame plus its echo:
two WebSocket messages through the proxy.

Offline: a synthetic capture (joins, heartbeats, text and binary broadcasts, presence, postgres_changes)
decoded + tracked (Session.feed) + diagnosed (Diagnoser.check on every logged note and once per capture
second, as the live tracker does) vs plain json.loads of the same frames' JSON; plus Session.feed per
frame type in microseconds and rtproxy's mitmproxy hooks per message (in-process, no sockets).

--memory: N messages pipelined over ONE flow through mitmdump + rtproxy, proxy RSS sampled every second,
once per --keep value (rt_keep_messages; 0 keeps every message; skipped with a note when the option does
not exist). --profile: the rtproxy configuration under cProfile (pipelined), top functions printed.

Everything binds 127.0.0.1; every loop is bounded in count and time; only processes started here are
stopped, by pid.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import pstats
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rtproxy_core import frames
from rtproxy_core.diagnosis import Diagnoser
from rtproxy_core.events import Closed, Frame, Handshake, Opened, Upstream
from rtproxy_core.session import Session

from . import benchkit as kit

CONFIGS = {
    "direct": "(1) direct client <-> local server",
    "bare": "(2) mitmdump + reroute only",
    "rtproxy": "(3) mitmdump + rtproxy",
    "launcher": "(4) rtproxy command",
    "bare_fd1": "(2b) mitmdump + reroute, flow_detail=1",
    "rtproxy_fd1": "(3b) mitmdump + rtproxy, flow_detail=1",
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ============================================================================================ live


def _client_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def ping_pong(ws, n: int, start: int, timeout: float = 10.0) -> list[float]:
    """n round trips, one message in flight; latencies in ms."""
    lat = []
    for i in range(start, start + n):
        msg = kit.message(i)
        t0 = time.perf_counter()
        await ws.send(msg)
        echo = await asyncio.wait_for(ws.recv(), timeout)
        lat.append((time.perf_counter() - t0) * 1000)
        if type(echo) is not type(msg):
            raise RuntimeError(f"echo of a {type(msg).__name__} came back as {type(echo).__name__}")
    return lat


class Counter:
    def __init__(self) -> None:
        self.received = 0


async def pipelined(
    ws, n: int, start: int, window: int, counter: Counter | None = None, timeout: float | None = None
) -> float:
    """n messages with at most `window` unanswered; seconds from first send to last echo."""
    counter = counter or Counter()
    sem = asyncio.Semaphore(window)

    async def sender() -> None:
        for i in range(start, start + n):
            await sem.acquire()
            await ws.send(kit.message(i))

    async def receiver() -> None:
        for _ in range(n):
            await asyncio.wait_for(ws.recv(), 30)
            counter.received += 1
            sem.release()

    t0 = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(sender(), receiver()), timeout or (60 + n / 50))
    return time.perf_counter() - t0


async def measure(name: str, server: kit.Proc, tmp: Path, n: int, window: int, warmup: int) -> dict[str, Any]:
    proxy = None
    if name != "direct":
        fd = 1 if name.endswith("_fd1") else 0
        proxy = kit.start_mitmdump(
            tmp,
            name,
            server.port,
            rtproxy=name.startswith("rtproxy"),
            flow_detail=fd,
            launcher=name == "launcher",
        )
    port = proxy.port if proxy else server.port
    try:
        ws = await kit.open_joined(port)
        await ping_pong(ws, warmup, 0)
        out: dict[str, Any] = {"config": CONFIGS[name], "messages": n, "window": window}
        snap = _snap(proxy, server)
        t0 = time.perf_counter()
        lat = await ping_pong(ws, n, warmup)
        wall = time.perf_counter() - t0
        pp = _delta(snap, _snap(proxy, server))
        out["pingpong"] = {
            "p50_ms": kit.percentile(lat, 50),
            "p99_ms": kit.percentile(lat, 99),
            "mean_ms": sum(lat) / len(lat),
            "msgs_per_s": n / wall,
            "wall_s": wall,
            **_per(pp, n),
        }
        snap = _snap(proxy, server)
        secs = await pipelined(ws, n, warmup + n, window)
        pl = _delta(snap, _snap(proxy, server))
        out["pipelined"] = {"msgs_per_s": n / secs, "wall_s": secs, **_per(pl, n)}
        out["proxy_cpu_s"] = (pp["proxy"] + pl["proxy"]) if proxy else None
        out["proxy_cpu_us_per_msg"] = out["proxy_cpu_s"] / (2 * n) * 1e6 if proxy else None
        out["proxy_rss_mib"] = proxy.rss() if proxy else None
        out["proxy_hwm_mib"] = kit.hwm_mib(proxy.pid) if proxy else None
        await ws.close()
        return out
    finally:
        if proxy:
            proxy.stop()


def _snap(proxy: kit.Proc | None, server: kit.Proc) -> dict[str, float]:
    return {"proxy": proxy.cpu() if proxy else 0.0, "server": server.cpu(), "client": _client_cpu()}


def _delta(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: b[k] - a[k] for k in a}


def _per(d: dict[str, float], n: int) -> dict[str, float]:
    return {
        "proxy_cpu_s": d["proxy"],
        "proxy_cpu_us_per_msg": d["proxy"] / n * 1e6,
        "server_cpu_us_per_msg": d["server"] / n * 1e6,
        "client_cpu_us_per_msg": d["client"] / n * 1e6,
    }


async def live(args, tmp: Path) -> list[dict[str, Any]]:
    names = ["direct", "bare", "rtproxy", "launcher"] + (
        [] if args.quick or args.no_reference else ["bare_fd1", "rtproxy_fd1"]
    )
    server = kit.start_server(tmp)
    try:
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        for rep in range(args.repeat):  # interleaved, so a burst of load elsewhere hits every config alike
            for name in names:
                log(
                    f"bench: {CONFIGS[name]}: {args.messages} ping-pong + {args.messages} pipelined"
                    + (f" (repeat {rep + 1}/{args.repeat})" if args.repeat > 1 else "")
                    + " ..."
                )
                runs[name].append(await measure(name, server, tmp, args.messages, args.window, args.warmup))
        results = []
        for name in names:
            r = _median(runs[name])
            r["repeats"] = len(runs[name])
            if len(runs[name]) > 1:
                r["runs"] = runs[name]
            results.append(r)
        return results
    finally:
        server.stop()


def _median(items: list[Any]) -> Any:
    """Element-wise median of equally shaped results (numbers; other leaves from the first)."""
    first = items[0]
    if isinstance(first, dict):
        return {k: _median([it[k] for it in items]) for k in first}
    if (
        isinstance(first, (int, float))
        and not isinstance(first, bool)
        and all(isinstance(x, (int, float)) for x in items)
    ):
        s = sorted(items)
        mid = len(s) // 2
        return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2
    return first


# ============================================================================================ offline

P_TEXT = (
    f'["1","%d","realtime:room","broadcast",{{"type":"broadcast","event":"cursor",'
    f'"payload":{kit.PAYLOAD_JSON}}}]'
)
P_ECHO = (
    f'[null,null,"realtime:room","broadcast",{{"event":"cursor","payload":{kit.PAYLOAD_JSON},'
    f'"type":"broadcast"}}]'
).encode()
PG = json.dumps(
    [
        None,
        None,
        "realtime:room",
        "postgres_changes",
        {
            "data": {
                "columns": [{"name": "id", "type": "int8"}, {"name": "title", "type": "text"}],
                "commit_timestamp": "2026-11-25T12:00:00Z",
                "errors": None,
                "record": {"id": 7, "title": "buy milk"},
                "schema": "public",
                "table": "todos",
                "type": "INSERT",
            },
            "ids": [38712345],
        },
    ],
    separators=(",", ":"),
).encode()
PRESENCE = json.dumps(
    [
        None,
        None,
        "realtime:room",
        "presence_diff",
        {
            "joins": {"u7": {"metas": [{"phx_ref": "F_3xkQ", "online_at": "2026-11-25T12:00:00Z"}]}},
            "leaves": {},
        },
    ],
    separators=(",", ":"),
).encode()
KIND4 = frames.encode_user_broadcast("realtime:room", "cursor", kit.PAYLOAD)


def _kind3(ref: int) -> bytes:
    return frames.encode_user_push("realtime:room", "cursor", kit.PAYLOAD, join_ref="1", ref=str(ref))


def synthetic_capture(total_frames: int, per_conn: int = 20_000) -> list[list]:
    """Connections of realistic traffic: join, then per 20 ms step one of: text broadcast + echo (40 %),
    kind 3 + kind 4 (40 %), a postgres_changes (10 %), a presence_diff (10 %); a heartbeat every 25 s."""
    conns = []
    t0 = 1_764_000_000.0
    left = total_frames
    while left > 0:
        n = min(per_conn, left)
        t = t0
        url = "http://worker.localhost/realtime/v1/websocket?apikey=x&vsn=2.0.0"
        ev: list = [
            Opened(url, [], t),
            Upstream(url.replace("worker.localhost", "ref.supabase.co"), [], t),
            Handshake(101, [], b"", t + 0.01),
        ]
        join = b'["1","1","realtime:room","phx_join",{"config":{"broadcast":{"self":true},"presence":{"key":""}}}]'
        ev += [
            Frame(True, False, join, t + 0.02),
            Frame(
                False,
                False,
                b'["1","1","realtime:room","phx_reply",{"response":{"postgres_changes":[]},"status":"ok"}]',
                t + 0.03,
            ),
        ]
        ref, next_hb, frames_n, step = 2, t + 25, 2, 0
        while frames_n < n:
            t += 0.02
            step += 1
            if t >= next_hb:
                ev += [
                    Frame(True, False, f'[null,"{ref}","phoenix","heartbeat",{{}}]'.encode(), t),
                    Frame(
                        False,
                        False,
                        f'[null,"{ref}","phoenix","phx_reply",{{"response":{{}},"status":"ok"}}]'.encode(),
                        t + 0.001,
                    ),
                ]
                ref, next_hb, frames_n = ref + 1, next_hb + 25, frames_n + 2
                continue
            r = step % 10
            if r < 4:
                ev += [Frame(True, False, (P_TEXT % ref).encode(), t), Frame(False, False, P_ECHO, t + 0.001)]
                ref, frames_n = ref + 1, frames_n + 2
            elif r < 8:
                ev += [Frame(True, True, _kind3(ref), t), Frame(False, True, KIND4, t + 0.001)]
                ref, frames_n = ref + 1, frames_n + 2
            elif r == 8:
                ev.append(Frame(False, False, PG, t))
                frames_n += 1
            else:
                ev.append(Frame(False, False, PRESENCE, t))
                frames_n += 1
        ev.append(Closed(1000, "", True, t + 0.1))
        conns.append(ev)
        left -= frames_n
    return conns


def _json_part(f: Frame) -> bytes:
    """The JSON text of a frame: the whole text frame, or a binary kind 3/4 frame's JSON payload."""
    if not f.binary:
        return f.data
    d = f.data
    if d[0] == frames.USER_PUSH:
        return d[7 + sum(d[1:6]) :]
    if d[0] == frames.USER_BROADCAST:
        return d[5 + sum(d[1:4]) :]
    return b"null"


def _analyze(conns: list[list], mode: str) -> tuple[int, float]:
    """(frames, seconds). mode: 'tracker' (Diagnoser.feed: rules on logged notes and once per second of
    event time, as the live tracker and rtdiagnose run them), 'every' (rules after every event, for
    comparison)."""
    n = 0
    d = Diagnoser()
    t0 = time.perf_counter()
    for events in conns:
        s = Session(conn="x")
        for ev in events:
            if mode == "every":
                s.feed(ev)
                d.check(s, ev.time)
            else:
                d.feed(s, ev)
            if type(ev) is Frame:
                n += 1
        d.end(s)
    return n, time.perf_counter() - t0


def _best(fn, repeat: int):
    best = None
    for _ in range(repeat):
        gc.collect()
        r = fn()
        if best is None or r[1] < best[1]:
            best = r
    return best


def analyzer(total: int, repeat: int) -> dict[str, Any]:
    conns = synthetic_capture(total)
    all_frames = [ev for c in conns for ev in c if type(ev) is Frame]
    parts = [_json_part(f) for f in all_frames]
    n = len(all_frames)

    def loads() -> tuple[int, float]:
        t0 = time.perf_counter()
        for p in parts:
            json.loads(p)
        return n, time.perf_counter() - t0

    def decode() -> tuple[int, float]:
        t0 = time.perf_counter()
        for f in all_frames:
            frames.decode(f.data, binary=f.binary, from_client=f.from_client)
        return n, time.perf_counter() - t0

    out: dict[str, Any] = {
        "frames": n,
        "connections": len(conns),
        "bytes_avg": sum(len(f.data) for f in all_frames) / n,
    }
    for key, fn in (
        ("json_loads", loads),
        ("decode", decode),
        ("tracker_rate", lambda: _analyze(conns, "tracker")),
    ):
        frames_n, secs = _best(fn, repeat)
        out[key] = {"frames_per_s": frames_n / secs, "us_per_frame": secs / frames_n * 1e6}
    sub = synthetic_capture(min(total, 20_000))  # checking after every frame is slow: a smaller capture
    frames_n, secs = _best(lambda: _analyze(sub, "every"), 1)
    out["every_frame"] = {
        "frames_per_s": frames_n / secs,
        "us_per_frame": secs / frames_n * 1e6,
        "frames": frames_n,
    }
    out["ratio_tracker_vs_json"] = out["tracker_rate"]["us_per_frame"] / out["json_loads"]["us_per_frame"]
    out["ratio_decode_vs_json"] = out["decode"]["us_per_frame"] / out["json_loads"]["us_per_frame"]
    return out


def _joined_session() -> Session:
    s = Session(conn="x")
    for ev in synthetic_capture(1)[0][:5]:  # open, upstream, 101, phx_join, its ok reply
        s.feed(ev)
    assert s.current["realtime:room"].state == "joined"
    return s


def frame_costs(iterations: int) -> dict[str, Any]:
    """Per frame type: frames.decode, Session.feed (decode + track), json.loads of its JSON; µs."""
    hb = [
        (
            Frame(True, False, f'[null,"{i}","phoenix","heartbeat",{{}}]'.encode(), 1.0),
            Frame(
                False,
                False,
                f'[null,"{i}","phoenix","phx_reply",{{"response":{{}},"status":"ok"}}]'.encode(),
                1.001,
            ),
        )
        for i in range(iterations)
    ]
    kinds = {
        "text broadcast (client array)": [
            Frame(True, False, (P_TEXT % (i + 10)).encode(), 1.0) for i in range(iterations)
        ],
        "text broadcast echo (server array)": [Frame(False, False, P_ECHO, 1.0)] * iterations,
        "kind 3 user broadcast (client)": [Frame(True, True, _kind3(i + 10), 1.0) for i in range(iterations)],
        "kind 4 user broadcast (server)": [Frame(False, True, KIND4, 1.0)] * iterations,
        "heartbeat + phx_reply (pair, per frame)": [f for pair in hb for f in pair],
        "postgres_changes (server)": [Frame(False, False, PG, 1.0)] * iterations,
        "presence_diff (server)": [Frame(False, False, PRESENCE, 1.0)] * iterations,
    }
    out: dict[str, Any] = {}

    def loads(fl: list[Frame], parts: list[bytes], s: Session) -> None:
        for p in parts:
            json.loads(p)

    def decode(fl: list[Frame], parts: list[bytes], s: Session) -> None:
        for f in fl:
            frames.decode(f.data, binary=f.binary, from_client=f.from_client)

    def feed(fl: list[Frame], parts: list[bytes], s: Session) -> None:
        for f in fl:
            s.feed(f)

    for name, fl in kinds.items():
        parts = [_json_part(f) for f in fl]
        row = {}
        for what, fn in (("json_loads", loads), ("decode", decode), ("feed", feed)):
            best = math.inf
            for _ in range(3):
                s = _joined_session()
                gc.collect()
                t0 = time.perf_counter()
                fn(fl, parts, s)
                best = min(best, time.perf_counter() - t0)
            row[what + "_us"] = best / len(fl) * 1e6
        out[name] = row
    s = _joined_session()
    for f in kinds["text broadcast (client array)"][:1000]:
        s.feed(f)  # steady state: 1000 unanswered broadcast refs pending, as a long-lived client has
    d = Diagnoser()
    t0 = time.perf_counter()
    for _ in range(2000):
        d.check(s, 5.0)
    out["_diagnoser_check_us"] = {"pending_1000": (time.perf_counter() - t0) / 2000 * 1e6}
    s.pending.clear()
    t0 = time.perf_counter()
    for _ in range(2000):
        d.check(s, 5.0)
    out["_diagnoser_check_us"]["pending_0"] = (time.perf_counter() - t0) / 2000 * 1e6
    out["_hooks"] = hook_costs(iterations)
    return out


def hook_costs(iterations: int) -> dict[str, float]:
    """rtproxy's mitmproxy hooks per WebSocket message, called directly on a test flow (no proxy): what
    rtproxy adds to each message on top of mitmproxy's own work. µs per message."""
    from mitmproxy import flowfilter, websocket
    from mitmproxy.test import tflow
    from mitmproxy.version import VERSION
    from rtproxy_mitm.faults import Faults
    from rtproxy_mitm.flowevents import REALTIME
    from rtproxy_mitm.quiet import REALTIME_FLOWS_HIDDEN
    from rtproxy_mitm.sanitize import Sanitize, messages_not_sanitized
    from rtproxy_mitm.tracker import Tracker
    from rtproxy_mitm.trim import Trim
    from wsproto.frame_protocol import Opcode

    flow = tflow.twebsocketflow(messages=False)
    flow.request.path = "/realtime/v1/websocket?apikey=x&vsn=2.0.0"
    flow.metadata[REALTIME] = True
    tracker = Tracker()
    faults = Faults(report=tracker.report_event)
    s = _joined_session()
    tracker.live[flow.id] = s
    trim = Trim()
    sanitizer = Sanitize()
    sanitizer.messages = messages_not_sanitized(VERSION) is None  # as its load sets it
    sanitizer.flows[flow.id] = {}  # as after the upgrade's response hook
    msgs = []
    for i in range(iterations):
        if i % 2 == 0:
            data, op, fc = (
                ((P_TEXT % (i + 10)).encode(), Opcode.TEXT, True)
                if i % 4 == 0
                else (_kind3(i + 10), Opcode.BINARY, True)
            )
        else:
            data, op, fc = (P_ECHO, Opcode.TEXT, False) if i % 4 == 1 else (KIND4, Opcode.BINARY, False)
        msgs.append(websocket.WebSocketMessage(op, fc, data, 1_764_000_000.0 + i * 1e-3))
    filt = flowfilter.parse(REALTIME_FLOWS_HIDDEN)
    out: dict[str, float] = {}
    steps = [
        ("faults.websocket_message", faults.websocket_message),
        ("tracker.websocket_message", tracker.websocket_message),
        ("trim.websocket_message (rt_keep_messages default)", trim.websocket_message),
        ("sanitize.websocket_message", sanitizer.websocket_message),
        ("dumper_filter match (flow_detail>=1)", lambda f: flowfilter.match(filt, f)),
    ]
    for name, hook in steps:
        flow.websocket.messages.clear()
        gc.collect()
        t_total = 0.0
        for m in msgs:
            flow.websocket.messages.append(m)
            t0 = time.perf_counter()
            hook(flow)
            t_total += time.perf_counter() - t0
        out[name] = t_total / len(msgs) * 1e6
    out["total"] = sum(v for k, v in out.items() if not k.startswith("dumper"))
    return out


# ============================================================================================ memory


async def memory(args, tmp: Path) -> dict[str, Any]:
    keeps = [int(k) for k in args.keep.split(",") if k.strip()]
    out: dict[str, Any] = {"messages": args.messages, "window": args.window, "runs": []}
    server = kit.start_server(tmp)
    try:
        for keep in keeps:
            name = f"mem-keep-{keep}"
            sets = (f"rt_keep_messages={keep}",)
            log(f"bench: memory, {name}: {args.messages} messages over one flow ...")
            proxy = kit.start_mitmdump(tmp, name, server.port, rtproxy=True, sets=sets, probe=True)
            try:
                out["runs"].append(await _memory_run(proxy, args, keep))
            finally:
                proxy.stop()
    finally:
        server.stop()
    return out


async def _memory_run(proxy: kit.Proc, args, keep: int) -> dict[str, Any]:
    n = args.messages
    rss0 = proxy.rss()
    ws = await kit.open_joined(proxy.port)
    counter = Counter()
    samples: list[tuple[float, int, float]] = []
    t0 = time.monotonic()
    stop = asyncio.Event()

    async def sampler() -> None:
        while not stop.is_set():
            samples.append((time.monotonic() - t0, counter.received, proxy.rss()))
            try:
                await asyncio.wait_for(stop.wait(), args.sample_s)
            except TimeoutError:
                pass

    task = asyncio.create_task(sampler())
    cpu0 = proxy.cpu()
    secs = await pipelined(ws, n, 0, args.window, counter, timeout=120 + n / 100)
    cpu = proxy.cpu() - cpu0
    stop.set()
    await task
    end_rss = proxy.rss()
    samples.append((time.monotonic() - t0, counter.received, end_rss))
    objs = await kit.probe(proxy.port, objects=True)
    await ws.close()
    await asyncio.sleep(2)
    after_close = proxy.rss()
    warm = next((s for s in samples if s[1] >= max(n * 0.05, min(n, 10_000))), samples[-1])
    slope = ((end_rss - warm[2]) * 1024 / ((n - warm[1]) / 1000)) if n > warm[1] else float("nan")
    return {
        "keep": keep,
        "messages": n,
        "seconds": secs,
        "msgs_per_s": n / secs,
        "proxy_cpu_us_per_msg": cpu / n * 1e6,
        "rss_start_mib": rss0,
        "rss_after_warmup_mib": warm[2],
        "warmup_messages": warm[1],
        "rss_end_mib": end_rss,
        "rss_peak_mib": kit.hwm_mib(proxy.pid),
        "rss_after_close_mib": after_close,
        "growth_kib_per_1000_msgs": slope,
        "ws_messages_alive_at_end": objs.get("ws_messages_alive"),
        "samples": [(round(a, 1), b, round(c, 1)) for a, b, c in samples],
    }


# ============================================================================================ profile


async def profile(args, tmp: Path) -> dict[str, Any]:
    out_path = Path(args.profile).resolve()
    server = kit.start_server(tmp)
    try:
        launcher = args.profile_of == "launcher"
        proxy = kit.start_mitmdump(
            tmp,
            "profile",
            server.port,
            rtproxy=True,
            wrap=[
                kit.PYTHON,
                "-m",
                "cProfile",
                "-o",
                str(out_path),
                kit.RTPROXY if launcher else kit.MITMDUMP,
            ],
            launcher=launcher,
        )
        try:
            ws = await kit.open_joined(proxy.port)
            await ping_pong(ws, args.warmup, 0)
            secs = await pipelined(ws, args.messages, args.warmup, args.window)
            await ws.close()
        finally:
            proxy.stop(timeout=60)
    finally:
        server.stop()
    st = pstats.Stats(str(out_path))
    total = st.total_tt  # type: ignore[attr-defined]
    rows = []
    for (file, line, fn), (cc, nc, tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        rows.append(
            {
                "where": f"{Path(file).name}:{line}({fn})",
                "file": file,
                "calls": nc,
                "tottime_s": tt,
                "cumtime_s": ct,
            }
        )
    by_tt = sorted(rows, key=lambda r: -r["tottime_s"])[:25]
    mine = sorted((r for r in rows if "/addon/" in r["file"]), key=lambda r: -r["cumtime_s"])[:25]
    return {
        "profile": str(out_path),
        "of": "the rtproxy command" if args.profile_of == "launcher" else "mitmdump + rtproxy",
        "messages": args.messages,
        "pipelined_s": secs,
        "total_s": total,
        "top_tottime": by_tt,
        "rtproxy_top_cumtime": mine,
    }


# ============================================================================================ output


def fmt(v: Any, spec: str = ",.0f") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, spec)


def print_table(res: dict[str, Any]) -> None:
    m = res["machine"]
    print(
        f"rtproxy bench  {m['date']}  nproc {m['nproc']} ({m['cpu']})  Python {m['python']}  "
        f"mitmproxy {m['mitmproxy']}  websockets {m['websockets']}  load avg at start {m.get('loadavg', '-')}"
    )
    if "live" in res:
        n = res["live"][0]["messages"]
        reps = res["live"][0].get("repeats", 1)
        print(
            f"\nlive, loopback: {n:,} ping-pong + {n:,} pipelined (window {res['live'][0]['window']}) messages "
            f"per config{f', median of {reps} interleaved runs' if reps > 1 else ''}; a message = one "
            "client frame (text array / kind 3, alternating, ~110-byte JSON payload) + its echo (array / kind 4)\n(2) and (3): --set flow_detail=0, termlog_verbosity=info "
            "(default); (2b)/(3b): mitmdump's default flow_detail=1"
        )
        hdr = (
            f"{'config':<42}{'rtt p50':>9}{'rtt p99':>9}{'ping-pong':>11}{'pipelined':>11}{'proxy CPU':>11}"
            f"{'CPU/msg':>9}{'CPU/msg':>9}{'proxy RSS':>11}"
        )
        units = (
            f"{'':<42}{'ms':>9}{'ms':>9}{'msg/s':>11}{'msg/s':>11}{'s total':>11}"
            f"{'pp µs':>9}{'pl µs':>9}{'MiB':>11}"
        )
        print(hdr)
        print(units)
        by = {}
        for r in res["live"]:
            by[r["config"]] = r
            print(
                f"{r['config']:<42}{fmt(r['pingpong']['p50_ms'], '.2f'):>9}{fmt(r['pingpong']['p99_ms'], '.2f'):>9}"
                f"{fmt(r['pingpong']['msgs_per_s']):>11}{fmt(r['pipelined']['msgs_per_s']):>11}"
                f"{fmt(r['proxy_cpu_s'], '.2f'):>11}"
                f"{fmt(r['pingpong']['proxy_cpu_us_per_msg'] if r['proxy_cpu_s'] is not None else None):>9}"
                f"{fmt(r['pipelined']['proxy_cpu_us_per_msg'] if r['proxy_cpu_s'] is not None else None):>9}"
                f"{fmt(r['proxy_rss_mib'], '.1f'):>11}"
            )

        def ratio(x, y):
            return x / y if x and y else None

        for label, num, den in (
            ("(3)/(2)", "rtproxy", "bare"),
            ("(4)/(3)", "launcher", "rtproxy"),
            ("(4)/(2)", "launcher", "bare"),
        ):
            t, b = by.get(CONFIGS[num]), by.get(CONFIGS[den])
            if b and t:
                print(
                    f"{'ratio ' + label:<42}"
                    f"{fmt(ratio(t['pingpong']['p50_ms'], b['pingpong']['p50_ms']), '.2f'):>9}"
                    f"{fmt(ratio(t['pingpong']['p99_ms'], b['pingpong']['p99_ms']), '.2f'):>9}"
                    f"{fmt(ratio(t['pingpong']['msgs_per_s'], b['pingpong']['msgs_per_s']), '.2f'):>11}"
                    f"{fmt(ratio(t['pipelined']['msgs_per_s'], b['pipelined']['msgs_per_s']), '.2f'):>11}"
                    f"{fmt(ratio(t['proxy_cpu_s'], b['proxy_cpu_s']), '.2f'):>11}"
                    f"{fmt(ratio(t['pingpong']['proxy_cpu_us_per_msg'], b['pingpong']['proxy_cpu_us_per_msg']), '.2f'):>9}"
                    f"{fmt(ratio(t['pipelined']['proxy_cpu_us_per_msg'], b['pipelined']['proxy_cpu_us_per_msg']), '.2f'):>9}"
                    f"{fmt(ratio(t['proxy_rss_mib'], b['proxy_rss_mib']), '.2f'):>11}"
                )
        sv = [
            f"{r['config'].split(' ')[0]} {r['pipelined']['server_cpu_us_per_msg']:.0f}/"
            f"{r['pipelined']['client_cpu_us_per_msg']:.0f}"
            for r in res["live"]
        ]
        print("server/client CPU µs per pipelined message: " + ", ".join(sv))
    if "analyzer" in res:
        a = res["analyzer"]
        print(
            f"\noffline analyzer: synthetic capture of {a['frames']:,} frames in {a['connections']} connection(s), "
            f"{a['bytes_avg']:.0f} bytes/frame avg (text and binary broadcasts + echoes, heartbeats, "
            "presence_diff, postgres_changes)"
        )
        print(f"{'':<58}{'frames/s':>12}{'µs/frame':>10}")
        for key, label in (
            ("json_loads", "json.loads of each frame's JSON"),
            ("decode", "frames.decode"),
            ("tracker_rate", "analyzer: decode + track + diagnose (tracker rate)"),
            ("every_frame", "  same, Diagnoser.check after every frame (for comparison)"),
        ):
            print(f"{label:<58}{fmt(a[key]['frames_per_s']):>12}{fmt(a[key]['us_per_frame'], '.2f'):>10}")
        print(
            f"{'ratio analyzer/json.loads (time per frame)':<58}{'':>12}{a['ratio_tracker_vs_json']:>10.2f}"
        )
    if "frame_costs" in res:
        fc = res["frame_costs"]
        print(f"\nper frame, µs (best of 3, {res['frame_cost_iterations']:,} frames each, joined session)")
        print(f"{'frame':<42}{'json.loads':>11}{'decode':>9}{'Session.feed':>14}")
        for name, row in fc.items():
            if name.startswith("_"):
                continue
            print(f"{name:<42}{row['json_loads_us']:>11.2f}{row['decode_us']:>9.2f}{row['feed_us']:>14.2f}")
        dc = fc["_diagnoser_check_us"]
        print(
            f"Diagnoser.check, one session: {dc['pending_1000']:.1f} µs with 1000 unanswered broadcast refs "
            f"pending, {dc['pending_0']:.1f} µs with none"
        )
        hooks = fc["_hooks"]
        if "error" not in hooks:
            print(
                "rtproxy hooks per WebSocket message (in-process, test flow): "
                + ", ".join(f"{k} {v:.2f}" for k, v in hooks.items())
                + " µs"
            )
    if "memory" in res:
        mem = res["memory"]
        print(
            f"\nmemory: one flow through mitmdump + rtproxy, {mem['messages']:,} messages pipelined "
            f"(window {mem['window']})"
        )
        print(
            f"{'rt_keep_messages':<26}{'msg/s':>8}{'start':>8}{'warm':>14}{'end':>8}{'peak':>8}{'closed':>8}"
            f"{'KiB/1k msg':>12}{'ws msgs alive':>15}"
        )
        for r in mem["runs"]:
            print(
                f"{r['keep']!s:<26}{r['msgs_per_s']:>8,.0f}{r['rss_start_mib']:>8.1f}"
                f"{r['rss_after_warmup_mib']:>7.1f}@{r['warmup_messages']:<6,}{r['rss_end_mib']:>8.1f}"
                f"{r['rss_peak_mib']:>8.1f}{r['rss_after_close_mib']:>8.1f}{fmt(r['growth_kib_per_1000_msgs'], '.1f'):>12}"
                f"{fmt(r['ws_messages_alive_at_end'], ','):>15}"
            )
        print("(RSS in MiB: at start, after warm-up @ messages, at the end, peak, 2 s after the flow closed)")
    if "profile" in res:
        p = res["profile"]
        print(
            f"\nprofile of {p['of']} ({p['messages']:,} pipelined messages, {p['pipelined_s']:.1f} s "
            f"under cProfile; {p['profile']})"
        )
        print("top by own time:")
        for r in p["top_tottime"]:
            print(
                f"  {r['tottime_s']:8.3f} s own {r['cumtime_s']:8.3f} s cum {r['calls']:>10,}  {r['where']}"
            )
        print("rtproxy functions by cumulative time:")
        for r in p["rtproxy_top_cumtime"]:
            print(
                f"  {r['cumtime_s']:8.3f} s cum {r['tottime_s']:8.3f} s own {r['calls']:>10,}  {r['where']}"
            )


# ============================================================================================ main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    ap.add_argument("--json", action="store_true", help="print the numbers as JSON instead of the table")
    ap.add_argument(
        "--messages", type=int, help="messages per phase (default 10000; --quick 1000; --memory 1000000)"
    )
    ap.add_argument("--quick", action="store_true", help="small run (~20 s), no (2b)/(3b) reference rows")
    ap.add_argument("--window", type=int, default=256, help="pipelined: messages in flight (default 256)")
    ap.add_argument("--warmup", type=int, help="ping-pong messages before measuring (default 200; quick 50)")
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run each live config this many times, interleaved; the table shows medians (default 1)",
    )
    ap.add_argument("--no-reference", action="store_true", help="skip the flow_detail=1 rows (2b)/(3b)")
    ap.add_argument("--no-live", action="store_true", help="offline analyzer and per-frame costs only")
    ap.add_argument(
        "--analyzer-frames", type=int, help="synthetic capture size (default 200000; quick 20000)"
    )
    ap.add_argument("--memory", action="store_true", help="memory mode (see above)")
    ap.add_argument(
        "--keep", default="100,0", help="--memory: rt_keep_messages values, comma-separated (default 100,0)"
    )
    ap.add_argument("--sample-s", type=float, default=1.0, help="--memory: RSS sampling interval, seconds")
    ap.add_argument("--profile", metavar="OUT.prof", help="profile mode (see above)")
    ap.add_argument(
        "--profile-of",
        choices=("mitmdump", "launcher"),
        default="mitmdump",
        help="--profile: mitmdump -s addon/rtproxy.py (default) or the rtproxy command",
    )
    ap.add_argument(
        "--table", metavar="RESULT.json", help="print the table of a saved --json result and exit"
    )
    args = ap.parse_args(argv)
    if args.table:
        print_table(json.loads(Path(args.table).read_text()))
        return 0
    if args.messages is None:
        args.messages = 1_000_000 if args.memory else (1000 if args.quick else 10_000)
    if args.warmup is None:
        args.warmup = 50 if args.quick else 200
    args.warmup = min(args.warmup, max(args.messages, 1))
    if args.analyzer_frames is None:
        args.analyzer_frames = 20_000 if args.quick else 200_000
    if args.messages < 1 or args.window < 1 or args.repeat < 1:
        ap.error("--messages, --window and --repeat must be positive")

    res: dict[str, Any] = {"machine": kit.machine()}
    with tempfile.TemporaryDirectory(prefix="rtbench-") as d:
        tmp = Path(d)
        if args.memory:
            res["memory"] = asyncio.run(memory(args, tmp))
        elif args.profile:
            res["profile"] = asyncio.run(profile(args, tmp))
        else:
            if not args.no_live:
                res["live"] = asyncio.run(live(args, tmp))
            log(f"bench: offline analyzer over {args.analyzer_frames:,} synthetic frames ...")
            res["analyzer"] = analyzer(args.analyzer_frames, repeat=1 if args.quick else 3)
            iterations = 2000 if args.quick else 20_000
            res["frame_cost_iterations"] = iterations
            res["frame_costs"] = frame_costs(iterations)
    if args.json:
        print(json.dumps(res, indent=2, default=str))
    else:
        print_table(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
