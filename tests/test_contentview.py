"""The "Supabase Realtime" content view, through mitmproxy's own content-view API: auto-selection by
`contentviews.prettify_message` (as mitmweb, console and mitmdump use it) and the registry."""

from __future__ import annotations

import json
import re

import pytest
from mitmproxy import contentviews, ctx, websocket
from mitmproxy.test import taddons, tflow
from rtproxy_core import frames
from rtproxy_local.jwt import dev_anon_key
from rtproxy_mitm import framenotes, marks
from rtproxy_mitm.contentview import (
    FULL_NAME,
    NAME,
    RealtimeContentview,
    RealtimeFullContentview,
    RealtimeView,
)
from rtproxy_mitm.flowevents import COMMANDS, REALTIME
from rtproxy_mitm.tracker import Tracker
from wsproto.frame_protocol import Opcode

KEY, FULL_KEY = NAME.lower(), FULL_NAME.lower()


def rt_flow(path: str = "/realtime/v1/websocket?apikey=k&vsn=2.0.0"):
    f = tflow.twebsocketflow()
    f.request.path = path
    return f


def message(
    f, content: bytes | str, *, from_client: bool, binary: bool = False
) -> websocket.WebSocketMessage:
    data = content.encode() if isinstance(content, str) else content
    m = websocket.WebSocketMessage(Opcode.BINARY if binary else Opcode.TEXT, from_client, data)
    f.websocket.messages.append(m)
    return m


@pytest.fixture
def view():
    """The addon loaded in a master, as `-s addon/rtproxy.py` would load it."""
    addon = RealtimeView()
    with taddons.context(addon) as tctx:
        yield tctx, addon
        tctx.master.addons.remove(addon)  # done(): the global registry is as before
    assert KEY not in contentviews.registry and FULL_KEY not in contentviews.registry


def render(f, m):
    """The full form, chosen in the View menu (auto picks the compact one over json/raw)."""
    res = contentviews.prettify_message(m, f)
    assert res.view_name == NAME, (res.view_name, res.text)
    return contentviews.prettify_message(m, f, view_name=FULL_NAME).text


def compact(f, m) -> str:
    return contentviews.prettify_message(m, f).text


def payload_of(text: str):
    """The JSON after `payload: ` (the rest of the output is one scalar per line)."""
    return json.loads(text.split("payload: ", 1)[1])


async def test_v1_object_reply(view):
    f = rt_flow("/realtime/v1/websocket?apikey=k&vsn=1.0.0")
    m = message(
        f,
        '{"event":"phx_reply","payload":{"response":{},"status":"ok"},"ref":"1","topic":"realtime:room1"}',
        from_client=False,
    )
    text = render(f, m)
    assert text.splitlines()[:5] == [
        "# 1.0.0 object, server → client",
        'topic: "realtime:room1"',
        'event: "phx_reply"',
        "join_ref: null",
        'ref: "1"',
    ]
    assert payload_of(text) == {"response": {}, "status": "ok"}


async def test_v2_array_join_pretty_printed(view):
    f = rt_flow()
    join = {"config": {"broadcast": {"self": True}, "presence": {"key": "", "enabled": False}}}
    m = message(f, json.dumps(["3", "3", "realtime:room1", "phx_join", join]), from_client=True)
    text = render(f, m)
    assert text.startswith("# 2.0.0 array, client → server\n")
    assert 'event: "phx_join"' in text and 'join_ref: "3"' in text and 'ref: "3"' in text
    assert payload_of(text) == join
    assert '\n  "config": {\n    "broadcast": {' in text  # indented, not one line


async def test_kind3_client_user_broadcast(view):
    f = rt_flow()
    raw = frames.encode_user_push("realtime:room1", "cursor", {"x": 1}, join_ref="1", ref="2")
    text = render(f, message(f, raw, from_client=True, binary=True))
    assert text.startswith("# 2.0.0 binary kind 3 (user broadcast push), client → server\n")
    assert 'event: "broadcast"' in text and 'join_ref: "1"' in text and 'ref: "2"' in text
    assert payload_of(text) == {"type": "broadcast", "event": "cursor", "payload": {"x": 1}}


