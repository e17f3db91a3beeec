"""One test per diagnosis rule on a frame sequence: it fires on its evidence; a healthy session is clean."""

from __future__ import annotations

import json

import pytest
from rtproxy_core.diagnosis import Diagnoser
from rtproxy_core.events import (
    Closed,
    Frame,
    Handshake,
    Hop,
    HopKind,
    Opened,
    PageEvent,
    Upstream,
    UpstreamHandshake,
)
from rtproxy_core.rules import RULES, RULES_BY_CODE, Confidence, Severity, Timers, link
from rtproxy_core.session import Heartbeats, Session
from wire import T0, kind3, kind4, v2

URL = "http://worker.test/realtime/v1/websocket?apikey=k&vsn=2.0.0"
UP = "https://abc.supabase.co/realtime/v1/websocket?apikey=k&vsn=2.0.0"
OK = {"status": "ok", "response": {}}


class Conv:
    """A conversation: feed events, then diagnose."""

    def __init__(
        self, url: str = URL, upstream: str | None = UP, status: int | None = 101, body: bytes = b""
    ):
        self.s = Session("t")
        self.s.feed(Opened(url, [], T0))
        if upstream:
            self.s.feed(Upstream(upstream, [], T0))
        if status is not None:
            self.s.feed(Handshake(status, [], body, T0 + 0.01))

    def feed(self, *events) -> Conv:
        for e in events:
            self.s.feed(e)
        return self

    def join(self, topic="realtime:r", t=0.0, ref="1", payload=None, reply=OK, rt=0.01) -> Conv:
        self.feed(v2(ref, ref, topic, "phx_join", payload or {}, client=True, t=t))
        if reply is not None:
            self.feed(v2(ref, ref, topic, "phx_reply", reply, client=False, t=t + rt))
        return self

    def heartbeats(self, times, answered=True) -> Conv:
        for i, t in enumerate(times):
            self.feed(v2(None, f"hb{i}", "phoenix", "heartbeat", {}, client=True, t=t))
            if answered:
                self.feed(v2(None, f"hb{i}", "phoenix", "phx_reply", OK, client=False, t=t + 0.001))
        return self

    def close(self, code=1000, reason="", by_client=True, t=40.0) -> Conv:
        return self.feed(Closed(code, reason, by_client, T0 + t))

    def codes(self, timers: Timers | None = None, now: float | None = None) -> list[str]:
        d = Diagnoser(timers or Timers())
        if self.s.closed:
            found = d.end(self.s)
        else:
            found = d.check(self.s, now if now is not None else T0 + 100, final=False)
        return [f.code for f in found]


def healthy() -> Conv:
    c = Conv().join(
        payload={"config": {"postgres_changes": [{"event": "*", "schema": "public", "table": "t"}]}},
        reply={
            "status": "ok",
            "response": {"postgres_changes": [{"id": 7, "event": "*", "schema": "public", "table": "t"}]},
        },
    )
    c.feed(
        v2(
            "1",
            None,
            "realtime:r",
            "system",
            {
                "extension": "postgres_changes",
                "status": "ok",
                "message": "Subscribed to PostgreSQL",
                "channel": "r",
            },
            client=False,
            t=0.02,
        )
    )
    c.feed(v2("1", None, "realtime:r", "presence_state", {}, client=False, t=0.03))
    c.feed(kind3("realtime:r", "cursor", {"x": 1}, t=1), kind4("realtime:r", "cursor", {"x": 1}, t=1.001))
    c.heartbeats([25, 50, 75])
    c.feed(v2("1", "9", "realtime:r", "phx_leave", {}, client=True, t=80))
    c.feed(v2("1", "9", "realtime:r", "phx_reply", OK, client=False, t=80.01))
    c.feed(v2("1", "1", "realtime:r", "phx_close", {}, client=False, t=80.02))
    return c.close(1000, "", True, t=80.1)


def test_healthy_session_has_no_error_or_warning():
    c = healthy()
    d = Diagnoser()
    found = d.end(c.s)
    assert [f for f in found if f.severity in (Severity.ERROR, Severity.WARNING)] == []


def test_every_rule_has_code_fix_and_explains():
    assert len({r.code for r in RULES}) == len(RULES)
    for r in RULES:
        assert r.code == r.code.lower() and " " not in r.code and r.fix and r.explains


