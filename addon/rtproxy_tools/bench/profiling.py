"""rtbench --profile: mitmdump + rtproxy (or the rtproxy command) under cProfile while messages are
pipelined through it; the top functions by own time, and rtproxy's by cumulative time."""

from __future__ import annotations

import pstats
from pathlib import Path
from typing import Any

from . import kit
from .live import ping_pong, pipelined


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
