"""Capture files -> connections: one `read(path)` over a table of formats.

A format is a name, a sniff (does the file's start look like it?) and a reader (the file's bytes and path
-> a Capture); `read_capture` tries them in order. A new format is one reader and one line in FORMATS.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rtproxy_core.captures import Capture, CaptureError, har_capture
from rtproxy_core.diagnosis import Connection

MAX_INFLATED = 1 << 30  # a .zhar inflates to at most this (1 GiB): a HAR, not a zip bomb


@dataclass(frozen=True)
class Format:
    name: str
    sniff: Callable[[bytes], bool]
    read: Callable[[bytes, Path], Capture]


def _is_json_object(raw: bytes) -> bool:
    """JSON text starting with '{', in any encoding JSON allows, with or without a byte order mark (Fiddler
    writes a UTF-8 BOM; mitmproxy's own reader skips it too: `io.FlowReader.stream`)."""
    head = raw[:64]
    try:
        text = head.decode(json.detect_encoding(head), "ignore")
    except LookupError:
        return False
    return text.lstrip("\ufeff \t\r\n")[:1] == "{"


def _read_har(raw: bytes, path: Path) -> Capture:
    try:
        har = json.loads(raw)  # bytes: json detects UTF-8/16/32 and drops a BOM (utf-8-sig)
    except (ValueError, RecursionError) as e:
        raise CaptureError(f"not valid JSON (a HAR file is JSON): {e}") from None
    return har_capture(har)


def _is_zlib(raw: bytes) -> bool:
    """A zlib stream's header (RFC 1950): deflate (CM 8), window ≤ 32K, no preset dictionary, and the check
    bits. No flow file starts so: a tnetstring starts with its length's digits."""
    if len(raw) < 2:
        return False
    cmf, flg = raw[0], raw[1]
    return cmf & 0x0F == 8 and cmf >> 4 <= 7 and not flg & 0x20 and (cmf << 8 | flg) % 31 == 0


def _read_zhar(raw: bytes, path: Path) -> Capture:
    """mitmproxy's `.zhar`: `SaveHar.export_har` writes `zlib.compress(har, 9)` when the path ends in .zhar
    (mitmproxy/addons/savehar.py)."""
    inflate = zlib.decompressobj()
    try:
        har = inflate.decompress(raw, MAX_INFLATED)
    except zlib.error as e:
        raise CaptureError(f"not a compressed HAR (.zhar, zlib): {e}") from None
    if inflate.unconsumed_tail:
        raise CaptureError(f"compressed HAR (.zhar) inflates to more than {MAX_INFLATED >> 20} MiB")
    if not inflate.eof:
        raise CaptureError("compressed HAR (.zhar) is truncated: the zlib stream does not end")
    try:
        return _read_har(har, path)
    except CaptureError as e:
        raise CaptureError(f"compressed HAR (.zhar): {e}") from None


def _read_flows(raw: bytes, path: Path) -> Capture:
    from rtproxy_mitm.flowfile import flowfile_capture  # mitmproxy's reader, imported only when needed

    return flowfile_capture(path)


FORMATS: list[Format] = [
    Format("HAR", _is_json_object, _read_har),
    Format("mitmproxy compressed HAR (.zhar)", _is_zlib, _read_zhar),
    Format("mitmproxy flow file", lambda raw: True, _read_flows),
]


def read_capture(path: Path) -> Capture:
    """The capture at `path`: its connections and what it lacks; CaptureError (one line) when it cannot be
    read."""
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise CaptureError(f"cannot read: {e.strerror or e}") from None
    fmt = next(f for f in FORMATS if f.sniff(raw))
    return fmt.read(raw, Path(path))


def read(path: Path) -> list[Connection]:
    """The connections in the capture at `path`; CaptureError (one line) when it cannot be read."""
    return read_capture(path).connections
