"""The two-leg view (rt_legs): rtproxy in front of a hop and behind it at once pairs each client connection
with the one the hop opens upstream and reports what the hop changed.

Sans-I/O: one test per leg rule on rtproxy_core.legs, and the pairing. In-process (mitmproxy's taddons):
rt.channels, the content view, rt.report and the flow's comment show the pair. End to end: one mitmdump
with two reverse listeners, the local server behind the upstream-side one, and as the hop a small
WebSocket relay written here (websockets), faithful (the corrected Worker) or with the design relay's
defects; a raw websockets client."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Self
from urllib.parse import urlsplit

import pytest
from conftest import ADDON, MITMDUMP, TIMEOUT, run_to_exit
from mitmproxy import contentviews
from mitmproxy.test import taddons, tflow
from mitmproxy.websocket import WebSocketMessage
from rtproxy_core import closecodes, frames, legs, sanitize
from rtproxy_core.events import Closed, Frame, Handshake, Opened
from rtproxy_core.hop import BLOB_TEXT, relay_path
from rtproxy_core.redact import AUTH_HEADERS, COOKIE_HEADERS, SECRET_HEADERS
from rtproxy_local.jwt import dev_anon_key
from rtproxy_mitm.contentview import RealtimeContentview, RealtimeFullContentview
from rtproxy_mitm.legs import LEG, Legs
from rtproxy_mitm.tracker import Tracker
from webapi import free_port
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.http11 import Response
from wsproto.frame_protocol import Opcode

KEY = dev_anon_key()
TOPIC = "realtime:room1"
T0 = 1_700_000_000.0

# ------------------------------------------------------------------------------------------ sans-I/O

PATH = "/realtime/v1/websocket"
QUERY = f"apikey={KEY}&vsn=2.0.0"
CLIENT_HEADERS = [("Host", "127.0.0.1:8787"), ("Upgrade", "websocket"), ("User-Agent", "realtime-js")]
UP_HEADERS = [("Host", "abc.supabase.co"), ("Upgrade", "websocket"), ("User-Agent", "realtime-js")]

JOIN = (json.dumps(["1", "1", TOPIC, "phx_join", {"config": {}}]).encode(), False)
REPLY = (json.dumps(["1", "1", TOPIC, "phx_reply", {"status": "ok", "response": {}}]).encode(), False)
PUSH = (frames.encode_user_push(TOPIC, "cursor", {"x": 1}, join_ref="1", ref="2"), True)
HEARTBEAT = (json.dumps([None, "3", "phoenix", "heartbeat", {}]).encode(), False)
HB_REPLY = (json.dumps([None, "3", "phoenix", "phx_reply", {"status": "ok", "response": {}}]).encode(), False)

CLIENT_FRAMES = [JOIN, PUSH, HEARTBEAT]
SERVER_FRAMES = [REPLY, HB_REPLY]


def passthrough(frames_sent: list) -> list:
    """What a faithful hop delivers: each frame, as it was, in order, a millisecond later."""
    return [(data, binary, i, 0.001) for i, (data, binary) in enumerate(frames_sent)]


def through_hop(
    *,
    client_path: str = PATH,
    client_query: str = QUERY,
    client_headers: list | None = None,
    up_path: str | None = None,
    up_query: str | None = None,
    up_headers: list | None = None,
    early: bool = False,
    up_status: int = 101,
    up_body: bytes = b"",
    client_status: int | None = None,
    client_body: bytes | None = None,
    out=passthrough,
    back=passthrough,
    client_close: tuple | None = (4000, "bye"),
    up_close: tuple | None = None,
    server_close: tuple | None = None,
    client_close_got: tuple | None = None,
    early_frame: bool = False,
    end: bool = True,
) -> tuple[legs.LegBook, legs.Pair, list[legs.Update]]:
    """One connection through a hop, fed to a LegBook as rtproxy's two listeners would see it; every knob
    left alone is a faithful hop. out/back: frames sent -> [(data, binary, index sent, delay)] in arrival
    order. client_close: the client closes (code, reason), up_close what the hop then sends upstream
    (default: the same). server_close: the upstream closes instead; client_close_got what the client gets.
    early_frame: the client's first frame goes out before the upstream leg is open (with early)."""
    book = legs.LegBook()
    ups: list[legs.Update] = []
    t = T0
    c_url = f"http://127.0.0.1:8080{client_path}" + (f"?{client_query}" if client_query else "")
    uq = client_query if up_query is None else up_query
    u_url = f"http://127.0.0.1:8081{up_path or client_path}" + (f"?{uq}" if uq else "")
    ups += book.open("c" * 32, legs.CLIENT, Opened(c_url, client_headers or CLIENT_HEADERS, t), 8080)
    client_status = up_status if client_status is None else client_status
    client_body = up_body if client_body is None else client_body
    if early:
        ups += book.feed("c" * 32, Handshake(101, [], b"", t + 0.01))
    ups += book.open("u" * 32, legs.UPSTREAM, Opened(u_url, up_headers or UP_HEADERS, t + 0.02), 8081)
    ups += book.feed("u" * 32, Handshake(up_status, [], up_body, t + 0.03))
    if not early:
        ups += book.feed("c" * 32, Handshake(client_status, [], client_body, t + 0.04))
    t += 0.1
    if up_status != 101 or (client_status != 101 and not early):
        ups += book.end("u" * 32, t)
        if client_status != 101 and not early:
            ups += book.end("c" * 32, t + 0.001)
            return book, book.pair_of("c" * 32), ups
    else:
        sent_at = [t + 0.01 * i for i in range(len(CLIENT_FRAMES))]
        if early_frame:
            sent_at[0] = T0 + 0.015  # after the client's 101, before the hop's upstream upgrade
        for (data, binary), at in zip(CLIENT_FRAMES, sent_at):
            ups += book.feed("c" * 32, Frame(True, binary, data, at))
        for data, binary, i, delay in out(CLIENT_FRAMES):
            ups += book.feed("u" * 32, Frame(True, binary, data, sent_at[i] + delay))
        t = max(sent_at) + 1
        answered_at = [t + 0.01 * i for i in range(len(SERVER_FRAMES))]
        for (data, binary), at in zip(SERVER_FRAMES, answered_at):
            ups += book.feed("u" * 32, Frame(False, binary, data, at))
        for data, binary, i, delay in back(SERVER_FRAMES):
            ups += book.feed("c" * 32, Frame(False, binary, data, answered_at[i] + delay))
        t = max(answered_at) + 10
    if server_close is not None:
        ups += book.feed("u" * 32, Closed(*server_close, False, t))
        got = server_close if client_close_got is None else client_close_got
        if got != "open":
            ups += book.feed("c" * 32, Closed(*got, False, t + 0.001))
    elif client_close is not None:
        ups += book.feed("c" * 32, Closed(*client_close, True, t))
        sent = client_close if up_close is None else up_close
        if sent != "open":
            ups += book.feed("u" * 32, Closed(*sent, True, t + 0.001))
    if end:
        for leg_id in ("u" * 32, "c" * 32):
            leg = book.leg(leg_id)
            if leg is not None and (leg.close is not None or leg.status != 101):
                ups += book.end(leg_id, t + 0.002)
    return book, book.pair_of("c" * 32), ups


