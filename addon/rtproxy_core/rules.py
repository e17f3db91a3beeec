"""Diagnosis rules: why a channel ended in CHANNEL_ERROR, TIMED_OUT or CLOSED, or why data went missing.

Each rule is one small unit: a stable kebab-case code, a severity, the client-visible outcome it
explains, the fix, and a function that looks at a Session and yields (topic, evidence) when its evidence
is there. Rules are listed most decisive first (causes before the symptoms they produce); findings are
reported in that order. Sources: failure-catalog.md A.1-A.7, realtime-protocol.md §4-§7.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .session import CLOSED, ERRORED, JOINING, LEAVING, Channel, Session

ERROR, WARNING, INFO = "error", "warning", "info"
SEVERITY_ORDER = {ERROR: 0, WARNING: 1, INFO: 2}

Evidence = Iterator[tuple[str | None, str]]  # (topic or None for the connection, evidence text)


@dataclass(frozen=True, slots=True)
class Timers:
    """Realtime's timers as the rules expect them (seconds). Shorten them where a test setup does."""

    join: float = 10.0  # client join/push timeout
    heartbeat: float = 25.0  # client heartbeat interval
    idle: float = 60.0  # server closes after this long without client frames

    @classmethod
    def parse(cls, text: str) -> "Timers":
        """'join=10,heartbeat=25,idle=60' (seconds; any subset). Raises ValueError with the reason."""
        values: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, eq, raw = part.partition("=")
            if not eq or name.strip() not in cls.__dataclass_fields__:
                raise ValueError(f"expected join=S,heartbeat=S,idle=S, got {part!r}")
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"{name.strip()} must be a number of seconds, got {raw!r}") from None
            if not value > 0:
                raise ValueError(f"{name.strip()} must be positive, got {raw!r}")
            values[name.strip()] = value
        return cls(**values)

    def __str__(self) -> str:
        return f"join={self.join:g},heartbeat={self.heartbeat:g},idle={self.idle:g}"


@dataclass(frozen=True, slots=True)
class Check:
    """What a rule may look at besides the session."""

    now: float
    final: bool  # the connection has ended (or the capture has)
    timers: Timers


@dataclass(frozen=True, slots=True)
class Rule:
    code: str
    severity: str
    explains: str
    fix: str
    evidence: Callable[[Session, Check], Evidence]


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    severity: str
    explains: str
    topic: str | None
    evidence: str
    fix: str
    conn: str = ""
    time: float = 0.0

    def as_dict(self) -> dict:
        return {"code": self.code, "severity": self.severity, "topic": self.topic, "explains": self.explains,
                "evidence": self.evidence, "fix": self.fix}


RULES: list[Rule] = []


def rule(code: str, severity: str, explains: str, fix: str):
    def register(fn: Callable[[Session, Check], Evidence]) -> Callable[[Session, Check], Evidence]:
        RULES.append(Rule(code, severity, explains, fix, fn))
        return fn
    return register


# ------------------------------------------------------------------------------------- helpers

def rejection(s: Session) -> tuple[int, str, str] | None:
    """(status, error text, who answered) of a failed upgrade: the client's answer, else the upstream's
    answer to the hop (relay)."""
    if s.status is not None and s.status != 101:
        return s.status, s.rejection or "", "the upgrade"
    if s.upstream_status is not None and s.upstream_status != 101:
        return s.upstream_status, s.upstream_rejection or "", "the hop's upstream upgrade"
    return None


def join_reasons(s: Session) -> Iterator[tuple[Channel, str]]:
    for ch in s.channels.values():
        if ch.reason and ch.joined_at is None and ch.state == ERRORED and not ch.reason.startswith("socket"):
            yield ch, ch.reason


def system_errors(ch: Channel, extension: str) -> list[str]:
    return [m.message for m in ch.system if m.status == "error" and m.extension == extension]


def classify_reason(reason: str) -> str:
    """Which finding a join-error / system-error reason belongs to."""
    r = reason.lower()
    if "token has expired" in r or "expired" in r and "token" in r:
        return "token-expired"
    if any(k in r for k in ("invalidjwttoken", "malformedjwt", "jwtsignature", "jwtsigner", "not a valid jwt",
                            "are required in jwt", "jwt signature", "jwt signer")):
        return "token-invalid"
    if "ratelimitreached" in r or "too many" in r or "rate limit" in r:
        return "rate-limited"
    if "realtimedisabledfortenant" in r or "realtime disabled" in r or "realtime was disabled" in r:
        return "realtime-disabled"
    if "tenantnotfound" in r or "tenant not found" in r:
        return "tenant-not-found"
    if r.startswith("unauthorized") or r.startswith("privateonly") or "permission" in r:
        return "join-unauthorized"
    return "join-error"


