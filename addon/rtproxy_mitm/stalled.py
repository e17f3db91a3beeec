"""Stalled and endless request heads are closed: a client connection that has not delivered its first
request's headers within `rt_header_timeout` seconds after it connected, and an HTTP/1 request head that
grows past `rt_header_bytes` without ending.

mitmproxy's own bound is `tcp_timeout` (600 s), and it is an *inactivity* timeout (proxy/server.py
`TimeoutWatchdog`: every read re-arms it): a client that sends half a request line and waits, or trickles a
byte every few seconds, holds its connection and a file descriptor ~10 minutes or forever; lowering
tcp_timeout would also close idle but healthy WebSockets. rt_header_timeout runs once per connection, from
`client_connected` to the first request's headers, and is then gone:

- the first request's headers: `requestheaders` (for HTTPS after the TLS handshake; HTTP/2's first
  stream), or `http_connect` (regular mode: the CONNECT is the first request; what the client does inside
  the tunnel is tcp_timeout's business);
- a connection that turns out to be no HTTP (`tcp_start`: passthrough, `tcp_hosts`; `udp_start`,
  `dns_request`) is not held to it; UDP clients (QUIC, DNS) are not timed at all;
- only the first request: keep-alive idle between requests is tcp_timeout's, as is a WebSocket.

Within that time a client can still send megabytes a second of a head that never ends, and mitmproxy keeps
them all (`internals.cap_request_heads`): rt_header_bytes caps every HTTP/1 request head of a connection
(431, then closed), the first and any later one.

A connection past the timeout is closed as mitmproxy closes one itself (`internals.close_client`). Both
are counted and logged, at most one line per interval each (not one per connection: a flood is one line).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from mitmproxy import connection, ctx, dns, http, tcp, udp
from mitmproxy.utils.human import format_address
from mitmproxy.version import VERSION

from . import internals
from .optionerror import reject

logger = logging.getLogger("rtproxy")

# Longer than a browser keeps a preconnected socket it has not used (Chromium: 10 s,
# net/socket/client_socket_pool.cc `g_unused_idle_socket_timeout_s`), so one it sends on at its last moment
# is never cut under it; far shorter than tcp_timeout's 600 s.
DEFAULT_TIMEOUT_S = 15
# 64 KiB: four times what Node's http server takes (maxHeaderSize, 16 KiB) and twice nginx's whole-head
# default (large_client_header_buffers 4 8k); a head past it would be refused upstream anyway.
DEFAULT_HEADER_BYTES = 65536
MAX_LOG_EVERY_S = 10  # at most one line per min(rt_header_timeout, this) seconds, and at least 1 s apart


class Summary:
    """Events counted and logged, at most one line per interval: the first at once (with the others of the
    same loop iteration), the ones after it joined in one line at the end of the interval, and so on while
    they go on. `line(n, total)` writes a line."""

    def __init__(self, line: Callable[[int, int], str]) -> None:
        self.line = line
        self.total = 0  # whole run
        self.unlogged = 0  # since the last line
        self._next: asyncio.Handle | None = None  # the next line, or the end of the current interval

    def add(self, every: float) -> None:
        self.total += 1
        self.unlogged += 1
        if self._next is None:
            self._next = asyncio.get_running_loop().call_soon(self._tick, every)

    def _tick(self, every: float) -> None:
        if self.unlogged:
            self.log()
            self._next = asyncio.get_running_loop().call_later(every, self._tick, every)
        else:
            self._next = None  # quiet for an interval: the next one is logged at once

    def log(self) -> None:
        if self.unlogged:
            n, self.unlogged = self.unlogged, 0
            logger.info(self.line(n, self.total))

    def close(self) -> None:
        """The run ends: what is not logged yet is, now."""
        if self._next is not None:
            self._next.cancel()
            self._next = None
        self.log()


class HeaderLimits:
    def __init__(self) -> None:
        self.timeout = DEFAULT_TIMEOUT_S
        self.header_bytes = DEFAULT_HEADER_BYTES
        self.timers: dict[str, asyncio.TimerHandle] = {}  # client id -> its timer, while it is timed
        self.closing: set[str] = set()  # client ids closed for rt_header_timeout, until they are gone
        self._bound = DEFAULT_TIMEOUT_S  # the bound the connections in the next line were held to
        self.closed = Summary(
            lambda n, total: (
                f"rtproxy: closed {n} connection(s) that sent no complete request within "
                f"{self._bound} s (rt_header_timeout; {total} in all)"
            )
        )
        self.refused = Summary(
            lambda n, total: (
                f"rtproxy: refused {n} request(s) whose headers passed {self.header_bytes} "
                f"bytes: 431, closed (rt_header_bytes; {total} in all)"
            )
        )
        self._undo: Callable[[], None] | None = None

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
        loader.add_option(
            name="rt_header_bytes",
            typespec=int,
            default=DEFAULT_HEADER_BYTES,
            help="Answer 431 and close an HTTP/1 client whose request line and headers pass this many bytes "
            "without ending (mitmproxy keeps an unfinished request head whole, without bound); 0 never does. "
            "Refused requests are counted in one log line per interval.",
        )

    def configure(self, updated: set[str]) -> None:
        if "rt_header_timeout" in updated:
            value = ctx.options.rt_header_timeout
            if value < 0:
                reject("rt_header_timeout", f"must be 0 (off) or a whole number of seconds, got {value}")
            else:
                self.timeout = value  # for connections from now on; timed ones keep theirs
        if "rt_header_bytes" in updated:
            value = ctx.options.rt_header_bytes
            if value < 0:
                reject("rt_header_bytes", f"must be 0 (off) or a number of bytes, got {value}")
            else:
                self.header_bytes = value

    def running(self) -> None:
        # Only where Http1Server.read_headers was read; elsewhere mitmproxy's own behaviour stays. Here, not
        # in load: scripts/tables.py calls load on a bare part to read its options.
        if self._undo is None and internals.read_headers_checked(VERSION):
            self._undo = internals.cap_request_heads(
                lambda: self.header_bytes, self._refused, lambda conn: conn.id in self.closing
            )

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
        self.closing.discard(client.id)

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
        self.closing.add(client.id)
        if not internals.close_client(client):
            self.closing.discard(client.id)
            return  # gone already: its client_disconnected is on its way
        logger.debug(
            f"rt_header_timeout: closed {format_address(client.peername)}: no request within {bound} s"
        )
        self._bound = bound
        self.closed.add(min(max(bound, 1), MAX_LOG_EVERY_S))

    def _refused(self, client: Any, size: int) -> None:
        logger.debug(
            f"rt_header_bytes: refused {format_address(client.peername)}: {size} bytes of request head"
        )
        self.refused.add(min(max(self.timeout, 1), MAX_LOG_EVERY_S))

    def done(self) -> None:
        for timer in self.timers.values():
            timer.cancel()
        self.timers.clear()
        self.closed.close()
        self.refused.close()
        if self._undo is not None:
            self._undo()
            self._undo = None