async def test_kind4_server_user_broadcast_with_binary_payload_and_meta(view):
    f = rt_flow()
    raw = frames.encode_user_broadcast("realtime:room1", "blob", b"\x00\xffhi", meta={"replayed": True})
    text = render(f, message(f, raw, from_client=False, binary=True))
    assert text.startswith("# 2.0.0 binary kind 4 (user broadcast), server → client\n")
    assert "join_ref: null" in text and "ref: null" in text
    assert payload_of(text) == {
        "type": "broadcast",
        "event": "blob",
        "meta": {"replayed": True},
        "payload": {"bytes": 4, "hex": "00ff6869"},
    }


async def test_kind0_decoded_per_direction(view):
    """Kind 0 from a client is what Realtime's V2 serializer reads; from a server it is a frame realtime-js
    cannot read (it decodes only kind 4), and the view says so."""
    f = rt_flow()
    up = frames.encode_push("realtime:r", "ev", b"ab", join_ref="1", ref="2", from_client=True)
    down = frames.encode_push("realtime:r", "ev", b"ab", join_ref="1", from_client=False)
    t_up = render(f, message(f, up, from_client=True, binary=True))
    t_down = render(f, message(f, down, from_client=False, binary=True))
    assert t_up.startswith("# 2.0.0 binary kind 0 (push), client → server") and 'ref: "2"' in t_up
    assert 'topic: "realtime:r"' in t_up and payload_of(t_up) == {"bytes": 2, "hex": "6162", "utf8": "ab"}
    assert t_down.startswith(
        "error: undecodable binary frame (server → client): kind 0 (push) realtime:r 'ev'"
    )
    assert "realtime-js decodes only kind 4" in t_down


@pytest.mark.parametrize(
    "content,binary,error",
    [
        (b"\xff\x01\x02", True, "error: undecodable binary frame (client → server): unknown binary kind 255"),
        (
            b"\x03\x00\x00\x09\x01\x00\x01room",
            True,
            "error: undecodable binary frame (client → server): topic length 9 runs",
        ),
        (
            b"\x04\x04\x01\x00\x01room",
            True,
            "error: undecodable binary frame (client → server): kind 4 (user broadcast) is a server-to-client layout",
        ),
        (b"hello", False, "error: undecodable text frame (client → server): text frame is neither"),
        (b'["1", "1", "t"]', False, "error: undecodable text frame (client → server): 2.0.0 array must be"),
        (b"[object Blob]", False, "error: undecodable text frame (client → server): invalid JSON"),
    ],
)
async def test_undecodable_is_an_error_line_not_a_traceback(view, content, binary, error):
    f = rt_flow()
    res = contentviews.prettify_message(message(f, content, from_client=True, binary=binary), f)
    assert res.view_name == NAME  # the view itself says what is wrong; no fallback to raw
    assert "failed to parse" not in res.description
    first, *rest = res.text.splitlines()
    assert first.startswith(error), res.text
    assert "Traceback" not in res.text
    assert rest[-1] == (f"hex: {content.hex()}" if binary else f"raw: {content.decode()}")
    if content == b"[object Blob]":
        assert rest[0].startswith("hint: the text '[object Blob]': a JavaScript relay")


async def test_secrets_redacted_by_default(view):
    key = dev_anon_key()
    f = rt_flow()
    m = message(
        f,
        json.dumps(
            [
                "1",
                "1",
                "realtime:room1",
                "phx_join",
                {
                    "config": {},
                    "access_token": key,
                    "note": "url?apikey=plain-secret&vsn=2.0.0",
                    "sb": "sb_publishable_abcdef123456",
                },
            ]
        ),
        from_client=True,
    )
    text = render(f, m)
    assert key not in text
    p = payload_of(text)
    assert p["access_token"].startswith("<jwt role=anon exp in ")
    assert p["note"] == "url?apikey=[redacted]&vsn=2.0.0"
    assert p["sb"] == "[redacted]"
    assert "plain-secret" not in text and "abcdef123456" not in text