def _reasons_of(s: Session, code: str) -> Evidence:
    """Evidence for a reason class, wherever the server said it: handshake body, join reply, system."""
    rej = rejection(s)
    if rej and rej[1] and classify_reason(rej[1]) == code:
        yield None, f"{rej[2]} was answered {rej[0]} {{\"error\": \"{rej[1]}\"}}"
    for ch, reason in join_reasons(s):
        if classify_reason(reason) == code:
            yield ch.topic, f"phx_join answered status error: \"{reason}\""
    for ch in s.channels.values():
        for msg in system_errors(ch, "system"):
            if classify_reason(msg) == code:
                yield ch.topic, f"server pushed system error \"{msg}\"" + (
                    " then phx_close" if ch.closed_by == "server" else "")


# ------------------------------------------------------------------------------------- rules
# Handshake-level causes first: nothing else can work until the upgrade does.

@rule("apikey-missing", ERROR, "CHANNEL_ERROR in a reconnect loop",
      "Forward the query string verbatim (in a Worker: url.search). Browsers can only send the apikey in "
      "the query; Realtime answers 401 without it.")
def _apikey_missing(s: Session, c: Check) -> Evidence:
    rej = rejection(s)
    if rej and rej[0] == 401 and "api key is missing" in rej[1].lower():
        where = ("the client sent one but the upstream URL has none" if s.apikey and s.upstream_apikey is False
                 else "no apikey query parameter and no x-api-key header")
        yield None, f"{rej[2]} was answered 401 {{\"error\": \"{rej[1]}\"}}: {where}"


@rule("vsn-missing", ERROR, "TIMED_OUT on every join, then heartbeat timeout and reconnect",
      "Keep the vsn query parameter when rewriting the URL (forward url.search), or pin the client to "
      "vsn 1.0.0. Without vsn the server speaks 1.0.0 and drops the client's 2.0.0 frames.")
def _vsn_missing(s: Session, c: Check) -> Evidence:
    if (s.client_vsn or "").startswith("2.") and s.upstream_url is not None and s.upstream_vsn is None:
        dropped = f"; {s.shape_mismatches} client frame(s) in 2.0.0 shape went unanswered" \
            if s.shape_mismatches else ""
        yield None, f"the client asked for vsn {s.client_vsn}; the upstream URL has no vsn, so the server " \
                    f"negotiates 1.0.0{dropped}"


@rule("tenant-not-found", ERROR, "CHANNEL_ERROR (socket closed: 1006)",
      "Realtime takes the tenant from the first label of the Host header: forward a Host of "
      "<ref>.supabase.co (or your tenant's name when self-hosting), not the Worker's or a service name.")
def _tenant_not_found(s: Session, c: Check) -> Evidence:
    yield from _reasons_of(s, "tenant-not-found")


@rule("path-wrong", ERROR, "CHANNEL_ERROR (socket closed: 1006) in a reconnect loop",
      "Map the path 1:1: hosted Realtime is /realtime/v1/websocket, a self-hosted server /socket/websocket.")
def _path_wrong(s: Session, c: Check) -> Evidence:
    rej = rejection(s)
    if rej and rej[0] == 404 and "tenant not found" not in rej[1].lower():
        path = (s.upstream_url or s.url or "").split("?")[0]
        yield None, f"{rej[2]} was answered 404 {rej[1] or '(no JSON error)'} for {path}"


@rule("token-expired", ERROR, "CHANNEL_ERROR, or CLOSED when a running channel's token expires",
      "Refresh the session before (re)connecting and call setAuth with the fresh JWT; a stale token after "
      "sleep or offline is the usual cause.")
def _token_expired(s: Session, c: Check) -> Evidence:
    yield from _reasons_of(s, "token-expired")


@rule("token-invalid", ERROR, "CHANNEL_ERROR",
      "Send a JWT signed with the project's JWT secret/JWKS that carries `role` and `exp`; third-party auth "
      "needs its JWKS reachable by Realtime.")
