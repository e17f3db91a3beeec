"""Realtime-level commands on a live connection: inject a message either way, close with a code, expire
a channel's token. Each takes a flow (`@focus` in mitmweb and the console, or a flow spec), composes the
message as the connection speaks (rtproxy_core.inject), and reports it to the tracker as a hop action
before it goes out, so the log and the diagnosis show it:

    :rt.inject.server @focus realtime:room1 system '{"status":"error","message":"boom","extension":"system"}'
    :rt.close @focus 4000 bye
    :rt.expire @focus realtime:room1
"""

from __future__ import annotations

import logging
import time

from mitmproxy import command, ctx, exceptions, http
from mitmproxy import flow as mflow
from rtproxy_core import closecodes, inject
from rtproxy_core.events import Hop, HopKind
from rtproxy_core.session import Session

from .flowevents import COMMANDS
from .internals import close_with_code, drop_without_close
from .tracker import Tracker

logger = logging.getLogger("rtproxy")


class LiveCommands:
    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self._refs = 1  # the next rtproxy-N ref of an injected client push, unique in the run

    def _live(self, name: str, flow: mflow.Flow) -> tuple[http.HTTPFlow, Session]:
        if not isinstance(flow, http.HTTPFlow) or flow.websocket is None:
            raise exceptions.CommandError(f"{name}: flow {flow.id[:6]} is not a WebSocket flow")
        if flow.websocket.timestamp_end is not None or not flow.live:
            raise exceptions.CommandError(f"{name}: flow {flow.id[:6]} has ended")
        session = self.tracker.live.get(flow.id)
        if session is None:
            raise exceptions.CommandError(
                f"{name}: flow {flow.id[:6]} is no Realtime connection rtproxy tracks"
            )
        return flow, session

    def _hop(self, flow: http.HTTPFlow, what: str) -> None:
        t = time.time()
        flow.metadata.setdefault(COMMANDS, []).append([t, what])  # so a flow file shows it too
        self.tracker.report_event(flow.id, Hop(HopKind.COMMAND, what, t))

    def _send(self, flow: http.HTTPFlow, composed: inject.Composed) -> None:
        data = composed.data.encode() if isinstance(composed.data, str) else composed.data
        ctx.master.commands.call("inject.websocket", flow, composed.to_client, data, not composed.binary)

    def _inject(self, name: str, flow: mflow.Flow, to_client: bool, topic: str, event: str, payload: str):
        f, session = self._live(name, flow)
        try:
            composed = inject.compose(
                session, to_client, topic, event, inject.parse_payload(payload), self._refs
            )
        except ValueError as e:
            raise exceptions.CommandError(f"{name}: {e}") from None
        self._refs += not to_client  # taken only by a push that goes out
        side = "client" if to_client else "server"
        self._hop(f, f"{name}: sent the {side} {composed.describe()}")
        self._send(f, composed)

    @command.command("rt.inject.server")
    def inject_server(self, flow: mflow.Flow, topic: str, event: str, payload: str) -> None:
        """Send the client a Realtime message as if the server had: TOPIC EVENT JSON-OBJECT (a system
        error, a phx_reply answering the channel's last push, phx_close, presence_diff, broadcast)."""
        self._inject("rt.inject.server", flow, True, topic, event, payload)

    @command.command("rt.inject.client")
    def inject_client(self, flow: mflow.Flow, topic: str, event: str, payload: str) -> None:
        """Send the server a Realtime message as if the client had: TOPIC EVENT JSON-OBJECT (the
        channel's join_ref, a ref of rtproxy's own)."""
        self._inject("rt.inject.client", flow, False, topic, event, payload)

    @command.command("rt.close")
    def close(self, flow: mflow.Flow, code: int, reason: str = "") -> None:
        """Close the connection with CODE [REASON] as if the server had (both sides get the close);
        1006 drops it with no close frame, as an idle timeout does."""
        f, _ = self._live("rt.close", flow)
        if code == closecodes.NO_CLOSE_FRAME:
            self._hop(f, "rt.close: dropped the connection without a close frame (1006)")
            drop_without_close(f)
            return
        if why := closecodes.unsendable(code):
            raise exceptions.CommandError(f"rt.close: {why}; 1006 drops the connection without one")
        if len(reason.encode()) > closecodes.MAX_REASON_BYTES:
            raise exceptions.CommandError(
                f"rt.close: the reason must be at most {closecodes.MAX_REASON_BYTES} bytes"
            )
        self._hop(f, f"rt.close: closed the connection with {code} {reason!r}")
        close_with_code(f, code, reason)

    @command.command("rt.expire")
    def expire(self, flow: mflow.Flow, topic: str = "") -> None:
        """Play the server's token expiry on a channel (the latest joined one if TOPIC is empty): the
        system error "Token has expired N seconds ago", then phx_close, as Realtime sends them."""
        f, session = self._live("rt.expire", flow)
        try:
            sequence = inject.expire(session, topic or None, time.time())
        except ValueError as e:
            raise exceptions.CommandError(f"rt.expire: {e}") from None
        self._hop(f, f"rt.expire: expired the token of {sequence[0].message.topic}")
        for composed in sequence:
            self._send(f, composed)