def codes(pair: legs.Pair) -> list[str]:
    return pair.changes


def evidence(pair: legs.Pair, code: str) -> str:
    return next(f.evidence for f in pair.findings if f.code == code)


def test_a_faithful_hop_changes_only_host_which_is_info():
    _, pair, ups = through_hop()
    assert pair.final and pair.upstream is not None
    assert codes(pair) == ["hop-host-rewritten"]
    [f] = pair.findings
    assert f.severity == "info" and f.conn == "cccccc"
    assert "'127.0.0.1:8787' on client leg cccccc, 'abc.supabase.co' on upstream leg uuuuuu" in f.evidence
    assert pair.how == "time, same path and query"
    assert [u.paired for u in ups].count(True) == 1 and ups[-1].final
    # The same Host on both legs (keep_host_header): nothing at all.
    _, pair, _ = through_hop(up_headers=CLIENT_HEADERS)
    assert codes(pair) == []


def test_path_rewritten_names_the_relay_rule():
    _, pair, _ = through_hop(client_path="/socket/websocket", up_path=relay_path("/socket/websocket"))
    assert "hop-path-rewritten" in codes(pair)
    text = evidence(pair, "hop-path-rewritten")
    assert (
        "asked for /socket/websocket; upstream leg uuuuuu got /realtime/v1 (the design relay's rule" in text
    )
    assert pair.how == "time, related path"


def test_query_dropped_is_named_param_by_param_and_redacted():
    _, pair, _ = through_hop(up_query="")
    text = evidence(pair, "hop-query-rewritten")
    assert "(lost apikey, vsn)" in text and "apikey=[redacted]" in text
    assert KEY not in text and KEY.split(".")[0] not in text
    _, pair, _ = through_hop(up_query="vsn=2.0.0&apikey=" + KEY)  # reordered only: the same query
    assert "hop-query-rewritten" not in codes(pair)


def test_headers_removed_and_changed_quote_both_legs_without_secrets():
    client = [*CLIENT_HEADERS, ("Origin", "https://app.example"), ("Authorization", f"Bearer {KEY}")]
    up = [
        *UP_HEADERS,
        ("Authorization", "Bearer other"),
        ("X-Forwarded-For", "1.2.3.4"),
        ("Sec-WebSocket-Key", "k"),
    ]
    _, pair, _ = through_hop(client_headers=client, up_headers=up)
    text = evidence(pair, "hop-headers-rewritten")
    assert text.startswith(
        "from client leg cccccc to upstream leg uuuuuu: removed origin; changed authorization "
    )
    assert KEY not in text and "other" not in text and "role=anon" in text
    assert "x-forwarded-for" not in text and "sec-websocket-key" not in text  # a hop's own, per leg


def test_every_secret_header_is_hidden_where_quoted_and_replaced_where_stored():
    """redact.SECRET_HEADERS is the one list of credential headers: a header change the two-leg view quotes
    shows none of their values, and a stored flow (sanitize.header) has each replaced."""
    secret, other = "opaque-credential-4f2a", "opaque-credential-9b1c"
    for name in sorted(SECRET_HEADERS):
        value = f"sid={secret}" if name in COOKIE_HEADERS else secret
        value = f"Bearer {secret}" if name in AUTH_HEADERS else value
        stored, replaced = sanitize.header(name, value)
        assert secret not in stored and replaced, name
        client, up = [*CLIENT_HEADERS, (name, value)], [*UP_HEADERS, (name, value.replace(secret, other))]
        _, pair, _ = through_hop(client_headers=client, up_headers=up)
        quoted = " ".join(f.evidence for f in pair.findings)
        assert secret not in quoted and other not in quoted, name
        assert name in legs.PER_LEG_HEADERS or f"changed {name} [redacted] → [redacted]" in quoted, name


