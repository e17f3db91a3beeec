"""rtbench's table: the numbers of a run (or of a saved --json result, --table) as text."""

from __future__ import annotations

import math
from typing import Any

from .live import CONFIGS


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


def print_hostile(h: dict[str, Any]) -> None:
    """rtbench --hostile: the issue #27 table, one row per proxy configuration."""
    if "costs" in h:
        print("\nrtproxy's hooks per misbehaving frame, in-process on a test flow, µs per frame")
        print(f"{'frame':<44}{'bytes':>11}{'tracker':>10}{'sanitize':>10}{'others':>8}{'total':>10}")
        for name, r in h["costs"].items():
            others = r["faults"] + r["trim"]
            print(
                f"{name:<44}{r['bytes']:>11,}{r['tracker']:>10,.0f}{r['sanitize']:>10,.0f}{others:>8,.0f}"
                f"{r['total']:>10,.0f}"
            )
    if "runs" not in h:
        return
    s = h["scale"]
    print(
        f"\nhostile load (issue #27): {s['healthy']} healthy clients (a heartbeat and a broadcast every "
        f"{s['cadence_s']:g} s), {s['misbehaving']} misbehaving connections ({', '.join(s['kinds'])}; "
        f"{s['frames']} frames each, {s['joins']} joins for a join flood, big payload {s['big_bytes']:,} B), "
        f"{s['resets']} reset after the upgrade, {s['stalled']} upgrades stalled half-way; "
        f"{s['baseline_s']:g} s baseline, then {s['attack_s']:g} s of attack"
        + (f"; medians of {h['repeat']} interleaved runs" if h.get("repeat", 1) > 1 else "")
    )
    print(
        f"{'config':<30}{'hb ans':>8}{'bc echo':>9}{'p50 base':>10}{'p99 base':>10}{'p50 att':>9}"
        f"{'p99 att':>9}{'×':>6}{'RSS base':>10}{'RSS end':>9}{'peak':>8}{'stalled':>9}{'log':>7}"
        f"{'longest':>9}{'tracebk':>9}"
    )
    print(
        f"{'':<30}{'%':>8}{'%':>9}{'ms':>10}{'ms':>10}{'ms':>9}{'ms':>9}{'':>6}{'MiB':>10}{'MiB':>9}"
        f"{'MiB':>8}{'open':>9}{'lines':>7}{'chars':>9}{'':>9}"
    )
    for r in h["runs"].values():

        def pct(a: int, b: int) -> str:
            return f"{100 * a / b:.1f}" if b else "-"

        grow = r["p99_attack_ms"] / r["p99_baseline_ms"] if r["p99_baseline_ms"] else None
        print(
            f"{r['config']:<30}{pct(r['heartbeats_answered'], r['heartbeats_sent']):>8}"
            f"{pct(r['broadcasts_echoed'], r['broadcasts_sent']):>9}{fmt(r['p50_baseline_ms'], '.1f'):>10}"
            f"{fmt(r['p99_baseline_ms'], '.1f'):>10}{fmt(r['p50_attack_ms'], '.1f'):>9}"
            f"{fmt(r['p99_attack_ms'], '.1f'):>9}{fmt(grow, '.0f'):>6}{fmt(r['rss_baseline_mib'], '.0f'):>10}"
            f"{fmt(r['rss_end_mib'], '.0f'):>9}{fmt(r['rss_peak_mib'], '.0f'):>8}"
            f"{r['stalled_open_at_end']:>6.0f}/{r['stalled']:<2.0f}{r['log_lines']:>7.0f}"
            f"{r['log_longest_line']:>9.0f}{r['log_tracebacks']:>9.0f}"
        )
    print(
        "proxy CPU seconds, baseline / attack + drain: "
        + ", ".join(
            f"{r['config']} {fmt(r.get('cpu_baseline_s'), '.1f')} / {fmt(r.get('cpu_attack_s'), '.1f')}"
            for r in h["runs"].values()
        )
    )
    ratio = h.get("ratio_p99_attack_launcher_vs_bare")
    if ratio is not None:
        print(f"healthy p99 under attack, rtproxy command / bare mitmdump: {ratio:.2f}")
