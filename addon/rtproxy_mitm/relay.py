"""The seed's JS relay, run for real: a loopback WebSocket server that behaves like the design's Worker
with its `request.webSocket`/`accept()` misuse repaired (a WebSocketPair):

- it answers 101 at once, before its upstream leg has answered (`return new Response(null, {status: 101})`);
- the upstream URL is `SUPABASE_URL` + the seed's path rule; the query string is dropped;
- client frames that arrive while the upstream leg is not OPEN are dropped ("Server not ready");
- an upstream failure closes the client with 1011 "Proxy server error";
- close codes are forwarded as-is; a Worker's `close()` with 1004, 1005, 1006, 1015 or a code outside
  1000-4999 (or a reason over 123 bytes) throws "Invalid WebSocket close code" (rtproxy_core.closecodes),
  which the seed catches and logs, so that leg stays open;
- binary frames become the text "[object Blob]" in both directions: with a compatibility date from
  2026-03-17 on (rt_compat_date), a Worker receives binary messages as Blob and `send(blob)` stringifies
  it; before that date they pass as binary.
These were checked against workerd 2026-11-17 (npm `workerd`), compatibility dates 2025-01-01/2026-04-10.

mitmproxy reroutes the client's upgrade here (path prefixed with the flow id), so the flow shows what
the client saw; what the relay did that the wire cannot show is reported as events (Hop, Upstream).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from rtproxy_core import closecodes
from rtproxy_core.events import Event, Frame, Hop, HopKind, Upstream, UpstreamHandshake
from rtproxy_core.hop import (
    AUTO_CLOSE_DATE,
    BLOB_DATE,
    BLOB_TEXT,
    DEFAULT_COMPAT_DATE,
    ProjectUrl,
    relay_target,
)

if TYPE_CHECKING:
    # websockets is imported where the relay runs (_serve, _handle): mitmproxy does not depend on it, and
    # a mitmproxy without it runs every mode but this one (the Worker says what to install).
    from websockets.asyncio.server import Server, ServerConnection

# The websockets library logs each connection at INFO; rtproxy's own lines already say what matters.
_ws_logger = logging.getLogger("rtproxy.relay.websockets")
_ws_logger.setLevel(logging.WARNING)

Report = Callable[[str, Event], None]  # (flow id, event)


def close_throws(code: int | None, reason: str) -> str | None:
    """The exception a Worker's close(code, reason) would throw, or None."""
    if error := closecodes.worker_close_error(code if code is not None else closecodes.NO_CLOSE_FRAME):
        return error
    if len(reason.encode()) > closecodes.MAX_REASON_BYTES:
        return f"reason longer than {closecodes.MAX_REASON_BYTES} bytes"
    return None


