"""The HTTP upgrade: which paths are Realtime sockets, the URL's query, headers, a refusal's body."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlsplit


def is_realtime_path(path: str) -> bool:
    """Does an upgrade path look like a Realtime socket? (/realtime/v1/websocket, /socket/websocket)"""
    p = path.split("?", 1)[0].rstrip("/")
    return p.endswith("/websocket") and ("/realtime/" in p or p.startswith("/socket/"))


def url_query(url: str) -> dict[str, str]:
    """The URL's query parameters; {} for a URL that does not parse."""
    try:
        return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    except ValueError:
        return {}


def header(headers: list[tuple[str, str]], name: str) -> str | None:
    """The first value of a header, by case-insensitive name."""
    name = name.lower()
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def realtime_error(body: bytes | None) -> str | None:
    """The message of Realtime's upgrade refusal body, JSON {"error": "..."}; None if it is not one."""
    try:
        obj = json.loads((body or b"")[:2000].decode("utf-8", "replace"))
    except (ValueError, RecursionError):  # RecursionError: hostile nesting in a rejection body
        return None
    return obj["error"] if isinstance(obj, dict) and isinstance(obj.get("error"), str) else None


def rejection_text(body: bytes) -> str | None:
    """The `error` of Realtime's JSON rejection body, else the start of the body as text."""
    if not body:
        return None
    error = realtime_error(body)
    return error if error is not None else " ".join(body[:2000].decode("utf-8", "replace").split())[:200]
