"""Ending a live WebSocket the way a hop does: with a chosen close code, or without any close frame.

mitmproxy has no public API for either (mitmproxy#4773), and `flow.kill()` does not stop a live
WebSocket. Both functions here use proxy internals; they are the only code in rtproxy that does, so a
mitmproxy upgrade that breaks them breaks one file, and tests/test_e2e_faults.py notices.
"""

from __future__ import annotations

from mitmproxy import connection, ctx, http, websocket
from mitmproxy.proxy import events
from mitmproxy.proxy.layers.websocket import WebSocketMessageInjected
from wsproto.frame_protocol import Opcode


class _ServerCloseInjected(WebSocketMessageInjected, events.DataReceived):
    """Routed like an injected WebSocket message; the WebSocket layer then parses `data` as raw bytes from
    the server: a close frame. mitmproxy forwards that close to the client, answers the server, and ends
    the flow with close_code=code, closed_by_client=False."""

    def __init__(self, flow: http.HTTPFlow, code: int, reason: str) -> None:
        payload = code.to_bytes(2, "big") + reason.encode()[:123]
        self.flow = flow
        self.message = websocket.WebSocketMessage(Opcode.BINARY, False, b"")
        self.connection = connection.Server(address=None)  # neither the client nor the real server
        self.data = bytes([0x88, len(payload)]) + payload  # FIN + CLOSE, unmasked, as a server sends it


def close_with_code(flow: http.HTTPFlow, code: int, reason: str = "") -> bool:
    """Close both sides with `code` as if the upstream had sent it. False if the flow is not live.
    1005/1006/1015 cannot be sent in a close frame (mitmproxy answers them with a 1002 protocol error)."""
    if code in (1005, 1006, 1015) or not 1000 <= code <= 4999:
        raise ValueError(f"close code {code} cannot be sent in a close frame")
    try:
        ctx.master.addons.get("proxyserver").inject_event(_ServerCloseInjected(flow, code, reason))
    except ValueError:
        return False
    return True


def drop_without_close(flow: http.HTTPFlow) -> bool:
    """End the client's TCP connection with no close frame (what an idle timeout in nginx or Cloudflare
    does): the client sees 1006. mitmproxy then closes the upstream side itself. False if not live."""
    server = ctx.master.addons.get("proxyserver")
    handler = server.connections.get(flow.client_conn.id) if server else None
    if handler is None:
        return False
    flow.metadata["rtproxy.dropped_by_hop"] = True  # flowevents.DROPPED_BY_HOP: not the client leaving
    handler.close_connection(flow.client_conn)
    return True
