"""Credentials out of the flows mitmproxy stores (mitmweb's list and views, `-w` flow files, `savehar`),
while the wire keeps them: rtproxy_core.sanitize says what a credential becomes, this module where a flow
holds one.

Live (`Sanitize`, unless rt_show_secrets): once a Realtime upgrade has been forwarded (its `response`, or
its `error`), the stored request's URL query, Authorization/apikey/Cookie headers and the Worker's copies
of them in the flow's metadata; then each WebSocket message as it is stored (on the mitmproxy versions
whose WebSocket layer was read to forward the object it made, not the one stored:
internals.RELAY_MESSAGES_CHECKED). Offline (`sanitize_flow`, rtsanitize on a flow file): everything a
flow holds, bodies and cookies both ways included.
"""

from __future__ import annotations

import logging

from mitmproxy import ctx, http, tcp, udp, websocket
from mitmproxy import flow as mflow
from mitmproxy.version import VERSION
from rtproxy_core import sanitize
from rtproxy_core.sanitize import Places, Replaced

from .connlog import flow_log
from .flowevents import is_realtime
from .internals import RELAY_MESSAGES_CHECKED, relay_messages_checked, store_message_copy

logger = logging.getLogger("rtproxy")


def _headers(h: http.Headers) -> tuple[http.Headers | None, Replaced]:
    """The headers sanitized, or None when nothing in them changed."""
    pairs, found = sanitize.headers(h.items(multi=True))
    if not found:
        return None, found
    new = http.Headers()
    for name, value in pairs:
        new.add(name, value)
    return new, found


def _body(m: http.Message, places: Places, url: str = "") -> None:
    """The body, its Content-Encoding undone and done again; `url` for a request's (its `code` may be an
    authorization code: sanitize.request_codes)."""
    if not m.raw_content:
        return
    try:
        content, decoded = m.get_content(strict=True), True
    except ValueError:  # a Content-Encoding mitmproxy cannot undo: the bytes as they came
        content, decoded = m.raw_content, False
    content, mime = content or b"", m.headers.get("content-type", "")
    codes = isinstance(m, http.Request) and sanitize.request_codes(url, content.decode("latin-1"), mime)
    new, found = sanitize.body_bytes(content, mime=mime, codes=codes)
    if found:
        if decoded:
            m.content = new  # encoded again as its Content-Encoding says
        else:
            m.raw_content = new
        sanitize.add(places, sanitize.BODIES, found)


def _message_headers(m: http.Message, places: Places) -> None:
    new, found = _headers(m.headers)
    if new is not None:
        m.headers = new
        sanitize.add(places, sanitize.HEADERS, found)
    if m.trailers:
        new, found = _headers(m.trailers)
        if new is not None:
            m.trailers = new
            sanitize.add(places, sanitize.HEADERS, found)


def request(req: http.Request, places: Places, body: bool = False) -> None:
    """The stored request: URL (path and query; a userinfo password), headers, and the body if `body`."""
    path, found = sanitize.url(req.path)
    if found:
        req.path = path
        sanitize.add(places, sanitize.URLS, found)
    _message_headers(req, places)
    if body:
        _body(req, places, req.path)


def response(resp: http.Response, places: Places) -> None:
    _message_headers(resp, places)
    reason, found = sanitize.text(resp.reason)
    if found:
        resp.reason = reason
        sanitize.add(places, sanitize.ELSEWHERE, found)
    _body(resp, places)


def metadata(f: mflow.Flow, places: Places) -> None:
    """The flow's metadata (the Worker's ORIGINAL_URL, ORIGINAL_HEADERS, UPSTREAM_URL, and whatever else a
    flow file carries); a value is replaced only when something in it changed."""
    for key, v in list(f.metadata.items()):
        found: Places = {}
        new = sanitize.walk(v, found)
        if found:
            f.metadata[key] = new
            for where, counts in found.items():
                sanitize.add(places, where, counts)


def ws_message(m: websocket.WebSocketMessage) -> tuple[bytes, Replaced]:
    return sanitize.message(m.content, binary=not m.is_text, from_client=m.from_client)


