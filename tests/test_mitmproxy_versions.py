"""`mitmdump -s addon/rtproxy.py` from a mitmproxy that is not ours: pipx, Homebrew and the standalone
binaries install mitmproxy alone, without websockets (mitmproxy does not depend on it) and without
rtproxy's packages.

Each such mitmproxy is a throwaway venv holding `pip install mitmproxy==X` only, built once per session
(and kept in pytest's cache folder, so later sessions reuse it):
- mitmproxy 12.3.1 alone: `fixed` and `inspect` mode really reroute and decode a raw websockets client's
  frames; `relay` and the embedded local server (websockets code) say in one line what to install.
- mitmproxy 11.1.3, the newest release rtproxy refuses (contentview.py needs mitmproxy 12's contentview
  API): one line names the version needed and the one running, and no addon is loaded.
When pip cannot reach a package index, these tests skip with that reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import conftest
import pytest
from conftest import TIMEOUT, Mitmdump
from mitmproxy import exceptions
from mitmproxy.test import taddons
from rtproxy_core import frames
from rtproxy_mitm import WEBSOCKETS, mitmproxy_refused, mitmproxy_untested, optionerror, worker
from websockets.asyncio.client import connect

# The newest mitmproxy rtproxy runs on, and the newest it refuses.
WORKS, REFUSED = "12.3.1", "11.1.3"
PIP_TIMEOUT = 600  # safety net for a pip run; never a measured threshold
# What pip prints when no index answers (no network, no DNS, a proxy refusing): the test then skips.
UNREACHABLE = re.compile(
    r"from versions: none|NewConnectionError|Max retries exceeded|Name or service not known|"
    r"Temporary failure in name resolution|Network is unreachable|ConnectTimeoutError|ProxyError"
)


@contextlib.contextmanager
def _locked(path: Path):
    """Other pytest sessions in this checkout may build the same venvs at the same time."""
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _pip_install(venv: Path, requirement: str) -> subprocess.Popen:
    # The venv gets no pip of its own (ensurepip costs seconds): .venv's pip installs into it (--python).
    # pip's own cache is used as it is configured; bytecode is compiled on first import, not here.
    return subprocess.Popen(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q"]
        + ["--no-compile", "--timeout", "30", "--retries", "1", requirement],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


@pytest.fixture(scope="session")
def foreign_mitmproxies(request, tmp_path_factory) -> dict[str, Path | str]:
    """version -> a venv with only that mitmproxy installed, or why it could not be built (a skip).
    Both are built at once (pip waits on the network more than on the CPU)."""
    cache = getattr(request.config, "cache", None)  # None under -p no:cacheprovider: this session only
    root = Path(cache.mkdir("mitmproxy-venvs")) if cache else tmp_path_factory.mktemp("mitmproxy-venvs")
    py = f"py{sys.version_info[0]}{sys.version_info[1]}"
    built: dict[str, Path | str] = {}
    started = time.monotonic()
    with _locked(root / ".lock"):
        pending: dict[str, tuple[Path, str, subprocess.Popen]] = {}
        for version in (WORKS, REFUSED):
            venv = root / f"mitmproxy-{version}-{py}"
            requirement = f"mitmproxy=={version}"
            stamp, key = venv / ".built", f"{requirement} {sys.version} {venv}"
            if stamp.is_file() and stamp.read_text() == key and (venv / "bin" / "mitmdump").exists():
                built[version] = venv
                continue
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
            pending[version] = (venv, key, _pip_install(venv, requirement))
        outputs = {
            version: proc.communicate(timeout=PIP_TIMEOUT)[0] for version, (_, _, proc) in pending.items()
        }
        for version, (venv, key, proc) in pending.items():
            # This machine's pip config names local mirrors that may be absent; their warnings are noise.
            lines = outputs[version].decode("utf-8", "replace").splitlines()
            out = "\n".join(line for line in lines if "is ignored: it is neither" not in line)
            if proc.returncode == 0:
                (venv / ".built").write_text(key)
                built[version] = venv
            elif said := [line.strip() for line in lines if UNREACHABLE.search(line)]:
                built[version] = f"pip could not reach a package index for mitmproxy=={version}: {said[-1]}"
            else:
                pytest.fail(f"pip install mitmproxy=={version} failed:\n{out}")
    if pending:
        print(f"\nbuilt venvs for mitmproxy {', '.join(pending)} in {time.monotonic() - started:.1f} s")
    return built


def _venv(built: dict[str, Path | str], version: str) -> Path:
    venv = built[version]
    if isinstance(venv, str):
        pytest.skip(venv)
    return venv


@pytest.fixture
def mitmproxy12(foreign_mitmproxies) -> Path:
    """mitmdump of mitmproxy 12.3.1 installed alone: no websockets, no rtproxy packages."""
    venv = _venv(foreign_mitmproxies, WORKS)
    site = list(venv.glob("lib/python*/site-packages"))
    assert site and not any((s / "websockets").exists() for s in site), "mitmproxy now brings websockets"
    assert not any(any(s.glob("rtproxy*")) for s in site), "rtproxy is installed there"
    return venv / "bin" / "mitmdump"


@pytest.fixture
def mitmproxy11(foreign_mitmproxies) -> Path:
    return _venv(foreign_mitmproxies, REFUSED) / "bin" / "mitmdump"


async def run_to_exit(program: Path, tmp_path: Path, *sets: str) -> tuple[int, str]:
    """mitmdump -s addon/rtproxy.py with these options, until it exits by itself."""
    rc, out = await conftest.run_to_exit(Mitmdump(tmp_path, *sets, program=str(program)).args)
    if rc is None:
        raise AssertionError("mitmdump kept running:\n" + out)
    return rc, out


@pytest.mark.parametrize("mode", ["fixed", "inspect"])
async def test_mitmproxy_12_without_websockets_reroutes_and_decodes(
    mode, mitmproxy12, local_server, mitmdump, anon_key
):
    if mode == "fixed":  # rerouted from the (non-existent) worker host onto the local server
        proxy = await mitmdump(
            f"rt_supabase_url={local_server.url}", "termlog_verbosity=debug", program=str(mitmproxy12)
        )
    else:  # nothing rerouted: mitmproxy's reverse target is the server; the URL is never used
        proxy = await mitmdump(
            "rt_mode=inspect",
            "rt_supabase_url=https://x.supabase.co",
            "termlog_verbosity=debug",
            mode=f"reverse:{local_server.url}",
            program=str(mitmproxy12),
        )
    url = f"ws://127.0.0.1:{proxy.port}/realtime/v1/websocket?apikey={anon_key}&vsn=2.0.0"
    async with connect(url) as ws:
        await ws.send(
            json.dumps(["1", "1", "realtime:room1", "phx_join", {"config": {"broadcast": {"self": True}}}])
        )
        reply = frames.decode(await asyncio.wait_for(ws.recv(), TIMEOUT), binary=False, from_client=False)
        assert (reply.event, reply.payload["status"]) == ("phx_reply", "ok")
        await ws.send(frames.encode_user_push("realtime:room1", "cursor", {"x": 1}, join_ref="1", ref="2"))
        echo = await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert frames.decode(echo, binary=True, from_client=False).payload["payload"] == {"x": 1}
    if mode == "fixed":
        await proxy.wait_for(rf"upstream http://127\.0\.0\.1:{local_server.port}/realtime/v1/websocket\?")
    await proxy.wait_for(r"realtime:room1 joined in \d+ ms")
    await proxy.wait_for(r'← realtime:room1 broadcast ref=None join_ref=None kind 4 \{"type":"broadcast"')
    assert "Traceback" not in proxy.output


@pytest.mark.parametrize(
    "sets, option, says",
    [
        (("rt_mode=relay", "rt_supabase_url=https://x.supabase.co"), "rt_mode", "relay needs"),
        ((), "rt_supabase_url", r"the embedded local Realtime server \(rt_supabase_url not set\) needs"),
    ],
    ids=["relay", "embedded-server"],
)
async def test_mitmproxy_12_without_websockets_says_what_to_install(
    mitmproxy12, tmp_path, sets, option, says
):
    rc, out = await run_to_exit(mitmproxy12, tmp_path, *sets)
    assert rc == 1, out
    lines = [line for line in out.splitlines() if "websockets" in line]
    assert len(lines) == 1, out
    assert re.search(rf"(^|\] ){option}: {says} the Python package websockets", lines[0]), lines[0]
    assert (
        f"-m pip install '{WEBSOCKETS}'" in lines[0] and f"pipx inject mitmproxy '{WEBSOCKETS}'" in lines[0]
    )
    assert "Traceback" not in out and "Error" not in out.replace("Error logged during startup", ""), out


async def test_mitmproxy_11_names_the_version_needed_and_loads_nothing(mitmproxy11, tmp_path):
    rc, out = await run_to_exit(mitmproxy11, tmp_path)
    assert rc == 1, out
    lines = [line for line in out.splitlines() if "rtproxy" in line and "Loading script" not in line]
    assert len(lines) == 1, out
    assert re.search(r"rtproxy needs mitmproxy 12 \(12\.0 or newer\); this is mitmproxy 11\.1\.3 ", lines[0])
    assert "Traceback" not in out and "Error" not in out.replace("Error logged during startup", ""), out


def test_version_check_refuses_11_accepts_12_and_warns_past_12():
    assert mitmproxy_refused("11.1.3") and mitmproxy_refused("10.4.2")
    assert mitmproxy_refused("12.0.0") is None and mitmproxy_refused("12.3.1") is None
    assert mitmproxy_untested("12.3.1") is None
    assert mitmproxy_refused("13.0.0.dev") is None and "13.0.0.dev" in mitmproxy_untested("13.0.0.dev")


async def test_without_websockets_a_runtime_change_is_refused_and_rolled_back(monkeypatch):
    """After startup (mitmweb's option editor, a `set` command), the same check raises, and mitmproxy
    rolls the value back; the mode in effect stays the one that works."""
    monkeypatch.setattr(worker, "websockets_missing", lambda instead="": "the Python package websockets")
    w = worker.Worker(report=lambda flow_id, event: None)
    with taddons.context(w) as tctx:
        optionerror.mark_running()  # after startup, for this context's master
        tctx.configure(w, rt_supabase_url="https://x.supabase.co")
        with pytest.raises(
            exceptions.OptionsError, match=r"^rt_mode: relay needs the Python package websockets"
        ):
            tctx.configure(w, rt_mode="relay")
        assert (tctx.options.rt_mode, w.mode) == ("fixed", "fixed")
        with pytest.raises(
            exceptions.OptionsError, match=r"^rt_supabase_url: the embedded local Realtime server"
        ):
            tctx.configure(w, rt_supabase_url="")
        assert (tctx.options.rt_supabase_url, w.configured.host) == ("https://x.supabase.co", "x.supabase.co")
        tctx.configure(w, rt_mode="inspect", rt_supabase_url="")  # inspect needs no server
        with pytest.raises(exceptions.OptionsError, match=r"^rt_mode: the embedded local Realtime server"):
            tctx.configure(w, rt_mode="fixed")
        assert w.mode == "inspect" and w.embedded.server is None and w.relay.port == 0
