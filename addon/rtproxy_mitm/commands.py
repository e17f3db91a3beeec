"""Realtime-level commands on a live connection: inject a message either way, close with a code, expire
a channel's token. Each takes a TARGET (`resolve_target`: the connection id the log prints, a channel's
topic, or a flow spec), composes the message as the connection speaks (rtproxy_core.inject), and reports it
to the tracker as a hop action before it goes out, so the log and the diagnosis show it:

    :rt.inject.server 009be2 realtime:room1 system '{"status":"error","message":"boom","extension":"system"}'
    :rt.close 009be2 4000 bye
    :rt.expire realtime:room1
"""

from __future__ import annotations

import inspect
import logging
import time
from dataclasses import dataclass, replace

from mitmproxy import command, ctx, exceptions, http
from mitmproxy import flow as mflow
from rtproxy_core import closecodes, inject
from rtproxy_core.events import Hop, HopKind, conn_id
from rtproxy_core.session import CLOSED, ERRORED, Channel, Session

from .flowevents import COMMANDS
from .framenotes import INJECTED, FrameNotes
from .internals import close_with_code, drop_without_close
from .tracker import Tracker

logger = logging.getLogger("rtproxy")


MAX_LISTED = 10  # candidates a refusal names


@dataclass(frozen=True, slots=True)
class Target:
    """What a command acts on: a live Realtime flow, its session, and the topic the target named (None: it
    named the connection)."""

    flow: http.HTTPFlow
    session: Session
    topic: str | None = None


def _listed(items: list[str]) -> str:
    more = f", … ({len(items)} in all)" if len(items) > MAX_LISTED else ""
    return ", ".join(items[:MAX_LISTED]) + more


