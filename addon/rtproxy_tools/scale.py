"""rtproxy at scale (issues #5, #14): many concurrent Realtime connections through the rtproxy command
(--proxy launcher, the default), mitmdump + rtproxy (--proxy rtproxy) or bare mitmdump (--proxy bare).

    rtscale [--connections 1000] [--minutes 3] [--rounds 10] [--heartbeat 5] [--json]

1. Hold: opens --connections vsn 2.0.0 sockets through mitmdump + rtproxy (reverse mode, as the Worker) to
   the local Realtime server (rtlocal, its own process), each joined to a channel and
   heartbeating every --heartbeat seconds (shortened from realtime-js' 25 s), for --minutes; reports every
   connection that failed to open or was dropped, and heartbeats left unanswered until the next one.
2. Churn: --rounds rounds of --connections connect + join + close.
3. What is left in the proxy: rtproxy's live sessions, counted two ways: from mitmdump's log (each
   connection logs `[rt <id>] connect ...` and, when it ends, `closed by ...` / `upgrade rejected` /
   `hop: upstream-unreachable`), and by asking bench/state_probe.py (loaded next to the addon; it reads the
   tracker's `live` dict and `finished` deque and the diagnoser's per-session sets). Also the proxy's RSS,
   open file descriptors and mitmproxy's own connection table.

1,000 connections are 2,000 sockets in mitmdump and 1,000 in the server and in this client process; the
open-files soft limit is raised (resource.setrlimit, up to the hard limit) when it is too low, and
inherited by the subprocesses. Everything binds 127.0.0.1; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import resource
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.exceptions import ConnectionClosed

from rtproxy_tools import version_text

from .bench import kit
from .bench.kit import log
from .launcher import raise_nofile

CONNECT_RE = re.compile(r"\[rt [0-9a-f]+\] connect ")
END_RE = re.compile(r"\[rt [0-9a-f]+\] (closed by |upgrade rejected|hop: upstream-unreachable)")


def client_nofile(needed: int) -> dict[str, int]:
    """The client's own open-file limit, raised as the rtproxy command raises its own."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    soft, hard, _ = raise_nofile(needed)
    return {"soft_before": before, "soft": soft, "hard": hard, "needed": needed}


@dataclass
class Stats:
    opened: int = 0
    failed: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    hb_sent: int = 0
    hb_answered: int = 0
    hb_late: int = 0  # still unanswered when the next was due
    rtt_ms: list[float] = field(default_factory=list)
    connect_ms: list[float] = field(default_factory=list)


async def _open(port: int, i: int, sem: asyncio.Semaphore, st: Stats):
    async with sem:
        t0 = time.perf_counter()
        try:
            ws = await kit.open_joined(port, f"realtime:room{i % 100}", self_broadcast=False, timeout=30)
        except Exception as e:  # noqa: BLE001 - every failure is reported, none stops the run
            st.failed.append(f"conn {i}: {type(e).__name__}: {e}"[:200])
            return None
        st.connect_ms.append((time.perf_counter() - t0) * 1000)
        st.opened += 1
        return ws


async def _hold_one(ws, i: int, deadline: float, interval: float, st: Stats) -> asyncio.Task:
    """Heartbeat every `interval` s until `deadline`. A socket whose reader ends before then was dropped.
    Returns the reader task (it ends when the caller closes the socket)."""
    sent_at: dict[str, float] = {}

    async def reader() -> None:
        async for raw in ws:
            msg = json.loads(raw) if isinstance(raw, str) else None
            if msg and msg[2] == "phoenix" and msg[3] == "phx_reply":
                t = sent_at.pop(msg[1], None)
                if t is not None:
                    st.hb_answered += 1
                    st.rtt_ms.append((time.monotonic() - t) * 1000)

    rd = asyncio.create_task(reader())
    beats = 0
    try:
        # spread the heartbeats like independent clients
        await asyncio.wait(
            {rd}, timeout=random.uniform(0, min(interval, max(0.0, deadline - time.monotonic())))
        )
        while time.monotonic() < deadline and not rd.done():
            if sent_at:
                st.hb_late += len(sent_at)
                sent_at.clear()
            beats += 1
            sent_at[str(100 + beats)] = time.monotonic()
            await ws.send(kit.heartbeat(100 + beats))
            st.hb_sent += 1
            await asyncio.wait({rd}, timeout=min(interval, max(0.0, deadline - time.monotonic())))
    except ConnectionClosed:
        await asyncio.wait({rd}, timeout=5)
    if rd.done():
        exc = rd.exception() if not rd.cancelled() else None
        rcvd = ws.close_rcvd
        why = f"close {rcvd.code} {rcvd.reason!r}" if rcvd else "no close frame"
        st.dropped.append(f"conn {i}: dropped after {beats} heartbeat(s): {why} {exc or ''}"[:200])
    return rd


