"""Credentials out of the flows mitmproxy stores (mitmweb's list and views, `-w` flow files, `savehar`),
while the wire keeps them: rtproxy_core.sanitize says what a credential becomes, this module where a flow
holds one.

Live (`Sanitize`, unless rt_show_secrets), for Realtime flows and the app's calls to its project
(`Sanitize.project`): once the request has been forwarded (its `response`, or its `error`; at `done` if
neither came), the stored request's URL, headers and body and the Worker's copies of them in the flow's
metadata; the response as a sanitized copy for the addons that store and show it (`install_stored_responses`
says how the wire keeps the original); each WebSocket message as it is stored (on the mitmproxy versions
whose WebSocket layer was read to forward the object it made, not the one stored:
internals.RELAY_MESSAGES_CHECKED); the close reason. Offline (`sanitize_flow`, rtsanitize on a flow file): everything a
flow holds, bodies and cookies both ways included.
"""

from __future__ import annotations

import asyncio
import logging

from mitmproxy import ctx, http, tcp, udp, websocket
from mitmproxy import flow as mflow
from mitmproxy.hooks import UpdateHook
from mitmproxy.proxy import mode_specs
from mitmproxy.version import VERSION
from rtproxy_core import sanitize
from rtproxy_core.hop import parse_supabase_url, parse_worker_hosts
from rtproxy_core.sanitize import Places, Replaced

from . import internals
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


# The addons that store or show a flow, by mitmproxy's names (addons/save.py Save, savehar.py SaveHar,
# dumper.py Dumper, view.py View, intercept.py Intercept): the stored response is put in just before the first
# of them that the chain holds (`StoredResponses`).
STORERS = ("save", "savehar", "dumper", "view", "intercept")


class _Before:
    """Just before mitmproxy's Save in the chain: the flow's response becomes its sanitized copy."""

    name = "rtproxy-stored-response"

    def __init__(self) -> None:
        self.owner: Sanitize | None = None

    def response(self, flow: http.HTTPFlow) -> None:
        if self.owner is not None:
            self.owner.store_copy(flow)


class _Last:
    """Last in the chain: the response as it came goes back on the flow for mitmproxy to send."""

    name = "rtproxy-wire-response"

    def __init__(self) -> None:
        self.owner: Sanitize | None = None

    def update(self, flows: list) -> None:
        if self.owner is not None and self.owner.copies:
            for f in flows:
                self.owner.for_the_wire(f)


def install_stored_responses(owner: Sanitize) -> bool:
    """Put `_Before` before the first of STORERS and `_Last` at the end of mitmproxy's addon chain (once; a
    reloaded script's Sanitize takes them over). False when the chain holds none of STORERS: nothing stores
    a response there.

    Why two places. mitmproxy 12.0-12.3 (proxy/layers/http/__init__.py, `HttpStream.send_response`) runs the
    response hook and then sends `self.flow.response`, whatever the hook left there; and every addon that
    stores or shows a flow reads it in that same hook (addons/save.py `Save.response` writes it to -w at
    once; savehar.py `SaveHar.response` keeps it for the HAR; dumper.py `Dumper.response` prints it;
    tools/web/app.py `ClientConnection.broadcast_flow` serializes it for mitmweb's list when view.py
    `View.response` and `View.update` signal). So the sanitized copy goes on the flow after every addon that
    changes a response (the user's scripts, stickycookie, modify_headers, modify_body) and before those
    that store it, and the response as it came goes back once they have run, in the `update` hook that
    ends the event (addonmanager.py `AddonManager.handle_lifecycle`), to be sent. The copy goes on the flow
    again once it has been sent (`Sanitize.sent`)."""
    mgr = ctx.master.addons
    before, last = mgr.get(_Before.name), mgr.get(_Last.name)
    if before is None:
        before, last = _Before(), _Last()
        if not internals.insert_before(before, STORERS):
            return False
        mgr.add(last)
    before.owner = last.owner = owner
    return True


