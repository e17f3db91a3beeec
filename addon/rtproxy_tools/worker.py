"""Run a Cloudflare Worker locally in workerd (Cloudflare's runtime, npm package `workerd`) on 127.0.0.1.

    rtworker install                     # once: npm ci of workerd and esbuild (where: below)
    rtworker check ./my-worker/          # check a Worker against what Realtime needs: `rtworker check -h`
    rtworker --worker fixed --port 8787 --supabase-url http://127.0.0.1:54321
    rtworker --worker relay --port 0 --supabase-url https://<ref>.supabase.co --allow-net --compat-date 2025-01-01
    rtworker --worker ./my-worker/ --port 8787 --supabase-url http://127.0.0.1:54321 --var DEBUG=1

--worker: `fixed` (worker/src/index.js, the corrected Worker: upgrades passed through to SUPABASE_URL),
`relay` (worker/fixtures/relay.js, the design's relay as intended) or `as-written`
(worker/fixtures/as-written.js, the design's Worker as written); or a Worker as its user has it: a file
(.js .mjs .cjs .ts .mts: a module, or a service worker with addEventListener("fetch")), a project folder
with wrangler.json/.jsonc/.toml (its `main`), or a Pages project (functions/). A project's
compatibility_date and flags, [vars], .dev.vars and KV namespaces (in memory) are used; other bindings
are named as not served. All but one self-contained module are bundled with esbuild as wrangler deploys.
Its env also has SUPABASE_URL (--supabase-url), SITE_URL (--site-url) and each --var NAME=VALUE.

The Worker's fetch() and WebSocket reach loopback only: anything else gets a 502 from rtworker and a line
`rtworker: the Worker tried to reach URL: blocked`; --allow-net lets them reach other addresses.
--trusted-ca PEM: a CA the Worker's https:// and wss:// trust (a local server with a local CA).

rtworker writes a workerd config, starts workerd (npm package `workerd`; `rtworker install` runs npm ci
for it and esbuild in $RTPROXY_DATA_DIR/worker if set, else in a checkout's worker/, else in
~/.local/share/rtproxy/worker; Node.js's npm needed), prints the URL once workerd listens, forwards workerd's output (prefixed `workerd: `,
secrets redacted unless --show-secrets), and on SIGINT/SIGTERM stops workerd (open connections get 2 s,
a second ^C ends them at once), removes the config and exits 0. --port 0 picks a free port.

Exit 2 for bad arguments, 1 when workerd is missing, the port is taken, or workerd fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Self
from urllib.parse import urlsplit

from rtproxy_core.redact import Redactor

from rtproxy_tools import version_text
from rtproxy_tools.workerbase import (
    RUNTIME_DIR,
    WORKER_DIR,
    WorkerError,
    find_npm_binary,
    install_npm_packages,
    npm_platform,
    npm_worker_dir,
)
from rtproxy_tools.workerconfig import Config, config_text
from rtproxy_tools.workerproject import WorkerProject, bundle, load_project

WORKERS = {
    "fixed": WORKER_DIR / "src" / "index.js",
    "relay": WORKER_DIR / "fixtures" / "relay.js",
    "as-written": WORKER_DIR / "fixtures" / "as-written.js",
}
PREFIX = "workerd: "
# workerd drains on SIGTERM (workerd.c++ serve(): "Gracefully drain when SIGTERM is received"): it stops
# listening and waits for open requests, an open WebSocket among them, however long they last. rtworker gives
# it this many seconds, then kills it; a second ^C kills it at once.
STOP_GRACE = 2.0
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
BLOCKED = "rtworker-egress-blocked "  # what worker/runtime/egress.js logs, then the URL it refused


# ------------------------------------------------------------------------------------------ workerd


def _platform_package() -> str:
    """The name of workerd's platform package for this machine: npm's `workerd` package.json lists them
    as optionalDependencies, @cloudflare/workerd-<os>-<arch>, and its install script copies the binary of
    the one that matches into workerd/bin."""
    system, arch = npm_platform()  # workerd's packages say "windows" and "64" where npm says win32 and x64
    return (
        f"@cloudflare/workerd-{'windows' if system == 'win32' else system}-{'64' if arch == 'x64' else arch}"
    )


def find_workerd(worker_dir: Path | None = None) -> Path:
    """workerd's binary from npm_worker_dir()'s node_modules (workerbase.py says where that is): the
    platform package's own (the real executable), else the `workerd` package's bin (its install script
    puts the same binary there). Raises WorkerError."""
    modules = (worker_dir or npm_worker_dir()) / "node_modules"
    return find_npm_binary("workerd", modules / _platform_package() / "bin", modules / "workerd" / "bin")


def default_compat_date(worker_dir: Path | None = None) -> str:
    """worker/wrangler.toml's compatibility_date: local runs use the date a deploy would."""
    with open((worker_dir or WORKER_DIR) / "wrangler.toml", "rb") as f:
        return tomllib.load(f)["compatibility_date"]