async def _close_all(socks: list) -> None:
    async def close(ws):
        try:
            await asyncio.wait_for(ws.close(1000), 15)
        except Exception:  # noqa: BLE001, S110 - a socket that does not close cleanly shows up in the counts
            pass

    await asyncio.gather(*(close(ws) for ws in socks if ws is not None))


async def _settle(proxy: kit.Proc, timeout: float = 30.0) -> dict[str, Any]:
    """Wait until rtproxy holds no live session (bounded); the probe's last answer."""
    deadline = time.monotonic() + timeout
    while True:
        p = await kit.probe(proxy.port)
        if not p.get("live") or time.monotonic() > deadline:
            return p
        await asyncio.sleep(0.5)


def log_counts(proxy: kit.Proc) -> dict[str, int]:
    text = proxy.text()
    connects = len(CONNECT_RE.findall(text))
    ends = len(END_RE.findall(text))
    return {
        "connect_lines": connects,
        "end_lines": ends,
        "live_inferred": connects - ends,
        "internal_errors": text.count("rtproxy internal error"),
        "findings": len(re.findall(r"\] finding ", text)),
        "tracebacks": text.count("Traceback"),
    }


def snapshot(proxy: kit.Proc) -> dict[str, Any]:
    return {"rss_mib": round(proxy.rss(), 1), "cpu_s": round(proxy.cpu(), 2), "fds": kit.open_fds(proxy.pid)}


