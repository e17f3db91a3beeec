"""rt_page_probe: the page's side of the socket. HTML documents rtproxy serves (reverse mode) or passes
get the probe script first in their <head>, their Content-Security-Policy the probe's hash and nothing
else (rtproxy_core/page.py); the probe's reports, POSTed to PROBE_PATH on the page's origin, are answered
here (never forwarded upstream) and handed to the tracker, which pairs each page socket with its wire
connection and feeds its events to that connection's Session."""

from __future__ import annotations

import logging
import time

from mitmproxy import ctx, http
from rtproxy_core.page import PROBE_PATH, allow_probe, inject, read_report

from . import internals

logger = logging.getLogger("rtproxy")

CSP_HEADERS = ("content-security-policy", "content-security-policy-report-only")


def is_report(flow: http.HTTPFlow) -> bool:
    return flow.request.method == "POST" and flow.request.path.split("?", 1)[0] == PROBE_PATH


def is_document(flow: http.HTTPFlow) -> bool:
    r = flow.response
    if r is None or r.status_code != 200 or flow.websocket is not None or r.stream:
        return False
    kind = r.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return kind == "text/html" and flow.request.method == "GET" and not is_report(flow)


class PageProbe:
    """Option rt_page_probe; `request` answers the probe's reports, `response` injects the probe."""

    def __init__(self, tracker) -> None:
        self.tracker = tracker
        self.on = False
        self.warned = False

    def load(self, loader) -> None:
        loader.add_option(
            name="rt_page_probe",
            typespec=bool,
            default=False,
            help="Inject a small script first in the <head> of HTML documents rtproxy serves or passes "
            "(200 text/html), adding its sha256 hash to the page's Content-Security-Policy script-src (or "
            "default-src) and loosening nothing else. It watches the page's Realtime WebSockets and reports "
            f"to {PROBE_PATH} on the page's origin, which rtproxy answers itself: the message types the app "
            "got (a Blob where realtime-js needs an ArrayBuffer), handlers that threw, sends on a socket "
            "not open, the close as the page saw it, the tab hidden, frozen or offline. Secrets are "
            "redacted in the page. Off: pages pass byte-identical.",
        )

    def configure(self, updated: set[str]) -> None:
        if "rt_page_probe" in updated:
            self.on = ctx.options.rt_page_probe

    def request(self, flow: http.HTTPFlow) -> None:
        if not self.on or not is_report(flow):
            return
        received = time.time()
        try:
            page, events = read_report(flow.request.get_content() or b"", received)
        except ValueError as e:
            if not self.warned:
                self.warned = True
                logger.warning(f"rt_page_probe: a report rtproxy cannot read: {e}")
            flow.response = http.Response.make(400, b"", {"cache-control": "no-store"})
            return
        flow.response = http.Response.make(204, b"", {"cache-control": "no-store"})
        self.tracker.page_report(page, events)

    def response(self, flow: http.HTTPFlow) -> None:
        if not self.on:
            return
        if is_report(flow) and flow.response is not None and flow.response.status_code == 204:
            # A report is rtproxy's own traffic, one every few events for as long as the page is open:
            # answered, it leaves mitmweb's flow list (the View listed it at requestheaders; it runs before
            # script addons), so the list keeps the app's flows. Its events are in the findings and the
            # `page:` log lines.
            internals.hide_from_view(flow)
            return
        if not is_document(flow):
            return
        r = flow.response
        assert r is not None
        try:
            body = (
                r.get_content()
            )  # decoded (Content-Encoding); set_content encodes it back, Content-Length too
        except ValueError:
            return  # an encoding mitmproxy cannot decode: the page passes as it is
        if not body:
            return
        r.set_content(inject(body))
        for name in CSP_HEADERS:
            if values := r.headers.get_all(name):
                r.headers.set_all(name, [allow_probe(v) for v in values])