CASES = {
    "apikey-missing": lambda: Conv(
        url="http://w/realtime/v1/websocket?vsn=2.0.0",
        upstream=None,
        status=401,
        body=b'{"error":"API key is missing"}',
    ),
    "vsn-missing": lambda: Conv(upstream="https://abc.supabase.co/realtime/v1/websocket?apikey=k").join(
        reply=None
    ),
    "tenant-not-found": lambda: Conv(status=404, body=b'{"error":"Tenant not found"}'),
    "path-wrong": lambda: Conv(status=404, body=b"Not Found"),
    "token-expired": lambda: Conv(status=401, body=b'{"error":"Token has expired"}'),
    "token-invalid": lambda: Conv(status=401, body=b'{"error":"The token provided is not a valid JWT"}'),
    "rate-limited": lambda: Conv(status=429, body=b'{"error":"Too many connected users"}'),
    "realtime-disabled": lambda: Conv(status=403, body=b'{"error":"Realtime was disabled for this tenant"}'),
    "worker-exception": lambda: Conv(status=500, body=b"<h1>Error 1101</h1><h2>Worker threw exception</h2>"),
    "upgrade-rejected": lambda: Conv(status=426, body=b"Expected WebSocket"),
    "upstream-unreachable": lambda: Conv(status=None).feed(Hop("upstream-unreachable", "connection refused")),
    "early-101": lambda: Conv().feed(UpstreamHandshake(401, [], b'{"error":"API key is missing"}', T0 + 2)),
    "join-dropped-by-proxy": lambda: (
        Conv()
        .join(reply=None)
        .feed(
            Hop(
                "frame-dropped",
                "Server not ready",
                T0,
                v2("1", "1", "realtime:r", "phx_join", {}, client=True, t=0),
            )
        )
    ),
    "serializer-mismatch": lambda: Conv(
        url="http://w/realtime/v1/websocket?apikey=k&vsn=1.0.0",
        upstream="https://a.supabase.co/realtime/v1/websocket?apikey=k&vsn=1.0.0",
    ).join(reply=None),
    "binary-on-v1": lambda: Conv(
        url="http://w/realtime/v1/websocket?apikey=k",
        upstream="https://a.supabase.co/realtime/v1/websocket?apikey=k",
    ).feed(kind3("realtime:r", "e", {}, t=1)),
    "binary-as-text": lambda: Conv().feed(Hop("binary-as-text", "relayed as '[object Blob]'")),
    # the page's probe saw the wire's kind-4 broadcast reach the app's handler as a Blob
    "binary-delivered-as-blob": lambda: (
        Conv()
        .join()
        .feed(
            PageEvent("socket", 1, {"asked": URL, "url": URL, "binaryType": "blob"}, T0),
            kind4("realtime:r", "cursor", {"x": 1}, t=1),
            PageEvent("message", 1, {"type": "Blob", "binaryType": "blob", "size": 30}, T0 + 1),
        )
    ),
    # the page's probe saw the app send twice after the native socket closed (a wrapper's stale readyState)
    "send-on-closed-socket": lambda: (
        Conv()
        .join()
        .feed(
            PageEvent("socket", 1, {"asked": URL, "url": URL, "binaryType": "arraybuffer"}, T0),
            PageEvent("close", 1, {"code": 1006, "reason": "", "wasClean": False}, T0 + 5),
            PageEvent("send-not-open", 1, {"readyState": 3, "type": "string"}, T0 + 6),
            PageEvent("send-not-open", 1, {"readyState": 3, "type": "string"}, T0 + 7),
        )
    ),
    # the page's probe saw the page go offline just before its socket closed 1006
    "dropped-while-offline": lambda: offline_drop(),
    # the page's probe saw the socket's message handler throw on a frame the wire delivered
    "handler-threw": lambda: (
        Conv()
        .join()
        .feed(
            PageEvent("socket", 1, {"asked": URL, "url": URL, "binaryType": "arraybuffer"}, T0),
            PageEvent("threw", 1, {"type": "string", "error": "TypeError: x is undefined"}, T0 + 1),
        )
    ),
    "join-unauthorized": lambda: Conv().join(
        reply={
            "status": "error",
            "response": {
                "reason": "Unauthorized: You do not have permissions to read from this Channel topic: r"
            },
        },
        rt=5,
    ),
    "join-error": lambda: Conv().join(
        reply={
            "status": "error",
            "response": {"reason": "UnableToReplayMessages: Replay params are not valid"},
        },
        rt=5,
    ),
    "server-restarting": lambda: Conv().join(
        reply={
            "status": "error",
            "response": {"reason": "RealtimeRestarting: Realtime is restarting, please standby"},
        },
        rt=5,
    ),
    "database-unavailable": lambda: Conv().join(
        reply={
            "status": "error",
            "response": {
                "reason": "UnableToConnectToProject: Realtime was unable to connect to the project database"
            },
        },
        rt=5,
    ),
    "binding-mismatch": lambda: Conv().join(
        payload={"config": {"postgres_changes": [{"event": "*", "schema": "public", "table": "todos"}]}},
        reply={
            "status": "ok",
            "response": {"postgres_changes": [{"id": 1, "event": "*", "schema": "public", "table": "other"}]},
        },
    ),
    "postgres-changes-error": lambda: (
        Conv()
        .join()
        .feed(
            v2(
                "1",
                None,
                "realtime:r",
                "system",
                {
                    "extension": "postgres_changes",
                    "status": "error",
                    "channel": "r",
                    "message": "Unable to subscribe to changes with given parameters. Please check Realtime is enabled for the given "
                    "connect parameters: [event: *, schema: public, table: doesnotexist, filters: [], select: nil]",
                },
                client=False,
                t=0.1,
            )
        )
    ),
    # words Realtime never sends: the server stopped the channel, and said why
    "channel-shutdown": lambda: (
        Conv()
        .join()
        .feed(
            v2(
                "1",
                None,
                "realtime:r",
                "system",
                {
                    "extension": "system",
                    "status": "error",
                    "message": "%MatchError{term: nil}",
                    "channel": "r",
                },
                client=False,
                t=1,
            ),
            v2("1", "1", "realtime:r", "phx_close", {}, client=False, t=1.01),
        )
    ),
    "join-timeout": lambda: Conv().join(reply=None),
    # A HAR (no close recorded) that ends 2 s after the join, before the client's 10 s timeout.
    "join-unanswered": lambda: Conv().join(reply=None).feed(Closed(None, "", None, T0 + 2, recorded=False)),
    "duplicate-join": lambda: Conv().join(reply=None).join(ref="3", t=0.001, reply=None),
    "heartbeat-timeout": lambda: (
        Conv().heartbeats([25], answered=False).close(1000, "heartbeat timeout", True, 50)
    ),
    "heartbeat-gap": lambda: Conv().heartbeats([25, 50, 75, 100, 400]),
    "server-idle-close": lambda: Conv().join().close(1000, "", False, t=61),
    "proxy-idle-timeout": lambda: Conv().join().close(None, "", None, t=30),
    "connect-failed": lambda: Conv(upstream=None, status=None).feed(
        Closed(None, "", None, T0 + 0.3, "net::ERR_CONNECTION_REFUSED")
    ),
    "reserved-close-code": lambda: Conv().feed(Hop("close-throws", "clientWebSocket.close(1006) throws")),
    "refusal-replaced": lambda: Conv().feed(
        Hop(
            "refusal-replaced",
            'the upstream answered 401 {"error": "Token has expired"}; the client got 502 no upgrade',
        )
    ),
    "close-not-forwarded": lambda: (
        Conv()
        .join()
        .feed(Hop("close-not-forwarded", "the client's close 4000 'probe' was not passed on to the upstream"))
        .close(4000, "probe", True, t=5)
    ),
    # The hop detail as rtproxy_mitm/commands.py reports it.
    "rtproxy-command": lambda: (
        Conv().join().feed(Hop("command", "rt.close: closed the connection with 4000 'bye'"))
    ),
    "message-too-large": lambda: Conv().close(1009, "Message is too large", False, t=5),
    "server-close": lambda: Conv().join().close(1012, "", False, t=5),
    "client-silent": lambda: Conv().close(None, "", None, t=20),
    "no-heartbeat": lambda: Conv().join().close(1000, "", False, t=61),
    "client-gone": lambda: Conv().join().feed(Closed(None, "", None, T0 + 5, ended_first="client")),
    # the upstream cut off half a second after the join reply, no close frame (a crash, a deploy)
    "server-gone": lambda: Conv().join().feed(Closed(None, "", None, T0 + 0.5, ended_first="server")),
    "idle-socket-dropped": lambda: (
        Conv()
        .join()
        .feed(
            v2("1", "2", "realtime:r", "phx_leave", {}, client=True, t=3),
            v2("1", "2", "realtime:r", "phx_reply", OK, client=False, t=3.01),
            v2("1", "1", "realtime:r", "phx_close", {}, client=False, t=3.02),
            Closed(None, "", None, T0 + 600, ended_first="server"),
        )
    ),
    "left-after-join": lambda: (
        Conv().join().feed(v2("1", "2", "realtime:r", "phx_leave", {}, client=True, t=0.5))
    ),
    # a channel process that crashed: Phoenix says phx_error and nothing else
    "unexplained-failure": lambda: (
        Conv().join().feed(v2("1", "1", "realtime:r", "phx_error", {}, client=False, t=1))
    ),
}