async def run(args, tmp: Path) -> dict[str, Any]:
    res: dict[str, Any] = {
        "machine": kit.machine(),
        "connections": args.connections,
        "hold_s": args.seconds,
        "rounds": args.rounds,
        "heartbeat_s": args.heartbeat,
    }
    res["nofile"] = client_nofile(2 * args.connections + 512)
    server = kit.start_server(tmp)
    rt = args.proxy in ("rtproxy", "launcher")
    res["proxy"] = {
        "rtproxy": "mitmdump + rtproxy (defaults)",
        "launcher": "the rtproxy command (defaults)",
        "bare": "mitmdump + bare_reroute.py",
    }[args.proxy]
    sets = (f"rt_timers=heartbeat={max(args.heartbeat * 2, 1):g}",) if rt else ()
    proxy = kit.start_mitmdump(
        tmp,
        "scale",
        server.port,
        rtproxy=rt,
        flow_detail=None,
        probe=True,
        sets=sets + tuple(args.set),
        launcher=args.proxy == "launcher",
    )
    try:
        res["proxy_start"] = snapshot(proxy)
        sem = asyncio.Semaphore(args.concurrency)

        # ---------------------------------------------------------------- hold
        st = Stats()
        log(f"scale: opening {args.connections} connections ...")
        t0 = time.monotonic()
        socks = await asyncio.gather(*(_open(proxy.port, i, sem, st) for i in range(args.connections)))
        ramp = time.monotonic() - t0
        opened = snapshot(proxy)
        probe_open = await kit.probe(proxy.port)
        log(
            f"scale: {st.opened} open in {ramp:.1f} s; holding {args.seconds:g} s, heartbeat {args.heartbeat:g} s ..."
        )
        deadline = time.monotonic() + args.seconds
        cpu0, h0 = proxy.cpu(), time.monotonic()
        samples = []

        async def sampler() -> None:
            while time.monotonic() < deadline:
                await asyncio.sleep(min(5.0, max(0.1, deadline - time.monotonic())))
                p = await kit.probe(proxy.port)
                samples.append(
                    {"t": round(time.monotonic() - h0, 1), **snapshot(proxy), "live": p.get("live")}
                )

        holders = [
            _hold_one(ws, i, deadline, args.heartbeat, st) for i, ws in enumerate(socks) if ws is not None
        ]
        _, *readers = await asyncio.wait_for(asyncio.gather(sampler(), *holders), args.seconds + 60)
        hold_cpu = proxy.cpu() - cpu0
        hold_wall = time.monotonic() - h0
        held = snapshot(proxy)
        await _close_all(socks)
        slow_closes = 0  # closes whose close frame came back after websockets' close timeout, or never
        if readers:
            done, pending = await asyncio.wait(readers, timeout=15)
            for t in pending:
                t.cancel()
            slow_closes = sum(1 for t in done if not t.cancelled() and t.exception() is not None)
        after_hold = await _settle(proxy)
        res["hold"] = {
            "opened": st.opened,
            "failed": len(st.failed),
            "failed_examples": st.failed[:5],
            "dropped": len(st.dropped),
            "dropped_examples": st.dropped[:5],
            "ramp_s": round(ramp, 2),
            "connect_p50_ms": kit.percentile(st.connect_ms, 50),
            "connect_p99_ms": kit.percentile(st.connect_ms, 99),
            "hb_sent": st.hb_sent,
            "hb_answered": st.hb_answered,
            "hb_late": st.hb_late,
            "hb_rtt_p50_ms": kit.percentile(st.rtt_ms, 50),
            "hb_rtt_p99_ms": kit.percentile(st.rtt_ms, 99),
            "proxy_after_open": opened,
            "probe_after_open": probe_open,
            "proxy_end_of_hold": held,
            "proxy_cpu_s": round(hold_cpu, 2),
            "proxy_cpu_pct": round(100 * hold_cpu / hold_wall, 1),
            "samples": samples,
            "probe_after_close": after_hold,
            "slow_closes": slow_closes,
            "proxy_after_close": snapshot(proxy),
        }
        log(
            f"scale: hold done: {len(st.dropped)} dropped, {st.hb_late} late heartbeats; "
            f"live after close {after_hold.get('live')}"
        )

        # ---------------------------------------------------------------- churn
        rounds: list[dict[str, Any]] = []
        for r in range(args.rounds):
            rs = Stats()
            t0 = time.monotonic()
            socks = await asyncio.gather(*(_open(proxy.port, i, sem, rs) for i in range(args.connections)))
            await _close_all(socks)
            p = await _settle(proxy)
            cpu_before = rounds[-1]["cpu_s"] if rounds else res["hold"]["proxy_after_close"]["cpu_s"]
            rounds.append(
                {
                    "round": r + 1,
                    "opened": rs.opened,
                    "failed": len(rs.failed),
                    "failed_examples": rs.failed[:3],
                    "seconds": round(time.monotonic() - t0, 1),
                    **snapshot(proxy),
                    "live": p.get("live"),
                    "finished": p.get("finished"),
                    "proxy_connections": p.get("proxy_connections"),
                }
            )
            rounds[-1]["proxy_cpu_ms_per_conn"] = round(
                (rounds[-1]["cpu_s"] - cpu_before) * 1000 / args.connections, 2
            )
            log(
                f"scale: round {r + 1}/{args.rounds}: {rs.opened} opened+closed, {len(rs.failed)} failed, "
                f"live {p.get('live')}, RSS {rounds[-1]['rss_mib']} MiB"
            )
        res["rounds_detail"] = rounds
        await asyncio.sleep(1)
        res["final_probe"] = await kit.probe(proxy.port, objects=True)
        res["final_proxy"] = snapshot(proxy)
        res["log"] = log_counts(proxy)
        res["server_rss_mib"] = round(server.rss(), 1)
    finally:
        proxy.stop()
        server.stop()
    res["log_final"] = log_counts(proxy)  # after exit: the done() summary line is in as well
    return res


