"""What rtworker's modules share: the one-line error, where the Worker's sources are, where the npm
packages it runs (workerd, esbuild; realtime-js for `rtworker check`) are installed, and their binaries.

Two kinds of files, two places:
- the sources (the corrected Worker and its fixtures, rtworker's runtime Workers, wrangler.toml for the
  default compatibility date, the package.json/package-lock.json npm installs from, tests/node's
  realtime-js client): the checkout's worker/ and tests/node/ when rtproxy runs from one (addon/ on the
  path), else the installed package's copy, rtproxy_tools/data/worker and data/node (setup.py puts them
  in the wheel);
- the npm packages (node_modules): $RTPROXY_DATA_DIR/worker and /node when that is set; else the
  checkout's worker/ and tests/node/; else ~/.local/share/rtproxy/worker and /node ($XDG_DATA_HOME
  when set). `rtworker install` runs `npm ci` there (install_npm_packages).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent  # rtproxy_tools
ROOT = HERE.parent.parent  # the checkout, when HERE is its addon/rtproxy_tools
CHECKOUT = HERE.parent.name == "addon" and (ROOT / "worker" / "wrangler.toml").is_file()
PACKAGED = HERE / "data"  # the wheel's copy of worker/ and tests/node/ (setup.py)
WORKER_DIR = ROOT / "worker" if CHECKOUT else PACKAGED / "worker"  # the sources
NODE_SRC_DIR = ROOT / "tests" / "node" if CHECKOUT else PACKAGED / "node"  # realtime-js's client.mjs
RUNTIME_DIR = WORKER_DIR / "runtime"  # rtworker's own Workers: the KV store, the egress guard
DATA_ENV = "RTPROXY_DATA_DIR"
NPM_INSTALL = "rtworker install"
NPM_CI = ("npm", "ci", "--no-audit", "--no-fund")


def data_dir() -> Path | None:
    """$RTPROXY_DATA_DIR; else None in a checkout (its own worker/ and tests/node/); else the per-user
    ~/.local/share/rtproxy ($XDG_DATA_HOME/rtproxy)."""
    if env := os.environ.get(DATA_ENV):
        return Path(env).expanduser().resolve()
    if CHECKOUT:
        return None
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "rtproxy"


def npm_worker_dir() -> Path:
    """Where workerd and esbuild are installed: this folder's node_modules."""
    base = data_dir()
    return WORKER_DIR if base is None else base / "worker"


def npm_node_dir() -> Path:
    """Where realtime-js (for `rtworker check`) is installed, next to the client.mjs that imports it."""
    base = data_dir()
    return NODE_SRC_DIR if base is None else base / "node"


def not_installed(what: str) -> str:
    """The one line for an npm package rtworker needs and cannot find."""
    return (
        f"{what} is not installed (looked in {npm_worker_dir() / 'node_modules'}): run `{NPM_INSTALL}` "
        f"(npm ci of rtproxy's worker/package.json there; needs Node.js's npm; ${DATA_ENV} picks another folder)"
    )


def install_npm_packages(out=print) -> int:
    """`rtworker install`: npm ci of the packaged package.json/package-lock.json (workerd, esbuild) into
    npm_worker_dir(), and of tests/node's (realtime-js, with client.mjs) into npm_node_dir(); the files
    are copied there first when that is not where they are. Exit status: 0, or 1 (npm missing or failed)."""
    npm = shutil.which("npm")
    if npm is None:
        out(
            "rtworker: npm is not installed: install Node.js 18 or newer (it comes with npm), e.g. apt-get install npm"
        )
        return 1
    for src, dest, files in (
        (WORKER_DIR, npm_worker_dir(), ("package.json", "package-lock.json")),
        (NODE_SRC_DIR, npm_node_dir(), ("package.json", "package-lock.json", "client.mjs")),
    ):
        dest.mkdir(parents=True, exist_ok=True)
        if dest.resolve() != src.resolve():
            for name in files:
                shutil.copyfile(src / name, dest / name)
        out(f"rtworker: {' '.join(NPM_CI)} in {dest}")
        done = subprocess.run([npm, *NPM_CI[1:]], cwd=dest, check=False)
        if done.returncode:
            out(f"rtworker: npm ci in {dest} failed (exit {done.returncode})")
            return 1
    out(f"rtworker: workerd and esbuild are installed in {npm_worker_dir() / 'node_modules'}")
    return 0


class WorkerError(Exception):
    """A one-line reason rtworker cannot run: `status` is its exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def npm_platform() -> tuple[str, str]:
    """(os, arch) as npm names them (process.platform, process.arch)."""
    machine = platform.machine().lower()
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    system = {"linux": "linux", "darwin": "darwin", "win32": "win32"}.get(sys.platform, sys.platform)
    return system, arch


def find_esbuild(worker_dir: Path | None = None) -> Path:
    """esbuild's binary from npm_worker_dir()'s node_modules (npm `esbuild`, pinned in worker/package.json to the
    version wrangler pins): the platform package's own, @esbuild/<os>-<arch>/bin/esbuild (npm's
    `esbuild` package lists them as optionalDependencies), else esbuild/bin/esbuild. Raises WorkerError."""
    modules = (worker_dir or npm_worker_dir()) / "node_modules"
    system, arch = npm_platform()
    platform_dir = modules / "@esbuild" / f"{system}-{arch}"
    return find_npm_binary("esbuild", platform_dir / "bin", platform_dir, modules / "esbuild" / "bin")


def find_npm_binary(name: str, *folders: Path) -> Path:
    """The first executable `name` (name.exe on Windows) in `folders`, in order; WorkerError saying how to
    install it (not_installed) when none has it."""
    exe = f"{name}.exe" if sys.platform == "win32" else name
    for candidate in (folder / exe for folder in folders):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise WorkerError(not_installed(name))
