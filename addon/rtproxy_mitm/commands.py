"""Realtime-level commands on a live connection: inject a message either way, close with a code, expire
a channel's token. Each takes a flow (`@focus` in mitmweb and the console, or a flow spec), composes the
message as the connection speaks (rtproxy_core.inject), and reports it to the tracker as a hop action
before it goes out, so the log and the diagnosis show it:

    :rt.inject.server @focus realtime:room1 system '{"status":"error","message":"boom","extension":"system"}'
    :rt.close @focus 4000 bye
    :rt.expire @focus realtime:room1
"""

from __future__ import annotations

import inspect
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

    def _inject(
        self, name: str, flow: mflow.Flow, to_client: bool, topic: str, event: str, payload: str
    ) -> None:
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
    def inject_server(self, flow: mflow.Flow, topic: str, event: str, json_object: str) -> None:
        """A message to the client as if the server sent it: a `system` error, a `phx_reply` (it answers
        the channel's newest push still awaiting a reply; on topic `phoenix`, the pending heartbeat),
        `phx_close`, `presence_diff`, a broadcast (these last two without join_ref, as Realtime fastlanes
        them); nothing for a channel that has ended."""
        self._inject("rt.inject.server", flow, True, topic, event, json_object)

    @command.command("rt.inject.client")
    def inject_client(self, flow: mflow.Flow, topic: str, event: str, json_object: str) -> None:
        """A message to the server as if the client sent it (ref `rtproxy-N`, which no client uses, so the
        answer is never taken for one of the client's)."""
        self._inject("rt.inject.client", flow, False, topic, event, json_object)

    @command.command("rt.close")
    def close(self, flow: mflow.Flow, code: int, reason: str = "") -> None:
        """Closes both sides with CODE as if the server had (1000-1003, 1007-1013, 3000-4999); `1006` drops
        the connection with no close frame, as an idle timeout does."""
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
        """The server's token expiry on a channel (the latest joined one without TOPIC): the `system` error
        `Token has expired N seconds ago`, then `phx_close`, as Realtime sends them."""
        f, session = self._live("rt.expire", flow)
        try:
            sequence = inject.expire(session, topic or None, time.time())
        except ValueError as e:
            raise exceptions.CommandError(f"rt.expire: {e}") from None
        self._hop(f, f"rt.expire: expired the token of {sequence[0].message.topic}")
        for composed in sequence:
            self._send(f, composed)


def readme_table() -> str:
    """The README's table of the live commands: each one's usage from its signature (an optional argument
    in brackets), and what it sends from its docstring (which mitmproxy's command help shows too)."""
    rows = []
    for fn in vars(LiveCommands).values():
        name = getattr(fn, "command_name", None)
        if name is None:
            continue
        params = list(inspect.signature(fn).parameters.values())[1:]
        words = [p.name.upper() if p.default is p.empty else f"[{p.name.upper()}]" for p in params]
        rows.append(f"| `{' '.join([name, *words])}` | {' '.join((inspect.getdoc(fn) or '').split())} |")
    return "\n".join(["| command | what it sends |", "|---|---|", *rows])
