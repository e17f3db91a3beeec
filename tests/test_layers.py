"""The layering: the sans-I/O core (addon/rtproxy_core) knows Realtime and nothing of mitmproxy or
websockets, and no layer imports one above it (core < local server, mitmproxy layer < tools)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ADDON = Path(__file__).resolve().parent.parent / "addon"
# Each package and the top-level packages it must not import (directly or through `from x import`).
FORBIDDEN = {
    "rtproxy_core": {"mitmproxy", "websockets", "wsproto", "rtproxy_mitm", "rtproxy_local", "rtproxy_tools"},
    "rtproxy_local": {"mitmproxy", "rtproxy_mitm", "rtproxy_tools"},
    "rtproxy_mitm": {"rtproxy_tools"},
}


def imported(path: Path) -> set[str]:
    """The top-level names of every module this file imports, at any depth (a function's lazy import too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_runs_against_the_layering(package):
    files = sorted((ADDON / package).rglob("*.py"))
    assert files
    broken = {
        str(f.relative_to(ADDON)): sorted(imported(f) & FORBIDDEN[package])
        for f in files
        if imported(f) & FORBIDDEN[package]
    }
    assert broken == {}


def test_the_check_sees_an_import(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def later():\n    from mitmproxy.http import HTTPFlow\n    import websockets.asyncio\n")
    assert imported(f) >= {"mitmproxy", "websockets"}


def test_importing_the_core_loads_neither_mitmproxy_nor_websockets():
    """At run time too: every core module imported in a fresh interpreter leaves both out of sys.modules."""
    import subprocess
    import sys

    modules = sorted(
        "rtproxy_core." + ".".join(p.relative_to(ADDON / "rtproxy_core").with_suffix("").parts)
        for p in (ADDON / "rtproxy_core").rglob("*.py")
        if p.name != "__init__.py"
    )
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(sorted(n for n in sys.modules if n.split('.')[0] in ('mitmproxy', 'websockets', 'wsproto')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