def test_early_101_before_the_upstream_answered_and_while_it_refused():
    _, pair, _ = through_hop(early=True)
    text = evidence(pair, "hop-early-101")
    assert "client leg cccccc got 101" in text and "before upstream leg uuuuuu was answered 101" in text
    assert next(f for f in pair.findings if f.code == "hop-early-101").severity == "error"
    body = b'{"error":"API key is missing"}'
    _, pair, _ = through_hop(
        early=True, up_status=401, up_body=body, client_close=(1011, "Proxy server error")
    )
    assert "upstream leg uuuuuu was answered 401 'API key is missing'" in evidence(pair, "hop-early-101")
    assert "hop-frames-dropped" not in codes(pair) and "hop-close-changed" not in codes(pair)
    _, pair, _ = through_hop()  # the upstream's 101 first, then the client's
    assert "hop-early-101" not in codes(pair)


def test_refusal_changed_and_a_refusal_passed_on_unchanged():
    body = b'{"error":"API key is missing"}'
    _, pair, _ = through_hop(
        up_status=401, up_body=body, client_status=500, client_body=b"Internal Server Error"
    )
    assert codes(pair) == ["hop-host-rewritten", "hop-refusal-changed"]
    assert evidence(pair, "hop-refusal-changed") == (
        "upstream leg uuuuuu was answered 401 'API key is missing'; client leg cccccc got 500 'Internal Server Error'"
    )
    _, pair, _ = through_hop(up_status=401, up_body=body)
    assert codes(pair) == ["hop-host-rewritten"]


def test_no_upstream_leg_when_the_hop_answers_alone():
    book = legs.LegBook()
    book.open("c" * 32, legs.CLIENT, Opened(f"http://127.0.0.1:8080{PATH}", [], T0), 8080)
    book.feed("c" * 32, Handshake(426, [], b"Expected WebSocket", T0 + 0.01))
    [update] = book.end("c" * 32, T0 + 0.01)
    assert update.final and codes(update.pair) == ["hop-no-upstream-leg"]
    assert "was answered 426 'Expected WebSocket'; no upgrade arrived" in update.findings[0].evidence
    # The hop is not running: rtproxy's own connection to it failed.
    book.open("d" * 32, legs.CLIENT, Opened(f"http://127.0.0.1:8080{PATH}", [], T0 + 1), 8080)
    book.feed("d" * 32, Closed(None, "", None, T0 + 1.01, "connection refused"))
    [update] = book.end("d" * 32, T0 + 1.01)
    assert (
        "got no answer (rtproxy could not reach the hop: connection refused)" in update.findings[0].evidence
    )


def test_frames_dropped_names_the_frame_and_when_it_was_sent():
    def drop_first(sent):
        return passthrough(sent)[1:]

    _, pair, _ = through_hop(out=drop_first)
    assert codes(pair) == ["hop-host-rewritten", "hop-frames-dropped"]
    text = evidence(pair, "hop-frames-dropped")
    assert text.startswith(
        "1 client frame(s) never reached the upstream: #1 realtime:room1 phx_join ref 1 (text,"
    )
    assert "(client leg cccccc sent 3, upstream leg uuuuuu got 2)" in text
    _, pair, _ = through_hop(early=True, early_frame=True, out=drop_first)
    assert "1 sent before the upstream leg was open" in evidence(pair, "hop-frames-dropped")


def test_frames_delayed_by_many_times_the_threshold():
    def hold(sent):
        return [(d, b, i, legs.DELAY_S * 5 if i == 2 else 0.001) for d, b, i, _ in passthrough(sent)]

    _, pair, _ = through_hop(out=hold)
    assert codes(pair) == ["hop-host-rewritten", "hop-frames-delayed"]
    assert (
        "1 client frame(s) took 1 s or more to reach the upstream, longest 5.0 s: #3 phoenix heartbeat ref 3"
        in (evidence(pair, "hop-frames-delayed"))
    )


def test_frames_reordered():
    def swap(sent):
        p = passthrough(sent)
        return [p[1], p[0], p[2]]

    _, pair, _ = through_hop(out=swap)
    assert codes(pair) == ["hop-host-rewritten", "hop-frames-reordered"]
    assert "the upstream got #2 realtime:room1 broadcast ref 2 (binary, " in evidence(
        pair, "hop-frames-reordered"
    )
    assert "before #1 realtime:room1 phx_join ref 1" in evidence(pair, "hop-frames-reordered")


def test_binary_turned_into_blob_text_both_ways_of_saying_it():
    def blob(sent):
        return [
            (BLOB_TEXT.encode(), False, i, dl) if b else (d, b, i, dl) for d, b, i, dl in passthrough(sent)
        ]

    _, pair, _ = through_hop(out=blob)
    assert codes(pair) == ["hop-host-rewritten", "hop-binary-as-text"]
    assert (
        "1 binary client frame(s) reached the upstream as text: #2 realtime:room1 broadcast ref 2 (binary, "
        in (evidence(pair, "hop-binary-as-text"))
    )
    assert "→ #2 '[object Blob]' (text, 13 B)" in evidence(pair, "hop-binary-as-text")

    def same_bytes_as_text(sent):
        return [(d, False, i, dl) for d, b, i, dl in passthrough(sent)]

    _, pair, _ = through_hop(out=same_bytes_as_text)
    assert codes(pair) == ["hop-host-rewritten", "hop-binary-as-text"]


def test_frames_altered_and_injected():
    join_changed = (json.dumps(["1", "1", TOPIC, "phx_join", {"config": {"private": True}}]).encode(), False)

    def alter(sent):
        p = passthrough(sent)
        return [(join_changed[0], False, 0, 0.001), *p[1:]]

    _, pair, _ = through_hop(out=alter)
    assert codes(pair) == ["hop-host-rewritten", "hop-frames-altered"]
    assert "1 client frame(s) reached the upstream changed: #1 realtime:room1 phx_join ref 1" in (
        evidence(pair, "hop-frames-altered")
    )

    def inject(sent):
        return [(HEARTBEAT[0].replace(b'"3"', b'"99"'), False, 0, 0.002), *passthrough(sent)]

    _, pair, _ = through_hop(out=inject)
    assert codes(pair) == ["hop-host-rewritten", "hop-frames-injected"]
    assert "the upstream got 1 frame(s) the client never sent: #1 phoenix heartbeat ref 99" in (
        evidence(pair, "hop-frames-injected")
    )