async def test_secrets_shown_with_rt_show_secrets():
    """rt_show_secrets is declared by the Tracker; the view reads it live."""
    key = dev_anon_key()
    addon, tracker = RealtimeView(), Tracker()
    with taddons.context(addon, tracker) as tctx:
        f = rt_flow()
        m = message(
            f,
            json.dumps(["1", "1", "realtime:room1", "access_token", {"access_token": key}]),
            from_client=True,
        )
        assert key not in render(f, m)
        tctx.configure(tracker, rt_show_secrets=True)
        assert payload_of(render(f, m)) == {"access_token": key}


async def test_without_the_option_declared_it_redacts(view):
    tctx, _ = view
    assert "rt_show_secrets" not in tctx.options  # only the view is loaded
    f = rt_flow()
    m = message(f, json.dumps([None, None, "realtime:r", "x", {"token": "secret-value"}]), from_client=True)
    assert payload_of(render(f, m)) == {"token": "[redacted]"}


async def test_priority_only_for_realtime_websocket_messages(view):
    cv = contentviews.registry[KEY]
    # Not a Realtime path: the view stays out of the way, auto picks another one.
    plain = tflow.twebsocketflow()  # GET /ws
    m = plain.websocket.messages[1]  # client TEXT "hello text"
    assert cv.render_priority(m.content, contentviews.Metadata(flow=plain, websocket_message=m)) == -1
    assert contentviews.prettify_message(m, plain).view_name != NAME
    # Same path, but rtproxy marked the flow as rerouted Realtime (rtproxy.realtime metadata).
    plain.metadata[REALTIME] = True
    assert contentviews.prettify_message(m, plain).view_name == NAME
    # /socket/websocket (Realtime's own mount) counts too.
    own = rt_flow("/socket/websocket?vsn=1.0.0")
    m2 = message(own, '{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"9"}', from_client=True)
    assert contentviews.prettify_message(m2, own).view_name == NAME
    # HTTP bodies of a Realtime flow (the upgrade request/response) are not WebSocket messages.
    rt = rt_flow()
    assert cv.render_priority(b"{}", contentviews.Metadata(flow=rt, http_message=rt.request)) == -1
    assert contentviews.prettify_message(rt.request, rt).view_name != NAME
    # A Realtime message beats the JSON view, which scores WebSocket messages without a content type.
    j = message(rt, '["1","1","realtime:r","phx_join",{}]', from_client=True)
    md = contentviews.Metadata(flow=rt, websocket_message=j)
    assert cv.render_priority(j.content, md) > contentviews.registry["json"].render_priority(j.content, md)


class _Changes:
    """on_change receivers must be bound methods (the signal keeps weak references)."""

    def __init__(self) -> None:
        self.views: list = []

    def seen(self, view) -> None:
        self.views.append(view)


async def test_registered_on_load_removed_on_unload():
    addon = RealtimeView()
    assert KEY not in contentviews.registry
    with taddons.context(addon) as tctx:
        assert contentviews.registry[KEY] is addon.view and contentviews.registry[FULL_KEY] is addon.full
        # mitmweb's View menu lists these names (the registry's, lower-cased).
        assert {"supabase realtime", "supabase realtime full"} <= set(contentviews.registry.available_views())
        changed = _Changes()
        contentviews.registry.on_change.connect(changed.seen)
        try:
            tctx.master.addons.remove(addon)  # runs done(), as a script unload does
        finally:
            contentviews.registry.on_change.disconnect(changed.seen)
        assert KEY not in contentviews.registry and FULL_KEY not in contentviews.registry
        assert KEY not in contentviews.registry.available_views()
        assert changed.views == [addon.view, addon.full]  # mitmproxy console re-renders on this signal
        f = rt_flow()
        m = message(f, '["1","1","realtime:r","phx_join",{}]', from_client=True)
        assert contentviews.prettify_message(m, f).view_name != NAME


async def test_reload_order_keeps_the_new_view():
    """A reload loads the new instance; the old one's done() must not remove it."""
    old, new = RealtimeView(), RealtimeView()
    with taddons.context(old) as tctx:
        new.load(None)  # the reloaded script's instance registers under the same name: replaces
        assert contentviews.registry[KEY] is new.view
        tctx.master.addons.remove(old)
        assert contentviews.registry[KEY] is new.view
        new.done()
        assert KEY not in contentviews.registry


