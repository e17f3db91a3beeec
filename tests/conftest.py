"""Shared fixtures: an in-process local Realtime server and mitmdump (with the addon) as a subprocess whose
log lines can be awaited. Everything binds 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from rtproxy_local.jwt import dev_anon_key
from rtproxy_local.server import LocalRealtime, ServerConfig

ROOT = Path(__file__).resolve().parent.parent
# The commands the tests start run this checkout's code too (pytest's own path: pythonpath in pyproject),
# whichever checkout .venv's editable install points at.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "addon"), os.environ.get("PYTHONPATH")]))
BIN = Path(sys.executable).parent  # .venv/bin: mitmdump and rtproxy's commands ([project.scripts])
MITMDUMP = str(BIN / "mitmdump")
RTPROXY = str(BIN / "rtproxy")  # the launcher: rtproxy's addons built in, no -s addon/rtproxy.py
MITMWEB = str(BIN / "mitmweb")
ADDON = str(ROOT / "addon" / "rtproxy.py")


def read_flows(path) -> list:
    """The flows of a mitmproxy flow file (save_stream_file, `w`), as mitmproxy reads them."""
    from mitmproxy import io

    with open(path, "rb") as fh:
        return list(io.FlowReader(fh).stream())


def command(name: str) -> str:
    """One of rtproxy's commands as installed on PATH (.venv/bin/rtdiagnose, ...)."""
    return str(BIN / name)


TIMEOUT = 20  # safety net for awaited events; never a measured threshold
# Under CI a missing prerequisite (workerd, Chromium, npm packages) fails its tests instead of skipping them.
IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def fast_config(**overrides) -> ServerConfig:
    """Realtime's timers, shortened so the suite stays fast; the logic is the same."""
    cfg = ServerConfig(connect_error_backoff_ms=0, join_error_backoff_ms=0)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    return cfg


@pytest.fixture
def cfg() -> ServerConfig:
    """The local server's config for tests/test_local_server.py and test_realtime_fidelity.py (`srv`)."""
    return ServerConfig(connect_error_backoff_ms=0, join_error_backoff_ms=0)


@pytest.fixture
async def srv(cfg):
    async with LocalRealtime(cfg).running("127.0.0.1", 0) as s:
        yield s


@pytest.fixture
async def local_server():
    async with LocalRealtime(fast_config()).running("127.0.0.1", 0) as srv:
        yield srv


WEB_PAGE = b"<!doctype html><html><body>my app</body></html>"


@pytest.fixture
async def web_page():
    """A plain web server on 127.0.0.1 (a dev server, a static host): every request, a WebSocket upgrade
    included, gets HTTP/1.1 200 text/html. Its URL."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            head = f"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {len(WEB_PAGE)}\r\n"
            writer.write(head.encode() + b"\r\n" + WEB_PAGE)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


@pytest.fixture
def anon_key() -> str:
    return dev_anon_key()


async def run_to_exit(args: list[str]) -> tuple[int | None, str]:
    """Run mitmdump (or any command) until it exits by itself: (exit status, output). Status None: it was
    still running after TIMEOUT and was killed (for a startup check: the bad value was accepted)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("SUPABASE_URL", None)
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
        return None, out.decode("utf-8", "replace")
    return proc.returncode, out.decode("utf-8", "replace")