@pytest.mark.parametrize("code", sorted(CASES))
def test_rule_fires_on_its_evidence(code):
    assert code in CASES[code]().codes()


@pytest.mark.parametrize("code", sorted(c for c in RULES_BY_CODE if c != "reconnect-loop"))
def test_rule_silent_on_healthy_session(code):
    assert code not in healthy().codes()


def test_every_code_has_a_case():
    assert set(RULES_BY_CODE) - set(CASES) == {"reconnect-loop"}


def test_unacknowledged_broadcasts_do_not_crowd_out_heartbeats():
    """Broadcasts without broadcast.ack are never answered; they must not fill the pending table and push
    a heartbeat out of it (which once made a false heartbeat-timeout)."""
    c = Conv().join()
    c.feed(v2(None, "hb", "phoenix", "heartbeat", {}, client=True, t=1))
    for i in range(1100):
        c.feed(
            v2(
                "1",
                f"b{i}",
                "realtime:r",
                "broadcast",
                {"type": "broadcast", "event": "e", "payload": {}},
                client=True,
                t=1.5,
            )
        )
    c.feed(v2(None, "hb", "phoenix", "phx_reply", OK, client=False, t=2))
    assert len(c.s.pending) == 0 and c.s.heartbeats.answered == 1
    assert "heartbeat-timeout" not in c.codes(Timers(heartbeat=5), now=T0 + 60)


def test_acked_broadcast_rejection_is_reported():
    """broadcast_handler.ex handle/3: {:reply, {:error, :payload_size_exceeded}, socket}."""
    c = Conv().join(payload={"config": {"broadcast": {"ack": True}}})
    c.feed(
        v2(
            "1",
            "7",
            "realtime:r",
            "broadcast",
            {"type": "broadcast", "event": "e", "payload": {}},
            client=True,
            t=1,
        )
    )
    notes = c.s.feed(
        v2(
            "1",
            "7",
            "realtime:r",
            "phx_reply",
            {"status": "error", "response": "payload_size_exceeded"},
            client=False,
            t=1.1,
        )
    )
    assert any("broadcast rejected: payload_size_exceeded" in n.text for n in notes)
    assert "message-too-large" in c.codes()


def test_track_size_and_rate_shutdowns_are_named():
    """The system error is named as the cause it is; the phx_close after it still stops the channel for
    good, so channel-shutdown follows it as its symptom (corpus dart-typing-presence-client-rate-limit)."""
    for message, code in (
        ("Track message size exceeded", "message-too-large"),
        ("Client presence rate limit exceeded", "rate-limited"),
        ("Replication connection was not established in time", "database-unavailable"),
        (":signature_error", "token-invalid"),
    ):
        c = (
            Conv()
            .join()
            .feed(
                v2(
                    "1",
                    None,
                    "realtime:r",
                    "system",
                    {"extension": "system", "status": "error", "message": message, "channel": "r"},
                    client=False,
                    t=1,
                ),
                v2("1", "1", "realtime:r", "phx_close", {}, client=False, t=1.01),
            )
        )
        codes = c.codes()
        assert code in codes and "channel-shutdown" in codes, (message, codes)


def test_transient_postgres_error_that_recovers_is_no_finding():
    """handle_info(:postgres_subscribe) retries database errors; a later "Subscribed to PostgreSQL" ends it."""
    c = Conv().join()
    for t, status, message in (
        (0.1, "error", '{:error, "Too many database timeouts"}'),
        (6.0, "ok", "Subscribed to PostgreSQL"),
    ):
        c.feed(
            v2(
                "1",
                None,
                "realtime:r",
                "system",
                {"extension": "postgres_changes", "status": status, "message": message, "channel": "r"},
                client=False,
                t=t,
            )
        )
    assert "postgres-changes-error" not in c.codes()


def test_drain_and_join_rate_disconnect_are_explained():
    drained = (
        Conv()
        .join()
        .feed(
            v2(
                None,
                None,
                "realtime:r",
                "system",
                {"extension": "system", "message": "Server requested disconnect", "status": "ok"},
                client=False,
                t=1,
            )
        )
    )
    drained.close(1012, "", False, t=1.01)
    d = Diagnoser()
    [f] = [f for f in d.end(drained.s) if f.code == "server-close"]
    assert "tenant drain" in f.evidence and "Server requested disconnect" in f.evidence
    limited = (
        Conv()
        .join(
            reply={
                "status": "error",
                "response": {"reason": "ClientJoinRateLimitReached: Too many joins per second"},
            },
            rt=5,
        )
        .close(1001, "", False, t=6)
    )
    [f] = [f for f in Diagnoser().end(limited.s) if f.code == "server-close"]
    assert "ClientJoinRateLimitReached" in f.evidence and "1001" in f.evidence


