"""How Elixir prints a term (inspect/1), for the strings Realtime builds with it, for the JSON values a
client can send. Floats are approximate (Elixir writes the shortest form, e.g. 1.7e9)."""

from __future__ import annotations

from typing import Any


def inspect(v: Any) -> str:
    if v is None:
        return "nil"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(inspect(x) for x in v) + "]"
    if isinstance(v, dict):  # small maps print in key order
        return "%{" + ", ".join(f"{inspect(k)} => {inspect(v[k])}" for k in sorted(v)) + "}"
    return repr(v)
