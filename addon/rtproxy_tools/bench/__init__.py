"""rtbench: rtproxy's performance, side by side on loopback (the command's help: cli.py).

- cli.py: `rtbench`'s arguments and the run;
- live.py: the live configurations (direct, bare mitmdump, mitmdump + rtproxy, the rtproxy command),
  ping-pong and pipelined;
- memory.py (--memory), profiling.py (--profile);
- offline.py: the analyzer on a synthetic capture, per-frame and per-hook costs, no sockets;
- table.py: the printed table;
- kit.py: what rtbench and rtscale share (the server and mitmdump as subprocesses, /proc, joined
  sockets, the benchmark's frames, the probe);
- state_probe.py: the mitmdump script the probe asks (`-s`), next to the addon.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """`rtbench` ([project.scripts] rtproxy_tools.bench:main). Imported on call, so rtscale, which imports
    bench.kit, does not load the benchmark."""
    from .cli import main as run

    return run(argv)
