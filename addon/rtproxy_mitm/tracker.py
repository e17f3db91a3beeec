"""Live tracking: mitmproxy hooks -> core events -> one Session per Realtime connection -> log lines.

The only place that turns flows into events; all Realtime knowledge is in rtproxy_core.
"""

from __future__ import annotations

import logging
from collections import deque

from mitmproxy import ctx, http
from rtproxy_core.events import Closed, Event, Frame, Handshake, Hop, Opened, Upstream
from rtproxy_core.redact import Redactor
from rtproxy_core.session import Note, Session, is_realtime_path

from .worker import ORIGINAL_HEADERS, ORIGINAL_URL, REALTIME, UPSTREAM_URL, is_upgrade

logger = logging.getLogger("rtproxy")
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
KEEP_FINISHED = 100  # finished sessions kept for commands and reports


class Tracker:
    def __init__(self) -> None:
        self.live: dict[str, Session] = {}
        self.finished: deque[Session] = deque(maxlen=KEEP_FINISHED)
        self.redactor = Redactor()
        self.debug = False

    def load(self, loader) -> None:
        loader.add_option(
            name="rt_show_secrets", typespec=bool, default=False,
            help="Print apikey, JWT and access_token values in rtproxy's output. Off by default: they are "
                 "redacted and JWTs are shown as their role and expiry only.",
        )

    def configure(self, updated: set[str]) -> None:
        if "rt_show_secrets" in updated:
            self.redactor.show_secrets = ctx.options.rt_show_secrets
        if "termlog_verbosity" in updated:
            # Per-frame lines cost a json.dumps each; build them only when someone will see them.
            self.debug = ctx.options.termlog_verbosity == "debug"
            for s in self.live.values():
                s.debug = self.debug

    # -------------------------------------------------------------------------------- events in

    def report(self, flow_id: str, event: Event) -> None:
        """Events from the relay (and faults) about a flow."""
        session = self.live.get(flow_id)
        if session is not None:
            self._feed(session, event)

    def _feed(self, session: Session, event: Event) -> None:
        for note in session.feed(event):
            self._log(session, note)

    def _log(self, session: Session, note: Note) -> None:
        logger.log(LEVELS[note.level], f"[rt {session.conn}] {note.text}")

    def _finish(self, flow: http.HTTPFlow) -> None:
        session = self.live.pop(flow.id, None)
        if session is not None:
            self.finished.append(session)

    # -------------------------------------------------------------------------------- hooks

    def request(self, flow: http.HTTPFlow) -> None:
        if not is_upgrade(flow.request) or flow.id in self.live:
            return
        if not flow.metadata.get(REALTIME) and not is_realtime_path(flow.request.path):
            return
        session = Session(conn=flow.id[:6], redactor=self.redactor, debug=self.debug)
        self.live[flow.id] = session
        t = flow.request.timestamp_start
        url = flow.metadata.get(ORIGINAL_URL, flow.request.pretty_url)
        headers = flow.metadata.get(ORIGINAL_HEADERS) or list(flow.request.headers.items(multi=True))
        self._feed(session, Opened(url, headers, t))
        if UPSTREAM_URL in flow.metadata:
            self._feed(session, Upstream(flow.metadata[UPSTREAM_URL],
                                         list(flow.request.headers.items(multi=True)), t))

    def response(self, flow: http.HTTPFlow) -> None:
        session = self.live.get(flow.id)
        if session is None or flow.response is None:
            return
        resp = flow.response
        self._feed(session, Handshake(resp.status_code, list(resp.headers.items(multi=True)),
                                      resp.raw_content or b"", resp.timestamp_end or resp.timestamp_start))
        if flow.websocket is None:
            self._finish(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        session = self.live.get(flow.id)
        if session is None:
            return
        msg = flow.error.msg if flow.error else "unknown error"
        self._feed(session, Hop("upstream-unreachable", msg, flow.error.timestamp if flow.error else 0.0))
        self._feed(session, Closed(None, "", None, flow.error.timestamp if flow.error else 0.0, msg))
        self._finish(flow)

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        session = self.live.get(flow.id)
        if session is None:
            return
        assert flow.websocket is not None
        m = flow.websocket.messages[-1]
        self._feed(session, Frame(m.from_client, not m.is_text, m.content, m.timestamp))

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        session = self.live.get(flow.id)
        if session is None:
            return
        ws = flow.websocket
        assert ws is not None
        # mitmproxy records 1006 when the peer vanished without a close frame.
        code = None if ws.close_code == 1006 else ws.close_code
        self._feed(session, Closed(code, ws.close_reason or "", ws.closed_by_client, ws.timestamp_end or 0.0))
        self._finish(flow)