def test_close_code_changed_either_way_but_1005_sent_on_as_1000_is_kept():
    _, pair, _ = through_hop(client_close=(4000, "bye"), up_close=(1000, ""))
    assert codes(pair) == ["hop-host-rewritten", "hop-close-changed"]
    assert evidence(pair, "hop-close-changed") == (
        "the client closed client leg cccccc with 4000 'bye'; the hop closed upstream leg uuuuuu with 1000"
    )
    _, pair, _ = through_hop(server_close=(1011, "boom"), client_close_got=(1000, ""))
    assert "the upstream closed upstream leg uuuuuu with 1011 'boom'" in evidence(pair, "hop-close-changed")
    _, pair, _ = through_hop(client_close=(closecodes.NO_CODE, ""), up_close=(1000, ""))
    assert codes(pair) == ["hop-host-rewritten"]


def test_close_lost_without_a_close_frame_or_left_open():
    _, pair, _ = through_hop(server_close=(4001, "gone"), client_close_got=(None, ""))
    assert codes(pair) == ["hop-host-rewritten", "hop-close-lost"]
    assert evidence(pair, "hop-close-lost") == (
        "the upstream closed upstream leg uuuuuu with 4001 'gone'; client leg cccccc ended without a close frame"
    )
    book, pair, _ = through_hop(client_close=(1000, ""), up_close="open")
    assert not pair.final  # the upstream leg is still open: frame and close rules wait
    [update] = book.finish(T0 + 100)
    assert update.final and codes(update.pair) == ["hop-host-rewritten", "hop-close-lost"]
    assert "upstream leg uuuuuu was still open when rtproxy stopped" in evidence(pair, "hop-close-lost")


def test_every_rule_has_a_distinct_code_and_the_readme_row_shape():
    assert len(legs.LEG_RULES_BY_CODE) == len(legs.LEG_RULES)
    assert all(c.startswith("hop-") for c in legs.LEG_RULES_BY_CODE)
    from rtproxy_core.rules import RULES_BY_CODE as SESSION_CODES

    assert not set(legs.LEG_RULES_BY_CODE) & set(SESSION_CODES)  # a leg finding never shadows a connection's
    table = legs.readme_table().splitlines()
    assert len(table) == 2 + len(legs.LEG_RULES) and table[2].startswith("| `hop-no-upstream-leg` | error |")


def test_a_client_legs_timeouts_follow_what_the_hop_changed():
    """rules.link: on a client leg's connection a join or heartbeat timeout follows the hop's change that
    lost the frame (dropped first, then an early 101, a delay, the query), the cause listed first."""
    from rtproxy_core import rules

    def f(code: str) -> rules.Finding:
        severity = (
            legs.LEG_RULES_BY_CODE[code].severity
            if code in legs.LEG_RULES_BY_CODE
            else rules.RULES_BY_CODE[code].severity
        )
        return rules.Finding(code, severity, "", TOPIC, "", "", "cccccc")

    linked = rules.link(
        [f("join-timeout"), f("hop-host-rewritten"), f("hop-early-101"), f("hop-frames-dropped")]
    )
    follows = {x.code: x.follows for x in linked}
    assert follows == {
        "join-timeout": "hop-frames-dropped",
        "hop-host-rewritten": None,
        "hop-early-101": None,
        "hop-frames-dropped": None,
    }
    codes_in_order = [x.code for x in linked]
    assert codes_in_order.index("join-timeout") == codes_in_order.index("hop-frames-dropped") + 1
    assert rules.link([f("heartbeat-timeout"), f("hop-early-101")])[1].follows == "hop-early-101"
    assert rules.link([f("join-timeout"), f("hop-query-rewritten")])[1].follows == "hop-query-rewritten"
    assert rules.link([f("duplicate-join"), f("hop-frames-dropped")])[1].follows == "hop-frames-dropped"
    assert rules.link([f("join-timeout"), f("hop-host-rewritten")])[0].follows is None  # Host loses nothing
    # every hop code named there is a leg rule's
    named = {c for r in rules.RULES for c in r.follows if c.startswith("hop-")}
    assert named and named <= set(legs.LEG_RULES_BY_CODE)


def test_the_docs_list_the_leg_rules_word_for_word():
    """The findings reference page, as the site builds it (scripts/tables.py renders its markers)."""
    from test_docs import rendered

    page = rendered("reference/findings.md")
    for r in legs.LEG_RULES:
        assert f"| `{r.code}` | {r.severity} | {r.explains} | {r.fix} |".replace("<", "&lt;") in page, r.code


# ------------------------------------------------------------------------------------------ pairing


def _open_client(book, leg_id, path, t, query="vsn=2.0.0"):
    book.open(leg_id, legs.CLIENT, Opened(f"http://127.0.0.1:8080{path}?{query}", [], t), 8080)
    book.feed(leg_id, Handshake(101, [], b"", t + 0.001))  # (early: irrelevant to pairing)