def test_500_at_the_upgrade_names_the_claims():
    """user_socket.ex error_response/1's catch-all for a token whose exp is not a number."""
    import base64
    import json

    claims = (
        base64.urlsafe_b64encode(json.dumps({"role": "anon", "exp": "soon"}).encode()).decode().rstrip("=")
    )
    token = f"eyJhbGciOiJIUzI1NiJ9.{claims}.c2ln"
    c = Conv(
        url=f"http://w/realtime/v1/websocket?apikey={token}&vsn=1.0.0",
        upstream=None,
        status=500,
        body=b'{"error":"Error connecting to Realtime"}',
    )
    [f] = [f for f in Diagnoser().end(c.close(None, "", None, t=1).s) if f.code == "token-invalid"]
    assert "exp is not a whole number" in f.evidence


def test_heartbeat_unanswered_past_the_interval():
    c = Conv().heartbeats([1], answered=False)
    assert "heartbeat-timeout" not in c.codes(Timers(heartbeat=5), now=T0 + 5)
    assert "heartbeat-timeout" in Conv().heartbeats([1], answered=False).codes(
        Timers(heartbeat=5), now=T0 + 6.5
    )


def test_realtime_py_never_times_a_heartbeat_out():
    """realtime-py sends `"ref": null` heartbeats and reads no reply to them (its _heartbeat loop)."""
    py = "http://w/realtime/v1/websocket?apikey=k"  # realtime-py sends no vsn
    hb = '{"topic": "phoenix", "event": "heartbeat", "payload": {}, "ref": null}'

    def unanswered(url):
        c = Conv(url=url, upstream=None)
        for t in (1, 26, 51):
            c.feed(Frame(True, False, hb.encode(), T0 + t))
        return c.close(t=60)

    assert "heartbeat-timeout" in unanswered(URL.replace("vsn=2.0.0", "vsn=1.0.0")).codes()
    assert "heartbeat-timeout" not in unanswered(py).codes()


def test_join_timeout_waits_for_the_timeout():
    c = Conv().join(reply=None)
    assert "join-timeout" not in c.codes(now=T0 + 5)
    assert "join-timeout" in c.codes(now=T0 + 10)
    assert "join-timeout" in Conv().join(reply=None).codes(Timers(join=1), now=T0 + 1.5)


def test_a_join_pending_when_the_capture_ends_is_unanswered_or_timed_out_by_the_clients_timer():
    """A capture that ends (no close recorded) while a join waits says so: unanswered before the client's
    timeout, join-timeout from it on; a recorded close or a reply says nothing of the kind."""

    def pending_until(t: float, recorded: bool = False) -> list[str]:
        return Conv().join(reply=None).feed(Closed(None, "", None, T0 + t, recorded=recorded)).codes()

    assert "join-unanswered" in pending_until(0.01) and "join-timeout" not in pending_until(0.01)
    assert "join-timeout" in pending_until(12) and "join-unanswered" not in pending_until(12)
    assert "join-unanswered" not in pending_until(2, recorded=True)
    assert "join-unanswered" not in Conv().join().feed(Closed(None, "", None, T0 + 2, recorded=False)).codes()
    c = Conv().join(reply=None)
    d = Diagnoser(Timers())
    assert "join-unanswered" not in [f.code for f in d.check(c.s, T0 + 2)]  # not while it may come
    found = {f.code: f for f in d.end(c.s)}  # the run ended with the socket open
    assert "when the run ended" in found["join-unanswered"].evidence


def test_rejoin_after_timeout_is_not_a_duplicate():
    assert "duplicate-join" not in Conv().join(reply=None).join(ref="3", t=2.0).codes()


def test_late_join_reply_is_still_a_timeout():
    assert "join-timeout" in Conv().join(rt=1.5).codes(Timers(join=1))


def test_join_errors_are_classified_not_duplicated():
    codes = (
        Conv()
        .join(
            reply={
                "status": "error",
                "response": {"reason": "InvalidJWTToken: Token has expired 30 seconds ago"},
            },
            rt=5,
        )
        .codes()
    )
    assert "token-expired" in codes and "join-error" not in codes


def test_relay_story_ranks_cause_first():
    c = Conv(url=URL, upstream="ws://a.test/realtime/v1/websocket").join(reply=None)
    c.feed(
        Hop(
            "frame-dropped",
            "Server not ready",
            T0,
            v2("1", "1", "realtime:r", "phx_join", {}, client=True, t=0),
        )
    )
    c.feed(UpstreamHandshake(401, [], b'{"error":"API key is missing"}', T0 + 2))
    c.close(1011, "Proxy server error", False, t=2.01)
    codes = c.codes()
    assert codes[:2] == ["apikey-missing", "vsn-missing"]
    assert {"early-101", "join-dropped-by-proxy"} <= set(codes)


def test_reconnect_loop_across_connections():
    d = Diagnoser()
    found = []
    for i in range(3):
        s = Session(f"c{i}")
        s.feed(Opened(URL, [], T0 + i * 2))
        s.feed(Handshake(101, [], b"", T0 + i * 2))
        s.feed(Closed(1011, "Proxy server error", False, T0 + i * 2 + 0.5))
        found += [f.code for f in d.end(s)]
    assert found.count("reconnect-loop") == 1


def _loop_codes(close_code, by_client, starts, length=0.5):
    d = Diagnoser()
    found = []
    for i, start in enumerate(starts):
        s = Session(f"c{i}")
        s.feed(Opened(URL, [], T0 + start))
        s.feed(Handshake(101, [], b"", T0 + start))
        s.feed(Closed(close_code, "", by_client, T0 + start + length))
        found += [f.code for f in d.end(s)]
    return found


