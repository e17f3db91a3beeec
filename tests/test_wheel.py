"""rtproxy as a user installs it: the wheel `python -m build` makes, installed in a fresh venv outside the
repository, run from a folder outside it. The commands work from the wheel alone: `rtproxy` proxies a real
client to SUBSCRIBED, `rtdiagnose` reads an example capture, `mitmdump -s "$(rtproxy --addon-path)"`
loads the addon, rtworker finds the Worker's sources and says how to install workerd, every command
prints the version.

How the venv is made (fast, offline, and only the wheel supplies rtproxy's code):
- the build copies the repository's tracked and new files (git ls-files, no node_modules, no .venv) to a
  temporary folder and runs `python -m build --no-isolation` there (build and setuptools pinned in the
  test extra; no index needed), so the sdist is built, then the wheel from the sdist: a file that
  MANIFEST.in or setup.py forgets is missing from the wheel, as it would be for a user;
- `python -m venv --without-pip`, then .venv's pip installs the wheel into it (`pip --python`,
  `--no-deps --no-index --ignore-installed`): the wheel's code, its console scripts, its package data;
- the third-party dependencies (mitmproxy, websockets, realtime) come from .venv's site-packages, named
  in a .pth file of the new venv. A .pth line only appends a folder to sys.path: the .pth files inside
  that folder are not processed, so .venv's editable install of the checkout (its __editable__ finder)
  stays off and addon/ is never on the path (test_the_code_is_the_wheels checks where each module
  comes from). `pip check` says the wheel's declared dependencies are met by what is there;
- mitmproxy's own scripts are .venv's, bound to .venv's Python: the new venv gets a `mitmdump` of its
  own (bin/mitmdump calling mitmproxy.tools.main.mitmdump with the new venv's Python), as a
  `pipx inject mitmproxy rtproxy` user has one Python for both;
- PYTHONPATH (conftest.py points it at addon/) is removed from every command's environment.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest
from conftest import IN_CI, ROOT, TIMEOUT, Mitmdump, OutputProcess
from rtproxy_tools import __version__

pytestmark = pytest.mark.wheel

SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


class Installed:
    """The venv with the wheel in it: `bin(name)`, `env` for its commands, `site` (its site-packages)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.venv = root / "venv"
        self.site = Path(
            sysconfig.get_path("purelib", vars={"base": str(self.venv), "platbase": str(self.venv)})
        )
        self.run_dir = root / "elsewhere"  # the commands' working folder: not the repository
        self.home = root / "home"  # no npm packages installed for rtworker there
        self.env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SUPABASE_URL")}
        self.env.update(
            PATH=f"{self.venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            HOME=str(self.home),
            PYTHONUNBUFFERED="1",
            VIRTUAL_ENV=str(self.venv),
        )
        for var in ("XDG_DATA_HOME", "RTPROXY_DATA_DIR"):
            self.env.pop(var, None)

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args,
            capture_output=True,
            text=True,
            cwd=self.run_dir,
            env=env or self.env,
            timeout=60,
            check=False,
        )