def _token_invalid(s: Session, c: Check) -> Evidence:
    yield from _reasons_of(s, "token-invalid")


@rule("rate-limited", ERROR, "CHANNEL_ERROR or CLOSED, reconnect storms",
      "Stay under the project's Realtime quotas (connections, joins/s, channels per connection, messages/s); "
      "look for subscribe loops (useEffect without cleanup) and remove unused channels.")
def _rate_limited(s: Session, c: Check) -> Evidence:
    yield from _reasons_of(s, "rate-limited")


@rule("realtime-disabled", ERROR, "CHANNEL_ERROR (socket closed: 1006)",
      "Realtime is disabled or the project is suspended: enable Realtime / resolve the suspension in the "
      "Supabase dashboard.")
def _realtime_disabled(s: Session, c: Check) -> Evidence:
    yield from _reasons_of(s, "realtime-disabled")


@rule("worker-exception", ERROR, "CHANNEL_ERROR (socket closed: 1006) in a reconnect loop",
      "The hop's code threw while handling the upgrade: fix the exception (check `wrangler tail`); a Worker "
      "proxy should pass the upgrade through with fetch(new Request(upstreamUrl, request)).")
def _worker_exception(s: Session, c: Check) -> Evidence:
    rej = rejection(s)
    text = rej[1].lower() if rej else ""
    if rej and rej[0] == 500 and ("1101" in text or "worker threw exception" in text or "handler failed" in text):
        yield None, f"{rej[2]} was answered 500 ({rej[1][:120]}) instead of 101"


@rule("upgrade-rejected", ERROR, "CHANNEL_ERROR (socket closed: 1006) in a reconnect loop",
      "The answer was not an upgrade: make the hop forward `Upgrade: websocket` and `Connection: upgrade` "
      "over HTTP/1.1 (nginx: proxy_http_version 1.1 and both headers), keep request headers small (cookies), "
      "and send a supported vsn.")
def _upgrade_rejected(s: Session, c: Check) -> Evidence:
    rej = rejection(s)
    if rej is None or rej[0] in (401, 404, 429) or (rej[1] and classify_reason(rej[1]) != "join-error"):
        return
    if rej[0] == 500 and any(k in rej[1].lower() for k in ("1101", "worker threw exception", "handler failed")):
        return
    status, text, who = rej
    if status == 426 and text == "Expected WebSocket":
        why = ("the design's Worker reads request.webSocket, which Workers' Request does not have, and returns "
               "426 from its own guard")
    elif status == 403 and not text:
        why = "403 with an empty body is Phoenix refusing an unsupported vsn"
    elif status == 431:
        why = "request headers too large (usually chunked sb-…-auth-token cookies)"
    else:
        why = text or "no body"
    yield None, f"{who} was answered {status} instead of 101: {why}"


@rule("upstream-unreachable", ERROR, "CHANNEL_ERROR (socket closed: 1006)",
      "The hop could not connect to the Supabase URL: check its host name, port, TLS and that it is "
      "reachable from where the hop runs.")
def _upstream_unreachable(s: Session, c: Check) -> Evidence:
    for hop in s.hops:
        if hop.what in ("upstream-unreachable", "upstream-failed"):
            yield None, f"connecting upstream failed: {hop.detail}"
            return


@rule("early-101", ERROR, "open then close: CHANNEL_ERROR with the real reason hidden from the browser",
      "Open the upstream first and answer the client only with the upstream's answer (pass-through "
      "fetch(new Request(upstreamUrl, request))): then a 401/404/429 reaches the client with its JSON body.")
def _early_101(s: Session, c: Check) -> Evidence:
    failed = s.upstream_status not in (None, 101) or any(h.what == "upstream-failed" for h in s.hops)
    if s.status == 101 and failed:
        up = (f"{s.upstream_status} {s.upstream_rejection or ''}".strip() if s.upstream_status
              else "a connection error")
        yield None, f"the hop answered 101 to the client before its upstream answered; the upstream then " \
                    f"answered {up}"


# Frame-level causes.

@rule("join-dropped-by-proxy", ERROR, "TIMED_OUT on the first subscribe, then a rejoin",
      "Queue client frames until the upstream leg is open (or open the upstream before answering 101): "
      "clients send phx_join the moment the socket opens.")