def newest_compat_date(worker_dir: Path | None = None) -> str | None:
    """The newest compatibility date the installed workerd supports: its npm version is
    1.YYYYMMDD.N, the date of its release (None if it cannot be read)."""
    with contextlib.suppress(OSError, ValueError, KeyError):
        package = (worker_dir or npm_worker_dir()) / "node_modules" / "workerd" / "package.json"
        day = json.loads(package.read_text())["version"].split(".")[1]
        if re.fullmatch(r"\d{8}", day):
            return f"{day[:4]}-{day[4:6]}-{day[6:]}"
    return None


# ------------------------------------------------------------------------------------------ arguments


def resolve_worker(value: str) -> Path:
    """`fixed`, `relay`, `as-written`, or the path of a Worker: a file (.js .mjs .cjs .ts .mts) or a
    project folder (wrangler config, or Pages functions/). Raises WorkerError (status 2)."""
    if value in WORKERS:
        return WORKERS[value]
    path = Path(value).expanduser()
    if not path.exists():
        raise WorkerError(
            f"--worker {value!r}: use fixed, relay, as-written or the path of a Worker (a file or a project folder)",
            status=2,
        )
    return path.resolve()


def parse_var(value: str) -> tuple[str, str]:
    """--var NAME=VALUE. Raises WorkerError (status 2)."""
    name, sep, text = value.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise WorkerError(f"--var {value.split('=')[0]!r}: expected NAME=VALUE", status=2)
    return name, text


def check_url(option: str, value: str) -> str:
    """An http(s) origin: scheme, host, optional port, no path, query or credentials. Returns it as
    given (stripped): the Worker sees the value a secret would hold. Raises WorkerError (status 2)."""
    value = value.strip()
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as e:
        raise WorkerError(f"{option} {value!r}: not a URL ({e})", status=2) from None
    if parts.scheme not in ("http", "https"):
        raise WorkerError(
            f"{option} {value!r}: expected an http(s) URL, https://<ref>.supabase.co or http://127.0.0.1:PORT",
            status=2,
        )
    if not parts.hostname:
        raise WorkerError(f"{option} {value!r}: no host", status=2)
    if parts.username or parts.password:
        raise WorkerError(f"{option}: credentials in the URL are not accepted", status=2)
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise WorkerError(f"{option} {value!r}: give the origin alone, without a path or query", status=2)
    return value


def _private_cidrs(urls: list[str]) -> list[str]:
    """Private (non-loopback) addresses the URLs' hosts resolve to, as /32 or /128 CIDRs, for workerd's
    network allow list. Loopback is allowed as a whole ("local"); public addresses are ("public")."""
    out: list[str] = []
    for url in urls:
        host = urlsplit(url).hostname or ""
        try:
            infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except OSError:
            continue  # workerd will say it cannot resolve it, on the first request
        for info in infos:
            ip = ipaddress.ip_address(str(info[4][0]).split("%")[0])
            if ip.is_private and not ip.is_loopback:
                cidr = f"{ip}/{ip.max_prefixlen}"
                if cidr not in out:
                    out.append(cidr)
    return out


# ------------------------------------------------------------------------------------------ config