def test_no_reconnect_loop_for_healthy_or_parallel_connections():
    assert "reconnect-loop" not in _loop_codes(1000, True, [0, 2, 4])  # the client was done each time
    assert "reconnect-loop" not in _loop_codes(1011, False, [0, 0.1, 0.2], length=3)  # overlapping tabs
    assert "reconnect-loop" in _loop_codes(1011, False, [0, 2, 4])


def test_a_later_loop_to_the_same_place_is_a_new_loop():
    """Reported once while it goes on; after a pause, or a healthy connection, looping again is news."""
    looping = [0, 2, 4, 6, 8, 10]
    assert _loop_codes(1011, False, looping).count("reconnect-loop") == 1
    assert _loop_codes(1011, False, looping + [7200, 7202, 7204]).count("reconnect-loop") == 2
    for t in range(0, 200, 2):  # one long loop, minutes past the window: still one
        looping.append(12 + t)
    assert _loop_codes(1011, False, looping).count("reconnect-loop") == 1


def test_findings_reported_once():
    c = Conv().join(reply=None)
    d = Diagnoser()
    assert [f.code for f in d.check(c.s, T0 + 20)] == ["join-timeout"]
    assert d.check(c.s, T0 + 30) == []


def test_secrets_redacted_in_evidence():
    c = Conv(
        url="http://w/realtime/v1/websocket?apikey=sb_secret_abcdefgh123",
        upstream=None,
        status=401,
        body=b'{"error":"API key is missing"}',
    )
    c.feed(Frame(True, False, b"{}", T0))
    d = Diagnoser()
    assert all("sb_secret_abcdefgh123" not in f.evidence for f in d.check(c.s, T0 + 1))


def test_bare_403_with_a_supported_vsn_points_at_an_older_realtime():
    """Before d27b694c (2026-07-17) every refused upgrade was Phoenix's 403 with an empty body; since, only
    an unsupported vsn gets one. supabase/cli#4097 pasted `HTTP/1.1 403 Forbidden` for
    http://127.0.0.1:54321/realtime/v1/websocket (no vsn: 1.0.0, supported)."""
    c = Conv(url="http://127.0.0.1:54321/realtime/v1/websocket", upstream=None, status=403, body=b"")
    [f] = [f for f in Diagnoser().end(c.close(None, "", None, t=1).s) if f.code == "upgrade-rejected"]
    assert "older than 2026-07-17" in f.evidence and "log" in f.evidence
    # the curl had no apikey; the host is an IP: Realtime cannot take a tenant from it
    assert f.confidence == "candidates" and f.candidates[:2] == ("apikey-missing", "tenant-not-found")
    c = Conv(url="http://w/realtime/v1/websocket?apikey=k&vsn=3.0.0", upstream=None, status=403, body=b"")
    [f] = [f for f in Diagnoser().end(c.close(None, "", None, t=1).s) if f.code == "upgrade-rejected"]
    assert "refuses the vsn '3.0.0'" in f.evidence


@pytest.mark.parametrize(
    "reply, code",
    [
        # supabase/realtime#1111, the frame as pasted (a 2024 server: no "Unauthorized: " code yet)
        (
            (
                '{"ref":"1","event":"phx_reply","payload":{"status":"error","response":{"reason":"You do not have '
                'permissions to read from this Topic"}},"topic":"realtime:19a51893-6168-4b2d-91a6-47b0db323f64"}'
            ),
            "join-unauthorized",
        ),
        # supabase/realtime#843: a reason from before 2024-05-09
        (
            (
                '{"ref":"1","event":"phx_reply","payload":{"status":"error","response":{"reason":"{:error, '
                ':too_many_channels}"}},"topic":"realtime:19a51893-6168-4b2d-91a6-47b0db323f64"}'
            ),
            "rate-limited",
        ),
        # supabase/supabase-flutter#1311
        (
            (
                '{"ref":"1","event":"phx_reply","payload":{"status":"error","response":{"reason":"PrivateOnly: This '
                'project only allows private channels"}},"topic":"realtime:19a51893-6168-4b2d-91a6-47b0db323f64"}'
            ),
            "join-unauthorized",
        ),
    ],
)
def test_real_users_join_replies(reply, code):
    c = Conv(url="http://w/realtime/v1/websocket?apikey=k&vsn=1.0.0", upstream=None)
    c.feed(
        Frame(
            True,
            False,
            json.dumps(
                {
                    "topic": "realtime:19a51893-6168-4b2d-91a6-47b0db323f64",
                    "event": "phx_join",
                    "payload": {"config": {}},
                    "ref": "1",
                    "join_ref": None,
                }
            ).encode(),
            T0 + 0.1,
        ),
        Frame(False, False, reply.encode(), T0 + 5.2),
    )
    codes = c.codes()
    assert code in codes and "join-error" not in codes, codes


def test_sparse_capture_end_read_from_what_came_next():
    """A HAR keeps no close frame (Closed recorded=False); the next connection to the same place, joining
    the same channels, says how this one ended."""
    # the client's last heartbeat went unanswered and it connected again: a heartbeat timeout
    c = Conv().join().heartbeats([25, 50]).heartbeats([75], answered=False)
    c.s.reopened_at = T0 + 100.5
    c.feed(Closed(None, "", None, T0 + 100, recorded=False))
    [f] = [f for f in Diagnoser().end(c.s) if f.code == "heartbeat-timeout"]
    assert f.confidence == "likely" and "connected again" in f.evidence
    # every heartbeat answered, a reconnect 1 s after the end: the other side ended it
    c = Conv().join().heartbeats([25, 50])
    c.s.reopened_at = T0 + 61
    c.feed(Closed(None, "", None, T0 + 60, recorded=False))
    codes = [f.code for f in Diagnoser().end(c.s)]
    assert "server-close" in codes and "heartbeat-timeout" not in codes
    # no next connection: nothing is made up
    c = Conv().join().heartbeats([25, 50]).feed(Closed(None, "", None, T0 + 60, recorded=False))
    assert [f.code for f in Diagnoser().end(c.s) if f.severity != "info"] == []