def test_pairing_by_path_then_first_frames_then_who_opened_first():
    book = legs.LegBook()
    _open_client(book, "a" * 32, "/realtime/v1/websocket", T0)
    _open_client(book, "b" * 32, "/socket/websocket", T0 + 0.1)
    [u] = book.open("x" * 32, legs.UPSTREAM, Opened(f"http://h{PATH}?vsn=2.0.0", [], T0 + 0.2))
    assert u.paired and u.pair.client.id == "a" * 32 and u.pair.how == "time, same path and query"

    # Same path on two client legs: the upstream leg's first frame decides, even with the first dropped.
    book = legs.LegBook()
    _open_client(book, "a" * 32, PATH, T0)
    _open_client(book, "b" * 32, PATH, T0 + 0.1)
    book.feed("a" * 32, Frame(True, False, b'["1","1","realtime:a","phx_join",{}]', T0 + 0.2))
    book.feed("b" * 32, Frame(True, False, b'["1","1","realtime:b","phx_join",{}]', T0 + 0.2))
    book.feed("b" * 32, Frame(True, True, PUSH[0], T0 + 0.25))
    assert (
        book.open("y" * 32, legs.UPSTREAM, Opened(f"http://h{PATH}?vsn=2.0.0", [], T0 + 0.3)) == []
    )  # a tie
    [u] = book.feed("y" * 32, Frame(True, False, BLOB_TEXT.encode(), T0 + 0.4))  # b's push, as a Blob
    assert u.pair.client.id == "b" * 32 and u.pair.how == "time, same path and query, first frames"

    # Nothing tells two identical clients apart: the one that opened first (hops connect in order).
    book = legs.LegBook()
    _open_client(book, "a" * 32, PATH, T0)
    _open_client(book, "b" * 32, PATH, T0 + 0.1)
    book.open("z" * 32, legs.UPSTREAM, Opened(f"http://h{PATH}?vsn=2.0.0", [], T0 + 0.3))
    [u] = book.end("z" * 32, T0 + 0.5)
    assert (
        u.pair.client.id == "a" * 32 and "(tied with 1 other client leg(s): the first opened)" in u.pair.how
    )

    # An upstream leg that opened before any client leg, or after it ended, pairs with none.
    book = legs.LegBook()
    book.open("z" * 32, legs.UPSTREAM, Opened(f"http://h{PATH}", [], T0))
    _open_client(book, "a" * 32, PATH, T0 + 1)
    book.end("z" * 32, T0 + 2)
    assert [leg.id for leg in book.unpaired_upstream()] == ["z" * 32]


def test_frames_are_bounded_and_a_long_faithful_connection_has_no_frame_findings():
    book = legs.LegBook()
    book.open("c" * 32, legs.CLIENT, Opened(f"http://127.0.0.1:8080{PATH}", [], T0), 8080)
    book.open("u" * 32, legs.UPSTREAM, Opened(f"http://127.0.0.1:8081{PATH}", [], T0 + 0.01), 8081)
    book.feed("u" * 32, Handshake(101, [], b"", T0 + 0.02))
    book.feed("c" * 32, Handshake(101, [], b"", T0 + 0.03))
    t = T0 + 1
    for i in range(legs.MAX_FRAMES + 500):
        data = json.dumps([None, str(i), "phoenix", "heartbeat", {}]).encode()
        book.feed("c" * 32, Frame(True, False, data, t))
        book.feed("u" * 32, Frame(True, False, data, t + 0.001))
        t += 0.01
    c, u = book.leg("c" * 32), book.leg("u" * 32)
    assert len(c.out) == len(u.out) == legs.MAX_FRAMES and c.frames_seen == legs.MAX_FRAMES + 500
    book.feed("c" * 32, Closed(1000, "", True, t))
    book.feed("u" * 32, Closed(1000, "", True, t + 0.001))
    [update] = book.end("c" * 32, t) + book.end("u" * 32, t + 0.001)
    assert update.final and codes(update.pair) == []


# ------------------------------------------------------------------------------------------ in-process


def leg_flow(port: int, path: str, t: float, flow_id: str):
    """A WebSocket flow arriving on listener `port`, as at its request hook (no response yet)."""
    f = tflow.twebsocketflow(messages=False)
    f.id = flow_id
    f.client_conn.sockname = ("127.0.0.1", port)
    f.request.path = path
    f.request.timestamp_start = t
    f.response.timestamp_start = f.response.timestamp_end = t + 0.01
    f.metadata["test.response"], f.response = f.response, None
    return f


def upgraded(f) -> None:
    f.response = f.metadata.pop("test.response")


def say(f, data: bytes, binary: bool, from_client: bool, t: float) -> WebSocketMessage:
    m = WebSocketMessage(Opcode.BINARY if binary else Opcode.TEXT, from_client, data, t)
    f.websocket.messages.append(m)
    return m