def _die_with_parent() -> None:
    """In workerd's child process (Linux): SIGKILL it if rtworker dies without stopping it. Not SIGTERM:
    workerd drains on SIGTERM, waiting for every open WebSocket, and with rtworker gone nothing would
    follow up with the kill (measured: a killed `rtworker check` left its workerd serving for good)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Workerd:
    """One Worker served by workerd on 127.0.0.1. `await start()` returns once it listens; `lines` is
    workerd's output so far; `on_line` (if given) gets each line as it comes. Used by rtworker and by the
    tests, which can give it a SUPABASE_URL rtworker's checks would refuse.

    `script`: a Worker file or project folder (read by workerproject.load_project) or a WorkerProject.
    Its env: the project's [vars] and .dev.vars, then SUPABASE_URL/SITE_URL (when given), then
    `var_overrides`; its KV namespaces in memory. The Worker reaches loopback only unless `allow_net`
    (egress.js; `blocked` lists what it was refused); `trusted_ca` (PEM) is trusted for https:// and wss://."""

    def __init__(
        self,
        script: Path | WorkerProject,
        supabase_url: str | None = None,
        *,
        port: int = 0,
        compat_date: str | None = None,
        compat_flags: list[str] | tuple[str, ...] = (),
        site_url: str | None = None,
        on_line: Callable[[str], None] | None = None,
        allow_net: bool = False,
        trusted_ca: str | None = None,
        var_overrides: dict[str, str] | None = None,
        verbose: bool = False,
    ) -> None:
        self.project = script if isinstance(script, WorkerProject) else None
        self.script = script.entry if isinstance(script, WorkerProject) else Path(script)
        self.bindings: dict[str, str] = {}
        if supabase_url is not None:
            self.bindings["SUPABASE_URL"] = supabase_url
        if site_url:
            self.bindings["SITE_URL"] = site_url
        self.var_overrides = dict(var_overrides or {})
        self.allow_net = allow_net
        self.trusted_ca = trusted_ca
        # workerd --verbose: it then logs an exception thrown in an event listener ("uncaught exception;
        # desc = InvalidAccessError: Invalid WebSocket close code: 1005."), which it otherwise keeps to
        # itself (workerd src/workerd/io/worker.c++ logs it at INFO); rtworker check reads it.
        self.verbose = verbose
        self.requested_port = port
        self.given_compat_date = compat_date
        self.compat_date = compat_date or ""  # set by start(): given, else the project's, else worker/'s
        self.compat_date_source = ""
        self.compat_flags = list(compat_flags)
        self.blocked: list[str] = []
        self._redactor = Redactor(False)
        self.on_line = on_line
        self.lines: list[str] = []
        self.port = 0
        self.proc: asyncio.subprocess.Process | None = None
        self.returncode: int | None = None
        self._tmp: Path | None = None
        self._readers: list[asyncio.Task] = []
        self._changed = asyncio.Condition()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind(("127.0.0.1", self.requested_port))
            sock.listen(128)
        except OSError as e:
            sock.close()
            if e.errno == errno.EADDRINUSE:
                raise WorkerError(f"port {self.requested_port} on 127.0.0.1 is in use: pick another --port")
            raise WorkerError(
                f"cannot listen on 127.0.0.1:{self.requested_port}: {e.strerror or e}"
            ) from None
        return sock

    def _choose_date(self, project: WorkerProject) -> None:
        if self.given_compat_date:
            self.compat_date, self.compat_date_source = self.given_compat_date, "--compat-date"
        elif project.compat_date:
            where = project.config_file.name if project.config_file else "the project"
            self.compat_date, self.compat_date_source = project.compat_date, f"{where}'s"
        else:
            self.compat_date, self.compat_date_source = default_compat_date(), "worker/wrangler.toml's"
        if not _DATE_RE.fullmatch(self.compat_date):
            raise WorkerError(f"--compat-date {self.compat_date!r}: expected YYYY-MM-DD", status=2)
        newest = newest_compat_date()
        if newest and self.compat_date > newest:
            raise WorkerError(
                f"compatibility date {self.compat_date} ({self.compat_date_source}) is newer than the installed "
                f"workerd supports ({newest}): give --compat-date {newest} or older",
                status=2,
            )

    async def _script(self, project: WorkerProject, tmp: Path) -> str:
        """The Worker's script in tmp, as is when it is one self-contained module (workerd's stack
        traces name it: file:///bundle/<name>), else bundled; its file name."""
        if project.self_contained:
            shutil.copyfile(project.entry, tmp / project.entry.name)
            project.sources = [project.entry]  # what runs: the one file (not the folder's other files)
            return project.entry.name
        return (await bundle(project, tmp / "bundle")).relative_to(tmp).as_posix()

    def _config(self, project: WorkerProject, script: str) -> Config:
        text: dict[str, str] = {}
        js: dict[str, object] = {}
        for name, value in project.vars.items():
            if isinstance(value, str):
                text[name] = value
            else:
                js[name] = value
        for name, value in {**project.secrets, **self.bindings, **self.var_overrides}.items():
            js.pop(name, None)
            text[name] = value
        flags = list(dict.fromkeys([*project.compat_flags, *self.compat_flags]))
        self.compat_flags = flags
        allow = ["public", "local", *_private_cidrs(list(text.values()))] if self.allow_net else ["local"]
        return Config(
            script=script,
            compat_date=self.compat_date,
            compat_flags=flags,
            service_worker=project.form == "service-worker",
            text=text,
            json=js,
            kv=list(project.kv),
            allow=allow,
            trusted_ca=self.trusted_ca,
            allow_net=self.allow_net,
        )

    async def start(self) -> str:
        binary = find_workerd()
        if self.project is None:
            if not self.script.exists():
                raise WorkerError(f"no Worker at {self.script}", status=2)
            self.project = load_project(self.script)
        project = self.project
        self._choose_date(project)
        self._tmp = Path(tempfile.mkdtemp(prefix="rtworker-"))
        try:
            script = await self._script(project, self._tmp)
            for name in ("egress.js", "kv.js"):
                shutil.copyfile(RUNTIME_DIR / name, self._tmp / name)
            config = self._tmp / "config.capnp"
            config.write_text(config_text(self._config(project, script)))
            sock = self._bind()
        except BaseException:
            self._cleanup()
            raise
        self.port = sock.getsockname()[1]
        control_r, control_w = os.pipe()
        try:
            self.proc = await asyncio.create_subprocess_exec(
                str(binary),
                "serve",
                str(config),
                f"--socket-fd=http={sock.fileno()}",
                f"--control-fd={control_w}",
                *(["--verbose"] if self.verbose else []),
                pass_fds=(sock.fileno(), control_w),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # rtworker alone decides when it stops (a terminal's ^C included)
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        except BaseException:
            os.close(control_r)
            self._cleanup()
            raise
        finally:
            os.close(control_w)
            sock.close()  # workerd has its own copy
        assert self.proc.stdout and self.proc.stderr
        self._readers = [
            asyncio.create_task(self._read(self.proc.stdout)),
            asyncio.create_task(self._read(self.proc.stderr)),
        ]
        try:
            await self._until_listening(control_r)
        except BaseException:
            await self.stop()
            raise
        return self.url

    async def _read(self, stream: asyncio.StreamReader) -> None:
        async for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if (at := line.find(BLOCKED)) >= 0:
                url = self._redactor.url(line[at + len(BLOCKED) :].strip())
                line = (
                    f"rtworker: the Worker tried to reach {url}: blocked (only loopback; --allow-net lets it)"
                )
                self.blocked.append(url)
            async with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
            if self.on_line:
                self.on_line(line)

    async def _until_listening(self, control_r: int) -> None:
        """workerd writes {"event":"listen","socket":"http","port":N} on its control fd once it serves
        the socket (workerd src/workerd/server/server.c++, Server::listenOnSockets); a TCP connection to
        it then confirms. If workerd exits first, its output is the reason."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(control_r, "rb", buffering=0)
        )
        try:
            assert self.proc
            exited = asyncio.create_task(self.proc.wait())
            while True:
                line = asyncio.create_task(reader.readline())
                await asyncio.wait({line, exited}, return_when=asyncio.FIRST_COMPLETED)
                if not line.done():
                    line.cancel()
                    await asyncio.gather(*self._readers, return_exceptions=True)
                    raise WorkerError(self._exit_reason(exited.result()))
                raw = line.result()
                if not raw:  # control fd closed without the event: workerd is exiting
                    self.returncode = await exited
                    await asyncio.gather(*self._readers, return_exceptions=True)
                    raise WorkerError(self._exit_reason(self.returncode))
                with contextlib.suppress(ValueError):
                    event = json.loads(raw)
                    if event.get("event") == "listen" and event.get("socket") == "http":
                        break
            exited.cancel()
            _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            writer.close()
            await writer.wait_closed()
        finally:
            transport.close()

    def _exit_reason(self, code: int) -> str:
        self.returncode = code
        said = [line.strip() for line in self.lines if line.strip()]
        detail = said[0] if said else "no output"
        more = " (more above)" if len(said) > 1 else ""
        return f"workerd exited ({code}) before listening: {detail}{more}"

    async def wait(self) -> int:
        """Until workerd exits by itself."""
        assert self.proc
        self.returncode = await self.proc.wait()
        await asyncio.gather(*self._readers, return_exceptions=True)
        return self.returncode

    async def wait_for(self, pattern: str, timeout: float) -> re.Match:
        """The first output line matching `pattern` (for tests: what the Worker logged)."""
        rx = re.compile(pattern)

        async def scan() -> re.Match:
            async with self._changed:
                i = 0
                while True:
                    for line in self.lines[i:]:
                        if m := rx.search(line):
                            return m
                    i = len(self.lines)
                    await self._changed.wait()

        return await asyncio.wait_for(scan(), timeout)

    async def stop(self) -> None:
        """SIGTERM workerd (it drains), SIGKILL after STOP_GRACE s or on kill(); then remove the config."""
        try:
            if self.proc and self.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.terminate()
                try:
                    await asyncio.wait_for(self.proc.wait(), STOP_GRACE)
                except TimeoutError:
                    self.kill()
                    await self.proc.wait()
            if self.proc:
                self.returncode = self.proc.returncode
            await asyncio.gather(*self._readers, return_exceptions=True)
        finally:
            self._cleanup()

    def kill(self) -> None:
        """SIGKILL workerd now (stop() still waits for it and removes the config)."""
        if self.proc and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()

    def _cleanup(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()


# ------------------------------------------------------------------------------------------ the command


def _parser() -> argparse.ArgumentParser:
    intro, rest = __doc__.split("\n\n", 1)
    p = argparse.ArgumentParser(
        prog="rtworker", description=intro, epilog=rest, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--version", action="version", version=version_text("rtworker"))
    p.add_argument(
        "--worker",
        required=True,
        help="fixed, relay, as-written, or the path of a Worker: a file (.js .mjs .cjs .ts .mts) or a project "
        "folder (wrangler.toml/.json/.jsonc, or Pages functions/)",
    )
    p.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1 (0: pick a free one)")
    p.add_argument(
        "--supabase-url",
        help="the Worker's SUPABASE_URL: https://<ref>.supabase.co, or http://127.0.0.1:PORT (rtlocal, rtproxy); "
        "required for fixed, relay and as-written",
    )
    p.add_argument(
        "--compat-date",
        help="the Worker's compatibility date, YYYY-MM-DD (default: worker/wrangler.toml's compatibility_date)",
    )
    p.add_argument(
        "--compat-flag",
        action="append",
        default=[],
        metavar="FLAG",
        help="a compatibility flag, e.g. no_websocket_standard_binary_type; repeatable",
    )
    p.add_argument("--site-url", help="the Worker's SITE_URL: where non-upgrade requests go (http(s) origin)")
    p.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a text binding in the Worker's env, over the project's [vars] and .dev.vars; repeatable",
    )
    p.add_argument(
        "--allow-net",
        action="store_true",
        help="let the Worker's fetch() and WebSocket reach non-loopback addresses (default: loopback only)",
    )
    p.add_argument(
        "--trusted-ca", metavar="PEM", help="a CA certificate file (PEM) the Worker's https:// trusts"
    )
    p.add_argument(
        "--show-secrets", action="store_true", help="do not redact apikeys and JWTs in workerd's output"
    )
    return p


async def _serve(w: Workerd, redactor: Redactor, worker_name: str) -> int:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()

    def on_signal() -> None:
        if stopping.is_set():  # the second ^C: no more draining
            w.kill()
        stopping.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        start = asyncio.create_task(w.start())
        stop = asyncio.create_task(stopping.wait())
        await asyncio.wait({start, stop}, return_when=asyncio.FIRST_COMPLETED)
        if not start.done():  # a signal before workerd listened
            start.cancel()
            with contextlib.suppress(asyncio.CancelledError, WorkerError):
                await start
            await w.stop()
            return 0
        start.result()  # WorkerError propagates
        project = w.project
        assert project
        for line in project.unsupported:
            print(f"rtworker: {line}", flush=True)
        if not w.allow_net:
            for name, value in w.bindings.items():
                host = urlsplit(value).hostname or ""
                if host not in ("localhost", "::1") and not host.startswith("127."):
                    print(
                        f"rtworker: {name} is not a loopback address: the Worker's requests to it are blocked "
                        "unless --allow-net",
                        flush=True,
                    )
        env = [*project.vars, *project.secrets, *project.kv, *w.bindings, *w.var_overrides]
        print(
            f"rtworker: {worker_name} ({w.script}), {project.form} form, in workerd, compatibility date "
            f"{w.compat_date} ({w.compat_date_source}), flags [{', '.join(w.compat_flags)}], "
            f"env: {', '.join(dict.fromkeys(env)) or 'nothing'}",
            flush=True,
        )
        url = w.bindings.get("SUPABASE_URL")
        print(
            f"rtworker: SUPABASE_URL={redactor.url(url) if url else '(the project’s own)'}: listening at {w.url}",
            flush=True,
        )
        print(
            f"rtworker: Realtime clients connect to {w.url} (supabase-js: createClient('{w.url}', key); "
            f".venv/bin/rtclient {w.url} --channel room1); ^C stops",
            flush=True,
        )
        exited = asyncio.create_task(w.wait())
        await asyncio.wait({exited, stop}, return_when=asyncio.FIRST_COMPLETED)
        if exited.done():
            print(f"rtworker: workerd exited ({exited.result()})", file=sys.stderr, flush=True)
            await w.stop()
            return 1
        exited.cancel()
        await w.stop()
        return 0
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["check"]:  # `rtworker check PATH`: workercheck.py
        from .workercheck import main as check_main

        return check_main(argv[1:])
    if argv[:1] == ["install"]:  # `rtworker install`: npm ci of workerd and esbuild (workerbase.py)
        if argv[1:]:
            print(
                "rtworker install takes no arguments (it installs where $RTPROXY_DATA_DIR says)",
                file=sys.stderr,
            )
            return 2
        return install_npm_packages(lambda line: print(line, flush=True))
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:
        return 2 if e.code else 0
    redactor = Redactor(args.show_secrets)

    def forward(line: str) -> None:
        if line.startswith("rtworker: "):  # Workerd's own line (a blocked request, already redacted)
            print(line, file=sys.stderr, flush=True)
        else:
            print(PREFIX + redactor.text(line), file=sys.stderr, flush=True)

    try:
        script = resolve_worker(args.worker)
        if args.supabase_url is None and args.worker in WORKERS:
            raise WorkerError(f"--worker {args.worker} needs --supabase-url", status=2)
        supabase_url = check_url("--supabase-url", args.supabase_url) if args.supabase_url else None
        overrides = dict(parse_var(v) for v in args.var)
        trusted_ca = None
        if args.trusted_ca:
            try:
                trusted_ca = Path(args.trusted_ca).read_text("ascii")
            except (OSError, UnicodeDecodeError) as e:
                raise WorkerError(
                    f"--trusted-ca {args.trusted_ca!r}: cannot read it ({e})", status=2
                ) from None
            if "-----BEGIN CERTIFICATE-----" not in trusted_ca:
                raise WorkerError(f"--trusted-ca {args.trusted_ca!r}: not a PEM certificate", status=2)
        site_url = check_url("--site-url", args.site_url) if args.site_url else None
        if not 0 <= args.port <= 65535:
            raise WorkerError(f"--port {args.port}: expected 0-65535", status=2)
        w = Workerd(
            script,
            supabase_url,
            port=args.port,
            compat_date=args.compat_date,
            compat_flags=args.compat_flag,
            site_url=site_url,
            on_line=forward,
            allow_net=args.allow_net,
            var_overrides=overrides,
            trusted_ca=trusted_ca,
        )
        return asyncio.run(_serve(w, redactor, args.worker if args.worker in WORKERS else "worker"))
    except WorkerError as e:
        print(f"rtworker: {redactor.text(str(e))}", file=sys.stderr, flush=True)
        return e.status


if __name__ == "__main__":
    sys.exit(main())
