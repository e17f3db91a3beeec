"""The Realtime socket a user's URL leads to: the one resolver rtclient, rtprobe and rtreplay --client use.
No I/O.

Accepted, with ws://, wss://, http:// or https:// (http maps to ws, https to wss), trailing slash or not,
with or without a query (kept apart, in `RealtimeUrl.query`):

- a project URL, as supabase-js's createClient takes it: the host, with any path prefix. Realtime's path
  is resolved under it as supabase-js resolves it (`given` BASE):
  `https://<ref>.supabase.co`, `https://app.example.com/prefix` -> `…[/prefix]/realtime/v1/websocket`;
- a Realtime client's endpoint, what realtime-js's RealtimeClient and realtime-py's AsyncRealtimeClient
  take (`given` ENDPOINT): `[/prefix]/realtime/v1`, or a self-hosted Realtime's `[/prefix]/socket`;
- the socket URL itself (`given` SOCKET): either of those followed by `/websocket`.

A path that looks like a mistyped Realtime path (a `realtime` segment elsewhere, `/realtime/v2`, or a
`/websocket` after anything else) is refused: it would resolve under a project URL to a socket nobody
serves.

Where that comes from (supabase/supabase-js at 381bded5, and @supabase/phoenix 0.4.5, which realtime-js
runs):
- packages/core/supabase-js/src/SupabaseClient.ts, the SupabaseClient constructor:
      const baseUrl = validateSupabaseUrl(supabaseUrl)
      this.realtimeUrl = new URL('realtime/v1', baseUrl)
      this.realtimeUrl.protocol = this.realtimeUrl.protocol.replace('http', 'ws')
  where validateSupabaseUrl (packages/core/supabase-js/src/lib/helpers.ts) returns
  `new URL(ensureTrailingSlash(trimmedUrl))`: a prefix stays, `realtime/v1` goes under it;
- packages/core/realtime-js/src/RealtimeClient.ts, the RealtimeClient constructor, hands the endpoint to
  `new SocketAdapter(endPoint, …)` (src/phoenix/socketAdapter.ts: `new Socket(endPoint, options)`), and
  @supabase/phoenix's Socket constructor (assets/js/phoenix/socket.js) appends the transport:
      this.endPoint = `${endPoint}/${TRANSPORTS.websocket}`
  (before realtime-js ran phoenix's own Socket, RealtimeClient's constructor did the same itself);
- realtime-py 2.34.1 (realtime/_async/client.py, AsyncRealtimeClient.__init__) appends `/websocket` too;
- a self-hosted Realtime mounts its socket at /socket (supabase/realtime at 833cf36c,
  lib/realtime_web/endpoint.ex: `socket "/socket", RealtimeWeb.UserSocket`), so its clients connect to
  /socket/websocket.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl, urlsplit, urlunsplit

HOSTED, SELF_HOSTED, WEBSOCKET = "/realtime/v1", "/socket", "/websocket"
WS_SCHEMES = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}

Given = Literal["base", "endpoint", "socket"]
BASE: Given = "base"  # a project URL: Realtime's path was resolved under it
ENDPOINT: Given = "endpoint"  # …/realtime/v1 or …/socket: what a Realtime client is given
SOCKET: Given = "socket"  # …/websocket: the socket URL itself


@dataclass(frozen=True, slots=True)
class RealtimeUrl:
    """Where a user's URL leads: the socket, what the user gave, and the query they gave with it."""

    socket: str  # ws(s)://host[:port][/prefix]/realtime/v1/websocket (or …/socket/websocket), no query
    given: Given
    query: tuple[tuple[str, str], ...] = ()  # the URL's query parameters in order, blank values kept

    @property
    def endpoint(self) -> str:
        """The socket URL without /websocket: what a Realtime client takes (it appends /websocket)."""
        return self.socket.removesuffix(WEBSOCKET)

    def param(self, name: str) -> str | None:
        """The first value of query parameter `name`; None when it is absent or blank."""
        return next((v for k, v in self.query if k == name), None) or None

    @property
    def apikey(self) -> str | None:
        return self.param("apikey")


def resolve(url: str) -> RealtimeUrl:
    """The Realtime socket `url` leads to (the forms: this module's docstring). ValueError saying what is
    wrong otherwise; its message quotes the URL, so redact it before printing."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError for a port that is no number or out of range
    except ValueError as e:
        raise ValueError(f"not a URL ({e}): {url!r}") from None
    scheme = WS_SCHEMES.get(parts.scheme)
    if scheme is None:
        raise ValueError(f"expected a ws://, wss://, http:// or https:// URL, got {url!r}")
    if not parts.hostname:
        raise ValueError(f"no host in {url!r}")
    path = parts.path.rstrip("/")
    given: Given = SOCKET if path.endswith(WEBSOCKET) else ENDPOINT
    mount = path.removesuffix(WEBSOCKET)
    if not mount.endswith((HOSTED, SELF_HOSTED)):
        if given == SOCKET or "/realtime/" in f"{path}/":
            raise ValueError(
                f"{parts.path!r} is no Realtime path: give the project URL (the host, with any prefix), "
                f"[/prefix]{HOSTED}[{WEBSOCKET}] or [/prefix]{SELF_HOSTED}[{WEBSOCKET}] (self-hosted), in {url!r}"
            )
        given, mount = BASE, path + HOSTED
    query = tuple(parse_qsl(parts.query, keep_blank_values=True))
    return RealtimeUrl(urlunsplit((scheme, parts.netloc, mount + WEBSOCKET, "", "")), given, query)
