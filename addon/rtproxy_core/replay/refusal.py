"""A captured refusal (the upgrade's non-101 answer) as the replay server answers it."""

from __future__ import annotations

import gzip
import zlib

from .. import sanitize
from .script import Script

# Headers a replayed refusal does not copy: the connection's own (recomputed), and cookies (credentials).
_NOT_REPLAYED = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "content-encoding",
        "date",
        "set-cookie",
        "upgrade",
        "sec-websocket-accept",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
    }
)


def refusal(script: Script) -> tuple[int, list[tuple[str, str]], bytes]:
    """The captured refusal as a replay answers it: status, the headers that say something (content-type,
    the gateway's own: Via, X-Kong-*, CF-Ray, ...), and the body, decoded if it was stored compressed, with
    any credential in it replaced as rtsanitize replaces one."""
    assert script.status is not None
    body = script.body
    encoding = next((v.lower().strip() for k, v in script.headers if k.lower() == "content-encoding"), "")
    if encoding in ("gzip", "deflate") and body:
        try:
            body = gzip.decompress(body) if encoding == "gzip" else zlib.decompress(body)
        except (OSError, zlib.error, EOFError):
            pass  # the capture stored it decoded already (a HAR's content.text)
    body = sanitize.data(body)[0]
    headers = [(k, sanitize.header(k, v)[0]) for k, v in script.headers if k.lower() not in _NOT_REPLAYED]
    return script.status, headers, body
