"""Diagnosis rules: why a channel ended in CHANNEL_ERROR, TIMED_OUT or CLOSED, or why data went missing.

Each rule is one small unit: a stable kebab-case code, a severity, the client-visible outcome it
explains, the fix, and a function that looks at a Session and yields (topic, evidence) when its evidence
is there. Rules are listed most decisive first (causes before the symptoms they produce); findings are
reported in that order. Every string the server sends is classified by one table, catalog.py (the real
server's words, current and older), so a string lands in exactly one finding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from . import catalog, frames
from .redact import jwt_claims
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


def classify_reason(reason: str, where: str | None = None) -> str:
    """Which finding a string the server sent belongs to (catalog.classify). A `system` error the
    catalog does not know is a channel-shutdown: the server stopped the channel and said why."""
    code = catalog.classify(reason, where)[1]
    if where == catalog.SYSTEM and code == "join-error":
        return "channel-shutdown"
    return code


def said(s: Session) -> Iterator[tuple[str | None, str, str, str]]:
    """Every error the server put into words on this connection, as (topic, where, text, evidence)."""
    rej = rejection(s)
    if rej and rej[1]:
        yield None, catalog.UPGRADE, rej[1], f"{rej[2]} was answered {rej[0]} {{\"error\": \"{rej[1]}\"}}"
    for ch, reason in join_reasons(s):
        yield ch.topic, catalog.JOIN, reason, f"phx_join answered status error: \"{reason}\""
    for ch in s.channels.values():
        for msg in system_errors(ch, "system"):
            yield ch.topic, catalog.SYSTEM, msg, f"server pushed system error \"{msg}\"" + (
                " then phx_close" if ch.closed_by == "server" else "")
        for event, reason in ch.push_errors:
            yield ch.topic, catalog.REPLY, reason, f"{event} answered status error: \"{reason}\""


def _query_vsn(url: str) -> str | None:
    try:
        return dict(parse_qsl(urlsplit(url).query)).get("vsn")
    except ValueError:
        return None


def _reasons_of(s: Session, code: str) -> Evidence:
    """Evidence for a finding, wherever the server said it: handshake body, join reply, system, reply."""
    for topic, where, text, evidence in said(s):
        if classify_reason(text, where) == code:
            yield topic, evidence + _detail(s, where, text)


def _detail(s: Session, where: str, text: str) -> str:
    """What the wire adds to a string that does not say everything."""
    entry = catalog.lookup(text, where)
    if entry is not None and entry.key == "upgrade.error" and s.apikey:
        claims = jwt_claims(s.apikey) or {}
        odd = [k for k in ("exp", "iat") if k in claims
               and (not isinstance(claims[k], (int, float)) or isinstance(claims[k], bool)
                    or k == "exp" and isinstance(claims[k], float) and (s.opened_at or 0) >= claims[k])]
        if odd:
            return f": the apikey's {' and '.join(odd)} is not a whole number, which Realtime cannot validate"
        return ": Realtime had no message for what went wrong (a token whose exp or iat is not a number, " \
               "claims that are not a JSON object, or an internal error: its log says which)"
    if entry is not None and entry.until:
        return f" (the form Realtime sent until {entry.until})"
    return ""


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
      "Send a JWT signed with the project's JWT secret/JWKS that carries `role` and `exp` (whole numbers for "
      "`exp` and `iat`); third-party auth needs its JWKS reachable by Realtime. After setAuth with a bad "
      "token the server stops the channel with the error in a system message.")
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


@rule("server-restarting", WARNING, "CHANNEL_ERROR, then the client rejoins",
      "Transient: Realtime is restarting or still connecting to the project; nothing to fix in the client. "
      "Let it retry with backoff (realtime-js and realtime-py rejoin on their own) and do not recreate "
      "channels in a loop.")
def _server_restarting(s: Session, c: Check) -> Evidence:
    yield from _reasons_of(s, "server-restarting")


@rule("database-unavailable", ERROR, "CHANNEL_ERROR at join, or CLOSED on a running channel",
      "The project's database side failed Realtime: check the database's health and connection count in the "
      "dashboard, raise the Realtime connection pool (database settings) or free connections, and for a "
      "private channel check the realtime.messages partitions and RLS policy speed. Retry with backoff.")
def _database_unavailable(s: Session, c: Check) -> Evidence:
    yield from _reasons_of(s, "database-unavailable")


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
    if rej is None or rej[0] in (401, 404, 429) or (rej[1] and catalog.lookup(rej[1], catalog.UPGRADE)):
        return
    if rej[0] == 500 and any(k in rej[1].lower() for k in ("1101", "worker threw exception", "handler failed")):
        return
    status, text, who = rej
    if status == 426 and text == "Expected WebSocket":
        why = ("the design's Worker reads request.webSocket, which Workers' Request does not have, and returns "
               "426 from its own guard")
    elif status == 403 and not text:
        url = s.upstream_url or s.url or ""
        vsn = frames.vsn_family(_query_vsn(url)) if url else None
        why = ("403 with an empty body: Phoenix refusing an unsupported vsn, or a Realtime older than "
               "2026-07-17, which answered every refusal that way")
        if url and vsn is None:
            why = (f"403 with an empty body: Phoenix refuses the vsn {_query_vsn(url)!r} (Realtime accepts "
                   "~> 1.0.0 and ~> 2.0.0)")
        elif url:
            why = (f"403 with an empty body although the vsn ({_query_vsn(url) or 'absent: 1.0.0'}) is supported: "
                   "a Realtime older than 2026-07-17, which refused every upgrade that way (tenant, token or "
                   "quota); the server's log holds the reason")
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
      "The server refused the join with the quoted reason; fix what it names (the topic, replay "
      "parameters, a push to a channel that is not joined: \"unmatched topic\").")
def _join_error(s: Session, c: Check) -> Evidence:
    yield from _reasons_of(s, "join-error")


@rule("binding-mismatch", ERROR, "CHANNEL_ERROR (mismatch between server and client bindings)",
      "Realtime echoes the join's postgres_changes list in its reply, so the lists differ when the client's "
      "bindings changed between join and reply (an .on('postgres_changes') registered after subscribe()) "
      "or a hop rewrote the join payload: register every listener before subscribe().")
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


@rule("postgres-changes-error", ERROR, "SUBSCRIBED, but database changes do not arrive",
      "A parameter error is final: fix the schema/table/filter names, add the table to the supabase_realtime "
      "publication, and resubscribe. A database error is retried by the server every 5-10 s: check the "
      "database's health and connections.")
def _postgres_changes_error(s: Session, c: Check) -> Evidence:
    for ch in s.channels.values():
        last_error = None
        for m in ch.system:
            if m.extension != "postgres_changes":
                continue
            if m.status == "error":
                last_error = m
            elif m.status == "ok":
                last_error = None  # the server's retry succeeded later: recovered
        if last_error is None:
            continue
        entry = catalog.lookup(last_error.message, catalog.POSTGRES)
        final = entry is not None and entry.cls == catalog.REQUEST
        how = "not retried: the parameters are wrong" if final else "the server retries it every 5-10 s"
        yield ch.topic, f"system postgres_changes error: \"{last_error.message[:300]}\" ({how})"


@rule("channel-shutdown", ERROR, "CLOSED (the channel is not rejoined)",
      "The server stopped the channel for the reason in its system message; fix that cause, then "
      "resubscribe (realtime-js does not rejoin after phx_close).")
def _channel_shutdown(s: Session, c: Check) -> Evidence:
    for ch in s.channels.values():
        errors = [m for m in system_errors(ch, "system") if classify_reason(m, catalog.SYSTEM) == "channel-shutdown"]
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


SERVER_CLOSE_MEANINGS = {  # the close codes Realtime itself sends (catalog.py, docs/sources.md)
    1001: "Phoenix's disconnect: Realtime sends it right after a join answered ClientJoinRateLimitReached "
          "or TenantNotFound",
    1002: "a WebSocket protocol error in what the client sent",
    1011: "the server's socket process crashed",
    1012: "service restart: a tenant drain (\"Server requested disconnect\": the project's Realtime settings "
          "changed) or a Realtime node shutting down",
}


@rule("server-close", WARNING, "CHANNEL_ERROR (socket closed: <code>), then reconnect",
      "The server or a hop ended the socket: a 1012 is a restart or a settings change (reconnect; nothing to "
      "fix), a 1001 follows the join error it names (fix that), a 1011 is a server crash; codes Realtime "
      "never sends come from a hop (check its logs).")
def _server_close(s: Session, c: Check) -> Evidence:
    cl = s.closed
    if cl is None or cl.by_client is not False or cl.code is None or cl.code in (1000, 1009):
        return
    if s.upstream_status not in (None, 101) or "upstream-failed" in s.hop_counts:
        return  # the hop closed it because its upstream failed: early-101 says so
    meaning = SERVER_CLOSE_MEANINGS.get(cl.code, "a code Realtime itself does not send: a hop closed it")
    reason = f" \"{cl.reason}\"" if cl.reason else ""
    why = ""
    if cl.code == 1012 and any(m.message == catalog.say("system.disconnect")
                               for ch in s.channels.values() for m in ch.system):
        why = "; the server had pushed system \"Server requested disconnect\" first"
    elif cl.code == 1001:
        last = [(ch.topic, ch.reason) for ch in s.channels.values() if ch.reason and ch.joined_at is None]
        if last:
            why = f"; after {last[-1][0]} was refused: \"{last[-1][1]}\""
    yield None, f"the server side closed with {cl.code}{reason}: {meaning}{why}"


@rule("message-too-large", ERROR, "CHANNEL_ERROR (socket closed: 1009), a broadcast lost, or CLOSED",
      "Send smaller messages: Realtime closes the socket (1009) on a frame over 5,000,000 bytes (a Worker "
      "allows 32 MiB); a broadcast over the project's payload quota (3,000 KB by default) is answered "
      "payload_size_exceeded when acked and dropped silently otherwise; a presence track over it stops the "
      "channel.")
def _message_too_large(s: Session, c: Check) -> Evidence:
    yield from _reasons_of(s, "message-too-large")
    if s.closed and s.closed.code == 1009:
        side = {True: "client", False: "server", None: "hop"}[s.closed.by_client]
        yield None, f"closed by the {side} with 1009 {s.closed.reason!r}: a frame over the size limit"


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