# Server timers as facts (docs/sources.md, "Server timers"): Realtime's endpoint sets no WebSocket timeout,
# so Phoenix's 60 s default closes a socket that receives nothing for that long.


def sleep_then_wake() -> Conv:
    """A laptop that slept: realtime-js heartbeats every 25 s, then 10 minutes of nothing, then a heartbeat
    and a rejoin that nobody answers (the server closed the socket 60 s into the silence)."""
    c = Conv().join().heartbeats([25, 50])
    c.heartbeats([650], answered=False)
    c.feed(v2("2", "2", "realtime:r", "phx_join", {}, client=True, t=651))
    return c


def test_a_client_silent_past_the_servers_idle_timeout_lost_its_socket():
    c = sleep_then_wake()
    d = Diagnoser(Timers())
    found = {f.code: f for f in d.check(c.s, T0 + 700, final=False)}
    assert "server-idle-close" in found
    assert "the client sent nothing for 600.0 s" in found["server-idle-close"].evidence
    assert found["server-idle-close"].confidence == "certain"


def test_a_silence_the_server_answered_after_was_no_idle_close():
    """A server frame after the 60 s would have passed says the socket lived (a hop kept it, or the
    capture's clock is off): no idle close is claimed."""
    c = Conv().join().heartbeats([25, 50])
    c.heartbeats([120])  # answered
    assert "server-idle-close" not in c.codes(now=T0 + 130)


def test_one_long_gap_is_no_cadence():
    """Two heartbeats 70 s apart do not make a client that beats every 70 s: the cadence needs two
    observations that agree (two gaps, or a gap and the client's known default), else it is the known
    default of the client (realtime-js: 25 s), against which 70 s is a gap."""
    hb = Heartbeats()
    hb.sent_one(None, T0 + 1)
    hb.sent_one(None, T0 + 71)
    assert hb.interval(25.0) is None
    hb.sent_one(None, T0 + 96)  # a second gap like the default: the cadence shows, 70 s was a gap
    assert hb.interval(25.0) == 25.0
    # realtime-js's first heartbeat comes one interval after the upgrade: that is its first gap
    c = Conv().join().heartbeats([25, 95])
    assert c.s.heartbeat_interval(None) == (pytest.approx(25, abs=0.1), "its own heartbeats")
    assert "heartbeat-gap" in c.codes(now=T0 + 96)


def test_two_gaps_that_agree_are_the_cadence():
    c = Conv().join().heartbeats([30, 60, 90.5])
    assert c.s.heartbeats.interval() == 30.0  # the median of the upgrade to 30, 30 to 60 and 60 to 90.5
    assert c.s.heartbeat_interval(None) == (30.0, "its own heartbeats")


def test_errors_inside_a_database_change_are_read():
    """Realtime of 2021-2022 (realtime-js 1.x) put a change's errors in its payload, postgres_changes puts
    them in `data`: both are read, with what realtime.apply_rls meant by them."""
    old = Conv(url="http://worker.test/realtime/v1/websocket?apikey=k&vsn=1.0.0")
    old.feed(
        Frame(
            False,
            False,
            json.dumps(
                {
                    "topic": "realtime:public:todos",
                    "event": "UPDATE",
                    "payload": {
                        "columns": [],
                        "commit_timestamp": "2021-12-01T10:00:00Z",
                        "errors": ["Error 413: Payload Too Large"],
                        "old_record": {},
                        "record": {},
                        "schema": "public",
                        "table": "todos",
                        "type": "UPDATE",
                    },
                    "ref": None,
                }
            ).encode(),
            T0 + 5,
        )
    )
    d = Diagnoser(Timers())
    found = {f.code: f for f in d.check(old.s, T0 + 6, final=False)}
    assert '"Error 413: Payload Too Large"' in found["postgres-changes-error"].evidence
    assert "max_record_bytes" in found["postgres-changes-error"].evidence

    new = Conv().join("realtime:todos")
    data = {
        "type": "INSERT",
        "schema": "public",
        "table": "t",
        "errors": ["Error 400: Bad Request, no primary key"],
    }
    new.feed(
        v2(None, None, "realtime:todos", "postgres_changes", {"data": data, "ids": [1]}, client=False, t=7)
    )
    found = {f.code: f for f in Diagnoser(Timers()).check(new.s, T0 + 8, final=False)}
    assert "without a primary key" in found["postgres-changes-error"].evidence


@pytest.mark.parametrize(
    ("error", "means"),
    [
        # Chromium's net error names (net/base/net_error_list.h), as Chrome writes them in a HAR's `_error`
        ("net::ERR_CONNECTION_REFUSED", "nothing listens at that host and port"),
        ("net::ERR_NAME_NOT_RESOLVED", "the host name does not resolve"),
        ("net::ERR_CONNECTION_TIMED_OUT", "nothing answered at all"),
        ("net::ERR_CONNECTION_RESET", "reset before the upgrade was answered"),
    ],
)
def test_a_socket_that_never_connected_says_what_the_browser_said(error, means):
    """A WebSocket the browser failed before any answer (a HAR entry with status 0 and `_error`): the
    first finding is connect-failed with the browser's error and what it means, not unexplained-failure."""
    c = Conv(upstream=None, status=None).feed(Closed(None, "", None, T0 + 0.3, error))
    found = Diagnoser(Timers()).end(c.s)
    assert found[0].code == "connect-failed" and error in found[0].evidence and means in found[0].evidence
    assert "unexplained-failure" not in [f.code for f in found]


def test_a_hop_that_could_not_reach_upstream_is_not_a_failed_connect():
    c = Conv(status=None).feed(
        Hop(HopKind.UPSTREAM_UNREACHABLE, "Connection refused", T0 + 0.3),
        Closed(None, "", None, T0 + 0.3, "Connection refused"),
    )
    codes = [f.code for f in Diagnoser(Timers()).end(c.s)]
    assert codes[0] == "upstream-unreachable" and "connect-failed" not in codes


