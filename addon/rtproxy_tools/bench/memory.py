"""rtbench --memory: N messages pipelined over ONE flow through mitmdump + rtproxy, the proxy's RSS
sampled every --sample-s seconds, once per --keep value (rt_keep_messages); at the end, how many
WebSocket messages the proxy still holds (state_probe.py)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from . import kit
from .live import Counter, pipelined


async def memory(args, tmp: Path) -> dict[str, Any]:
    keeps = [int(k) for k in args.keep.split(",") if k.strip()]
    out: dict[str, Any] = {"messages": args.messages, "window": args.window, "runs": []}
    server = kit.start_server(tmp)
    try:
        for keep in keeps:
            name = f"mem-keep-{keep}"
            sets = (f"rt_keep_messages={keep}",)
            kit.log(f"bench: memory, {name}: {args.messages} messages over one flow ...")
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
