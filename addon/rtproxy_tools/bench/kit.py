"""Shared pieces of rtbench (this package) and rtscale (scale.py): start the local Realtime server and
mitmdump as subprocesses on 127.0.0.1, read their CPU time and RSS from /proc, open joined vsn 2.0.0
Realtime sockets, build the benchmark's frames, and ask state_probe.py (a probe loaded next to the addon)
how much per-connection state the proxy holds.

Every wait here has a deadline; every subprocess started here is stopped by its own pid.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rtproxy_core import frames
from rtproxy_local.jwt import dev_anon_key
from websockets.asyncio.client import ClientConnection, connect

from rtproxy_tools.launcher import addon_path

HERE = Path(__file__).resolve().parent
TOOLS = HERE.parent  # addon/rtproxy_tools
ROOT = TOOLS.parent.parent  # the checkout (when run from one)
PYTHON = sys.executable
MITMDUMP = str(Path(sys.executable).parent / "mitmdump")
RTPROXY = str(Path(sys.executable).parent / "rtproxy")  # the launcher ([project.scripts])
ADDON = addon_path()  # a checkout's addon/rtproxy.py, else the installed rtproxy_addon.py
REROUTE = str(TOOLS / "bare_reroute.py")
PROBE = str(HERE / "state_probe.py")
TOPIC = "realtime:bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# A cursor-style broadcast payload of ~100 bytes, as realtime-js apps send many of.
PAYLOAD = {
    "x": 412,
    "y": 87,
    "user": "4f1c2a9e-7b3d-4e21-9a55-0c6f1d2e8b7a",
    "color": "#3ecf8e",
    "seq": 0,
    "ts": 1764000000000,
}
PAYLOAD_JSON = json.dumps(PAYLOAD, separators=(",", ":"))
_TEXT_HEAD = '["1","'
_TEXT_TAIL = f'","{TOPIC}","broadcast",{{"type":"broadcast","event":"cursor","payload":{PAYLOAD_JSON}}}]'
_BODY = PAYLOAD_JSON.encode()


def log(msg: str) -> None:
    """A progress line, on stderr (stdout is the result)."""
    print(msg, file=sys.stderr, flush=True)


def text_broadcast(ref: int) -> str:
    """vsn 2.0.0 client broadcast (an array), as realtime-js' channel.send({type: 'broadcast'}) on a
    text-only path; the server echoes it to the sender (broadcast self) as an array without refs."""
    return f"{_TEXT_HEAD}{ref}{_TEXT_TAIL}"


def binary_broadcast(ref: int) -> bytes:
    """Kind 3 user broadcast push with a JSON payload; the server echoes it as kind 4."""
    r = str(ref).encode()
    t, ue = TOPIC.encode(), b"cursor"
    return (
        bytes([frames.USER_PUSH, 1, len(r), len(t), len(ue), 0, frames.ENC_JSON]) + b"1" + r + t + ue + _BODY
    )


def message(i: int) -> str | bytes:
    """The benchmark's message i: text and binary alternate."""
    return text_broadcast(i + 10) if i % 2 == 0 else binary_broadcast(i + 10)


def heartbeat(ref: int) -> str:
    return f'[null,"{ref}","phoenix","heartbeat",{{}}]'


def join_frame(topic: str = TOPIC, self_broadcast: bool = True) -> str:
    cfg = {
        "config": {
            "broadcast": {"self": self_broadcast, "ack": False},
            "presence": {"enabled": False},
            "postgres_changes": [],
            "private": False,
        }
    }
    return json.dumps(["1", "1", topic, "phx_join", cfg], separators=(",", ":"))


# ------------------------------------------------------------------------------------------ /proc


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (seconds), from /proc/<pid>/stat."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    rest = raw[raw.rfind(")") + 2 :].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def rss_mib(pid: int) -> float:
    return _status_kib(pid, "VmRSS") / 1024


def hwm_mib(pid: int) -> float:
    return _status_kib(pid, "VmHWM") / 1024


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def machine() -> dict[str, Any]:
    import platform

    import mitmproxy.version
    import websockets

    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "mitmproxy": mitmproxy.version.VERSION,
        "websockets": websockets.__version__,
        "kernel": platform.release(),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


# ------------------------------------------------------------------------------------------ processes


class Proc:
    """A subprocess whose output goes to a file (never a pipe that could fill up)."""

    def __init__(self, name: str, args: list[str], log: Path) -> None:
        self.name, self.args, self.log = name, args, log
        self.port = 0
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop("SUPABASE_URL", None)
        self._out = open(log, "wb")  # noqa: SIM115 - closed in stop(), the process writes to it until then
        self.proc = subprocess.Popen(
            args, stdout=self._out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=ROOT
        )
        self.pid = self.proc.pid

    def text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def wait_for(self, pattern: str, timeout: float = 30.0) -> re.Match:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = rx.search(self.text())
            if m:
                return m
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"{self.name}: no {pattern!r} (exit {self.proc.poll()}):\n{self.text()[-3000:]}")

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def rss(self) -> float:
        return rss_mib(self.pid)

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._out.close()
        return self.proc.returncode