def test_after_a_laptop_slept_the_gap_is_the_root_and_the_chain_says_so():
    """Issue 21's case: heartbeats every 25 s, ten minutes of sleep, then a heartbeat and a rejoin nobody
    answers. The first finding is the gap that began it, not the join timeout that came last; each symptom
    carries its chain in JSON, root first."""
    from rtproxy_core.report import connection_json

    c = sleep_then_wake()
    c.s.findings = Diagnoser(Timers()).check(c.s, T0 + 700, final=False)
    found = connection_json(c.s)["findings"]
    codes = [f["code"] for f in found]
    assert codes[0] == "heartbeat-gap" and "server-idle-close" in codes and "join-timeout" in codes
    by_code = {f["code"]: f for f in found}
    assert by_code["server-idle-close"]["chain"] == ["heartbeat-gap"]
    assert by_code["join-timeout"]["chain"] == ["heartbeat-gap", "server-idle-close"]
    assert by_code["heartbeat-gap"]["began"] == T0 + 50 < by_code["server-idle-close"]["began"] == T0 + 110


def test_apikey_missing_says_where_the_apikey_was_lost():
    """Live, the hop's upstream URL shows it dropped the key; in a capture of the client's side, the
    client's URL has one that did not reach Realtime; with neither, the client sent none."""

    def evidence(url: str, upstream: str | None) -> str:
        c = Conv(url=url, upstream=upstream, status=401, body=b'{"error":"API key is missing"}')
        [f] = [f for f in Diagnoser(Timers()).check(c.s, T0 + 100, final=False) if f.code == "apikey-missing"]
        return f.evidence

    with_key = "http://w/realtime/v1/websocket?apikey=k&vsn=2.0.0"
    assert evidence(with_key, "http://up/realtime/v1/websocket").endswith(
        "the client sent one but the upstream URL has none"
    )
    assert evidence(with_key, None).endswith(
        "the client's request has one, so a hop between it and Realtime dropped it"
    )
    assert evidence("http://w/realtime/v1/websocket?vsn=2.0.0", None).endswith(
        "no apikey query parameter and no x-api-key header"
    )


def test_a_join_an_rt_fault_dropped_is_not_client_silence():
    """rt_fault=drop-join takes the client's join before the upstream sees it (a Hop with the frame): the
    client did send, so the socket that then carried nothing is join-dropped-by-proxy, not client-silent."""
    join = v2("1", "1", "realtime:r", "phx_join", {}, client=True, t=0.05)
    c = Conv().feed(Hop(HopKind.FAULT, "dropped phx_join for realtime:r", join.time, join))
    c.close(1000, "", by_client=True, t=30.0)
    codes = c.codes()
    assert "client-silent" not in codes and "join-dropped-by-proxy" in codes, codes


def test_blob_finding_names_the_lost_broadcast():
    conv = CASES["binary-delivered-as-blob"]()
    found = [
        f
        for f in Diagnoser(Timers()).check(conv.s, T0 + 100, final=False)
        if f.code == "binary-delivered-as-blob"
    ]
    assert [f.topic for f in found] == ["realtime:r"]
    assert "as a Blob" in found[0].evidence and '"cursor"' in found[0].evidence, found[0].evidence


def test_no_blob_finding_for_arraybuffer_delivery():
    conv = (
        Conv()
        .join()
        .feed(
            PageEvent("socket", 1, {"url": URL, "binaryType": "blob"}, T0),
            kind4("realtime:r", "cursor", {"x": 1}, t=1),
            PageEvent("message", 1, {"type": "ArrayBuffer", "binaryType": "arraybuffer"}, T0 + 1),
        )
    )
    assert "binary-delivered-as-blob" not in conv.codes()


def found_of(conv: Conv, code: str) -> list:
    return [f for f in Diagnoser(Timers()).check(conv.s, T0 + 100, final=False) if f.code == code]


def test_send_on_closed_socket_counts_the_lost_sends():
    found = found_of(CASES["send-on-closed-socket"](), "send-on-closed-socket")
    assert [f.topic for f in found] == [None]
    assert "sent 2 frame(s)" in found[0].evidence and "CLOSED ×2" in found[0].evidence, found[0].evidence
    assert "1006" in found[0].evidence and found[0].anchor == T0 + 6, found[0]


def test_no_send_on_closed_socket_for_a_send_while_connecting():
    conv = (
        Conv()
        .join()
        .feed(
            PageEvent("socket", 1, {"url": URL, "binaryType": "arraybuffer"}, T0),
            PageEvent("send-not-open", 1, {"readyState": 0, "type": "string"}, T0 + 1),
        )
    )
    assert "send-on-closed-socket" not in conv.codes()


def test_handler_threw_quotes_the_error_redacted():
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"
    conv = (
        Conv()
        .join()
        .feed(
            PageEvent("socket", 1, {"url": URL, "binaryType": "arraybuffer"}, T0),
            PageEvent("threw", 1, {"type": "string", "error": f"Error: bad token {jwt}"}, T0 + 1),
            PageEvent("threw", 1, {"type": "ArrayBuffer", "error": f"Error: bad token {jwt}"}, T0 + 2),
        )
    )
    found = found_of(conv, "handler-threw")
    assert len(found) == 1 and "threw on 2 frame(s)" in found[0].evidence, found
    assert "Error: bad token" in found[0].evidence and jwt not in found[0].evidence, found[0].evidence
    assert found[0].anchor == T0 + 1


def test_heartbeat_gap_is_certain_when_the_page_was_hidden():
    conv = Conv().join().heartbeats([1, 2, 3, 20, 21])
    conv.feed(
        PageEvent("visibility", None, {"state": "hidden"}, T0 + 4),
        PageEvent("visibility", None, {"state": "visible"}, T0 + 19),
    )
    (found,) = found_of(conv, "heartbeat-gap")
    assert found.confidence == Confidence.CERTAIN, found
    assert (
        "the page's probe saw the tab hidden from 1.0 s into the gap until 16.0 s into the gap"
        in found.evidence
    )
    assert "a hidden tab's timers are throttled" in found.evidence, found.evidence