async def test_the_pair_on_the_flows_in_rt_channels_the_content_view_and_rt_report(tmp_path):
    tracker = Tracker()
    addon = Legs(tracker)
    with taddons.context(addon, tracker) as tctx:
        tctx.configure(addon, rt_legs="8080,8081")
        c = leg_flow(8080, f"/realtime/v1/websocket?apikey={KEY}&vsn=2.0.0", T0, "c" * 32)
        u = leg_flow(8081, "/realtime/v1/websocket", T0 + 0.001, "u" * 32)  # the query dropped
        c.request.headers["host"], u.request.headers["host"] = "127.0.0.1:8787", "127.0.0.1:54321"
        c.metadata["test.response"].timestamp_end = T0 + 0.02  # after the upstream's 101, as a hop passes it
        for f in (c, u):
            addon.requestheaders(f)
            addon.request(f)
            tracker.request(f)
        assert tracker.live.keys() == {c.id, u.id}  # both legs are Realtime connections to the tracker
        for f in (u, c):
            upgraded(f)
            addon.response(f)
            tracker.response(f)
        sent = say(c, PUSH[0], True, True, T0 + 1)
        addon.websocket_message(c)
        tracker.websocket_message(c)
        got = say(u, BLOB_TEXT.encode(), False, True, T0 + 1.001)
        addon.websocket_message(u)
        tracker.websocket_message(u)
        assert "paired with upstream leg uuuuuu by time, same path" in "\n".join(tracker.channel_lines())
        for f, t in ((c, T0 + 2), (u, T0 + 2.001)):
            f.websocket.close_code, f.websocket.closed_by_client, f.websocket.timestamp_end = 1000, True, t
            addon.websocket_end(f)
            tracker.websocket_end(f)

        lines = "\n".join(tracker.channel_lines())
        assert (
            "  client leg (listener 8080) of the hop, paired with upstream leg uuuuuu by time, same path"
            in lines
        )
        assert "the hop changed: hop-query-rewritten, hop-host-rewritten, hop-binary-as-text" in lines
        assert "  upstream leg (listener 8081) of the hop, paired with client leg cccccc" in lines
        assert KEY not in lines

        # The client leg's flow: comment and marker from its error finding (marks.show_findings).
        assert re.search(r" · rtproxy: hop-[a-z-]+ \[rt cccccc\]$", c.comment) and c.marked, c.comment
        session = next(s for s in tracker.sessions() if s.conn == "cccccc")
        assert {"hop-query-rewritten", "hop-binary-as-text"} <= {f.code for f in session.findings}

        view = RealtimeFullContentview()
        text = view.prettify(sent.content, contentviews.Metadata(flow=c, websocket_message=sent))
        assert text.splitlines()[:3] == [
            "# hop: client leg (listener 8080), paired with upstream leg uuuuuu by time, same path",
            "# the hop changed: hop-query-rewritten, hop-host-rewritten, hop-binary-as-text",
            "# this frame: reached the upstream as text: #1 '[object Blob]' (text, 13 B)",
        ]
        assert "# 2.0.0 binary kind 3 (user broadcast push), client → server" in text
        text = view.prettify(got.content, contentviews.Metadata(flow=u, websocket_message=got))
        assert "# this frame: the client sent it as binary: #1 realtime:room1 broadcast ref 2" in text
        compact = RealtimeContentview().prettify(
            sent.content, contentviews.Metadata(flow=c, websocket_message=sent)
        )
        assert compact.splitlines() == [  # the frame's own fate and its line
            "# this frame: reached the upstream as text: #1 '[object Blob]' (text, 13 B)",
            '→ broadcast realtime:room1 join_ref=1 ref=2 (binary kind 3) {"type": "broadcast", '
            + compact.split('"type": "broadcast", ', 1)[1],
        ]
        assert KEY not in json.dumps(c.metadata[LEG]) and c.metadata[LEG]["paired_with"] == u.id

        tracker.report(str(tmp_path / "r"))
        data = json.loads((tmp_path / "r.json").read_text())
        [pair] = data["legs"]["pairs"]
        assert pair["client"]["conn"] == "cccccc" and pair["upstream"]["conn"] == "uuuuuu"
        assert pair["changes"] == ["hop-query-rewritten", "hop-host-rewritten", "hop-binary-as-text"]
        assert pair["frames"]["client → upstream"]["as_text"] == 1
        assert "## Hop legs" in (tmp_path / "r.md").read_text()
        assert KEY not in (tmp_path / "r.json").read_text() + (tmp_path / "r.md").read_text()


async def test_without_rt_legs_nothing_changes(tmp_path):
    tracker = Tracker()
    addon = Legs(tracker)
    with taddons.context(addon, tracker):
        f = leg_flow(8080, "/realtime/v1/websocket?vsn=2.0.0", T0, "c" * 32)
        addon.requestheaders(f)
        addon.request(f)
        tracker.request(f)
        upgraded(f)
        addon.response(f)
        tracker.response(f)
        assert addon.book.all_pairs() == [] and LEG not in f.metadata
        assert "of the hop" not in "\n".join(tracker.channel_lines())
        tracker.report(str(tmp_path / "r"))
        assert "legs" not in json.loads((tmp_path / "r.json").read_text())


async def test_rt_legs_values_are_checked_and_rt_mode_stays_inspect_at_runtime():
    from mitmproxy import exceptions
    from rtproxy_mitm import optionerror
    from rtproxy_mitm.worker import Worker

    tracker = Tracker()
    addon = Legs(tracker)
    worker = Worker(report=tracker.report_event)
    with taddons.context(worker, addon, tracker) as tctx:
        tctx.configure(addon, rt_legs="8080,8081")
        assert tctx.options.rt_mode == "inspect" and worker.mode == "inspect"
        optionerror.mark_running()  # this context's master only: the next context starts up again
        with pytest.raises(exceptions.OptionsError, match="rt_legs is set"):
            tctx.configure(worker, rt_mode="fixed")
        assert tctx.options.rt_mode == "inspect" and worker.mode == "inspect"
        for bad, why in (("8080", "expected CLIENT_PORT,UPSTREAM_PORT"), ("8080,8080", "two listeners")):
            with pytest.raises(exceptions.OptionsError, match=why):
                tctx.configure(addon, rt_legs=bad)
        assert addon.ports == (8080, 8081)


# ------------------------------------------------------------------------------------------ end to end