def sanitize_flow(f: mflow.Flow) -> Places:
    """Everything a stored flow holds, in place (rtsanitize on a flow file): what was replaced, by place."""
    places: Places = {}
    if isinstance(f, http.HTTPFlow):
        request(f.request, places, body=True)
        if f.response is not None:
            response(f.response, places)
        if f.websocket is not None:
            for m in f.websocket.messages:
                new, found = ws_message(m)
                if found:
                    m.content = new
                    sanitize.add(places, sanitize.MESSAGES, found)
            reason, found = sanitize.text(f.websocket.close_reason or "")
            if found:
                f.websocket.close_reason = reason
                sanitize.add(places, sanitize.MESSAGES, found)
    elif isinstance(f, (tcp.TCPFlow, udp.UDPFlow)):
        for raw in f.messages:
            new_data, found = sanitize.data(raw.content)
            if found:
                raw.content = new_data
                sanitize.add(places, sanitize.MESSAGES, found)
    metadata(f, places)
    if f.comment:
        f.comment = sanitize.walk(f.comment, places)
    if f.error is not None:
        f.error.msg = sanitize.walk(f.error.msg, places)
    return places


def messages_not_sanitized(version: str) -> str | None:
    """The warning for a mitmproxy whose WebSocket layer rtproxy has not read (internals.
    RELAY_MESSAGES_CHECKED); None when stored messages can be sanitized on it."""
    if relay_messages_checked(version):
        return None
    (a, b), (c, d) = RELAY_MESSAGES_CHECKED
    return (
        f"mitmproxy {version}: rtproxy stores WebSocket messages unsanitized on it (their access_token, JWTs "
        f"and keys as they went), as it has checked only on mitmproxy {a}.{b} to {c}.{d}.x that a sanitized "
        "copy stays off the wire; a Realtime upgrade's URL, headers and metadata are still sanitized. "
        "Run rtsanitize on a saved file before you share it"
    )


class Sanitize:
    """Unless rt_show_secrets (the Tracker declares it): credentials out of what mitmproxy stores of each
    Realtime flow, never out of what it forwards. WebSocket messages only on the mitmproxy versions
    internals.RELAY_MESSAGES_CHECKED names (`load` says so, once, on any other)."""

    def __init__(self) -> None:
        self.show = False
        self.flows: dict[str, Places] = {}  # live Realtime flows -> what was replaced so far
        self.messages = False  # store_message_copy is safe on this mitmproxy (`load`)

    def load(self, loader) -> None:
        why = messages_not_sanitized(VERSION)
        self.messages = why is None
        if why:
            logger.warning(why)

    def configure(self, updated: set[str]) -> None:
        if "rt_show_secrets" in updated:
            self.show = ctx.options.rt_show_secrets

    def _stored(self, flow: http.HTTPFlow) -> Places:
        """The request side, once it has gone upstream: nothing reads it again to send it (mitmproxy 12.0-
        12.3 `HttpStream.send_response` sends only the response after the response hook)."""
        places = self.flows.setdefault(flow.id, {})
        request(flow.request, places)
        metadata(flow, places)
        return places

    def response(self, flow: http.HTTPFlow) -> None:
        if self.show or not is_realtime(flow):
            return
        self._stored(flow)
        if flow.websocket is None:  # refused: the flow ends here
            self._end(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        if self.show or not is_realtime(flow):
            return
        self._stored(flow)
        self._end(flow)

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        places = self.flows.get(flow.id)
        if places is None or self.show or not self.messages:
            return
        assert flow.websocket is not None
        m = flow.websocket.messages[-1]
        if not sanitize.may_hold_secret(m.content):  # most frames: one search, nothing built
            return
        new, found = ws_message(m)
        if found:
            store_message_copy(flow, m, new)
            sanitize.add(places, sanitize.MESSAGES, found)

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        if flow.id in self.flows and not self.show:
            self._stored(flow)  # again: a metadata value added since (idempotent)
        self._end(flow)

    def _end(self, flow: http.HTTPFlow) -> None:
        places = self.flows.pop(flow.id, None)
        if places:
            where = "; ".join(f"{sanitize.describe(c)} in {p}" for p, c in places.items())
            flow_log(flow.id).debug(f"stored flow sanitized: {where}")