def test_heartbeat_gap_stays_likely_without_the_page_or_with_it_visible():
    (wire_only,) = found_of(Conv().join().heartbeats([1, 2, 3, 20, 21]), "heartbeat-gap")
    assert wire_only.confidence == Confidence.LIKELY and "page" not in wire_only.evidence, wire_only
    conv = Conv().join().heartbeats([1, 2, 3, 20, 21])
    # hidden and visible again before the gap: the tab was visible through it
    conv.feed(
        PageEvent("socket", 1, {"url": URL, "binaryType": "arraybuffer"}, T0),
        PageEvent("visibility", None, {"state": "hidden"}, T0 + 1.5),
        PageEvent("visibility", None, {"state": "visible"}, T0 + 2),
    )
    (found,) = found_of(conv, "heartbeat-gap")
    assert found.confidence == Confidence.LIKELY, found
    assert "neither hidden, frozen nor offline" in found.evidence, found.evidence


def test_heartbeat_gap_while_frozen_is_certain():
    conv = (
        Conv()
        .join()
        .heartbeats([1, 2, 3, 20, 21])
        .feed(PageEvent("freeze", None, {}, T0 + 3.5), PageEvent("resume", None, {}, T0 + 19.9))
    )
    (found,) = found_of(conv, "heartbeat-gap")
    assert found.confidence == Confidence.CERTAIN and "frozen from 0.5 s into the gap" in found.evidence, (
        found
    )


def offline_drop(online_at: float | None = T0 + 12) -> Conv:
    conv = (
        Conv()
        .join()
        .heartbeats([1, 2, 3, 4])
        .feed(
            PageEvent("socket", 1, {"url": URL, "binaryType": "arraybuffer"}, T0),
            PageEvent("offline", None, {}, T0 + 4.5),
            PageEvent("close", 1, {"code": 1006, "reason": "", "wasClean": False}, T0 + 4.6),
        )
    )
    if online_at is not None:
        conv.feed(PageEvent("online", None, {}, online_at))
    return conv.feed(Closed(None, "", None, T0 + 4.6, ended_first="client"))


def test_dropped_while_offline_names_the_offline_time_and_the_close():
    conv = offline_drop()
    (found,) = found_of(conv, "dropped-while-offline")
    assert found.anchor == T0 + 4.5 and found.confidence == Confidence.CERTAIN, found
    assert "went offline (the browser's `offline` event) 0.1 s before its socket closed" in found.evidence
    assert "1006, wasClean=False" in found.evidence and "back online 7.5 s after" in found.evidence
    assert "without a close frame, the client's side first" in found.evidence, found.evidence
    assert {"dropped-while-offline", "client-gone"} <= set(offline_drop().codes())


def test_no_offline_finding_for_a_clean_close_or_a_page_online_at_the_close():
    clean = (
        Conv()
        .join()
        .feed(
            PageEvent("socket", 1, {"url": URL, "binaryType": "arraybuffer"}, T0),
            PageEvent("offline", None, {}, T0 + 4.5),
            PageEvent("close", 1, {"code": 1000, "reason": "", "wasClean": True}, T0 + 4.6),
            Closed(1000, "", True, T0 + 4.6),
        )
    )
    assert "dropped-while-offline" not in clean.codes()
    back = (
        Conv()
        .join()
        .feed(
            PageEvent("socket", 1, {"url": URL, "binaryType": "arraybuffer"}, T0),
            PageEvent("offline", None, {}, T0 + 1),
            PageEvent("online", None, {}, T0 + 2),
            Closed(None, "", None, T0 + 8, ended_first="server"),
        )
    )
    codes = back.codes()
    assert "dropped-while-offline" not in codes and "proxy-idle-timeout" in codes, codes


def test_a_server_side_drop_while_offline_follows_the_offline():
    conv = (
        Conv()
        .join()
        .feed(
            PageEvent("socket", 1, {"url": URL, "binaryType": "arraybuffer"}, T0),
            PageEvent("offline", None, {}, T0 + 0.5),
            Closed(None, "", None, T0 + 0.8, ended_first="server"),
        )
    )
    by = {f.code: f for f in link(Diagnoser(Timers()).end(conv.s))}
    assert by["server-gone"].follows == "dropped-while-offline", by


def test_a_heartbeat_timeout_while_offline_is_the_network():
    # Chromium offline keeps the socket and stops its frames: the heartbeat's reply never comes and
    # realtime-js closes 1000 "heartbeat timeout" (@supabase/phoenix socket.js heartbeatTimeout), the close
    # frame crossing once the page is back online.
    conv = (
        Conv()
        .join()
        .feed(
            PageEvent("socket", 1, {"url": URL, "binaryType": "arraybuffer"}, T0),
            PageEvent("offline", None, {}, T0 + 1),
            v2(None, "hb", "phoenix", "heartbeat", {}, client=True, t=1.2),
            PageEvent("online", None, {}, T0 + 2.5),
            Closed(1000, "heartbeat timeout", True, T0 + 2.6),
            PageEvent("close", 1, {"code": 1000, "reason": "heartbeat timeout", "wasClean": True}, T0 + 2.7),
        )
    )
    by = {f.code: f for f in link(Diagnoser(Timers()).end(conv.s))}
    found = by["dropped-while-offline"]
    assert "offline (the browser's `offline` event) 1.6 s before its socket closed" in found.evidence, found
    assert (
        "crossed the wire 0.2 s after it went offline" in found.evidence
        and "back online 1.5 s" in found.evidence
    )
    assert by["heartbeat-timeout"].follows == "dropped-while-offline", by
    # The same close with the page online throughout is the hop's (heartbeat-timeout, no offline finding).
    online = (
        Conv()
        .join()
        .feed(
            PageEvent("socket", 1, {"url": URL, "binaryType": "arraybuffer"}, T0),
            v2(None, "hb", "phoenix", "heartbeat", {}, client=True, t=1.2),
            Closed(1000, "heartbeat timeout", True, T0 + 2.6),
        )
    )
    assert online.codes() == ["heartbeat-timeout"]
