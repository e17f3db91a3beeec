"""The two-leg view (rt_legs): rtproxy in front of a hop and behind it at once, one mitmdump, two listeners.

    mitmdump -s addon/rtproxy.py \\
        --mode reverse:http://127.0.0.1:8787@8080 \\
        --mode reverse:https://<ref>.supabase.co@8081 \\
        --set rt_legs=8080,8081

Clients connect to 8080, whose target is the hop (`rtworker --worker fixed --port 8787 --supabase-url
http://127.0.0.1:8081`, or `wrangler dev` on 8787); the hop's upstream
(SUPABASE_URL) is http://127.0.0.1:8081, whose target is Realtime. Each WebSocket upgrade arriving on the
first listener is a client leg, each on the second an upstream leg; rtproxy_core.legs pairs them and
says what the hop changed. Both legs are tracked as Realtime connections, each with its own findings as
usual; the pair's findings (hop-*) are logged and put on the client leg's connection (its flow's
comment and marker, rt.report), and rt.channels and the content view show the pair.

rt_legs implies rt_mode=inspect: the client-side listener's target is the hop, so any other mode would
reroute the clients' upgrades straight to Supabase, past the hop (Worker.targets takes every upgrade on a
reverse listener), and rtproxy would be the hop instead of watching it.
"""

from __future__ import annotations

import logging
import time

from mitmproxy import ctx, http
from mitmproxy.proxy import mode_specs
from rtproxy_core import legs as core
from rtproxy_core.legs import CLIENT, UPSTREAM, LegBook, Update
from rtproxy_core.session import Session

from .connlog import connection_log
from .flowevents import (
    REALTIME,
    closed_event,
    error_events,
    frame_event,
    handshake_event,
    is_upgrade,
    request_events,
)
from .marks import show_findings
from .optionerror import reject, running
from .tracker import Tracker

logger = logging.getLogger("rtproxy")

LEG = core.METADATA  # flow.metadata: the flow's leg and its pair (rtproxy_core.legs.leg_metadata)


def _port(flow: http.HTTPFlow) -> int | None:
    sock = flow.client_conn.sockname
    return sock[1] if sock and len(sock) > 1 else None