def start_server(tmp: Path) -> Proc:
    """The local Realtime server (no connect backoff, no idle close) in its own process."""
    p = Proc(
        "local_realtime",
        [
            PYTHON,
            "-m",
            "rtproxy_tools.local",
            "--port",
            "0",
            "--connect-error-backoff-ms",
            "0",
            "--join-error-backoff-ms",
            "0",
            "--idle-timeout",
            "0",
            "--no-quotas",
        ],
        tmp / "server.log",
    )
    p.port = int(p.wait_for(r"listening at http://127\.0\.0\.1:(\d+)").group(1))
    return p


def bare_reroute_args(upstream_port: int) -> list[str]:
    """mitmdump's arguments for the yardstick: bare_reroute.py sending upgrades to the server, nothing else
    (lazy: the Worker host is a placeholder)."""
    return [
        "-s",
        REROUTE,
        "--set",
        f"reroute_to=127.0.0.1:{upstream_port}",
        "--set",
        "connection_strategy=lazy",
    ]


def start_mitmdump(
    tmp: Path,
    name: str,
    upstream_port: int,
    *,
    rtproxy: bool,
    flow_detail: int | None = 0,
    sets: tuple[str, ...] = (),
    probe: bool = False,
    wrap: list[str] | None = None,
    launcher: bool = False,
) -> Proc:
    """mitmdump in reverse mode as the Worker on a free 127.0.0.1 port. rtproxy=False: only
    bare_reroute.py, which sends upgrades to the server. flow_detail None: mitmdump's default (1).
    launcher: the rtproxy command instead of mitmdump (it has no dumper, so no flow_detail)."""
    confdir = tmp / f"conf-{name}"
    confdir.mkdir(exist_ok=True)
    if launcher:
        rtproxy, flow_detail = True, None
    args = [
        *(wrap or [RTPROXY if launcher else MITMDUMP]),
        "--listen-host",
        "127.0.0.1",
        "-p",
        "0",
        "--mode",
        "reverse:http://worker.invalid",
        "--set",
        f"confdir={confdir}",
    ]
    if flow_detail is not None:
        args += ["--set", f"flow_detail={flow_detail}"]
    if launcher:
        args += ["--set", f"rt_supabase_url=http://127.0.0.1:{upstream_port}"]
    elif rtproxy:
        args += ["-s", ADDON, "--set", f"rt_supabase_url=http://127.0.0.1:{upstream_port}"]
    else:
        args += bare_reroute_args(upstream_port)
    if probe:
        args += ["-s", PROBE]
    for s in sets:
        args += ["--set", s]
    p = Proc(name, args, tmp / f"{name}.log")
    p.port = int(p.wait_for(r"listening at .*:(\d+)").group(1))
    time.sleep(0.3)  # an error logged during startup makes mitmdump exit right after it starts listening
    if p.proc.poll() is not None or "Error logged during startup" in p.text():
        p.stop()
        raise RuntimeError(f"{name}: mitmdump exited during startup:\n{p.text()[-3000:]}")
    return p


# ------------------------------------------------------------------------------------------ clients


def ws_url(port: int, vsn: str = "2.0.0") -> str:
    return f"ws://127.0.0.1:{port}/realtime/v1/websocket?apikey={dev_anon_key()}&vsn={vsn}"


async def open_joined(
    port: int, topic: str = TOPIC, *, self_broadcast: bool = True, timeout: float = 30.0
) -> ClientConnection:
    """A vsn 2.0.0 socket joined to `topic` (broadcast self on: every broadcast comes back)."""
    ws = await asyncio.wait_for(
        connect(
            ws_url(port),
            compression=None,
            ping_interval=None,
            max_size=None,
            open_timeout=timeout,
            close_timeout=5,
        ),
        timeout,
    )
    try:
        await ws.send(join_frame(topic, self_broadcast))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no join reply for {topic}")
            reply = json.loads(await asyncio.wait_for(ws.recv(), left))
            if reply[3] == "phx_reply" and reply[1] == "1":
                if reply[4].get("status") != "ok":
                    raise RuntimeError(f"join refused: {reply}")
                return ws
    except BaseException:
        await ws.close()
        raise


async def http_get(port: int, path: str, timeout: float = 30.0) -> bytes:
    """A plain HTTP/1.1 GET on 127.0.0.1 (for the probe); the response body."""

    async def go() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: worker.invalid\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        raw = await reader.read()
        writer.close()
        return raw.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in raw else b""

    return await asyncio.wait_for(go(), timeout)


async def probe(port: int, objects: bool = False) -> dict[str, Any]:
    """What state_probe.py reports about the proxy's per-connection state."""
    body = await http_get(port, "/__rtbench_probe" + ("?objects=1" if objects else ""))
    return json.loads(body)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]