class OutputProcess:
    """A command run by a test, its stdout and stderr read line by line into `lines` as they come;
    `returncode` once it exited. Subclasses say what it is and await their own start line."""

    def __init__(self, args: list[str]) -> None:
        self.args = args
        self.lines: list[str] = []
        self.port = 0
        self._changed = asyncio.Condition()
        self.proc: asyncio.subprocess.Process | None = None
        self.returncode: int | None = None

    async def _spawn(self, env: dict[str, str]) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env
        )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc and self.proc.stdout
        async for raw in self.proc.stdout:
            async with self._changed:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._changed.notify_all()
        self.returncode = await self.proc.wait()
        async with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class Mitmdump(OutputProcess):
    """mitmdump -s addon/rtproxy.py in reverse mode as the Worker; `lines` is its output so far."""

    def __init__(
        self,
        tmp: Path,
        *sets: str,
        mode: str = "reverse:http://worker.invalid",
        extra: tuple[str, ...] = (),
        program: str = MITMDUMP,
    ) -> None:
        super().__init__(
            [
                program,
                "--listen-host",
                "127.0.0.1",
                "-p",
                "0",
                "--mode",
                mode,
                *(() if program == RTPROXY else ("-s", ADDON)),
                "--set",
                f"confdir={tmp}",
                *extra,
            ]
        )
        for s in sets:
            self.args += ["--set", s]

    async def start(self) -> Mitmdump:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop("SUPABASE_URL", None)
        await self._spawn(env)
        m = await self.wait_for(r"listening at .*:(\d+)")
        self.port = int(m.group(1))
        return self

    async def wait_for(self, pattern: str, timeout: float = TIMEOUT, start: int = 0) -> re.Match:
        """Await the first output line (from index `start`) matching `pattern`."""
        rx = re.compile(pattern)

        async def scan() -> re.Match:
            async with self._changed:
                i = start
                while True:
                    for line in self.lines[i:]:
                        if m := rx.search(line):
                            return m
                    i = len(self.lines)
                    if self.returncode is not None:
                        raise AssertionError(
                            f"mitmdump exited ({self.returncode}) without {pattern!r}:\n" + self.output
                        )
                    await self._changed.wait()

        try:
            return await asyncio.wait_for(scan(), timeout)
        except TimeoutError:
            raise AssertionError(f"no line matching {pattern!r} in:\n{self.output}") from None

    async def wait_until(
        self, done: Callable[[list[str]], bool], what: str, timeout: float = TIMEOUT
    ) -> None:
        """Await `done(lines)` holding; checked at each new output line. `what` names it in a failure."""

        async def scan() -> None:
            async with self._changed:
                while not done(self.lines):
                    if self.returncode is not None:
                        raise AssertionError(
                            f"mitmdump exited ({self.returncode}) before {what}:\n" + self.output
                        )
                    await self._changed.wait()

        try:
            await asyncio.wait_for(scan(), timeout)
        except TimeoutError:
            raise AssertionError(f"not {what} in:\n{self.output}") from None

    async def wait_exit(self, timeout: float = TIMEOUT) -> int:
        assert self.proc
        await asyncio.wait_for(asyncio.shield(self._reader), timeout)  # a timeout leaves the reader running
        assert self.returncode is not None
        return self.returncode

    async def stop(self) -> None:
        if self.proc and self.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await self.wait_exit()
            except TimeoutError:
                self.proc.kill()


@pytest.fixture
async def mitmdump(tmp_path):
    """Factory: `await mitmdump("rt_mode=fixed", ...)` starts one; all are stopped after the test."""
    started: list[Mitmdump] = []

    async def start(*sets: str, **kw) -> Mitmdump:
        m = await Mitmdump(tmp_path, *sets, **kw).start()
        started.append(m)
        return m

    yield start
    for m in started:
        await m.stop()


NODE_DIR = ROOT / "tests" / "node"  # realtime-js in Node: npm ci --prefix tests/node (scripts/test.sh)


def node_missing() -> list[str]:
    """What tests/node's tests lack to run (node, its node_modules), empty when nothing."""
    return [
        what
        for what, ok in (
            ("node", shutil.which("node") is not None),
            (
                "tests/node/node_modules (npm ci --prefix tests/node)",
                (NODE_DIR / "node_modules" / "@supabase" / "realtime-js" / "package.json").exists()
                and (NODE_DIR / "node_modules" / "ws" / "package.json").exists(),
            ),
        )
        if not ok
    ]


@pytest.fixture
def node_available() -> None:
    """Skips a test that needs realtime-js in Node where it is missing; under CI (env CI set) fails it."""
    if missing := node_missing():
        why = "missing " + ", ".join(missing)
        if IN_CI:
            pytest.fail(f"{why}; CI must install them")
        pytest.skip(why)