class Hop:
    """A WebSocket relay in front of `upstream` (ws://...), as a Worker in `wrangler dev` is one.

    faithful: the corrected Worker: the upstream is opened first and its answer is the client's (its 101,
    or its refusal with the body), path, query and headers kept, frames and close codes passed as they
    are. relay: the design's relay: 101 at once; the query dropped and the path rule applied; the first
    client frame opens the upstream and is dropped (it came before the upstream was open); binary frames
    sent on as the text "[object Blob]"; the other leg closed with 1000 whatever the code; 1011 when the
    upstream fails. as-written: 426 `Expected WebSocket`, no upstream."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.upstream = ""  # ws://127.0.0.1:B, once B is known
        self.upstream_open = asyncio.Event()
        self._ups: dict = {}

    async def __aenter__(self) -> Self:
        self._server = await serve(self._handler, "127.0.0.1", 0, process_request=self._process_request)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def _process_request(self, conn, request) -> Response | None:
        if self.kind == "as-written":
            return conn.respond(426, "Expected WebSocket")
        if self.kind != "faithful":
            return None
        headers = [(k, v) for k, v in request.headers.raw_items() if k.lower() not in legs.PER_LEG_HEADERS]
        try:
            self._ups[conn] = await connect(
                self.upstream + request.path, additional_headers=headers, user_agent_header=None
            )
        except InvalidStatus as e:
            return e.response  # the upstream's own answer
        self.upstream_open.set()
        return None

    async def _handler(self, ws) -> None:
        up = self._ups.pop(ws, None)
        if up is None:  # the relay: 101 answered already
            try:
                await ws.recv()  # the first client frame: no upstream yet, so it is dropped
            except ConnectionClosed:
                return
            path = relay_path(urlsplit(ws.request.path).path)  # the query is dropped
            key = [("x-api-key", v) for v in ws.request.headers.get_all("x-api-key")]
            try:
                up = await connect(self.upstream + path, additional_headers=key)
            except InvalidStatus:
                await ws.close(1011, "Proxy server error")
                return
            self.upstream_open.set()
        await asyncio.gather(self._pipe(ws, up), self._pipe(up, ws))

    async def _pipe(self, src, dst) -> None:
        try:
            async for m in src:
                if isinstance(m, bytes) and self.kind == "relay":
                    m = BLOB_TEXT  # send(blob) stringifies it
                await dst.send(m)
        except ConnectionClosed:
            pass
        code, reason = src.close_code or 1000, src.close_reason or ""
        if self.kind == "relay" or not closecodes.websockets_can_send(code):
            code, reason = 1000, ""
        await dst.close(code, reason)


@pytest.fixture
async def hop(request):
    async with Hop(request.param) as h:
        yield h


async def legs_proxy(mitmdump, hop: Hop, upstream_url: str, tmp_path, *sets: str):
    a = free_port()
    b = next(p for p in iter(free_port, None) if p != a)
    hop.upstream = f"ws://127.0.0.1:{b}"
    proxy = await mitmdump(
        f"rt_legs={a},{b}",
        f"rt_report={tmp_path / 'report'}",
        *sets,
        mode=f"reverse:http://127.0.0.1:{hop.port}@{a}",
        extra=("--mode", f"reverse:{upstream_url}@{b}"),
    )
    await proxy.wait_for(
        rf"rtproxy: legs: clients connect to http://127\.0\.0\.1:{a}, which forwards to the hop at "
        rf"http://127\.0\.0\.1:{hop.port}; point the hop's upstream \(SUPABASE_URL\) at http://127\.0\.0\.1:{b},"
    )
    return proxy, a


def undelayed(found: list[str]) -> list[str]:
    """A relay on a loaded machine may take a second to pass a frame: hop-frames-delayed is then right, and
    is left out of what these tests expect (the threshold is tested sans-I/O, with a hop that holds a frame
    five times as long)."""
    return [code for code in found if code != "hop-frames-delayed"]


async def ended(proxy) -> tuple[str, list[str]]:
    """Await the pair's end: (client leg conn, the hop-* findings logged for it, in order, undelayed)."""
    m = await proxy.wait_for(
        r"\[rt (\w+)\] legs: client leg \w+ and (?:upstream leg \w+|no upstream leg) ended"
    )
    conn = m.group(1)
    return conn, undelayed(re.findall(rf"\[rt {conn}\] finding (hop-[a-z0-9-]+)", proxy.output))


async def recv_json(ws, ref: str):
    while True:
        m = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        if (m[1] if isinstance(m, list) else m.get("ref")) == ref:
            return m


@pytest.mark.parametrize("hop", ["faithful"], indirect=True)
async def test_a_faithful_hop_shows_only_the_host_change(hop, local_server, mitmdump, tmp_path):
    proxy, a = await legs_proxy(mitmdump, hop, local_server.url, tmp_path)
    assert "rt_mode set to inspect" in proxy.output
    assert "connection_strategy set to lazy" not in proxy.output  # that is for rerouting modes only
    async with connect(f"ws://127.0.0.1:{a}/realtime/v1/websocket?apikey={KEY}&vsn=2.0.0") as ws:
        await ws.send(json.dumps(["1", "1", TOPIC, "phx_join", {"config": {}}]))
        assert (await recv_json(ws, "1"))[4]["status"] == "ok"
        await ws.send(frames.encode_user_push(TOPIC, "cursor", {"x": 1}, join_ref="1", ref="2"))
        await ws.send(json.dumps([None, "3", "phoenix", "heartbeat", {}]))
        await recv_json(ws, "3")
        await ws.close(4000, "bye")
    conn, found = await ended(proxy)
    assert found == ["hop-host-rewritten"]
    assert re.search(
        rf"\[rt {conn}\] legs: paired with upstream leg \w+ by time, same path and query", proxy.output
    )
    await proxy.stop()
    [pair] = json.loads((tmp_path / "report.json").read_text())["legs"]["pairs"]
    assert undelayed(pair["changes"]) == ["hop-host-rewritten"]
    assert pair["client"]["close"]["code"] == pair["upstream"]["close"]["code"] == 4000
    counts = pair["frames"]["client → upstream"]
    del counts["delayed"]
    assert counts == {
        "sent": 3,
        "got": 3,
        "dropped": 0,
        "as_text": 0,
        "altered": 0,
        "injected": 0,
        "reordered": 0,
    }
    assert KEY not in proxy.output