def _join_dropped(s: Session, c: Check) -> Evidence:
    why = next((h.detail for h in s.hops if h.frame is not None and h.frame.from_client), "")
    for ch in s.channels.values():
        if ch.join_dropped:
            yield ch.topic, f"the hop dropped {ch.join_dropped} phx_join frame(s) for {ch.topic}" \
                            + (f" ({why})" if why else "") + "; the server never saw the join"


@rule("serializer-mismatch", ERROR, "TIMED_OUT (joins never answered)",
      "Client and server disagree on vsn: make the URL's vsn match what the client speaks (realtime-js "
      "≥2.91 speaks 2.0.0 arrays and binary), or pin the client's vsn.")
def _serializer_mismatch(s: Session, c: Check) -> Evidence:
    if s.shape_mismatches and not ((s.client_vsn or "").startswith("2.") and s.upstream_vsn is None
                                   and s.upstream_url is not None):
        yield None, f"{s.shape_mismatches} client frame(s) not in the shape of the negotiated vsn {s.vsn}; " \
                    "the server drops them without a reply"


@rule("binary-on-v1", WARNING, "silent loss of broadcasts",
      "Binary frames exist only in vsn 2.0.0: connect with vsn=2.0.0, or send JSON broadcasts.")
def _binary_on_v1(s: Session, c: Check) -> Evidence:
    if s.binary_on_v1:
        yield None, f"{s.binary_on_v1} binary frame(s) on a vsn {s.vsn} connection; the server cannot decode them"


@rule("binary-as-text", ERROR, "silent loss of broadcasts (vsn 2.0.0)",
      "Relay binary as binary: set binaryType = 'arraybuffer' on both legs of a Worker relay before "
      "accept() (or add the no_websocket_standard_binary_type flag); a Blob passed to send() is stringified.")
def _binary_as_text(s: Session, c: Check) -> Evidence:
    n = s.hop_counts.get("binary-as-text", 0)
    if n:
        yield None, f"the hop relayed {n} binary frame(s) as the text '[object Blob]'"


@rule("join-unauthorized", ERROR, "CHANNEL_ERROR",
      "Private channel or RLS denied the join: add a SELECT policy on realtime.messages for the role, call "
      "setAuth with the user's JWT before subscribe, and set config.private to match the project.")
def _join_unauthorized(s: Session, c: Check) -> Evidence:
    yield from _reasons_of(s, "join-unauthorized")


@rule("join-error", ERROR, "CHANNEL_ERROR",
      "The server refused the join with the quoted reason; fix what it names (database connection, "
      "topic name, replay parameters).")
def _join_error(s: Session, c: Check) -> Evidence:
    for ch, reason in join_reasons(s):
        if classify_reason(reason) == "join-error":
            yield ch.topic, f"phx_join answered status error: \"{reason}\""


@rule("binding-mismatch", ERROR, "CHANNEL_ERROR (mismatch between server and client bindings)",
      "The server's postgres_changes list must match the client's .on() filters one by one: register all "
      "listeners before subscribe(), keep client and server versions current, check the table's Realtime.")
def _binding_mismatch(s: Session, c: Check) -> Evidence:
    keys = ("event", "schema", "table", "filter")
    for ch in s.channels.values():
        if ch.joined_at is None or not ch.bindings:
            continue
        server = ch.server_bindings
        for i, want in enumerate(ch.bindings):
            got = server[i] if i < len(server) else None
            if got is None or any((want.get(k) or None) != (got.get(k) or None) for k in keys):
                yield ch.topic, f"binding {i} requested {_pick(want, keys)}, server answered " \
                                f"{_pick(got, keys) if got else 'nothing'}"
                break


def _pick(d: dict, keys: tuple[str, ...]) -> str:
    return "{" + ", ".join(f"{k}: {d[k]}" for k in keys if d.get(k)) + "}"


@rule("postgres-changes-error", ERROR, "SUBSCRIBED, but no database changes ever arrive",
      "The server could not subscribe to the table: add it to the supabase_realtime publication, check the "
      "schema/table/filter names and RLS for the role.")
def _postgres_changes_error(s: Session, c: Check) -> Evidence:
    for ch in s.channels.values():
        for msg in system_errors(ch, "postgres_changes"):
            yield ch.topic, f"system postgres_changes error: \"{msg[:300]}\""
            break


@rule("channel-shutdown", ERROR, "CLOSED (the channel is not rejoined)",
      "The server stopped the channel for the reason in its system message; fix that cause, then "
      "resubscribe (realtime-js does not rejoin after phx_close).")
