"""Capture files -> connections: one `read(path)` over a table of formats.

A format is a name, a sniff (does the file's start look like it?) and a reader (the file's bytes and path
-> a Capture); `read_capture` tries them in order. A new format is one reader and one line in FORMATS.
"""

from __future__ import annotations

import json
import re
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
    check_har(har)
    return har_capture(har)


def check_har(doc: object) -> None:
    """CaptureError for JSON that is not a HAR at all (no top-level 'log'), saying what it is instead."""
    if not isinstance(doc, dict) or "log" not in doc:
        raise CaptureError(f"{NOT_A_CAPTURE}: {_json_shape(doc)}")


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


def _is_tnetstring(raw: bytes) -> bool:
    """A mitmproxy flow file: tnetstrings, each starting with its length's digits and a colon
    (mitmproxy/io/tnetstring.py, `load`)."""
    return re.match(rb"\d{1,12}:", raw) is not None


FORMATS: list[Format] = [
    Format("HAR", _is_json_object, _read_har),
    Format("mitmproxy compressed HAR (.zhar)", _is_zlib, _read_zhar),
    Format("mitmproxy flow file", _is_tnetstring, _read_flows),
]
NOT_A_CAPTURE = "not a HAR or a mitmproxy flow file"

# What a file that is no capture is, by its first bytes: what users attach instead.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"RIFF", "a RIFF file (WebP image, WAV or AVI)"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive: unzip it, the capture may be inside"),
    (b"\x1f\x8b", "gzip-compressed data: gunzip it, the capture may be inside"),
    (b"\xd4\xc3\xb2\xa1", "a pcap packet capture (Wireshark, tcpdump): it holds no decrypted WebSocket"),
    (b"\xa1\xb2\xc3\xd4", "a pcap packet capture (Wireshark, tcpdump): it holds no decrypted WebSocket"),
    (b"\x0a\x0d\x0d\x0a", "a pcapng packet capture (Wireshark): it holds no decrypted WebSocket"),
    (b"SQLite format 3\x00", "an SQLite database"),
)


def _json_shape(doc: object) -> str:
    if isinstance(doc, dict):
        keys = ", ".join(repr(str(k)[:30]) for k in list(doc)[:5]) + (", …" if len(doc) > 5 else "")
        return f"JSON without a HAR's 'log' object ({f'its keys: {keys}' if doc else 'an empty object'})"
    if isinstance(doc, list):
        return "JSON whose top level is an array (a HAR is an object holding 'log')"
    return f"JSON holding only {json.dumps(doc)[:40]}"


def looks_like(raw: bytes) -> str:
    """What a file that no format in FORMATS takes looks like, for the one line that refuses it."""
    if not raw:
        return "the file is empty"
    for magic, what in _MAGIC:
        if raw.startswith(magic):
            return what
    head = raw[:4096]
    try:
        text = head.decode(json.detect_encoding(head), "ignore").lstrip("\ufeff \t\r\n")
    except LookupError:
        text = ""
    if text[:1] in ("[", '"') or text[:4] in ("true", "null") or text[:5] == "false" or text[:1].isdigit():
        try:
            return _json_shape(json.loads(raw))
        except (ValueError, RecursionError):
            pass
    lower = text[:200].lower()
    if lower.startswith(("<!doctype html", "<html")):
        return "an HTML page (a browser's 'Save page as', not a HAR)"
    if lower.startswith("<?xml"):
        return "an XML document"
    if text and sum(c.isprintable() or c in "\t\r\n" for c in text[:512]) >= 0.95 * len(text[:512]):
        first = text.splitlines()[0] if text.splitlines() else text
        return f"text starting {first[:60]!r}"
    return f"binary data starting {raw[:8].hex(' ')}"


def format_of(raw: bytes) -> Format:
    """The format in FORMATS whose sniff takes `raw`; CaptureError saying what the file looks like when
    none does."""
    fmt = next((f for f in FORMATS if raw and f.sniff(raw)), None)
    if fmt is None:
        raise CaptureError("the file is empty" if not raw else f"{NOT_A_CAPTURE}: {looks_like(raw)}")
    return fmt


def read_capture(path: Path) -> Capture:
    """The capture at `path`: its connections and what it lacks; CaptureError (one line) when it cannot be
    read."""
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise CaptureError(f"cannot read: {e.strerror or e}") from None
    return format_of(raw).read(raw, Path(path))


def read(path: Path) -> list[Connection]:
    """The connections in the capture at `path`; CaptureError (one line) when it cannot be read."""
    return read_capture(path).connections
