"""rtproxy performance, side by side on loopback (issue #5).

    rtbench [--json] [--messages N] [--quick]
    rtbench --memory [--messages 1000000] [--keep 100,0]
    rtbench --profile OUT.prof [--messages N] [--profile-of mitmdump|launcher]
    rtbench --hostile [--quick] [--healthy N] [--misbehaving N] [--resets N] [--stalled N] [--json]

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

--hostile: issue #27's attack (bench/hostile.py) on bare mitmdump (bare_reroute.py), the rtproxy command
and (not with --quick) mitmdump -s rtproxy in turn, in front of one local Realtime server: healthy clients
heartbeating and broadcasting every second, measured alone (baseline) and beside misbehaving connections
(big valid broadcasts, invalid JSON, wrong shapes, deep nesting, random binary kinds, mass joins, heartbeats
with huge refs), upgrades reset right after the 101 and upgrades stalled half-way. The table says what the
healthy clients got (answers, echoes, heartbeat p50/p99 baseline and under attack), the proxy's RSS, the
stalled upgrades it left open and its log (lines, longest line, tracebacks), and the ratio of healthy p99
under attack, rtproxy command / bare mitmdump.

Everything binds 127.0.0.1; every loop is bounded in count and time; only processes started here are
stopped, by pid.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from rtproxy_tools import version_text

from . import kit
from .hostile import CONFIGS as HOSTILE_CONFIGS
from .hostile import Scale, compare
from .live import live
from .memory import memory
from .offline import analyzer, frame_costs, hostile_costs
from .profiling import profile
from .table import print_hostile, print_table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    ap.add_argument("--version", action="version", version=version_text("rtbench"))
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
        help="run each live (or --hostile) config this many times, interleaved; the table shows medians (default 1)",
    )
    ap.add_argument("--no-reference", action="store_true", help="skip the flow_detail=1 rows (2b)/(3b)")
    ap.add_argument(
        "--no-live",
        action="store_true",
        help="offline analyzer and per-frame costs only (with --hostile: the per-frame costs of its frames)",
    )
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
    ap.add_argument("--hostile", action="store_true", help="hostile-load mode (see above)")
    ap.add_argument("--healthy", type=int, help="--hostile: healthy clients (default 40; quick 10)")
    ap.add_argument(
        "--misbehaving", type=int, help="--hostile: misbehaving connections (default 20; quick 7)"
    )
    ap.add_argument(
        "--resets", type=int, help="--hostile: connections reset after the upgrade (default 500; quick 100)"
    )
    ap.add_argument("--stalled", type=int, help="--hostile: upgrades stalled half-way (default 50; quick 10)")
    ap.add_argument("--attack-s", type=float, help="--hostile: seconds of attack (default 30; quick 12)")
    ap.add_argument(
        "--configs",
        help="--hostile: comma-separated, of bare,launcher,rtproxy (default all three; quick bare,launcher)",
    )
    ap.add_argument(
        "--table", metavar="RESULT.json", help="print the table of a saved --json result and exit"
    )
    args = ap.parse_args(argv)
    if args.table:
        saved = json.loads(Path(args.table).read_text())
        print_table(saved)
        if "hostile" in saved:
            print_hostile(saved["hostile"])
        return 0
    if args.hostile:
        return _hostile(args)
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
            kit.log(f"bench: offline analyzer over {args.analyzer_frames:,} synthetic frames ...")
            res["analyzer"] = analyzer(args.analyzer_frames, repeat=1 if args.quick else 3)
            iterations = 2000 if args.quick else 20_000
            res["frame_cost_iterations"] = iterations
            res["frame_costs"] = frame_costs(iterations)
    if args.json:
        print(json.dumps(res, indent=2, default=str))
    else:
        print_table(res)
    return 0


def _hostile(args: argparse.Namespace) -> int:
    q = args.quick
    scale = Scale(
        healthy=args.healthy if args.healthy is not None else (10 if q else 40),
        misbehaving=args.misbehaving if args.misbehaving is not None else (7 if q else 20),
        resets=args.resets if args.resets is not None else (100 if q else 500),
        stalled=args.stalled if args.stalled is not None else (10 if q else 50),
        baseline_s=5.0 if q else 10.0,
        attack_s=args.attack_s if args.attack_s is not None else (12.0 if q else 30.0),
    )
    scale.frames = round(2 * scale.attack_s)  # 2 frames a second on each misbehaving connection
    names = (args.configs or ("bare,launcher" if q else "bare,launcher,rtproxy")).split(",")
    if unknown := [n for n in names if n not in HOSTILE_CONFIGS]:
        print(
            f"rtbench: unknown --configs {','.join(unknown)} (known: {','.join(HOSTILE_CONFIGS)})",
            file=sys.stderr,
        )
        return 2
    res: dict[str, Any] = {"machine": kit.machine(), "hostile": {}}
    if not args.no_live:
        with tempfile.TemporaryDirectory(prefix="rtbench-") as d:
            res["hostile"] = asyncio.run(compare(scale, Path(d), names, args.repeat))
    kit.log("hostile: rtproxy's hooks per misbehaving frame, in-process ...")
    res["hostile"]["costs"] = hostile_costs(5 if q else 20)
    if args.json:
        print(json.dumps(res, indent=2, default=str))
    else:
        print_table(res)
        print_hostile(res["hostile"])
    return 0