def _channel_shutdown(s: Session, c: Check) -> Evidence:
    for ch in s.channels.values():
        errors = system_errors(ch, "system")
        if ch.state == CLOSED and ch.closed_by == "server" and errors:
            yield ch.topic, f"system error \"{errors[-1]}\", then phx_close"


@rule("join-timeout", ERROR, "TIMED_OUT",
      "No reply to phx_join in time: check that the hop forwards early frames, that vsn matches, and slow "
      "RLS policies; the client leaves and rejoins after a backoff.")
def _join_timeout(s: Session, c: Check) -> Evidence:
    for ch in s.channels.values():
        late = ch.join_latency_ms is not None and ch.join_latency_ms >= c.timers.join * 1000
        if late:
            yield ch.topic, f"the phx_reply to phx_join for {ch.topic} came after {ch.join_latency_ms:.0f} ms, " \
                            f"past the {c.timers.join:g} s join timeout: the client had already given up"
            continue
        if ch.join_sent_at is None or ch.joined_at is not None or ch.reason:
            continue
        if ch.state not in (JOINING, LEAVING, ERRORED):
            continue
        waited = c.now - ch.join_sent_at
        end = s.closed.time if s.closed else c.now
        if ch.state == LEAVING or waited >= c.timers.join or (c.final and end - ch.join_sent_at >= c.timers.join):
            yield ch.topic, f"no phx_reply to phx_join for {ch.topic} within {c.timers.join:g} s"


@rule("duplicate-join", WARNING, "CLOSED right after subscribing, or double events",
      "Subscribe once per topic: reuse the channel object, and remove it in the effect cleanup "
      "(React StrictMode runs effects twice).")
def _duplicate_join(s: Session, c: Check) -> Evidence:
    for ch in s.channels.values():
        if ch.duplicate_joins:
            yield ch.topic, f"{ch.duplicate_joins + 1} joins of {ch.topic} with different join_refs while the " \
                            "first was still active; the server closes the older one"


# Liveness.

@rule("heartbeat-timeout", ERROR, "CHANNEL_ERROR (heartbeat timeout), then reconnect",
      "Heartbeats must be answered within the interval: make the hop forward server frames promptly and not "
      "swallow phx_reply on topic phoenix.")
def _heartbeat_timeout(s: Session, c: Check) -> Evidence:
    hb = s.heartbeats
    if s.closed and s.closed.by_client and "heartbeat timeout" in s.closed.reason.lower():
        yield None, f"the client closed with {s.closed.code} \"{s.closed.reason}\"; " \
                    f"{hb.sent - hb.answered} of {hb.sent} heartbeats unanswered"
    elif hb.unanswered_at_next:
        yield None, f"{hb.unanswered_at_next} heartbeat(s) still unanswered when the next was due " \
                    f"({hb.answered} of {hb.sent} answered)"
    elif (sent := hb.oldest_unanswered()) is not None and c.now - sent >= c.timers.heartbeat and s.closed is None:
        yield None, f"a heartbeat sent {c.now - sent:.1f} s ago is still unanswered; realtime-js gives up " \
                    f"after {c.timers.heartbeat:g} s (close 1000 \"heartbeat timeout\")"


@rule("heartbeat-gap", WARNING, "CHANNEL_ERROR after the tab returns; server idle close",
      "The client's timers were throttled (background tab, sleeping device): use realtime-js's "
      "`worker: true` option and resubscribe on visibilitychange.")
def _heartbeat_gap(s: Session, c: Check) -> Evidence:
    hb = s.heartbeats
    typical = hb.typical_gap()
    if typical and len(hb.gaps) >= 3 and hb.max_gap_s > 2 * typical and hb.max_gap_s - typical >= 1:
        yield None, f"client heartbeats usually {typical:.1f} s apart, but one gap was {hb.max_gap_s:.1f} s"


@rule("server-idle-close", ERROR, "CHANNEL_ERROR (socket closed: 1000), then reconnect",
      "The server closes sockets that send nothing for 60 s: the client's heartbeats are not reaching it "
      "(frozen wrapper readyState, throttled tab, a hop dropping client frames).")
