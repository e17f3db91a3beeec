"""mitmproxy flows -> core events. One conversion for the live hooks (tracker) and for flow files read
offline (flowfile), so both feed the Session the same thing."""

from __future__ import annotations

from mitmproxy import http, websocket
from mitmproxy.proxy import mode_specs
from rtproxy_core import closecodes
from rtproxy_core.captures import is_realtime as is_realtime_socket
from rtproxy_core.events import Closed, Event, Frame, Handshake, Hop, HopKind, Opened, Upstream

# flow.metadata keys, written by the Worker at reroute time (saved with the flow in flow files).
ORIGINAL_URL = "rtproxy.original_url"
ORIGINAL_HEADERS = "rtproxy.original_headers"
UPSTREAM_URL = "rtproxy.upstream_url"
REALTIME = "rtproxy.realtime"
DROPPED_BY_HOP = "rtproxy.dropped_by_hop"  # rtproxy itself ended the connection without a close frame
COMMANDS = "rtproxy.commands"  # [[time, what it did], ...]: rtproxy's live commands on this flow


def is_upgrade(request: http.Request) -> bool:
    return request.headers.get("upgrade", "").lower() == "websocket"


def is_realtime(flow: http.HTTPFlow, by_frames: bool = False) -> bool:
    """The core's predicate (captures.is_realtime), so live hooks, flow files and HARs pick the same.
    `by_frames`: the flow's first client message may say so too (a flow file; live, the hooks decide at
    the upgrade, before any frame)."""
    first = None
    if by_frames and flow.websocket is not None:
        first = next((m.content for m in flow.websocket.messages if m.from_client), None)
    return is_realtime_socket(
        flow.request.path, is_upgrade(flow.request), bool(flow.metadata.get(REALTIME)), first
    )


def client_url(flow: http.HTTPFlow) -> str:
    """The URL as the client addressed it. In reverse mode mitmproxy has already rewritten host and Host to
    the reverse target, so the client's view is the listener it connected to."""
    if isinstance(flow.client_conn.proxy_mode, mode_specs.ReverseMode) and flow.client_conn.sockname:
        host, port = flow.client_conn.sockname[:2]
        scheme = "https" if flow.client_conn.tls_established else "http"
        return f"{scheme}://{host}:{port}{flow.request.path}"
    return flow.request.pretty_url


def request_events(flow: http.HTTPFlow) -> list[Event]:
    """The client's upgrade as it sent it, and what went upstream when the Worker rerouted it."""
    t = flow.request.timestamp_start
    url = flow.metadata.get(ORIGINAL_URL) or client_url(flow)
    headers = [
        tuple(h) for h in flow.metadata.get(ORIGINAL_HEADERS) or flow.request.headers.items(multi=True)
    ]
    events: list[Event] = [Opened(url, headers, t)]
    if UPSTREAM_URL in flow.metadata:
        events.append(Upstream(flow.metadata[UPSTREAM_URL], list(flow.request.headers.items(multi=True)), t))
    return events


def handshake_event(response: http.Response) -> Handshake:
    return Handshake(
        response.status_code,
        list(response.headers.items(multi=True)),
        response.raw_content or b"",
        response.timestamp_end or response.timestamp_start,
    )


def frame_event(m: websocket.WebSocketMessage) -> Frame:
    return Frame(m.from_client, not m.is_text, m.content, m.timestamp)


def closed_event(flow: http.HTTPFlow) -> Closed:
    ws = flow.websocket
    assert ws is not None
    # mitmproxy records 1006 when the peer vanished without a close frame. Nobody closed it in WebSocket
    # terms; mitmproxy's side attribution is which TCP connection ended first, unless rtproxy itself
    # dropped it (a fault), which it notes in the flow's metadata.
    if ws.close_code == closecodes.NO_CLOSE_FRAME:
        first = "hop" if flow.metadata.get(DROPPED_BY_HOP) else "client" if ws.closed_by_client else "server"
        return Closed(None, "", None, ws.timestamp_end or 0.0, ended_first=first)
    return Closed(ws.close_code, ws.close_reason or "", ws.closed_by_client, ws.timestamp_end or 0.0)


def error_events(flow: http.HTTPFlow) -> list[Event]:
    msg = flow.error.msg if flow.error else "unknown error"
    t = flow.error.timestamp if flow.error else 0.0
    return [Hop(HopKind.UPSTREAM_UNREACHABLE, msg, t), Closed(None, "", None, t, msg)]


def flow_events(flow: http.HTTPFlow) -> list[Event]:
    """All events of a finished flow (offline)."""
    events = request_events(flow)
    if flow.response is not None:
        events.append(handshake_event(flow.response))
    if flow.websocket is not None:
        # rtproxy's commands, where they happened: live, each was reported before the frames it sent.
        commands = sorted((float(t), str(what)) for t, what in flow.metadata.get(COMMANDS, []))[::-1]
        for m in flow.websocket.messages:
            while commands and commands[-1][0] <= m.timestamp:
                t, what = commands.pop()
                events.append(Hop(HopKind.COMMAND, what, t))
            # A dropped message never reached the other side; live, the fault reported it the same way.
            events.append(
                Hop(HopKind.FRAME_DROPPED, "dropped by the hop", m.timestamp, frame_event(m))
                if m.dropped
                else frame_event(m)
            )
        events.extend(Hop(HopKind.COMMAND, what, t) for t, what in reversed(commands))
        if flow.websocket.timestamp_end is not None:
            events.append(closed_event(flow))
    elif flow.error is not None and flow.response is None:
        events.extend(error_events(flow))
    return events
