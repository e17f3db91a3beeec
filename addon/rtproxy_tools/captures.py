"""Capture files -> connections: one `read(path)` over a table of formats.

A format is a name, a sniff (does the file's start look like it?) and a reader (the file's bytes and path
-> connections); `read` tries them in order. A new format is one reader and one line in FORMATS.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rtproxy_core.captures import CaptureError, har_connections
from rtproxy_core.diagnosis import Connection


@dataclass(frozen=True)
class Format:
    name: str
    sniff: Callable[[bytes], bool]
    read: Callable[[bytes, Path], list[Connection]]


def _read_har(raw: bytes, path: Path) -> list[Connection]:
    try:
        har = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise CaptureError(f"not valid JSON (a HAR file is JSON): {e}") from None
    return har_connections(har)


def _read_flows(raw: bytes, path: Path) -> list[Connection]:
    from rtproxy_mitm.flowfile import flowfile_connections  # mitmproxy's reader, imported only when needed

    return flowfile_connections(path)


FORMATS: list[Format] = [
    Format("HAR", lambda raw: raw.lstrip()[:1] == b"{", _read_har),
    Format("mitmproxy flow file", lambda raw: True, _read_flows),
]


def read(path: Path) -> list[Connection]:
    """The connections in the capture at `path`; CaptureError (one line) when it cannot be read."""
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise CaptureError(f"cannot read: {e.strerror or e}") from None
    fmt = next(f for f in FORMATS if f.sniff(raw))
    return fmt.read(raw, Path(path))