def _server_idle_close(s: Session, c: Check) -> Evidence:
    cl = s.closed
    if cl and cl.by_client is False and cl.code == 1000:
        last = s.last_client_frame_at or s.upgraded_at
        if last is not None and cl.time - last >= 0.9 * c.timers.idle:
            yield None, f"the server closed with 1000 after {cl.time - last:.1f} s without a client frame"


@rule("proxy-idle-timeout", ERROR, "CHANNEL_ERROR (socket closed: 1006), then reconnect",
      "An intermediary's idle timer is shorter than the gap between frames (nginx proxy_read_timeout 60 s, "
      "Cloudflare ~100 s): raise it, and keep heartbeats flowing.")
def _proxy_idle_timeout(s: Session, c: Check) -> Evidence:
    cl = s.closed
    if cl is None or cl.code is not None or s.status != 101 or s.last_frame_at is None and s.upgraded_at is None:
        return
    silence = cl.time - (s.last_frame_at or s.upgraded_at or cl.time)
    typical = s.heartbeats.typical_gap() or 0.0
    if silence >= 1.0 and silence >= 0.5 * typical:
        yield None, f"no frames for {silence:.1f} s, then the connection ended without a close frame"


@rule("reserved-close-code", ERROR, "the client leg stays open, dead, until its heartbeat timeout",
      "Never pass 1005/1006/1015 (or a reason over 123 bytes) to close(): map them to 1000/1011 or call "
      "close() without arguments.")
def _reserved_close_code(s: Session, c: Check) -> Evidence:
    for hop in s.hops:
        if hop.what == "close-throws":
            yield None, hop.detail
            return


@rule("server-close", WARNING, "CHANNEL_ERROR (socket closed: <code>), then reconnect",
      "The server or a hop ended the socket: 1001 follows a join-rate or tenant disconnect, 1011 a server "
      "error, 1012 a tenant config change or deploy; other codes come from a hop (check its logs).")
def _server_close(s: Session, c: Check) -> Evidence:
    cl = s.closed
    if cl is None or cl.by_client is not False or cl.code is None or cl.code in (1000, 1009):
        return
    if s.upstream_status not in (None, 101) or "upstream-failed" in s.hop_counts:
        return  # the hop closed it because its upstream failed: early-101 says so
    meaning = {1001: "going away (join rate limit or tenant disconnect)", 1011: "server error",
               1012: "service restart (tenant config change, deploy)", 1013: "try again later"}.get(
        cl.code, "a code Realtime itself does not send: a hop closed it" if cl.code >= 3000 else "")
    reason = f" \"{cl.reason}\"" if cl.reason else ""
    yield None, f"the server side closed with {cl.code}{reason}" + (f": {meaning}" if meaning else "")


@rule("message-too-large", ERROR, "CHANNEL_ERROR (socket closed: 1009)",
      "A frame exceeded a size limit (Realtime 5 MB, a Worker 32 MiB, broadcast payload quota): send "
      "smaller payloads.")
def _message_too_large(s: Session, c: Check) -> Evidence:
    if s.closed and s.closed.code == 1009:
        side = {True: "client", False: "server", None: "hop"}[s.closed.by_client]
        yield None, f"closed by the {side} with 1009 {s.closed.reason!r}"


# ------------------------------------------------------------------------------------- running rules

def evaluate(s: Session, check: Check) -> list[Finding]:
    """All findings whose evidence is present now, most decisive first."""
    out = []
    for r in RULES:
        try:
            for topic, evidence in r.evidence(s, check):
                out.append(Finding(r.code, r.severity, r.explains, s.redactor.text(topic) if topic else None,
                                   s.redactor.text(evidence), r.fix, s.conn, check.now))
        except Exception as e:  # noqa: BLE001 - one broken rule must not hide the others
            out.append(Finding("rule-failed", INFO, "nothing", None, f"{r.code}: {type(e).__name__}: {e}",
                               "Report this as an rtproxy bug.", s.conn, check.now))
    return out


CODES = {r.code: r for r in RULES}


# Registered for its code, severity and fix; its evidence spans connections, so Diagnoser computes it.
RECONNECT_LOOP = Rule(
    "reconnect-loop", ERROR, "the client reconnects over and over; channels flap between errors",
    "Fix the finding of the individual connections (usually a rejected upgrade or a hop that accepts and "
    "then closes); the client's backoff restarts after every successful open.",
    lambda s, c: iter(()))
RULES.append(RECONNECT_LOOP)
CODES["reconnect-loop"] = RECONNECT_LOOP