class Legs:
    """Option rt_legs; the hooks that record both legs of each connection through a hop."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self.ports: tuple[int, int] | None = None
        self.book = LegBook(tracker.redactor)
        self.flows: dict[str, http.HTTPFlow] = {}  # the flows of pairs not yet ended, and of pending legs
        self.sessions: dict[str, Session] = {}  # the tracker's sessions of those client legs
        tracker.extensions.append(self)

    def load(self, loader) -> None:
        loader.add_option(
            name="rt_legs",
            typespec=str,
            default="",
            help="Watch a hop (a Worker in rtworker or `wrangler dev`, any relay) from both sides: CLIENT_PORT,"
            "UPSTREAM_PORT, the listen ports of two of mitmproxy's listeners. Run one with the hop as its "
            "target and one with Supabase as its target, and point the hop's upstream at the second: "
            "--mode reverse:http://127.0.0.1:8787@8080 --mode reverse:https://<ref>.supabase.co@8081 "
            "--set rt_legs=8080,8081, the hop's SUPABASE_URL http://127.0.0.1:8081. Each client connection "
            "is paired with the one the hop opens upstream, and what the hop changed is reported (hop-* "
            "findings). Sets rt_mode=inspect: nothing is rerouted.",
        )

    # ------------------------------------------------------------------------------------ options

    def configure(self, updated: set[str]) -> None:
        if "rt_legs" in updated:
            value = ctx.options.rt_legs.strip()
            try:
                ports = core.parse_ports(value) if value else None
            except ValueError as e:
                reject("rt_legs", str(e))
                return
            mode = ctx.options.rt_mode if "rt_mode" in ctx.options else "inspect"
            if ports and mode not in ("inspect", "fixed"):
                reject(
                    "rt_legs",
                    f"rtproxy watches the hop on both listeners and reroutes nothing, but rt_mode={mode} "
                    "would make it the hop: leave rt_mode out (rt_legs sets inspect)",
                )
                return
            if ports and running() and (problem := self._missing_listeners(ports)):
                reject("rt_legs", problem)
                return
            self.ports = ports
            if ports and mode != "inspect":
                logger.info(
                    "rtproxy: rt_legs: rt_mode set to inspect: rtproxy watches the hop, reroutes nothing"
                )
                ctx.options.update(rt_mode="inspect")
            elif ports and running():
                self._announce()
        elif "rt_mode" in updated and self.ports and ctx.options.rt_mode != "inspect":
            reject(
                "rt_mode",
                "rt_legs is set: rtproxy watches the hop and reroutes nothing (rt_mode=inspect); clear rt_legs "
                "first",
            )

    def _listeners(self) -> dict[int, tuple[str, mode_specs.ProxyMode]] | None:
        """Listen port -> (host, mode) of the listeners mitmproxy runs (None: no proxy server, as in tests)."""
        server = ctx.master.addons.get("proxyserver")
        if server is None:
            return None
        out: dict[int, tuple[str, mode_specs.ProxyMode]] = {}
        for instance in server.servers:
            for addr in instance.listen_addrs:
                out.setdefault(addr[1], (addr[0], instance.mode))
        return out

    def _missing_listeners(self, ports: tuple[int, int]) -> str | None:
        listening = self._listeners()
        if listening is None:
            return None
        missing = [p for p in ports if p not in listening]
        if not missing:
            return None
        now = ", ".join(str(p) for p in sorted(listening)) or "nothing"
        return (
            f"no listener on port {' or '.join(str(p) for p in missing)} (mitmproxy listens on {now}): "
            f"run --mode reverse:http://<the hop>@{ports[0]} --mode reverse:https://<ref>.supabase.co@{ports[1]}"
        )

    def running(self) -> None:
        if self.ports is None:
            return
        if problem := self._missing_listeners(self.ports):
            reject("rt_legs", problem)  # before startup is over: logged, and mitmdump exits 1
            return
        self._announce()

    def _announce(self) -> None:
        assert self.ports is not None
        listening = self._listeners() or {}

        def origin(port: int) -> str:
            host = listening[port][0] if port in listening else ""
            host = "127.0.0.1" if host in ("", "::", "0.0.0.0") else host
            return f"http://{f'[{host}]' if ':' in host else host}:{port}"

        def target(port: int) -> str:
            mode = listening[port][1] if port in listening else None
            return mode.data if isinstance(mode, mode_specs.ReverseMode) else mode.full_spec if mode else "?"

        a, b = self.ports
        logger.info(
            f"rtproxy: legs: clients connect to {origin(a)}, which forwards to the hop at {target(a)}; point "
            f"the hop's upstream (SUPABASE_URL) at {origin(b)}, which forwards to {target(b)}; each client "
            "connection is paired with the one the hop opens upstream"
        )

    # ------------------------------------------------------------------------------------ hooks

    def _side(self, flow: http.HTTPFlow) -> str | None:
        if self.ports is None:
            return None
        port = _port(flow)
        return CLIENT if port == self.ports[0] else UPSTREAM if port == self.ports[1] else None

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        # Before the tracker's request hook: both legs are Realtime connections to it, whatever their path.
        if self._side(flow) is not None and is_upgrade(flow.request):
            flow.metadata[REALTIME] = True

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.id in self.flows or flow.response is not None or not is_upgrade(flow.request):
            return
        side = self._side(flow)
        if side is None:
            return
        self.flows[flow.id] = flow
        opened = request_events(flow)[0]
        self._apply(self.book.open(flow.id, side, opened, listener=_port(flow)))  # type: ignore[arg-type]

    def response(self, flow: http.HTTPFlow) -> None:
        if flow.id not in self.flows or flow.response is None:
            return
        self._remember(flow)
        event = handshake_event(flow.response)
        updates = self.book.feed(flow.id, event)
        if flow.websocket is None:  # refused: the leg is over
            updates += self.book.end(flow.id, event.time)
        self._apply(updates)
        if flow.websocket is None:
            self._ended(flow)

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        if flow.id not in self.flows:
            return
        assert flow.websocket is not None
        m = flow.websocket.messages[-1]
        leg = self.book.leg(flow.id)
        if leg is None:
            return
        # What the hop got and sent: a frame toward the hop counts once it went on (not dropped by a
        # fault); one from the hop counts as the hop sent it (not one rtproxy injected itself).
        to_hop = m.from_client == (leg.side == CLIENT)
        if m.dropped if to_hop else m.injected:
            return
        self._apply(self.book.feed(flow.id, frame_event(m)))

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        if flow.id not in self.flows:
            return
        self._remember(flow)
        event = closed_event(flow)
        self._apply(self.book.feed(flow.id, event) + self.book.end(flow.id, event.time or time.time()))
        self._ended(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        if flow.id not in self.flows or flow.websocket is not None:
            return  # a WebSocket flow's end is websocket_end's
        self._remember(flow)
        updates: list[Update] = []
        events = error_events(flow)
        for event in events:
            updates += self.book.feed(flow.id, event)
        self._apply(updates + self.book.end(flow.id, events[-1].time or time.time()))
        self._ended(flow)

    def done(self) -> None:
        # Before the tracker's done (addon order): the findings make its summary and rt_report.
        self._apply(self.book.finish(time.time()))

    # ------------------------------------------------------------------------------------ out

    def _remember(self, flow: http.HTTPFlow) -> None:
        """The tracker's session of a client leg, while the tracker still has it live."""
        if flow.id not in self.sessions and (s := self.tracker.live.get(flow.id)) is not None:
            self.sessions[flow.id] = s

    def _ended(self, flow: http.HTTPFlow) -> None:
        """A leg ended: an upstream leg no client leg claimed says so; its flow is let go."""
        leg = self.book.leg(flow.id)
        if leg is not None and leg.side == UPSTREAM and self.book.pair_of(flow.id) is None:
            flow.metadata[LEG] = self.tracker.redactor.output(core.stray_metadata(leg))
            self.flows.pop(flow.id, None)
            connection_log(leg.conn).info(
                "legs: upstream leg ended, paired with no client leg (no client connection "
                "on the client-side listener was open when it opened)",
                capped=False,
            )

    def _apply(self, updates: list[Update]) -> None:
        r = self.tracker.redactor
        for u in updates:
            p = u.pair
            cl = p.client
            flow = self.flows.get(cl.id)
            if flow is not None:
                self._remember(flow)
            session = self.sessions.get(cl.id)
            if u.paired and p.upstream is not None:
                connection_log(cl.conn).info(
                    r.output(f"legs: paired with upstream leg {p.upstream.conn} by {p.how}"), capped=False
                )
            if u.findings:
                if session is not None:
                    session.findings.extend(u.findings)  # rt.report, the flow's comment and marker
                    if flow is not None:
                        show_findings(flow, session)
                for finding in u.findings:
                    self.tracker.log_finding(cl.conn, finding)
            for leg in p.legs():
                if (f := self.flows.get(leg.id)) is not None:
                    f.metadata[LEG] = r.output(core.leg_metadata(p, leg, r))
            if u.final:
                other = f"upstream leg {p.upstream.conn}" if p.upstream is not None else "no upstream leg"
                connection_log(cl.conn).info(  # the connection's own line: rt_log_rate never suppresses it
                    f"legs: client leg {cl.conn} and {other} ended; the hop changed: "
                    f"{', '.join(p.changes) or 'nothing'}",
                    capped=False,
                )
                for leg in p.legs():
                    self.flows.pop(leg.id, None)
                self.sessions.pop(cl.id, None)

    # ------------------------------------------------------------------------------------ the tracker's

    def channel_lines(self, session: Session) -> list[str]:
        leg = self.book.by_conn(session.conn)
        return core.describe(self.book, leg.id) if leg is not None else []

    def report_json(self) -> dict:
        if self.ports is None and not self.book.all_pairs() and not self.book.unpaired_upstream():
            return {}
        return {"legs": core.report_json(self.book, self.ports)}

    def report_markdown(self) -> str:
        return core.report_markdown(self.book)
