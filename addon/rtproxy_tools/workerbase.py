"""What rtworker's modules share: the one-line error, the repo's worker/ folder, npm binaries in it."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
WORKER_DIR = ROOT / "worker"
RUNTIME_DIR = WORKER_DIR / "runtime"  # rtworker's own Workers: the KV store, the egress guard
NPM_INSTALL = "cd worker && npm ci --no-audit --no-fund"


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
    """esbuild's binary from worker/node_modules (npm `esbuild`, pinned in worker/package.json to the
    version wrangler pins): the platform package's own, @esbuild/<os>-<arch>/bin/esbuild (npm's
    `esbuild` package lists them as optionalDependencies), else esbuild/bin/esbuild. Raises WorkerError."""
    modules = (worker_dir or WORKER_DIR) / "node_modules"
    system, arch = npm_platform()
    exe = "esbuild.exe" if sys.platform == "win32" else "esbuild"
    for candidate in (
        modules / "@esbuild" / f"{system}-{arch}" / "bin" / exe,
        modules / "@esbuild" / f"{system}-{arch}" / exe,
        modules / "esbuild" / "bin" / exe,
    ):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise WorkerError(f"esbuild is not installed: run `{NPM_INSTALL}` (the repo root's worker/ folder)")