def _sources(dest: Path) -> None:
    """The repository as a fresh clone has it, plus files not yet committed (not ignored ones)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        src = ROOT / rel
        if src.is_file() and not src.is_symlink():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    root = tmp_path_factory.mktemp("wheel")
    src, dist = root / "src", root / "dist"
    _sources(src)
    built = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(src)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = dist.glob("rtproxy-*.whl")
    inst = Installed(root)
    inst.run_dir.mkdir()
    inst.home.mkdir()
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(inst.venv)], check=True)
    pip = [sys.executable, "-m", "pip", "--python", str(inst.venv / "bin" / "python")]
    subprocess.run(
        # --ignore-installed: pip --python runs .venv's pip with .venv's site-packages on its path, where
        # the editable rtproxy would count as installed; this installs into the new venv, uninstalls nothing.
        [*pip, "install", "-q", "--no-deps", "--no-index", "--ignore-installed", str(wheel)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (inst.site / "rtproxy_test_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    mitmdump = inst.venv / "bin" / "mitmdump"
    mitmdump.write_text(
        f"#!{inst.venv / 'bin' / 'python'}\n"
        "import sys\nfrom mitmproxy.tools.main import mitmdump\nsys.exit(mitmdump())\n"
    )
    mitmdump.chmod(0o755)
    checked = subprocess.run(
        [*pip, "check"], capture_output=True, text=True, check=False, timeout=120, env=inst.env
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    return inst


def test_the_code_is_the_wheels(installed):
    r = installed.run(
        installed.bin("python"),
        "-c",
        "import rtproxy_addon, rtproxy_core, rtproxy_local, rtproxy_mitm, rtproxy_tools, sys\n"
        "for m in (rtproxy_addon, rtproxy_core, rtproxy_local, rtproxy_mitm, rtproxy_tools): print(m.__file__)\n"
        "from rtproxy_tools.worker import WORKERS, default_compat_date\n"
        "from rtproxy_tools.workerbase import CHECKOUT, RUNTIME_DIR\n"
        "print(CHECKOUT, default_compat_date(), *WORKERS.values(), *sorted(RUNTIME_DIR.iterdir()))\n"
        "print(any('addon' in p for p in sys.path))",
    )
    assert r.returncode == 0, r.stderr
    *modules, worker, addon_on_path = r.stdout.splitlines()
    assert all(Path(m).is_relative_to(installed.site) for m in modules), modules
    checkout, date, *files = worker.split()
    assert checkout == "False" and len(date) == 10
    assert all(Path(f).is_relative_to(installed.site) and Path(f).is_file() for f in files), files
    assert [Path(f).name for f in files] == ["index.js", "relay.js", "as-written.js", "egress.js", "kv.js"]
    assert addon_on_path == "False"


def test_every_command_prints_the_version(installed):
    procs = {
        name: subprocess.Popen(
            [installed.bin(name), "--version"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=installed.run_dir,
            env=installed.env,
        )
        for name in SCRIPTS
    }
    outs = {name: proc.communicate(timeout=60)[0] for name, proc in procs.items()}
    for name, out in outs.items():
        assert procs[name].returncode == 0 and out.splitlines()[0] == f"{name} {__version__}", (name, out)
    assert "\nMitmproxy: 12." in outs["rtproxy"]  # and mitmproxy's own --version lines


class InstalledProxy(Mitmdump):
    """An installed program (rtproxy, or the venv's mitmdump with -s), as conftest's Mitmdump awaits it."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        OutputProcess.__init__(self, args)
        self.env = env

    async def start(self) -> InstalledProxy:
        await self._spawn(self.env)
        self.port = int((await self.wait_for(r"listening at .*:(\d+)")).group(1))
        return self


PROXY_ARGS = ("--listen-host", "127.0.0.1", "-p", "0", "--mode", "reverse:http://worker.invalid")


async def test_rtproxy_proxies_a_real_client_to_subscribed(installed, monkeypatch):
    """No rt_supabase_url: the installed rtproxy's embedded local server (rtproxy_local from the wheel)
    is upstream; the installed rtclient (realtime-py) joins through it."""
    monkeypatch.chdir(installed.run_dir)
    args = [installed.bin("rtproxy"), *PROXY_ARGS, "--set", f"confdir={installed.root / 'conf'}"]
    proxy = await InstalledProxy(args, installed.env).start()
    try:
        line = await proxy.wait_for(r"Realtime clients connect to (\S+)")
        client = await asyncio.create_subprocess_exec(
            installed.bin("rtclient"), line.group(1), "--channel", "room1", "--listen", "0",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=installed.env,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(client.communicate(), TIMEOUT)
        assert client.returncode == 0 and out.decode().splitlines()[0] == "status SUBSCRIBED", out
        await proxy.wait_for(r"realtime:room1 joined in \d+ ms")
    finally:
        await proxy.stop()
    assert proxy.returncode == 0, proxy.output


def test_rtdiagnose_reads_an_example_capture(installed):
    shutil.copy(ROOT / "examples" / "expired-token.har", installed.run_dir / "capture.har")
    r = installed.run(installed.bin("rtdiagnose"), "capture.har")
    assert r.returncode == 1 and "token-expired" in r.stdout, r.stdout + r.stderr  # an error finding


async def test_mitmdump_loads_the_addon_from_addon_path(installed, monkeypatch):
    monkeypatch.chdir(installed.run_dir)
    r = installed.run(installed.bin("rtproxy"), "--addon-path")
    path = Path(r.stdout.strip())
    assert r.returncode == 0 and path == installed.site / "rtproxy_addon.py" and path.is_file(), r
    args = [installed.bin("mitmdump"), *PROXY_ARGS, "-s", str(path), "--set", f"confdir={installed.root}"]
    proxy = await InstalledProxy(args, installed.env).start()
    try:
        await proxy.wait_for(r"Realtime clients connect to")  # rtproxy's addons run in mitmdump
        assert "error" not in proxy.output.lower(), proxy.output
    finally:
        await proxy.stop()


def test_rtworker_says_how_to_install_workerd(installed):
    """No workerd where an installed rtworker looks (~/.local/share/rtproxy/worker, or $RTPROXY_DATA_DIR):
    one line naming the folder and `rtworker install`; the Worker itself is found (the package's)."""
    args = (
        installed.bin("rtworker"),
        "--worker",
        "fixed",
        "--port",
        "0",
        "--supabase-url",
        "http://127.0.0.1:9",
    )
    r = installed.run(*args)
    looked = installed.home / ".local" / "share" / "rtproxy" / "worker" / "node_modules"
    assert r.returncode == 1 and r.stdout == "", r
    assert r.stderr == (
        f"rtworker: workerd is not installed (looked in {looked}): run `rtworker install` (npm ci of "
        "rtproxy's worker/package.json there; needs Node.js's npm; $RTPROXY_DATA_DIR picks another folder)\n"
    )
    r = installed.run(*args, env=dict(installed.env, RTPROXY_DATA_DIR=str(installed.root / "data")))
    assert (
        r.returncode == 1 and f"(looked in {installed.root / 'data' / 'worker' / 'node_modules'})" in r.stderr
    )


def test_rtworker_install_runs_npm_ci_on_the_packaged_files(installed, tmp_path):
    """`rtworker install` copies the packaged package.json/package-lock.json (and realtime-js's client) to
    the data folder and runs npm ci in each; npm here is a stand-in that records where it ran."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "npm").write_text('#!/bin/sh\necho "$PWD $*" >> "$NPM_LOG"\n')
    (fake / "npm").chmod(0o755)
    data, log = tmp_path / "data", tmp_path / "npm.log"
    env = dict(
        installed.env,
        PATH=f"{fake}{os.pathsep}{installed.env['PATH']}",
        RTPROXY_DATA_DIR=str(data),
        NPM_LOG=str(log),
    )
    r = installed.run(installed.bin("rtworker"), "install", env=env)
    assert r.returncode == 0, r
    assert log.read_text().splitlines() == [
        f"{data / 'worker'} ci --no-audit --no-fund",
        f"{data / 'node'} ci --no-audit --no-fund",
    ]
    assert (data / "worker" / "package-lock.json").read_bytes() == (
        ROOT / "worker" / "package-lock.json"
    ).read_bytes()
    assert (data / "node" / "client.mjs").read_bytes() == (
        ROOT / "tests" / "node" / "client.mjs"
    ).read_bytes()
    r = installed.run(installed.bin("rtworker"), "install", env=dict(env, PATH=str(installed.venv / "bin")))
    assert r.returncode == 1 and "npm is not installed" in r.stdout, r


def test_installed_rtworker_checks_the_packaged_worker(installed, tmp_path):
    """Once workerd, esbuild and realtime-js are where an installed rtworker looks ($RTPROXY_DATA_DIR here:
    links to the checkout's node_modules, as `rtworker install` would fill it), `rtworker check` runs the
    corrected Worker from the wheel's package data in workerd and finds no defect."""
    modules = {"worker": ROOT / "worker" / "node_modules", "node": ROOT / "tests" / "node" / "node_modules"}
    missing = [str(m) for m in modules.values() if not m.is_dir()]
    if missing:
        if IN_CI:
            pytest.fail(f"needs {missing} (scripts/test.sh runs npm ci there)")
        pytest.skip(f"needs {missing} (scripts/test.sh runs npm ci there)")
    data = tmp_path / "data"
    for name, target in modules.items():
        (data / name).mkdir(parents=True)
        (data / name / "node_modules").symlink_to(target)
    shutil.copy(installed.site / "rtproxy_tools" / "data" / "node" / "client.mjs", data / "node")
    fixed = installed.site / "rtproxy_tools" / "data" / "worker" / "src" / "index.js"
    env = dict(installed.env, RTPROXY_DATA_DIR=str(data))
    r = installed.run(installed.bin("rtworker"), "check", str(fixed), "--json", env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads(r.stdout)
    assert "realtime-js" in json.dumps(report) and "not run" not in json.dumps(report), report
