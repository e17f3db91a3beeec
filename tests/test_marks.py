"""The flow comment rtproxy writes (report.finding_line, marks.show_findings): the channel, what the client
saw and the cause lead, since mitmweb's Comment column shows only its first ~17 characters until widened;
the finding code and the connection's id come last. A comment the user wrote stays; one rtproxy wrote, in this form or the older
one, is kept up to date."""

from __future__ import annotations

from mitmproxy.test import tflow
from rtproxy_core.diagnosis import Diagnoser
from rtproxy_core.events import Handshake, Hop, HopKind, Opened, PageEvent
from rtproxy_core.report import finding_line
from rtproxy_core.session import Session
from rtproxy_mitm import marks
from wire import T0, v2

URL = "http://127.0.0.1:8080/realtime/v1/websocket?apikey=k&vsn=2.0.0"


def session(*events) -> Session:
    s = Session("t")
    for e in (Opened(URL, [], T0), Handshake(101, [], b"", T0 + 0.01), *events):
        s.feed(e)
    Diagnoser().check(s, T0 + 100, final=True)
    return s


def dropped_join(topic: str = "realtime:orders") -> Session:
    join = v2("1", "1", topic, "phx_join", {}, client=True, t=0)
    return session(Hop(HopKind.FRAME_DROPPED, "dropped phx_join (drop-join)", T0, join))


def test_the_comment_leads_with_channel_outcome_and_cause():
    s = dropped_join()
    assert finding_line(s) == (
        "orders TIMED_OUT · join dropped by proxy · rtproxy: join-dropped-by-proxy [rt t]"
    )


def test_a_connection_finding_has_no_channel_and_each_client_its_own_outcome():
    s = Session("t")
    s.feed(Opened(URL.replace("apikey=k&", ""), [], T0))
    s.feed(Handshake(401, [], b'{"error":"API key is missing"}', T0 + 0.01))
    Diagnoser().end(s)
    assert finding_line(s) == "CHANNEL_ERROR · apikey missing · rtproxy: apikey-missing [rt t]"
    s.client_kind = "realtime-py"  # connect() raises where realtime-js reports CHANNEL_ERROR
    assert finding_line(s) == "connect() raises · apikey missing · rtproxy: apikey-missing [rt t]"


def test_a_finding_from_the_page_says_so_in_the_cause():
    s = session(
        v2("1", "1", "realtime:orders", "phx_join", {}, client=True, t=0),
        v2("1", "1", "realtime:orders", "phx_reply", {"status": "ok", "response": {}}, client=False, t=0.1),
        PageEvent("socket", 1, {"asked": URL, "url": URL, "binaryType": "arraybuffer"}, T0),
        PageEvent("threw", 1, {"type": "string", "error": "TypeError: x is undefined"}, T0 + 1),
    )
    assert finding_line(s) == (
        "SUBSCRIBED · handler threw (seen by the page probe) · rtproxy: handler-threw [rt t]"
    )
    f = tflow.twebsocketflow()
    marks.show_findings(f, s)
    assert f.comment == finding_line(s) and f.marked == marks.MARKER
    assert marks.OURS.search(f.comment)  # rtproxy knows it as its own, to keep it up to date
    [(code, evidence)] = f.metadata[marks.PAGE_FINDINGS]  # for the content view's full form
    assert code == "handler-threw" and "TypeError: x is undefined" in evidence, evidence
    assert "page probe" not in (finding_line(dropped_join()) or "")


def test_rtproxys_own_commands_are_named_in_the_cause():
    s = Session("t")
    for e in (
        Opened(URL, [], T0),
        Handshake(101, [], b"", T0 + 0.01),
        v2("1", "1", "realtime:room1", "phx_join", {}, client=True, t=0.02),
        v2("1", "1", "realtime:room1", "phx_reply", {"status": "ok", "response": {}}, client=False, t=0.03),
        Hop(HopKind.COMMAND, "rt.expire: expired the token of realtime:room1", T0 + 1),
        v2(
            "1",
            None,
            "realtime:room1",
            "system",
            {"status": "error", "extension": "system", "message": "Token has expired 5 seconds ago"},
            client=False,
            t=1.01,
        ),
        v2("1", "1", "realtime:room1", "phx_close", {}, client=False, t=1.02),
    ):
        s.feed(e)
    Diagnoser().check(s, T0 + 2, final=True)
    comment = finding_line(s)
    assert comment is not None
    assert comment.startswith("room1 CHANNEL_ERROR/CLOSED · token expired after rt.expire · "), comment


def test_show_findings_replaces_its_own_comment_old_or_new_and_keeps_the_users():
    s = dropped_join()
    for old in (
        "rtproxy: join-dropped-by-proxy realtime:orders: TIMED_OUT",
        "x TIMED_OUT · a · rtproxy: a-b",
        "x TIMED_OUT · a · rtproxy: a-b [rt 3f8370]",
    ):
        f = tflow.tflow()
        f.comment = old
        marks.show_findings(f, s)
        assert f.comment == finding_line(s) and f.marked == marks.MARKER
    f = tflow.tflow()
    f.comment = "mine: rtproxy: look at this"
    marks.show_findings(f, s)
    assert f.comment == "mine: rtproxy: look at this" and f.marked == marks.MARKER


def test_the_marker_renders_without_an_emoji_font():
    from mitmproxy.utils import emoji

    assert emoji.emoji[marks.MARKER] == "\u2716"  # in DejaVu and Liberation, unlike 🔴 (U+1F534)


def test_the_comment_column_goes_before_path_unless_the_user_chose_columns():
    from mitmproxy.test import taddons
    from mitmproxy.tools.web.webaddons import WebAddon

    for chosen in (None, ["path", "status"]):
        m = marks.Marks()
        with taddons.context(WebAddon(), m) as tctx:
            if chosen is not None:
                tctx.options.update(web_columns=chosen)
            m.running()
            if chosen is None:  # mitmweb's default, with the comment where 150 px of it show first
                assert tctx.options.web_columns == [
                    "tls",
                    "icon",
                    "comment",
                    "path",
                    "method",
                    "status",
                    "size",
                    "time",
                ]
            else:
                assert tctx.options.web_columns == chosen
