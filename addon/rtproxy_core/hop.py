"""What a hop in front of Realtime does to the upgrade URL, for each mode. No I/O.

- fixed: scheme/host/port become the Supabase URL's; path and query are kept verbatim.
- relay: the seed Worker's rule: keep `pathname` if it starts with `/realtime`, else use `/realtime/v1`;
  the query string is dropped (so apikey and vsn are lost).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from urllib.parse import urlsplit

MODES = ("fixed", "relay", "as-written", "inspect")

# What a JavaScript relay puts on the wire when it send()s a binary frame it received as a Blob (a Worker
# whose WebSocket binaryType is "blob"): the Blob's string form.
BLOB_TEXT = "[object Blob]"

# The Workers compatibility dates where what the relay's runtime does changes (workerd's
# src/workerd/io/compatibility-date.capnp): from BLOB_DATE (websocket_standard_binary_type) a binary message
# reaches a handler as a Blob, which send() stringifies; from AUTO_CLOSE_DATE (web_socket_auto_reply_to_close)
# the runtime answers a received close frame itself, and what follows a close(1005) that threw changes
# (relay.py; docs/your-project.md, Modes).
BLOB_DATE = "2026-03-17"
AUTO_CLOSE_DATE = "2026-04-07"
DEFAULT_COMPAT_DATE = "2026-11-17"  # worker/wrangler.toml's compatibility_date (tests/test_parity.py checks)


def parse_compat_date(value: str) -> str:
    """A compatibility date, YYYY-MM-DD (a real calendar date). Raises ValueError with a one-line reason."""
    value = value.strip()
    try:
        if len(value) != 10:
            raise ValueError
        date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r}: expected a date YYYY-MM-DD, e.g. {DEFAULT_COMPAT_DATE}") from None
    return value


@dataclass(frozen=True, slots=True)
class ProjectUrl:
    """A parsed Supabase project URL: where rerouted upgrades go."""

    scheme: str  # "http" | "https"
    host: str
    port: int

    @property
    def base(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}" + ("" if self.port == default else f":{self.port}")


def parse_worker_hosts(value: str) -> list[str]:
    """rt_worker_host's host names: comma-separated, stripped, lower-cased, empty entries dropped."""
    return [h.strip().lower() for h in value.split(",") if h.strip()]


def parse_supabase_url(value: str) -> ProjectUrl:
    """Parse `https://<ref>.supabase.co` or `http://127.0.0.1:PORT`. ws/wss are accepted and mapped to
    http/https (mitmproxy routes by http/https). Raises ValueError with a one-line reason."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError as e:
        raise ValueError(f"not a URL ({e})") from None
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    if scheme not in ("http", "https"):
        raise ValueError("scheme must be https:// (or http:// for a local server)")
    if not parts.hostname:
        raise ValueError("no host")
    if parts.username or parts.password:
        raise ValueError("credentials in the URL are not accepted")
    if parts.path not in ("", "/"):
        raise ValueError(
            f"give the project URL without a path (got path {parts.path!r}); the client's own path is kept"
        )
    if parts.query or parts.fragment:
        raise ValueError("give the project URL without a query or fragment")
    return ProjectUrl(scheme, parts.hostname, port or (443 if scheme == "https" else 80))


def relay_path(pathname: str) -> str:
    """The seed Worker's path rule (query dropped by the caller)."""
    return pathname if pathname.startswith("/realtime") else "/realtime/v1"


def relay_target(upstream: ProjectUrl, pathname: str) -> str:
    """The URL the seed Worker opens with `new WebSocket(...)`. The seed always writes wss://; rtproxy maps
    http -> ws so the relay can reach a plain local server too."""
    scheme = "wss" if upstream.scheme == "https" else "ws"
    return scheme + upstream.base[len(upstream.scheme) :] + relay_path(pathname)