@pytest.mark.parametrize("hop", ["relay"], indirect=True)
async def test_the_design_relay_shows_exactly_its_defects(hop, local_server, mitmdump, tmp_path):
    proxy, a = await legs_proxy(mitmdump, hop, local_server.url, tmp_path)
    # The apikey as a header, so the upstream takes the query-less upgrade and frames flow on both legs.
    url = f"ws://127.0.0.1:{a}/realtime/v1/websocket?vsn=1.0.0"
    async with connect(url, additional_headers={"x-api-key": KEY}) as ws:
        await ws.send(json.dumps({"topic": "phoenix", "event": "heartbeat", "payload": {}, "ref": "1"}))
        await asyncio.wait_for(hop.upstream_open.wait(), TIMEOUT)  # opened by that frame, which it dropped
        await ws.send(
            json.dumps({"topic": TOPIC, "event": "phx_join", "payload": {"config": {}}, "ref": "2"})
        )
        assert (await recv_json(ws, "2"))["payload"]["status"] == "ok"
        # 1.0.0 reads JSON whatever the opcode: a binary broadcast, which the relay sends on as text.
        broadcast = {
            "topic": TOPIC,
            "event": "broadcast",
            "payload": {"event": "e", "payload": {}},
            "ref": "3",
        }
        await ws.send(json.dumps(broadcast).encode())
        await ws.send(json.dumps({"topic": "phoenix", "event": "heartbeat", "payload": {}, "ref": "4"}))
        await recv_json(ws, "4")  # so the upstream has the broadcast (the relay keeps order) before the close
        await ws.close(4000, "bye")
    conn, found = await ended(proxy)
    assert found == [
        "hop-query-rewritten",
        "hop-host-rewritten",
        "hop-early-101",
        "hop-frames-dropped",
        "hop-binary-as-text",
        "hop-close-changed",
    ]
    out = proxy.output
    assert re.search(
        rf"\[rt {conn}\] finding hop-frames-dropped \(.*\): 1 client frame\(s\) never reached the upstream, 1 sent before the upstream leg was open: #1 phoenix heartbeat ref 1",
        out,
    )
    assert re.search(
        rf"\[rt {conn}\] finding hop-close-changed .*: the client closed client leg {conn} with 4000 'bye'; the hop closed upstream leg \w+ with 1000\. Fix",
        out,
    )
    assert re.search(rf"\[rt {conn}\] finding hop-query-rewritten .*\(lost vsn\)", out)
    await proxy.stop()
    [pair] = json.loads((tmp_path / "report.json").read_text())["legs"]["pairs"]
    assert undelayed(pair["changes"]) == found and pair["frames"]["client → upstream"]["as_text"] == 1
    assert KEY not in proxy.output


@pytest.mark.parametrize("hop", ["relay"], indirect=True)
async def test_the_design_relay_hides_the_upstream_refusal_behind_its_101(
    hop, local_server, mitmdump, tmp_path
):
    proxy, a = await legs_proxy(mitmdump, hop, local_server.url, tmp_path)
    async with connect(f"ws://127.0.0.1:{a}/realtime/v1/websocket?apikey={KEY}&vsn=2.0.0") as ws:
        await ws.send(json.dumps(["1", "1", TOPIC, "phx_join", {"config": {}}]))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert closed.value.rcvd.code == 1011
    conn, found = await ended(proxy)
    assert found == ["hop-query-rewritten", "hop-host-rewritten", "hop-early-101"]
    assert re.search(
        rf"\[rt {conn}\] finding hop-early-101 .*: client leg {conn} got 101; upstream leg \w+ was answered 401 'API key is missing'",
        proxy.output,
    )


@pytest.mark.parametrize("hop", ["as-written"], indirect=True)
async def test_a_hop_that_answers_alone_has_no_upstream_leg(hop, local_server, mitmdump, tmp_path):
    proxy, a = await legs_proxy(mitmdump, hop, local_server.url, tmp_path)
    with pytest.raises(InvalidStatus):
        async with connect(f"ws://127.0.0.1:{a}/realtime/v1/websocket?apikey={KEY}&vsn=2.0.0"):
            pass
    conn, found = await ended(proxy)
    assert found == ["hop-no-upstream-leg"]
    assert re.search(
        rf"\[rt {conn}\] finding hop-no-upstream-leg .*was answered 426 'Expected WebSocket'", proxy.output
    )


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        (("rt_legs=8080",), "rt_legs: expected CLIENT_PORT,UPSTREAM_PORT"),
        (("rt_legs=1,2", "rt_mode=relay"), "rt_mode=relay would make it the hop"),
        (("rt_legs=PORT,1",), r"rt_legs: no listener on port 1 \(mitmproxy listens on \d+\)"),
    ],
)
async def test_a_bad_rt_legs_stops_mitmdump_with_one_line(tmp_path, sets, expected):
    port = free_port()
    args = [
        MITMDUMP,
        "--listen-host",
        "127.0.0.1",
        "--mode",
        f"reverse:http://127.0.0.1:9@{port}",
        "-s",
        ADDON,
    ]
    args += ["--set", f"confdir={tmp_path}"]
    for s in sets:
        args += ["--set", s.replace("PORT", str(port))]
    status, out = await run_to_exit(args)
    assert status == 1, out
    assert re.search(expected, out), out
    assert "Traceback" not in out
