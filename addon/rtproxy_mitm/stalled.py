"""Stalled requests are closed (rt_header_timeout): a client connection that has not delivered its first
request's headers within the bound after it connected.

mitmproxy's own bound is `tcp_timeout` (600 s), and it is an *inactivity* timeout (proxy/server.py
`TimeoutWatchdog`: every read re-arms it): a client that sends half a request line and waits, or trickles a
byte every few seconds, holds its connection and a file descriptor ~10 minutes or forever; lowering
tcp_timeout would also close idle but healthy WebSockets. This bound runs once per connection, from
`client_connected` to the first request's headers, and is then gone:

- the first request's headers: `requestheaders` (for HTTPS after the TLS handshake; HTTP/2's first
  stream), or `http_connect` (regular mode: the CONNECT is the first request; what the client does inside
  the tunnel is tcp_timeout's business);
- a connection that turns out to be no HTTP (`tcp_start`: passthrough, `tcp_hosts`; `udp_start`,
  `dns_request`) is not held to it; UDP clients (QUIC, DNS) are not timed at all;
- only the first request: keep-alive idle between requests is tcp_timeout's, as is a WebSocket.

A connection past the bound is closed as mitmproxy closes one itself (`internals.close_client`), counted,
and reported in one line per interval (not one per connection: a flood of them is one line).
"""

from __future__ import annotations

import asyncio
import logging

from mitmproxy import connection, ctx, dns, http, tcp, udp

from . import internals
from .optionerror import reject

logger = logging.getLogger("rtproxy")

# Longer than a browser keeps a preconnected socket it has not used (Chromium: 10 s,
# net/socket/client_socket_pool.cc `g_unused_idle_socket_timeout_s`), so one it sends on at its last moment
# is never cut under it; far shorter than tcp_timeout's 600 s.
DEFAULT_TIMEOUT_S = 15
MAX_LOG_EVERY_S = 10  # at most one summary line per min(bound, this) seconds (and at least 1 s apart)


def _seconds(value: int) -> str:
    return f"{value} s"


class HeaderTimeout:
    def __init__(self) -> None:
        self.timeout = DEFAULT_TIMEOUT_S
        self.timers: dict[str, asyncio.TimerHandle] = {}  # client id -> its timer, while it is timed
        self.total = 0  # connections closed for it, whole run
        self._unlogged = 0  # closed since the last summary line
        self._flush: asyncio.TimerHandle | None = None
        self._bound = DEFAULT_TIMEOUT_S  # the bound the connections in the next line were held to

    def load(self, loader) -> None:
        loader.add_option(
            name="rt_header_timeout",
            typespec=int,  # as tcp_timeout: mitmproxy's --set parses no float (optmanager.py _parse_setval)
            default=DEFAULT_TIMEOUT_S,
            help="Close a client connection that has not sent its first request's headers (an HTTPS one: "
            "its TLS handshake and headers) this many seconds after it connected; 0 never does. Unlike "
            "tcp_timeout (inactivity), a client trickling bytes is not kept open; once the headers are in "
            "(and so on a WebSocket) the bound is gone. Closed connections are counted in one log line per "
            "interval.",
        )

    def configure(self, updated: set[str]) -> None:
        if "rt_header_timeout" in updated:
            value = ctx.options.rt_header_timeout
            if value < 0:
                reject("rt_header_timeout", f"must be 0 (off) or a whole number of seconds, got {value}")
                return
            self.timeout = value  # for connections from now on; timed ones keep theirs

    # ------------------------------------------------------------------------------------------ hooks

    def client_connected(self, client: connection.Client) -> None:
        if self.timeout <= 0 or client.transport_protocol != "tcp" or client.error:
            return
        loop = asyncio.get_running_loop()
        self.timers[client.id] = loop.call_later(self.timeout, self._expire, client, self.timeout)

    def _done(self, client: connection.Client) -> None:
        if (timer := self.timers.pop(client.id, None)) is not None:
            timer.cancel()

    def client_disconnected(self, client: connection.Client) -> None:
        self._done(client)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        self._done(flow.client_conn)

    def http_connect(self, flow: http.HTTPFlow) -> None:
        self._done(flow.client_conn)

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        self._done(flow.client_conn)

    def udp_start(self, flow: udp.UDPFlow) -> None:
        self._done(flow.client_conn)

    def dns_request(self, flow: dns.DNSFlow) -> None:
        self._done(flow.client_conn)

    # ---------------------------------------------------------------------------------------- closing

    def _expire(self, client: connection.Client, bound: int) -> None:
        if self.timers.pop(client.id, None) is None:
            return
        if not internals.close_client(client):
            return  # gone already: its client_disconnected is on its way
        self.total += 1
        self._unlogged += 1
        self._bound = bound
        logger.debug(
            f"rt_header_timeout: closed {client.peername}: no complete request within {_seconds(bound)}"
        )
        if self._flush is None:
            every = min(max(bound, 1), MAX_LOG_EVERY_S)
            self._flush = asyncio.get_running_loop().call_later(every, self._log)

    def _log(self) -> None:
        self._flush = None
        if self._unlogged:
            n, self._unlogged = self._unlogged, 0
            logger.info(
                f"rtproxy: closed {n} connection(s) that sent no complete request within "
                f"{_seconds(self._bound)} (rt_header_timeout; {self.total} in all)"
            )

    def done(self) -> None:
        for timer in self.timers.values():
            timer.cancel()
        self.timers.clear()
        if self._flush is not None:
            self._flush.cancel()
            self._log()