class Sanitize:
    """Unless rt_show_secrets (the Tracker declares it): credentials out of what mitmproxy stores of each
    Realtime flow and of the app's other traffic to the project (`project`), never out of what it forwards.
    WebSocket messages only on the mitmproxy versions internals.RELAY_MESSAGES_CHECKED names (`load` says
    so, once, on any other)."""

    def __init__(self) -> None:
        self.show = False
        self.flows: dict[str, Places] = {}  # live Realtime flows -> what was replaced so far
        self.messages = False  # store_message_copy is safe on this mitmproxy (`load`)
        self.installed = False  # install_stored_responses (`running`)
        self.marked: set[str] = set()  # flows whose response is stored as a sanitized copy
        self.copies: dict[str, http.Response] = {}  # flow id -> the response as it came, while a copy is on
        self.waiting: dict[str, http.HTTPFlow] = {}  # the response as it came is on, to be sent
        self.unanswered: dict[str, http.HTTPFlow] = {}  # Realtime and project requests without an answer yet
        self.project_hosts: set[tuple[str, int]] = set()
        self.worker_hosts: frozenset[str] = frozenset()

    def load(self, loader) -> None:
        why = messages_not_sanitized(VERSION)
        self.messages = why is None
        if why:
            logger.warning(why)

    def configure(self, updated: set[str]) -> None:
        if "rt_show_secrets" in updated:
            self.show = ctx.options.rt_show_secrets
        if "rt_supabase_url" in updated:
            try:
                up = parse_supabase_url(ctx.options.rt_supabase_url.strip())
                self.project_hosts = {(up.host.lower(), up.port)}
            except ValueError:  # unset, or refused (the Worker says why)
                self.project_hosts = set()
        if "rt_worker_host" in updated:
            self.worker_hosts = frozenset(parse_worker_hosts(ctx.options.rt_worker_host))

    def running(self) -> None:
        self.installed = install_stored_responses(self)

    def project(self, flow: http.HTTPFlow) -> bool:
        """The app's traffic to its Supabase project: a request under one of its APIs
        (sanitize.SUPABASE_API_PATHS) to rt_supabase_url's host and port, to a worker host (rt_worker_host),
        or to a reverse listener's target (the project, as the app addresses it through rtproxy). Any other
        host's traffic is stored as it went."""
        r = flow.request
        if not sanitize.is_supabase_api(r.path):
            return False
        host = r.host.lower()
        return (
            (host, r.port) in self.project_hosts
            or host in self.worker_hosts
            or isinstance(flow.client_conn.proxy_mode, mode_specs.ReverseMode)
        )

    def request(self, flow: http.HTTPFlow) -> None:
        # After the Worker's reroute. Until its answer the request may still be sent: stored as it is (the
        # flow mitmweb lists while an upgrade waits holds its apikey), sanitized at `done` if it never comes.
        if not self.show and (is_realtime(flow) or self.project(flow)):
            self.unanswered[flow.id] = flow

    def _stored(self, flow: http.HTTPFlow, body: bool = False) -> Places:
        """The request side, once it has gone upstream: nothing reads it again to send it (mitmproxy 12.0-
        12.3 `HttpStream.send_response` sends only the response after the response hook)."""
        places = self.flows.setdefault(flow.id, {})
        request(flow.request, places, body=body)
        metadata(flow, places)
        return places

    def _store_request(self, flow: http.HTTPFlow) -> bool:
        """The request of a Realtime flow or a project call stored sanitized (a project call's body too);
        False for any other flow, which is left as it is."""
        if is_realtime(flow):
            self._stored(flow)
        elif self.project(flow):
            self._stored(flow, body=True)
        else:
            return False
        return True

    def response(self, flow: http.HTTPFlow) -> None:
        self.unanswered.pop(flow.id, None)
        if self.show or not self._store_request(flow):
            return
        if self.installed:
            self.marked.add(flow.id)  # _Before stores the copy
        if flow.websocket is None:  # refused, or not a WebSocket: the flow ends here
            self._end(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self.unanswered.pop(flow.id, None)
        if self.show or not self._store_request(flow):
            return
        self._end(flow)

    def store_copy(self, flow: http.HTTPFlow) -> None:
        """(_Before) The sanitized copy on the flow for the addons that store and show it."""
        if flow.id not in self.marked or flow.response is None:
            return
        self.marked.discard(flow.id)
        places: Places = {}
        copy = flow.response.copy()
        response(copy, places)
        if places:
            self.copies[flow.id] = flow.response
            flow.response = copy
            where = "; ".join(f"{sanitize.describe(c)} in {p}" for p, c in places.items())
            flow_log(flow.id).debug(f"stored response sanitized: {where}")

    def for_the_wire(self, flow: http.HTTPFlow) -> None:
        """(_Last) The response as it came back on the flow, to be sent; the copy again once it has been."""
        original = self.copies.pop(flow.id, None)
        if original is None:
            return
        flow.response = original
        self.waiting[flow.id] = flow
        if flow.websocket is None:  # a 101 waits for websocket_start
            asyncio.get_running_loop().call_soon(self.sent, flow, False)

    def sent(self, flow: http.HTTPFlow, settled: bool) -> None:
        """After the event that sent the response (mitmproxy sends it as the hook completes, in the same
        step: proxy/server.py `ConnectionHandler.hook_task`, `server_event`): the sanitized copy back on the
        flow. An intercepted flow waits for its resume, then one step more, so that its (possibly edited)
        response is sent first."""
        if flow.id not in self.waiting:
            return
        loop = asyncio.get_running_loop()
        if flow.intercepted:
            loop.call_later(0.1, self.sent, flow, False)
        elif not settled:
            loop.call_soon(self.sent, flow, True)
        else:
            self._put_copy(self.waiting.pop(flow.id))

    def _put_copy(self, flow: http.HTTPFlow, tell: bool = True) -> None:
        """The sanitized copy on the flow for good, and mitmweb's list told (view.py `View.update`)."""
        self.marked.add(flow.id)
        self.store_copy(flow)
        if self.copies.pop(flow.id, None) is not None and tell and ctx.master.addons.get("view"):
            ctx.master.addons.trigger(UpdateHook([flow]))  # as addons/core.py tells of a changed flow

    def websocket_start(self, flow: http.HTTPFlow) -> None:
        # The 101 was sent and its extensions read before this hook (proxy/layers/websocket.py,
        # `WebsocketLayer.start`): the copy stays from here on.
        if (waiting := self.waiting.pop(flow.id, None)) is not None:
            self._put_copy(waiting)

    def done(self) -> None:
        # Nothing is sent any more (Save.done, after rtproxy's, writes the flows still open): a request that
        # never got its answer, and the copy on every flow whose response waits to be sent.
        for flow in self.unanswered.values():
            self._stored(flow, body=True)
            self._end(flow)
        self.unanswered.clear()
        for flow in list(self.waiting.values()):
            self._put_copy(flow, tell=False)
        self.waiting.clear()
        self.marked.clear()

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
            places = self._stored(flow)  # again: a metadata value added since (idempotent)
            # The close frame went on before this hook, from wsproto's event (proxy/layers/websocket.py,
            # `WebsocketLayer.relay_messages`): the stored reason is the flow's alone.
            assert flow.websocket is not None
            reason, found = sanitize.text(flow.websocket.close_reason or "")
            if found:
                flow.websocket.close_reason = reason
                sanitize.add(places, sanitize.MESSAGES, found)
        self._end(flow)

    def _end(self, flow: http.HTTPFlow) -> None:
        places = self.flows.pop(flow.id, None)
        if places:
            where = "; ".join(f"{sanitize.describe(c)} in {p}" for p, c in places.items())
            flow_log(flow.id).debug(f"stored flow sanitized: {where}")