def test_view_works_without_a_master(monkeypatch):
    """Called directly (no ctx.options at all): decodes and redacts."""
    monkeypatch.delattr(ctx, "options", raising=False)
    f = rt_flow()
    m = message(
        f, json.dumps(["1", "1", "realtime:r", "phx_join", {"access_token": "abc"}]), from_client=True
    )
    md = contentviews.Metadata(flow=f, websocket_message=m)
    assert payload_of(RealtimeFullContentview().prettify(m.content, md)) == {"access_token": "[redacted]"}
    assert RealtimeContentview().prettify(m.content, md).endswith('{"access_token": "[redacted]"}')


async def test_compact_one_line_per_frame(view):
    f = rt_flow()
    join = {"config": {"broadcast": {"self": True}, "presence": {"key": ""}}}
    m = message(f, json.dumps(["3", "3", "realtime:room1", "phx_join", join]), from_client=True)
    assert compact(f, m) == (
        '→ phx_join realtime:room1 join_ref=3 ref=3 {"config": {"broadcast": {"self": true}, "presence": {"key": ""}}}'
    )
    hb = message(
        f,
        json.dumps([None, "4", "phoenix", "phx_reply", {"status": "ok", "response": {}}]),
        from_client=False,
    )
    assert compact(f, hb) == '← phx_reply phoenix ref=4 {"status": "ok", "response": {}}'
    raw = frames.encode_user_broadcast("realtime:room1", "cursor", {"x": 1})
    b = message(f, raw, from_client=False, binary=True)
    assert compact(f, b) == (
        '← broadcast realtime:room1 (binary kind 4) {"type": "broadcast", "event": "cursor", "payload": {"x": 1}}'
    )
    big = message(f, json.dumps([None, None, "realtime:r", "x", {"k": "v" * 1000}]), from_client=True)
    line = compact(f, big)
    assert "\n" not in line and line.endswith(f"more characters: {FULL_NAME})") and len(line) < 500


async def test_what_rtproxy_did_is_said_above_the_frame(view):
    """A fault's drop, a held-back frame and its late copy, a command's and a fault's injection: each says
    so in both forms; a message dropped or injected by something else says that too."""
    f = rt_flow()
    join = message(f, '["1","1","realtime:orders","phx_join",{}]', from_client=True)
    join.drop()
    framenotes.note(f, join, framenotes.DROPPED, "fault drop-join")
    reply = message(
        f, '["1","1","realtime:orders","phx_reply",{"status":"ok","response":{}}]', from_client=False
    )
    reply.drop()
    framenotes.note(f, reply, framenotes.DELAYED, "fault delay-replies, 3000 ms")
    late = message(f, reply.content, from_client=False)
    late.injected = True
    framenotes.note(f, late, framenotes.LATE, "fault delay-replies, 3000 ms")
    f.metadata[COMMANDS] = [
        [late.timestamp + 0.5, "rt.inject.server: sent the client broadcast on realtime:orders"]
    ]
    pushed = message(f, '[null,null,"realtime:orders","broadcast",{"type":"broadcast"}]', from_client=False)
    pushed.injected, pushed.timestamp = True, late.timestamp + 1
    shut = message(f, '["1",null,"realtime:orders","system",{"status":"error"}]', from_client=False)
    shut.injected, shut.timestamp = True, late.timestamp + 2
    framenotes.note(f, shut, framenotes.INJECTED, "fault shutdown")
    assert compact(f, join).splitlines() == [
        "✂ DROPPED by rtproxy (fault drop-join): the server never got it",
        "→ phx_join realtime:orders join_ref=1 ref=1 {}",
    ]
    assert compact(f, reply).splitlines()[0] == (
        "◷ HELD BACK by rtproxy (fault delay-replies, 3000 ms): the client got it later, marked SENT LATE"
    )
    assert (
        compact(f, late).splitlines()[0].startswith("◷ SENT LATE by rtproxy (fault delay-replies, 3000 ms)")
    )
    assert compact(f, pushed).splitlines()[0] == (
        "✚ INJECTED by rtproxy (rt.inject.server): the server never sent it"
    )
    assert (
        compact(f, shut).splitlines()[0] == "✚ INJECTED by rtproxy (fault shutdown): the server never sent it"
    )
    full = contentviews.prettify_message(join, f, view_name=FULL_NAME).text.splitlines()
    assert full[:2] == [
        "# ✂ DROPPED by rtproxy (fault drop-join): the server never got it",
        "# 2.0.0 array, client → server",
    ]
    # Someone else's: a script's inject.websocket before any command, a script's drop.
    g = rt_flow()
    other = message(g, '[null,null,"realtime:r","broadcast",{}]', from_client=False)
    other.injected = True
    gone = message(g, '["1","1","realtime:r","phx_join",{}]', from_client=True)
    gone.drop()
    assert (
        compact(g, other).splitlines()[0]
        == "✚ INJECTED (a script's inject.websocket): the server never sent it"
    )
    assert compact(g, gone).splitlines()[0] == "✂ DROPPED (by a script, not rtproxy): the server never got it"


