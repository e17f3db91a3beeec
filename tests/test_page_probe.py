"""rt_page_probe without a browser: the probe injected into a gzip'd page (Content-Length right), the
policy changed by the probe's hash only, the probe's report answered here and never forwarded; the
report's events paired with the wire connection by URL and time (the browser: tests/browser/test_browser_page_probe.py)."""

from __future__ import annotations

import json

from mitmproxy.addons.view import View
from mitmproxy.test import taddons, tflow
from rtproxy_core.events import PageEvent
from rtproxy_core.page import PROBE_HASH, PROBE_JS, PROBE_PATH, Pages, allow_probe, inject, read_report
from rtproxy_mitm.page import PageProbe


class Reports:
    def __init__(self) -> None:
        self.got: list = []

    def page_report(self, page, events) -> None:
        self.got.append((page, events))


def html_flow(body: bytes, encoding: str | None = None, csp: str | None = None):
    f = tflow.tflow(resp=True)
    r = f.response
    r.headers["content-type"] = "text/html; charset=utf-8"
    if csp:
        r.headers["content-security-policy"] = csp
    r.content = body
    if encoding:
        r.encode(encoding)
    r.headers["content-length"] = str(len(r.raw_content))
    return f


def test_gzip_page_gets_the_probe_and_a_right_length():
    probe = PageProbe(Reports())
    probe.on = True
    f = html_flow(b"<!doctype html><html><head><title>x</title></head><body></body></html>", "gzip")
    probe.response(f)
    r = f.response
    assert r.headers["content-encoding"] == "gzip" and r.raw_content[:2] == b"\x1f\x8b"
    assert r.headers["content-length"] == str(len(r.raw_content))
    assert r.get_content().startswith(b"<!doctype html><html><head><script>" + PROBE_JS.encode())


def test_off_or_not_html_passes_untouched():
    probe = PageProbe(Reports())
    f = html_flow(b"<html><head></head></html>", csp="script-src 'self'")
    probe.response(f)
    assert f.response.content == b"<html><head></head></html>"
    assert f.response.headers["content-security-policy"] == "script-src 'self'"
    probe.on = True
    g = html_flow(b"<html><head></head></html>")
    g.response.headers["content-type"] = "application/json"
    probe.response(g)
    assert g.response.content == b"<html><head></head></html>"


def test_policy_gets_the_hash_and_nothing_else():
    assert allow_probe("default-src 'self'; img-src *") == f"default-src 'self' {PROBE_HASH}; img-src *"
    assert allow_probe("script-src 'self'; script-src-elem 'self'") == (
        f"script-src 'self' {PROBE_HASH}; script-src-elem 'self' {PROBE_HASH}"
    )
    assert (
        allow_probe("script-src 'self' 'unsafe-inline'") == "script-src 'self' 'unsafe-inline'"
    )  # runs already
    assert allow_probe("img-src 'self'") == "img-src 'self'"  # scripts unrestricted
    assert allow_probe("script-src 'none'") == f"script-src {PROBE_HASH}"


def test_inject_without_head():
    assert inject(b"<p>hi").startswith(b"<script>")
    assert inject(b"<!DOCTYPE html><p>").startswith(b"<!DOCTYPE html><script>")


def test_report_answered_not_forwarded():
    reports = Reports()
    probe = PageProbe(reports)
    probe.on = True
    f = tflow.tflow()
    f.request.method, f.request.path = "POST", PROBE_PATH
    f.request.content = json.dumps(
        {"probe": 1, "page": "p1", "events": [{"e": "message", "sid": 1, "type": "Blob", "t": 1000}]}
    ).encode()
    probe.request(f)
    assert f.response is not None and f.response.status_code == 204
    page, events = reports.got[0]
    assert page == "p1" and events == [PageEvent("message", 1, {"type": "Blob"}, 1.0)]


def test_the_probes_reports_stay_out_of_the_flow_list():
    """mitmweb's View lists every flow at requestheaders; a report, once answered, leaves it alive (its
    204 is still sent: not killed, as view.flows.remove would), and the app's flows stay."""
    probe = PageProbe(Reports())
    with taddons.context(probe, View()) as tctx:
        view = tctx.master.addons.get("view")
        tctx.configure(probe, rt_page_probe=True)
        app, report = tflow.tflow(resp=True), tflow.tflow()
        report.request.method, report.request.path = "POST", PROBE_PATH
        report.request.content = json.dumps({"probe": 1, "page": "p1", "events": []}).encode()
        for f in (app, report):
            view.requestheaders(f)
        assert len(view) == 2
        probe.request(report)
        view.response(report)  # mitmproxy's View runs before script addons
        probe.response(report)
        assert list(view) == [app] and report.response.status_code == 204 and report.error is None
        assert report.live  # still going: its answer is sent after the hook
        probe.response(app)  # an app's flow stays
        assert list(view) == [app]


def test_pairing_by_url_and_time():
    pages = Pages()
    url = "ws://h:1/realtime/v1/websocket?apikey=[redacted]&vsn=2.0.0"
    ev = PageEvent("socket", 1, {"url": url}, 100.0)
    candidates = [
        ("far", "http://h:1/realtime/v1/websocket?apikey=k&vsn=2.0.0", 50.0),
        ("other", "http://h:1/realtime/v1/websocket?apikey=k&vsn=1.0.0", 100.0),
        ("near", "http://h:1/realtime/v1/websocket?apikey=k&vsn=2.0.0", 99.9),
    ]
    assert pages.pair("p", ev, candidates) == "near"
    assert (
        pages.pair("p", PageEvent("socket", 2, {"url": url}, 100.0), candidates) is None
    )  # taken; far too old
    _, events = read_report(b'{"probe": 1, "page": "p", "events": [{"e": "online"}]}', 5.0)
    assert events == [PageEvent("online", None, {}, 5.0)]