class LiveCommands:
    def __init__(self, tracker: Tracker, notes: FrameNotes | None = None) -> None:
        self.tracker = tracker
        self.notes = notes or FrameNotes()  # the Realtime view labels each frame a command injects
        self._refs = 1  # the next rtproxy-N ref of an injected client push, unique in the run

    def resolve_target(self, name: str, target: str) -> Target:
        """The live Realtime connection TARGET names, tried in this order:

        - a connection id as the log prints it (`[rt 009be2] …` → `009be2`; the flow's comment and
          rt.channels show it too);
        - a channel topic (`realtime:orders`): the live connection whose current instance of it has not
          ended (joining, joined, leaving); on several, the command is refused with their ids;
        - a flow spec (`@focus` in the console, `~websocket`, `@<flow id>`: mitmweb and the console only,
          mitmdump has no flow view): one flow, or several of which one is a live Realtime connection.

        Anything else, or a connection that has ended, is a CommandError saying what is live."""
        spec = target.strip()
        live = {fid: s for fid, s in self.tracker.live.items() if fid in self.tracker.flows}
        # 1. the connection id
        ids = [fid for fid in live if conn_id(fid) == spec.lower()]
        if len(ids) == 1:
            return self._checked(name, self.tracker.flows[ids[0]], live[ids[0]])
        if len(ids) > 1:
            raise exceptions.CommandError(
                f"{name}: {len(ids)} live connections have the id {spec}: give one as @<flow id>: "
                + _listed([f"@{fid}" for fid in ids])
            )
        if any(conn_id(fid) == spec.lower() for fid in self.tracker.ended):
            raise exceptions.CommandError(f"{name}: connection {spec.lower()} has ended")
        # 2. a channel topic: where it is live; else where it has ended (the command may still apply)
        holders: list[tuple[str, Session, Channel]] = []
        ended: list[tuple[str, Session, Channel]] = []
        for fid, s in live.items():
            ch = next((c for t, c in s.current.items() if spec in (t, s.redactor.text(t))), None)
            if ch is not None:
                (ended if ch.state in (CLOSED, ERRORED) else holders).append((fid, s, ch))
        for found in (holders, ended):
            if len(found) == 1:
                fid, s, ch = found[0]
                return replace(self._checked(name, self.tracker.flows[fid], s), topic=ch.topic)
            if found:
                raise exceptions.CommandError(
                    f"{name}: {spec} is on {len(found)} live connections: name one by its id: "
                    + _listed([f"{s.conn} ({ch.state})" for _, s, ch in found])
                )
        # 3. a flow spec
        try:
            flows = ctx.master.commands.call_strings("view.flows.resolve", [spec])
        except exceptions.CommandError as e:
            flows, why = [], str(e)
        else:
            why = ""
        if len(flows) == 1:
            return self._target(name, flows[0])
        tracked = [f for f in flows if f.id in live]
        if len(tracked) == 1:
            return self._target(name, tracked[0])
        if len(tracked) > 1:
            raise exceptions.CommandError(
                f"{name}: {spec} matches {len(tracked)} live Realtime connections: name one by its id: "
                + _listed([self._label(live[f.id]) for f in tracked])
            )
        raise exceptions.CommandError(f"{name}: {self._no_match(spec, flows, why, live)}")

    def _no_match(self, spec: str, flows: list, why: str, live: dict[str, Session]) -> str:
        if flows:
            head = f"none of the {len(flows)} flows {spec} matches is a live Realtime connection"
        else:
            head = f"nothing matches {spec!r}"
            if why and not why.startswith("Unknown command"):
                head += f" ({why})"
            known = {t for s in live.values() for t in s.current}
            if f"realtime:{spec}" in known:
                head += f"; a topic is written as the log shows it: realtime:{spec}"
        options = _listed([self._label(s) for s in live.values()]) if live else "none"
        return (
            f"{head}. Aim at a connection id as the log prints it ([rt 009be2] -> 009be2), a channel "
            f"topic (realtime:orders) or a flow spec; live Realtime connections: {options}"
        )

    @staticmethod
    def _label(s: Session) -> str:
        topics = ", ".join(s.redactor.text(t) for t in list(s.current)[:3]) or "no channel"
        return f"{s.conn} ({topics})"

    def _target(self, name: str, flow: mflow.Flow) -> Target:
        if not isinstance(flow, http.HTTPFlow) or flow.websocket is None:
            raise exceptions.CommandError(f"{name}: flow {conn_id(flow.id)} is not a WebSocket flow")
        return self._checked(name, flow, self.tracker.live.get(flow.id))

    @staticmethod
    def _checked(name: str, flow: http.HTTPFlow, session: Session | None) -> Target:
        ws = flow.websocket
        if ws is not None and (ws.timestamp_end is not None or not flow.live):
            raise exceptions.CommandError(f"{name}: connection {conn_id(flow.id)} has ended")
        if session is None:
            raise exceptions.CommandError(
                f"{name}: flow {conn_id(flow.id)} is no Realtime connection rtproxy tracks"
            )
        if ws is None:
            raise exceptions.CommandError(f"{name}: connection {session.conn} is not upgraded yet")
        return Target(flow, session)

    def _hop(self, flow: http.HTTPFlow, what: str) -> None:
        t = time.time()
        flow.metadata.setdefault(COMMANDS, []).append([t, what])  # so a flow file shows it too
        self.tracker.report_event(flow.id, Hop(HopKind.COMMAND, what, t))

    def _send(self, flow: http.HTTPFlow, composed: inject.Composed, name: str) -> None:
        data = composed.data.encode() if isinstance(composed.data, str) else composed.data
        self.notes.injecting(flow, composed.to_client, data, INJECTED, name)  # labelled as this command's
        ctx.master.commands.call("inject.websocket", flow, composed.to_client, data, not composed.binary)

    def _inject(self, name: str, target: str, to_client: bool, topic: str, event: str, payload: str) -> None:
        aimed = self.resolve_target(name, target)
        f, session = aimed.flow, aimed.session
        try:
            composed = inject.compose(
                session, to_client, topic, event, inject.parse_payload(payload), self._refs
            )
        except ValueError as e:
            raise exceptions.CommandError(f"{name}: {e}") from None
        self._refs += not to_client  # taken only by a push that goes out
        side = "client" if to_client else "server"
        self._hop(f, f"{name}: sent the {side} {composed.describe()}")
        self._send(f, composed, name)

    @command.command("rt.inject.server")
    def inject_server(self, target: str, topic: str, event: str, json_object: str) -> None:
        """A message to the client as if the server sent it: a `system` error, a `phx_reply` (it answers
        the channel's newest push still awaiting a reply; on topic `phoenix`, the pending heartbeat),
        `phx_close`, `presence_diff`, a broadcast (these last two without join_ref, as Realtime fastlanes
        them); nothing for a channel that has ended."""
        self._inject("rt.inject.server", target, True, topic, event, json_object)

    @command.command("rt.inject.client")
    def inject_client(self, target: str, topic: str, event: str, json_object: str) -> None:
        """A message to the server as if the client sent it (ref `rtproxy-N`, which no client uses, so the
        answer is never taken for one of the client's)."""
        self._inject("rt.inject.client", target, False, topic, event, json_object)

    @command.command("rt.close")
    def close(self, target: str, code: int, reason: str = "") -> None:
        """Closes both sides with CODE as if the server had (1000-1003, 1007-1013, 3000-4999); `1006` drops
        the connection with no close frame, as an idle timeout does."""
        f = self.resolve_target("rt.close", target).flow
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
    def expire(self, target: str, topic: str = "") -> None:
        """The server's token expiry on a channel (without TOPIC: the one TARGET names, else the latest
        joined one): the `system` error `Token has expired N seconds ago`, then `phx_close`, as Realtime
        sends them."""
        aimed = self.resolve_target("rt.expire", target)
        f, session = aimed.flow, aimed.session
        try:
            sequence = inject.expire(session, topic or aimed.topic, time.time())
        except ValueError as e:
            raise exceptions.CommandError(f"rt.expire: {e}") from None
        self._hop(f, f"rt.expire: expired the token of {sequence[0].message.topic}")
        for composed in sequence:
            self._send(f, composed, "rt.expire")


def readme_table() -> str:
    """The docs' table of the live commands (docs/reference/commands.md): each one's usage from its
    signature (an optional argument in brackets), and what it sends from its docstring (which mitmproxy's
    command help shows too)."""
    rows = []
    for fn in vars(LiveCommands).values():
        name = getattr(fn, "command_name", None)
        if name is None:
            continue
        params = list(inspect.signature(fn).parameters.values())[1:]
        words = [p.name.upper() if p.default is p.empty else f"[{p.name.upper()}]" for p in params]
        rows.append(f"| `{' '.join([name, *words])}` | {' '.join((inspect.getdoc(fn) or '').split())} |")
    return "\n".join(["| command | what it sends |", "|---|---|", *rows])