async def test_the_full_form_names_findings_seen_by_the_page_probe(view):
    """A finding whose evidence came from the page (marks.PAGE_FINDINGS) is said above each frame in the
    full form, as seen by the page probe; the compact form stays one line per frame."""
    f = rt_flow()
    m = message(f, '[null,null,"realtime:r","broadcast",{}]', from_client=False)
    f.metadata[marks.PAGE_FINDINGS] = [["handler-threw", "the app's message handler threw on 1 frame(s)"]]
    full = contentviews.prettify_message(m, f, view_name=FULL_NAME).text.splitlines()
    assert (
        full[0] == "# handler-threw (seen by the page probe): the app's message handler threw on 1 frame(s)"
    )
    assert full[1].startswith("# 2.0.0 array, server → client"), full
    assert compact(f, m).splitlines() == ["← broadcast realtime:r {}"]
    g = rt_flow()
    assert not contentviews.prettify_message(
        message(g, m.content, from_client=False), g, view_name=FULL_NAME
    ).text.startswith("# handler-threw")


def test_names_fit_mitmwebs_content_route():
    """mitmweb's UI asks for a view by its name, lower-cased and encodeURIComponent'd, on a route that takes
    only [0-9a-zA-Z_%-] (tools/web/app.py): a name with parentheses would answer 404 in the View menu."""
    from urllib.parse import quote

    from mitmproxy.tools.web import app

    (route,) = [r for r, handler in app.handlers if handler is app.FlowContentView]
    for name in (NAME, FULL_NAME):
        path = f"/flows/0123-ab/messages/content/{quote(name.lower(), safe="-_.!~*'()")}.json"
        assert re.fullmatch(route, path), (name, route)


def test_a_commands_frames_are_noted_and_a_scripts_after_it_is_not_taken_for_one(view):
    """A live command notes each frame it injects (commands.py → FrameNotes.injecting); a frame a script
    injects right after it has no note and is labelled as a script's, not as the command's."""
    from rtproxy_mitm.flowevents import COMMANDS
    from rtproxy_mitm.framenotes import INJECTED, FrameNotes

    f = rt_flow()
    f.metadata[COMMANDS] = [[0.0, "rt.inject.server: sent the server broadcast"]]
    notes = FrameNotes()
    data = b'[null,null,"realtime:r","broadcast",{"n":1}]'
    notes.injecting(f, True, data, INJECTED, "rt.inject.server")
    ours = message(f, data.decode(), from_client=False)
    ours.injected = True
    notes.websocket_message(f)
    theirs = message(f, '[null,null,"realtime:r","broadcast",{"n":2}]', from_client=False)
    theirs.injected = True
    assert (
        compact(f, ours).splitlines()[0]
        == "✚ INJECTED by rtproxy (rt.inject.server): the server never sent it"
    )
    assert (
        compact(f, theirs).splitlines()[0]
        == "✚ INJECTED (a script's inject.websocket): the server never sent it"
    )