def print_report(res: dict[str, Any]) -> None:
    m = res["machine"]
    print(
        f"rtproxy scale  {m['date']}  nproc {m['nproc']}  Python {m['python']}  mitmproxy {m['mitmproxy']}  "
        f"load avg at start {m.get('loadavg', '-')}"
    )
    nf = res["nofile"]
    print(
        f"open files: soft limit {nf['soft_before']} -> {nf['soft']} (hard {nf['hard']}, needed ~{nf['needed']})"
    )
    h = res["hold"]
    print(
        f"\nhold: {res['connections']} connections x {res['hold_s']:g} s through {res['proxy']}, heartbeat "
        f"every {res['heartbeat_s']:g} s"
    )
    print(
        f"  opened {h['opened']}, failed to open {h['failed']}, dropped while held {h['dropped']}; "
        f"ramp {h['ramp_s']} s (connect+join p50 {h['connect_p50_ms']:.0f} ms, p99 {h['connect_p99_ms']:.0f} ms)"
    )
    for e in h["failed_examples"] + h["dropped_examples"]:
        print(f"    {e}")
    print(
        f"  heartbeats {h['hb_sent']} sent, {h['hb_answered']} answered, {h['hb_late']} unanswered when the next "
        f"was due; rtt p50 {h['hb_rtt_p50_ms']:.1f} ms, p99 {h['hb_rtt_p99_ms']:.1f} ms"
    )
    s0, s1 = res["proxy_start"], h["proxy_after_open"]
    print(
        f"  proxy RSS {s0['rss_mib']} MiB idle -> {s1['rss_mib']} MiB with {h['opened']} open "
        f"({(s1['rss_mib'] - s0['rss_mib']) * 1024 / max(h['opened'], 1):.0f} KiB/connection), "
        f"{h['proxy_end_of_hold']['rss_mib']} MiB at the end of the hold; fds {s1['fds']}"
    )
    print(
        f"  proxy CPU: {(s1['cpu_s'] - s0['cpu_s']) * 1000 / max(h['opened'], 1):.1f} ms per connect + join; while "
        f"holding {h['proxy_cpu_s']} s = {h['proxy_cpu_pct']} % of one core (heartbeats, and with rtproxy its 1 s "
        "diagnosis tick over every live session)"
    )
    print(
        f"  after closing all: rtproxy live sessions {h['probe_after_close'].get('live')}, "
        f"RSS {h['proxy_after_close']['rss_mib']} MiB; {h.get('slow_closes', 0)} of the closes (all at once) "
        "got their close frame back after websockets' close timeout (10 s), or never"
    )
    print(f"\nchurn: {res['rounds']} rounds x {res['connections']} connect + join + close")
    print(
        f"  {'round':>5}{'opened':>8}{'failed':>8}{'secs':>7}{'CPU ms/conn':>12}{'RSS MiB':>9}{'fds':>6}{'live':>6}"
        f"{'finished':>9}{'proxy conns':>12}"
    )
    for r in res["rounds_detail"]:
        print(
            f"  {r['round']:>5}{r['opened']:>8}{r['failed']:>8}{r['seconds']:>7}{r['proxy_cpu_ms_per_conn']:>12}"
            f"{r['rss_mib']:>9}{r['fds']:>6}{r['live']!s:>6}{r['finished']!s:>9}"
            f"{r['proxy_connections']!s:>12}"
        )
    p, lg = res["final_probe"], res["log_final"]
    print(
        f"\nleft in the proxy at the end: live sessions {p.get('live')} (probe), {lg['live_inferred']} (log: "
        f"{lg['connect_lines']} connect lines - {lg['end_lines']} end lines); finished kept {p.get('finished')} "
        f"(deque maxlen); faults plans/tasks "
        f"{p.get('faults_plans')}/{p.get('faults_tasks')}; mitmproxy connections {p.get('proxy_connections')} "
        f"(the probe's own); WebSocketMessage objects alive {p.get('ws_messages_alive')}, HTTPFlow objects "
        f"{p.get('http_flows_alive')}; RSS {res['final_proxy']['rss_mib']} MiB, fds {res['final_proxy']['fds']}"
    )
    print(
        f"log: {lg['findings']} finding line(s), {lg['internal_errors']} internal error(s), "
        f"{lg['tracebacks']} traceback(s)"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    ap.add_argument("--version", action="version", version=version_text("rtscale"))
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--minutes", type=float, default=3.0, help="how long to hold the connections")
    ap.add_argument("--seconds", type=float, help="hold time in seconds (overrides --minutes)")
    ap.add_argument("--rounds", type=int, default=10, help="connect/close rounds after the hold")
    ap.add_argument("--heartbeat", type=float, default=5.0, help="heartbeat interval, seconds (default 5)")
    ap.add_argument("--concurrency", type=int, default=100, help="connection handshakes in flight at once")
    ap.add_argument(
        "--proxy",
        choices=("launcher", "rtproxy", "bare"),
        default="launcher",
        help="launcher: the rtproxy command; rtproxy: mitmdump -s addon/rtproxy.py; bare: mitmdump with "
        "bare_reroute.py only, for comparison (no session counts)",
    )
    ap.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE", help="extra mitmdump --set")
    ap.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = ap.parse_args(argv)
    if args.seconds is None:
        args.seconds = args.minutes * 60
    if args.connections < 1 or args.rounds < 0 or args.seconds < 0 or args.heartbeat <= 0:
        ap.error("--connections ≥ 1, --rounds ≥ 0, --minutes ≥ 0, --heartbeat > 0")
    with tempfile.TemporaryDirectory(prefix="rtscale-") as d:
        res = asyncio.run(run(args, Path(d)))
    if args.json:
        print(json.dumps(res, indent=2, default=str))
    else:
        print_report(res)
    h = res["hold"]
    ok = (
        h["failed"] == 0
        and h["dropped"] == 0
        and all(r["failed"] == 0 for r in res["rounds_detail"])
        and (
            args.proxy == "bare"
            or (res["final_probe"].get("live") == 0 and res["log_final"]["live_inferred"] == 0)
        )
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