class Relay:
    """The relay server. `bind()` is synchronous so the port is known before the first flow."""

    def __init__(self, report: Report) -> None:
        self.report = report
        self.upstream: ProjectUrl | None = None
        self.port = 0
        self.compat_date = DEFAULT_COMPAT_DATE  # rt_compat_date
        self._sock: socket.socket | None = None
        self._server: Server | None = None
        self._task: asyncio.Task | None = None
        self._upstream_legs: set = set()  # the relay's own connections upstream, while open
        self._stopping = False

    def start(self, upstream: ProjectUrl) -> None:
        self.upstream = upstream
        if self._sock is not None:
            return
        self._stopping = False
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._task = asyncio.get_running_loop().create_task(self._serve())

    async def _serve(self) -> None:
        from websockets.asyncio.server import serve

        assert self._sock is not None
        # compression=None: workerd's outbound WebSocket offers no permessage-deflate by default.
        # Not `async with serve(...)`: its exit awaits a graceful close of every connection, which can
        # wait forever when mitmproxy shuts down around it (stop() ends them at once instead).
        self._server = await serve(
            self._handle, sock=self._sock, compression=None, max_size=None, logger=_ws_logger
        )

    def stop(self) -> None:
        """Stop at once: no new connections, and every leg ends, client and upstream (mitmproxy is stopping
        or the script reloads; a leg left open by a close() that threw would otherwise keep it waiting, or
        stay open). What the relay does when a leg closes is not emulated for these (`_stopping`)."""
        self._stopping = True
        if self._server is not None:
            self._server.close(close_connections=False)
            for conn in list(self._server.handlers):  # every connection, open, opening or closing
                conn.transport.abort()
        for up in list(self._upstream_legs):
            up.transport.abort()
        self._upstream_legs.clear()
        if self._task is not None:
            self._task.cancel()
        self._sock = self._server = self._task = None

    async def _handle(self, client: ServerConnection) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidStatus
        from websockets.protocol import State

        path = client.request.path if client.request else "/"
        flow_id, _, rest = path.lstrip("/").partition("/")
        pathname = "/" + rest.split("?", 1)[0]
        assert self.upstream is not None
        target = relay_target(self.upstream, pathname)
        self.report(flow_id, Upstream(url=target, time=time.time()))
        upstream_leg: list = []  # the upstream connection once OPEN

        async def upstream_side() -> None:
            try:
                up = await connect(
                    target, compression=None, max_size=None, open_timeout=10, logger=_ws_logger
                )
            except InvalidStatus as e:
                r = e.response
                self.report(
                    flow_id,
                    UpstreamHandshake(r.status_code, list(r.headers.raw_items()), r.body or b"", time.time()),
                )
                await self._close_client(flow_id, client, 1011, "Proxy server error")
                return
            except Exception as e:  # noqa: BLE001 - any failure is the Worker's "error" event
                self._hop(flow_id, HopKind.UPSTREAM_FAILED, f"{type(e).__name__}: {e}"[:300])
                await self._close_client(flow_id, client, 1011, "Proxy server error")
                return
            upstream_leg.append(up)
            self._upstream_legs.add(up)
            try:
                async for message in up:
                    await client.send(self._as_worker_sends(flow_id, message, "server"))
            except ConnectionClosed:
                pass
            finally:
                self._upstream_legs.discard(up)
            if self._stopping:
                return
            # close_code is 1005 for a close frame without a code, 1006 for no close frame at all.
            code, reason = up.close_code or closecodes.NO_CLOSE_FRAME, up.close_reason or ""
            error = close_throws(code, reason)
            if error and code == closecodes.NO_CODE and self.compat_date >= AUTO_CLOSE_DATE:
                # web_socket_auto_reply_to_close: workerd answers the upstream's close frame itself, then
                # fires "error" on the upstream socket, whose listener (the seed's) closes the client 1011
                # (tests/test_workerd.py, test_relay_upstream_closes_without_a_code).
                self._hop(
                    flow_id, HopKind.CLOSE_THROWS, f"clientWebSocket.close({code}) throws '{error}' (caught)"
                )
                self._hop(flow_id, HopKind.UPSTREAM_ERROR, "Network connection lost.")
                await self._close_client(flow_id, client, 1011, "Proxy server error")
            else:
                await self._close_client(flow_id, client, code, reason)

        task = asyncio.get_running_loop().create_task(upstream_side())
        try:
            async for message in client:
                up = upstream_leg[0] if upstream_leg else None
                if up is not None and up.state is State.OPEN:
                    await up.send(self._as_worker_sends(flow_id, message, "client"))
                else:
                    data = message.encode() if isinstance(message, str) else message
                    self._hop(
                        flow_id,
                        HopKind.FRAME_DROPPED,
                        "Server not ready, dropping message",
                        Frame(True, isinstance(message, bytes), data, time.time()),
                    )
        except ConnectionClosed:
            pass
        up = upstream_leg[0] if upstream_leg else None
        if up is not None and up.state is State.OPEN and not self._stopping:
            code, reason = client.close_code, client.close_reason or ""
            error = close_throws(code, reason)
            if error and code == closecodes.NO_CODE and self.compat_date < AUTO_CLOSE_DATE:
                # Before web_socket_auto_reply_to_close the throw in the seed's "close" listener, which
                # does not catch it, becomes an "error" event on the client socket, whose listener closes
                # the upstream 1011 (tests/test_workerd.py, test_relay_client_closes_without_a_code). The
                # client's close frame goes unanswered there (the client ends with 1006); through
                # mitmproxy it is answered (proxy/layers/websocket.py answers a close itself).
                self._hop(
                    flow_id, HopKind.CLOSE_THROWS, f"serverWebSocket.close({code}) throws '{error}', uncaught"
                )
                self._hop(flow_id, HopKind.CLIENT_ERROR, error)
                await up.close(1011, "Client connection error")
            elif error:
                self._hop(
                    flow_id,
                    HopKind.CLOSE_THROWS,
                    f"serverWebSocket.close({code}) throws '{error}': the upstream leg stays open",
                )
            else:
                await up.close(code, reason)
        task.cancel()

    async def _close_client(self, flow_id: str, client: ServerConnection, code: int, reason: str) -> None:
        error = close_throws(code, reason)
        if error:
            # The seed catches this and logs it; nothing reaches the client, whose leg stays open
            # until its own heartbeat timeout gives up on it.
            self._hop(
                flow_id,
                HopKind.CLOSE_THROWS,
                f"clientWebSocket.close({code}) throws '{error}': the client leg stays open",
            )
            return
        await client.close(code, reason)

    def _as_worker_sends(self, flow_id: str, message: str | bytes, origin: str) -> str | bytes:
        # Before websocket_standard_binary_type (rt_compat_date < BLOB_DATE) event.data is an ArrayBuffer
        # and send() passes it on as binary (workerd, checked by tests/test_parity.py).
        if isinstance(message, str) or self.compat_date < BLOB_DATE:
            return message
        self._hop(
            flow_id,
            HopKind.BINARY_AS_TEXT,
            f"a {len(message)}-byte binary frame from the {origin} was "
            f"relayed as the text {BLOB_TEXT!r} (event.data is a Blob)",
        )
        return BLOB_TEXT

    def _hop(self, flow_id: str, what: HopKind, detail: str, frame: Frame | None = None) -> None:
        self.report(flow_id, Hop(what, detail, time.time(), frame))
