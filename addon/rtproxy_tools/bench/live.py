"""rtbench's live comparison: the same messages over one WebSocket, directly and through each proxy
configuration (CONFIGS), as ping-pong round trips and pipelined; with the proxy's and the server's CPU
time and the proxy's RSS. `ping_pong` and `pipelined` drive the socket for --memory and --profile too."""

from __future__ import annotations

import asyncio
import resource
import time
from pathlib import Path
from typing import Any

from . import kit

CONFIGS = {
    "direct": "(1) direct client <-> local server",
    "bare": "(2) mitmdump + reroute only",
    "rtproxy": "(3) mitmdump + rtproxy",
    "launcher": "(4) rtproxy command",
    "bare_fd1": "(2b) mitmdump + reroute, flow_detail=1",
    "rtproxy_fd1": "(3b) mitmdump + rtproxy, flow_detail=1",
}


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
                kit.log(
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
