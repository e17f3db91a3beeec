"""Bench/scale probe, loaded next to the addon (`-s addon/rtproxy.py -s state_probe.py`, kit.PROBE) by
rtbench (this package) and rtscale (scale.py) only: answers `GET /__rtbench_probe` on the proxy's listener with
JSON counts of the per-connection state the proxy holds, so scale.py can check that nothing is left
behind. It reads rtproxy's parts (tracker, faults; addons.py `Rtproxy.get`) and changes nothing. Only
requests to that exact path are answered; everything else passes.

`GET /__rtbench_probe?objects=1` also counts live WebSocketMessage / HTTPFlow objects (a gc walk: slow on
a big heap, for the end of a run only).
"""

from __future__ import annotations

import gc
import json
import os
import resource

from mitmproxy import ctx, http

PATH = "/__rtbench_probe"


def _len(obj, attr: str) -> int | None:
    value = getattr(obj, attr, None) if obj is not None else None
    try:
        return len(value) if value is not None else None
    except TypeError:
        return None


class BenchProbe:
    def request(self, flow: http.HTTPFlow) -> None:
        if flow.request.path.split("?", 1)[0] != PATH:
            return
        addons = ctx.master.addons
        rtproxy = addons.get("rtproxy")  # None under bare_reroute.py
        tracker = rtproxy.get("tracker") if rtproxy else None
        faults = rtproxy.get("faults") if rtproxy else None
        proxyserver = addons.get("proxyserver")
        live = getattr(tracker, "live", None) or {}  # no tracker under bare_reroute.py
        diagnoser = getattr(tracker, "diagnoser", None)
        out = {
            "pid": os.getpid(),
            "tracker_found": tracker is not None,
            "live": _len(tracker, "live"),
            "finished": _len(tracker, "finished"),
            "connections": getattr(tracker, "connections", None),
            "broken": sum(1 for s in live.values() if s.broken),  # tracking stopped by an internal error
            "diagnoser_recent": _len(diagnoser, "_recent"),
            "diagnoser_loops": _len(diagnoser, "_loops"),
            "faults_plans": _len(faults, "plans"),
            "faults_tasks": _len(faults, "tasks"),
            "faults_last_frame_at": _len(faults, "last_frame_at"),
            "pending_total": sum(len(s.pending) for s in live.values()),
            "channels_total": sum(len(s.channels) for s in live.values()),
            "proxy_connections": _len(proxyserver, "connections"),
            "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
        if "objects=1" in flow.request.path:
            from mitmproxy import websocket

            gc.collect()
            objs = gc.get_objects()
            out["ws_messages_alive"] = sum(1 for o in objs if type(o) is websocket.WebSocketMessage)
            out["http_flows_alive"] = sum(1 for o in objs if type(o) is http.HTTPFlow)
            del objs
        flow.response = http.Response.make(
            200, json.dumps(out).encode(), {"content-type": "application/json"}
        )


addons = [BenchProbe()]
