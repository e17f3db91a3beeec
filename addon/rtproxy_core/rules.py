"""Diagnosis rules: why a channel ended in CHANNEL_ERROR, TIMED_OUT or CLOSED, or why data went missing.

Each rule is one small unit: a stable kebab-case code, a severity, the client-visible outcome it
explains, the fix, how sure its evidence makes it by default, and a function that looks at a Session
and yields (topic, evidence) or an `Ev` when its evidence is there. Every string the server sends is
classified by one table, catalog.py (the real server's words, current and older), so a string lands in
exactly one finding.

A finding says how sure it is: `certain` (the wire shows it), `likely` (inferred, usually from timing),
or `candidates` (the wire cannot tell; the candidates are ranked by what it does show). A symptom says
which finding it follows from (SYMPTOM_OF); a connection's report lists causes first, each followed by
its symptoms, so the first finding is the cause.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import NamedTuple
from urllib.parse import parse_qsl, urlsplit

from . import catalog, closecodes, frames
from .events import COMMAND
from .hop import BLOB_TEXT
from .redact import jwt_claims
from .session import (
    CLIENT_HEARTBEAT_S,
    CLIENT_JOIN_TIMEOUT_S,
    CLOSED,
    ERRORED,
    JOINED,
    JOINING,
    LEAVING,
    SERVER_IDLE_S,
    Channel,
    Session,
)


class Severity(StrEnum):
    """How much a finding matters; its value is what reports print and JSON carries."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


ERROR, WARNING, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO  # legs.py's rules use these names
SEVERITY_ORDER = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}


class Confidence(StrEnum):
    """How sure a finding is."""

    CERTAIN = "certain"  # the wire shows it
    LIKELY = "likely"  # inferred, usually from timing
    CANDIDATES = "candidates"  # the wire cannot tell; the candidates are ranked by what it does show


@dataclass(frozen=True, slots=True)
class Ev:
    """Evidence with more to say than (topic, text): its own confidence, or ranked candidate codes."""

    topic: str | None
    text: str
    confidence: Confidence | None = None  # None: the rule's default
    candidates: tuple[str, ...] = ()


Evidence = Iterator["tuple[str | None, str] | Ev"]  # (topic or None for the connection, evidence text)


class TimerValues(NamedTuple):
    """Realtime's three timers, in seconds; None: not configured."""

    join: float | None = None  # the client's join (and push) timeout
    heartbeat: float | None = None  # the client's heartbeat interval
    idle: float | None = None  # the server closes a socket after this long without client frames


DEFAULT_TIMERS = TimerValues(CLIENT_JOIN_TIMEOUT_S, CLIENT_HEARTBEAT_S, SERVER_IDLE_S)


class Timers:
    """Realtime's timers as the rules expect them, in seconds. `configured` holds what the user set
    (rt_timers, --timers; a test setup shortens them), None where they set nothing; `join`, `heartbeat` and
    `idle` are the timers in force: the configured one, else DEFAULT_TIMERS. What the wire shows of a timer
    (the client's heartbeat cadence, the known default of the client its frames reveal) goes before a
    default, never before what the user configured."""

    __slots__ = ("configured",)
    configured: TimerValues

    def __init__(self, join: float | None = None, heartbeat: float | None = None, idle: float | None = None):
        object.__setattr__(self, "configured", TimerValues(join, heartbeat, idle))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Timers is immutable (setting {name})")

    @property
    def join(self) -> float:
        return _in_force(self.configured.join, DEFAULT_TIMERS.join)

    @property
    def heartbeat(self) -> float:
        return _in_force(self.configured.heartbeat, DEFAULT_TIMERS.heartbeat)

    @property
    def idle(self) -> float:
        return _in_force(self.configured.idle, DEFAULT_TIMERS.idle)

    @classmethod
    def parse(cls, text: str) -> Timers:
        """'join=10,heartbeat=25,idle=60' (seconds; any subset, "" for none). Raises ValueError with the
        reason."""
        values: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, eq, raw = part.partition("=")
            if not eq or name.strip() not in TimerValues._fields:
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
        """The configured timers, as parse() reads them ("" when none is)."""
        return ",".join(f"{k}={v:g}" for k, v in self.configured._asdict().items() if v is not None)

    def in_force(self) -> str:
        """Every timer in force, configured or default: 'join=10,heartbeat=25,idle=60'."""
        return f"join={self.join:g},heartbeat={self.heartbeat:g},idle={self.idle:g}"

    def __repr__(self) -> str:
        return f"Timers({', '.join(f'{k}={v!r}' for k, v in self.configured._asdict().items() if v is not None)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Timers) and self.configured == other.configured

    def __hash__(self) -> int:
        return hash(self.configured)


def _in_force(configured: float | None, default: float) -> float:
    return default if configured is None else configured


@dataclass(frozen=True, slots=True)
class Check:
    """What a rule may look at besides the session."""

    now: float
    final: bool  # the connection has ended (or the capture has)
    timers: Timers


@dataclass(frozen=True, slots=True)
class Rule:
    code: str
    severity: Severity
    explains: str
    fix: str
    evidence: Callable[[Session, Check], Evidence]
    confidence: Confidence = Confidence.CERTAIN


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    severity: Severity
    explains: str
    topic: str | None
    evidence: str
    fix: str
    conn: str = ""
    time: float = 0.0
    confidence: Confidence = Confidence.CERTAIN
    candidates: tuple[str, ...] = ()
    follows: str | None = None  # the code of the finding this one is a symptom of

    def as_dict(self) -> dict:
        return {
            "code": self.code,
            "severity": str(self.severity),
            "topic": self.topic,
            "explains": self.explains,
            "evidence": self.evidence,
            "fix": self.fix,
            "confidence": str(self.confidence),
            "candidates": list(self.candidates),
            "follows": self.follows,
        }


RULES: list[Rule] = []


def rule(code: str, severity: Severity, explains: str, fix: str, confidence: Confidence = Confidence.CERTAIN):
    def register(fn: Callable[[Session, Check], Evidence]) -> Callable[[Session, Check], Evidence]:
        RULES.append(Rule(code, severity, explains, fix, fn, confidence))
        return fn

    return register


# ------------------------------------------------------------------------------------- helpers


class Rejection(NamedTuple):
    """A failed upgrade: the client's answer, else the upstream's answer to the hop (relay)."""

    status: int
    text: str  # the body's {"error": ...}, else its start as text; "" for an empty body
    request: str  # which upgrade was answered so: "the upgrade" or "the hop's upstream upgrade"


def rejection(s: Session) -> Rejection | None:
    """The failed upgrade of this connection, if its upgrade (or the hop's upstream one) failed."""
    if s.status is not None and s.status != 101:
        return Rejection(s.status, s.rejection or "", "the upgrade")
    if s.upstream_status is not None and s.upstream_status != 101:
        return Rejection(s.upstream_status, s.upstream_rejection or "", "the hop's upstream upgrade")
    return None


def join_reasons(s: Session) -> Iterator[tuple[Channel, str]]:
    for ch in s.channels.values():
        if ch.reason and ch.joined_at is None and ch.state == ERRORED and not ch.reason.startswith("socket"):
            yield ch, ch.reason


def system_errors(ch: Channel, extension: str) -> list[str]:
    return [m.message for m in ch.system if m.status == "error" and m.extension == extension]


def named(text: str, where: str | None = None) -> bool:
    """Does the catalog (or the string's "<Code>: " prefix) say what this string is?"""
    return catalog.lookup(text, where) is not None or bool(
        catalog._CODE.match(text.strip()) and catalog._CODE.match(text.strip())[1] in catalog.CODES
    )


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
    if rej and rej.text and named(rej.text, catalog.UPGRADE):
        yield (
            None,
            catalog.UPGRADE,
            rej.text,
            f'{rej.request} was answered {rej.status} {{"error": "{rej.text}"}}',
        )
    for ch, reason in join_reasons(s):
        yield ch.topic, catalog.JOIN, reason, f'phx_join answered status error: "{reason}"'
    for ch in s.channels.values():
        for msg in system_errors(ch, "system"):
            yield (
                ch.topic,
                catalog.SYSTEM,
                msg,
                f'server pushed system error "{msg}"'
                + (" then phx_close" if ch.closed_by == "server" else ""),
            )
        for event, reason in ch.push_errors:
            yield ch.topic, catalog.REPLY, reason, f'{event} answered status error: "{reason}"'


def _query_vsn(url: str) -> str | None:
    try:
        return dict(parse_qsl(urlsplit(url).query)).get("vsn")
    except ValueError:
        return None


def _ago(seconds: float) -> str:
    seconds = abs(seconds)
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


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
        odd = [
            k
            for k in ("exp", "iat")
            if k in claims
            and (
                not isinstance(claims[k], (int, float))
                or isinstance(claims[k], bool)
                or k == "exp"
                and isinstance(claims[k], float)
                and (s.opened_at or 0) >= claims[k]
            )
        ]
        if odd:
            return f": the apikey's {' and '.join(odd)} is not a whole number, which Realtime cannot validate"
        return (
            ": Realtime had no message for what went wrong (a token whose exp or iat is not a number, "
            "claims that are not a JSON object, or an internal error: its log says which)"
        )
    if entry is not None and entry.until:
        return f" (the form Realtime sent until {entry.until})"
    return ""


# ------------------------------------------------------------------------------------- rules
# Handshake-level causes first: nothing else can work until the upgrade does.


@rule(
    "apikey-missing",
    Severity.ERROR,
    "CHANNEL_ERROR in a reconnect loop",
    "Forward the query string verbatim (in a Worker: url.search). Browsers can only send the apikey in "
    "the query; Realtime answers 401 without it.",
)
def _apikey_missing(s: Session, c: Check) -> Evidence:
    rej = rejection(s)
    if (
        rej
        and rej.status == 401
        and ("api key is missing" in rej.text.lower() or _gateway_named(rej.text) == "apikey-missing")
    ):
        where = (
            "the client sent one but the upstream URL has none"
            if s.apikey and s.upstream_apikey is False
            else "no apikey query parameter and no x-api-key header"
        )
        yield None, f'{rej.request} was answered 401 {{"error": "{rej.text}"}}: {where}'


@rule(
    "vsn-missing",
    Severity.ERROR,
    "TIMED_OUT on every join, then heartbeat timeout and reconnect",
    "Keep the vsn query parameter when rewriting the URL (forward url.search), or pin the client to "
    "vsn 1.0.0. Without vsn the server speaks 1.0.0 and drops the client's 2.0.0 frames.",
)
def _vsn_missing(s: Session, c: Check) -> Evidence:
    if (s.client_vsn or "").startswith("2.") and s.upstream_url is not None and s.upstream_vsn is None:
        dropped = (
            f"; {s.shape_mismatches} client frame(s) in 2.0.0 shape went unanswered"
            if s.shape_mismatches
            else ""
        )
        yield (
            None,
            (
                f"the client asked for vsn {s.client_vsn}; the upstream URL has no vsn, so the server "
                f"negotiates 1.0.0{dropped}"
            ),
        )


@rule(
    "tenant-not-found",
    Severity.ERROR,
    "CHANNEL_ERROR (socket closed: 1006)",
    "Realtime takes the tenant from the first label of the Host header: forward a Host of "
    "<ref>.supabase.co (or your tenant's name when self-hosting), not the Worker's or a service name.",
)
def _tenant_not_found(s: Session, c: Check) -> Evidence:
    yield from _reasons_of(s, "tenant-not-found")


@rule(
    "path-wrong",
    Severity.ERROR,
    "CHANNEL_ERROR (socket closed: 1006) in a reconnect loop",
    "Map the path 1:1: hosted Realtime is /realtime/v1/websocket, a self-hosted server /socket/websocket.",
)
def _path_wrong(s: Session, c: Check) -> Evidence:
    rej = rejection(s)
    if rej and rej.status == 404 and "tenant not found" not in rej.text.lower():
        path = (s.upstream_url or s.url or "").split("?")[0]
        yield None, f"{rej.request} was answered 404 {rej.text or '(no JSON error)'} for {path}"


@rule(
    "token-expired",
    Severity.ERROR,
    "CHANNEL_ERROR, or CLOSED when a running channel's token expires",
    "Refresh the session before (re)connecting and call setAuth with the fresh JWT; a stale token after "
    "sleep or offline is the usual cause.",
)
def _token_expired(s: Session, c: Check) -> Evidence:
    yield from _reasons_of(s, "token-expired")
    # The JWT says when it expired: compared with the time of the frame that carried it.
    rej = rejection(s)
    if (
        rej
        and s.apikey_expired_s is not None
        and not (rej.text and catalog.classify(rej.text)[1] == "token-expired")
    ):
        yield (
            None,
            (
                f"the upgrade's apikey JWT had expired {_ago(s.apikey_expired_s)} before it was sent "
                f"(the server answered {rej.status} {rej.text or '(empty body)'})"
            ),
        )
    for ch in s.channels.values():
        if ch.token_expired_s is not None and ch.joined_at is None:
            reason = f' (the server answered "{ch.reason}")' if ch.reason else ""
            if not (ch.reason and catalog.classify(ch.reason, catalog.JOIN)[1] == "token-expired"):
                yield (
                    ch.topic,
                    (
                        f"{ch.label} was joined with a JWT that had expired {_ago(ch.token_expired_s)} "
                        f"before{reason}"
                    ),
                )
        elif ch.token_exp is not None and ch.joined_at is not None and ch.joined_at < ch.token_exp:
            # The channel ended (stopped by the server, or still joined when its socket ended) after exp.
            if ch.state == CLOSED and ch.closed_by == "server" or ch.state == ERRORED:
                end = ch.closed_at or s.ended_at or c.now
            elif ch.state == JOINED and s.closed is not None:
                end = s.closed.time
            else:
                end = None  # left by the client, or still running
            expired_errors = [
                m
                for m in system_errors(ch, "system")
                if classify_reason(m, catalog.SYSTEM) == "token-expired"
            ]
            if end is not None and end > ch.token_exp and not expired_errors:
                yield Ev(
                    ch.topic,
                    f"the token {ch.label} runs with expired {_ago(end - ch.token_exp)} before the "
                    "channel ended; Realtime re-checks it at exp (at most every 5 min) and stops the "
                    "channel then",
                    Confidence.LIKELY,
                )
        if ch.pushed_expired_s is not None:
            yield (
                ch.topic,
                (
                    f"an access_token pushed on {ch.label} had expired {_ago(ch.pushed_expired_s)} before: "
                    "the server stops the channel when it checks it"
                ),
            )


@rule(
    "token-invalid",
    Severity.ERROR,
    "CHANNEL_ERROR",
    "Send a JWT signed with the project's JWT secret/JWKS that carries `role` and `exp` (whole numbers for "
    "`exp` and `iat`); third-party auth needs its JWKS reachable by Realtime. After setAuth with a bad "
    "token the server stops the channel with the error in a system message.",
)
def _token_invalid(s: Session, c: Check) -> Evidence:
    yield from _reasons_of(s, "token-invalid")
    rej = rejection(s)
    if rej and _gateway_named(rej.text) == "token-invalid":
        yield (
            None,
            (
                f"{rej.request} was answered {rej.status} {rej.text[:100]!r} by the gateway in front of Realtime "
                "(Kong's key-auth): the apikey is not one of the project's keys"
            ),
        )


@rule(
    "rate-limited",
    Severity.ERROR,
    "CHANNEL_ERROR or CLOSED, reconnect storms",
    "Stay under the project's Realtime quotas (connections, joins/s, channels per connection, messages/s); "
    "look for subscribe loops (useEffect without cleanup) and remove unused channels.",
)
def _rate_limited(s: Session, c: Check) -> Evidence:
    yield from _reasons_of(s, "rate-limited")


@rule(
    "realtime-disabled",
    Severity.ERROR,
    "CHANNEL_ERROR (socket closed: 1006)",
    "Realtime is disabled or the project is suspended: enable Realtime / resolve the suspension in the "
    "Supabase dashboard.",
)
def _realtime_disabled(s: Session, c: Check) -> Evidence:
    yield from _reasons_of(s, "realtime-disabled")


@rule(
    "server-restarting",
    Severity.WARNING,
    "CHANNEL_ERROR, then the client rejoins",
    "Transient: Realtime is restarting or still connecting to the project; nothing to fix in the client. "
    "Let it retry with backoff (realtime-js and realtime-py rejoin on their own) and do not recreate "
    "channels in a loop.",
)
def _server_restarting(s: Session, c: Check) -> Evidence:
    yield from _reasons_of(s, "server-restarting")


@rule(
    "database-unavailable",
    Severity.ERROR,
    "CHANNEL_ERROR at join, or CLOSED on a running channel",
    "The project's database side failed Realtime: check the database's health and connection count in the "
    "dashboard, raise the Realtime connection pool (database settings) or free connections, and for a "
    "private channel check the realtime.messages partitions and RLS policy speed. Retry with backoff.",
)
def _database_unavailable(s: Session, c: Check) -> Evidence:
    yield from _reasons_of(s, "database-unavailable")


@rule(
    "worker-exception",
    Severity.ERROR,
    "CHANNEL_ERROR (socket closed: 1006) in a reconnect loop",
    "The hop's code threw while handling the upgrade: fix the exception (check `wrangler tail`); a Worker "
    "proxy should pass the upgrade through with fetch(new Request(upstreamUrl, request)).",
)
def _worker_exception(s: Session, c: Check) -> Evidence:
    rej = rejection(s)
    text = rej.text.lower() if rej else ""
    if (
        rej
        and rej.status == 500
        and ("1101" in text or "worker threw exception" in text or "handler failed" in text)
    ):
        yield None, f"{rej.request} was answered 500 ({rej.text[:120]}) instead of 101"


@rule(
    "upgrade-rejected",
    Severity.ERROR,
    "CHANNEL_ERROR (socket closed: 1006) in a reconnect loop",
    "The answer was not an upgrade: make the hop forward `Upgrade: websocket` and `Connection: upgrade` "
    "over HTTP/1.1 (nginx: proxy_http_version 1.1 and both headers), keep request headers small (cookies), "
    "and send a supported vsn. When the cause is not certain, the candidates are listed most likely first "
    "and Realtime's log holds the answer.",
)
def _upgrade_rejected(s: Session, c: Check) -> Evidence:
    rej = rejection(s)
    if rej is None or rej.status in _GATEWAY_STATUSES and _gateway(s):
        return
    status, text, who = rej.status, rej.text, rej.request
    if text and named(text, catalog.UPGRADE) or _gateway_named(text):
        return  # the server (or a gateway) named it: that finding says so
    if status == 404 and text != "":
        return  # path-wrong
    if status == 500 and any(k in text.lower() for k in ("1101", "worker threw exception", "handler failed")):
        return
    if status == 426 and text == "Expected WebSocket":
        yield (
            None,
            (
                f"{who} was answered 426 instead of 101: the design's Worker reads request.webSocket, which "
                "Workers' Request does not have, and returns 426 from its own guard"
            ),
        )
        return
    if status == 431:
        yield (
            None,
            (
                f"{who} was answered 431 instead of 101: request headers too large (usually chunked "
                "sb-…-auth-token cookies; Kong's client header buffer, Realtime's MAX_HEADER_LENGTH)"
            ),
        )
        return
    ranked_candidates = _refusal_candidates(s, status)
    body = f"{text[:120]}" if text else "an empty body"
    if len(ranked_candidates) == 1 and ranked_candidates[0][2]:
        _code, why, _ = ranked_candidates[0]
        yield Ev(None, f"{who} was answered {status} with {body}: {why}")
        return
    listed = "; ".join(f"{code}: {why}" for code, why, _ in ranked_candidates)
    era = (
        " (a Realtime older than 2026-07-17 answered every refusal with a bare 403)"
        if status == 403 and not text
        else ""
    )
    yield Ev(
        None,
        f"{who} was answered {status} with {body}, which does not say why{era}. Candidates, most "
        f"likely first: {listed}. The wire cannot tell; Realtime's log holds the answer",
        candidates=tuple(code for code, _, _ in ranked_candidates),
    )


_NOT_A_TENANT = {"localhost", "realtime", "supabase-realtime", "realtime-dev", "kong", "host", "api"}


def _refusal_candidates(s: Session, status: int) -> list[tuple[str, str, bool]]:
    """(code, why, certain) for a refused upgrade whose body says nothing, ranked by what the URL and headers
    show. Before 2026-07-17 Realtime answered every refusal with a bare 403."""
    url = s.upstream_url or s.url or ""
    asked = _query_vsn(url)
    if url and frames.vsn_family(asked) is None:
        return [
            (
                "upgrade-rejected",
                f"Phoenix refuses the vsn {asked!r} (Realtime accepts ~> 1.0.0 and ~> 2.0.0)",
                True,
            )
        ]
    scored: list[tuple[int, str, str]] = []
    host = _hostname(url)
    label = host.split(".", 1)[0]
    key = s.apikey or ""
    claims = jwt_claims(key) if key else None
    if status == 429:
        scored.append((95, "rate-limited", "429 is a quota answer (users, joins per second)"))
    elif status >= 500:
        scored.append((95, "upstream-unreachable", f"{status} is a server or gateway failure, not a refusal"))
    elif status == 401:
        scored.append((5, "rate-limited", "401 is not a quota answer"))
    if not key or s.upstream_apikey is False:
        scored.append(
            (
                90,
                "apikey-missing",
                "no apikey reached the server"
                if not key
                else "the client sent an apikey but the upstream URL has none",
            )
        )
    elif s.apikey_expired_s is not None:
        scored.append((85, "token-expired", f"the apikey JWT had expired {_ago(s.apikey_expired_s)} before"))
    elif claims is None:
        what = (
            "an sb_… key, which Realtime only takes as a JWT before 2025"
            if key.startswith("sb_")
            else "not a JWT"
        )
        scored.append((70, "token-invalid", f"the apikey is {what}"))
    elif isinstance(claims.get("ref"), str) and label and claims["ref"] != label and _is_ref(label):
        scored.append(
            (75, "token-invalid", f"the apikey is project {claims['ref']!r}'s, the host is {label!r}'s")
        )
    else:
        scored.append((30, "token-invalid", "the apikey is a JWT; its signature may not be the project's"))
    if not label or label in _NOT_A_TENANT or _is_ip(host) or label.isdigit():
        scored.append(
            (
                65,
                "tenant-not-found",
                (
                    f"the host {host or '(none)'} names no tenant: Realtime takes the "
                    "tenant from the Host's first label"
                ),
            )
        )
    else:
        scored.append((20, "tenant-not-found", f"the tenant {label!r} may not exist on this server"))
    if asked is not None:
        why = f"the vsn {asked} is supported, so Phoenix did not refuse it"
    else:
        why = "no vsn: 1.0.0, supported"
    if status not in (429, 401):
        scored.append((25, "rate-limited", "a project quota (users, joins per second)"))
    if status < 500:
        scored.append((15, "realtime-disabled", "the project may be suspended or Realtime disabled"))
    scored.sort(key=lambda x: -x[0])
    out = [(code, text, False) for _, code, text in scored]
    out[-1] = (out[-1][0], out[-1][1] + f" ({why})", False)
    return out


def _hostname(url: str) -> str:
    try:
        return urlsplit(url).hostname or ""
    except ValueError:  # an unparsable host ("[::1" without its bracket)
        return ""


def _is_ip(host: str) -> bool:
    return bool(host) and (host.replace(".", "").isdigit() or ":" in host)


def _is_ref(label: str) -> bool:
    return len(label) == 20 and label.isalpha() and label.islower()


_GATEWAY_STATUSES = (502, 503, 504, 520, 521, 522, 523, 524, 525, 526, 530)  # 52x/530: Cloudflare's

# What gateways in front of Realtime answer in their own words (Kong's key-auth plugin).
_GATEWAY_BODIES = {
    "no api key found in request": "apikey-missing",
    "invalid authentication credentials": "token-invalid",
}


def _gateway_named(text: str) -> str | None:
    t = text.lower()
    return next((code for k, code in _GATEWAY_BODIES.items() if k in t), None)


def _gateway(s: Session) -> str | None:
    """The gateway that answered in front of Realtime, as its headers and body name it."""
    headers = {k.lower(): v for k, v in s.rejection_headers}
    blob = " ".join([headers.get("server", ""), headers.get("via", ""), s.rejection or ""]).lower()
    for name, marks in (
        ("Kong", ("kong",)),
        ("Cloudflare", ("cloudflare", "cf-ray")),
        ("nginx", ("nginx",)),
        ("Envoy", ("envoy",)),
        ("Caddy", ("caddy",)),
        ("Traefik", ("traefik",)),
    ):
        if any(m in blob for m in marks) or any(m in headers for m in marks if m == "cf-ray"):
            return name
    return "a gateway" if headers.get("via") else None


@rule(
    "upstream-unreachable",
    Severity.ERROR,
    "CHANNEL_ERROR (socket closed: 1006)",
    "The hop could not connect to the Supabase URL: check its host name, port, TLS and that it is "
    "reachable from where the hop runs.",
)
def _upstream_unreachable(s: Session, c: Check) -> Evidence:
    rej = rejection(s)
    if rej and rej.status in _GATEWAY_STATUSES and (gw := _gateway(s)):
        yield (
            None,
            (
                f"{rej.request} was answered {rej.status} by {gw} ({rej.text[:100] or 'empty body'}): the gateway in "
                "front of Realtime could not reach it"
            ),
        )
        return
    for hop in s.hops:
        if hop.what in ("upstream-unreachable", "upstream-failed"):
            yield None, f"connecting upstream failed: {hop.detail}"
            return


@rule(
    "early-101",
    Severity.ERROR,
    "open then close: CHANNEL_ERROR with the real reason hidden from the browser",
    "Open the upstream first and answer the client only with the upstream's answer (pass-through "
    "fetch(new Request(upstreamUrl, request))): then a 401/404/429 reaches the client with its JSON body.",
)
def _early_101(s: Session, c: Check) -> Evidence:
    if s.status == 101 and s.upstream_failed:
        up = (
            f"{s.upstream_status} {s.upstream_rejection or ''}".strip()
            if s.upstream_status
            else "a connection error"
        )
        yield (
            None,
            (
                f"the hop answered 101 to the client before its upstream answered; the upstream then "
                f"answered {up}"
            ),
        )


# Frame-level causes.


@rule(
    "join-dropped-by-proxy",
    Severity.ERROR,
    "TIMED_OUT on the first subscribe, then a rejoin",
    "Queue client frames until the upstream leg is open (or open the upstream before answering 101): "
    "clients send phx_join the moment the socket opens.",
)
def _join_dropped(s: Session, c: Check) -> Evidence:
    why = next((h.detail for h in s.hops if h.frame is not None and h.frame.from_client), "")
    for ch in s.channels.values():
        if ch.join_dropped:
            yield (
                ch.topic,
                f"the hop dropped {ch.join_dropped} phx_join frame(s) for {ch.topic}"
                + (f" ({why})" if why else "")
                + "; the server never saw the join",
            )


@rule(
    "serializer-mismatch",
    Severity.ERROR,
    "TIMED_OUT (joins never answered)",
    "Client and server disagree on vsn: make the URL's vsn match what the client speaks (realtime-js "
    "≥2.91 speaks 2.0.0 arrays and binary), or pin the client's vsn.",
)
def _serializer_mismatch(s: Session, c: Check) -> Evidence:
    if s.shape_mismatches and not (
        (s.client_vsn or "").startswith("2.") and s.upstream_vsn is None and s.upstream_url is not None
    ):
        yield (
            None,
            (
                f"{s.shape_mismatches} client frame(s) not in the shape of the negotiated vsn {s.vsn}; "
                "the server drops them without a reply"
            ),
        )


@rule(
    "binary-on-v1",
    Severity.WARNING,
    "silent loss of broadcasts",
    "Binary frames exist only in vsn 2.0.0: connect with vsn=2.0.0, or send JSON broadcasts.",
)
def _binary_on_v1(s: Session, c: Check) -> Evidence:
    if s.binary_on_v1:
        yield (
            None,
            (
                f"{s.binary_on_v1} binary frame(s) from the client on a vsn {s.vsn} connection; the server "
                "cannot decode them"
            ),
        )
    if s.binary_from_server_on_v1:
        yield (
            None,
            (
                f"{s.binary_from_server_on_v1} binary frame(s) from the server on a vsn {s.vsn} connection; "
                "a 1.0.0 client cannot decode them (JSON.parse of an ArrayBuffer)"
            ),
        )


@rule(
    "binary-as-text",
    Severity.ERROR,
    "silent loss of broadcasts (vsn 2.0.0)",
    "Relay binary as binary: set binaryType = 'arraybuffer' on both legs of a Worker relay before "
    "accept() (or add the no_websocket_standard_binary_type flag); a Blob passed to send() is stringified.",
)
def _binary_as_text(s: Session, c: Check) -> Evidence:
    n = s.hop_counts.get("binary-as-text", 0)
    if n:
        yield None, f"the hop relayed {n} binary frame(s) as the text {BLOB_TEXT!r}"


@rule(
    "join-unauthorized",
    Severity.ERROR,
    "CHANNEL_ERROR",
    "Private channel or RLS denied the join: add a SELECT policy on realtime.messages for the role, call "
    "setAuth with the user's JWT before subscribe, and set config.private to match the project.",
)
def _join_unauthorized(s: Session, c: Check) -> Evidence:
    yield from _reasons_of(s, "join-unauthorized")


@rule(
    "join-error",
    Severity.ERROR,
    "CHANNEL_ERROR",
    "The server refused the join with the quoted reason; fix what it names (the topic, replay "
    'parameters, a push to a channel that is not joined: "unmatched topic").',
)
def _join_error(s: Session, c: Check) -> Evidence:
    yield from _reasons_of(s, "join-error")


_BINDING_KEYS = {
    "event",
    "schema",
    "table",
    "filter",
    "select",
}  # payloads/postgres_change.ex, subscriptions.ex


@rule(
    "binding-mismatch",
    Severity.ERROR,
    "CHANNEL_ERROR (mismatch between server and client bindings)",
    "Realtime echoes the join's postgres_changes list in its reply, so the lists differ when the client's "
    "bindings changed between join and reply (an .on('postgres_changes') registered after subscribe()) "
    "or a hop rewrote the join payload: register every listener before subscribe(). A binding with keys "
    "Realtime does not read (`events`) or null values is a client bug: upgrade the client.",
)
def _binding_mismatch(s: Session, c: Check) -> Evidence:
    keys = ("event", "schema", "table", "filter")
    for ch in s.channels.values():
        for i, b in enumerate(ch.bindings):
            unknown = sorted(k for k in b if k not in _BINDING_KEYS)
            nulls = sorted(k for k in ("schema", "table", "filter") if k in b and not isinstance(b[k], str))
            if unknown or nulls:
                what = "; ".join(
                    filter(
                        None,
                        [
                            f"keys Realtime does not read: {', '.join(unknown)}" if unknown else "",
                            f"{', '.join(nulls)} not a string" if nulls else "",
                        ],
                    )
                )
                hint = (
                    " (realtime-py before supabase-py PR #1339 sent `events`; its reply model then rejects "
                    "the echoed binding, so the join looks unanswered to it)"
                    if "events" in unknown
                    else ""
                )
                yield ch.topic, f"binding {i} of {ch.label} is {_pick(b, tuple(b))}: {what}{hint}"
                break
        else:
            continue
        break
    for ch in s.channels.values():
        if ch.joined_at is None or not ch.bindings:
            continue
        server = ch.server_bindings
        for i, want in enumerate(ch.bindings):
            got = server[i] if i < len(server) else None
            if got is None or any((want.get(k) or None) != (got.get(k) or None) for k in keys):
                yield (
                    ch.topic,
                    (
                        f"binding {i} requested {_pick(want, keys)}, server answered "
                        f"{_pick(got, keys) if got else 'nothing'}"
                    ),
                )
                break


def _pick(d: dict, keys: tuple[str, ...]) -> str:
    return "{" + ", ".join(f"{k}: {d[k]}" for k in keys if d.get(k)) + "}"


@rule(
    "postgres-changes-error",
    Severity.ERROR,
    "SUBSCRIBED, but database changes do not arrive",
    "A parameter error is final: fix the schema/table/filter names, add the table to the supabase_realtime "
    "publication, and resubscribe. A database error is retried by the server every 5-10 s: check the "
    "database's health and connections.",
)
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
        yield ch.topic, f'system postgres_changes error: "{last_error.message[:300]}" ({how})'


@rule(
    "channel-shutdown",
    Severity.ERROR,
    "CLOSED (the channel is not rejoined)",
    "The server stopped the channel for the reason in its system message; fix that cause, then "
    "resubscribe (realtime-js does not rejoin after phx_close).",
)
def _channel_shutdown(s: Session, c: Check) -> Evidence:
    for ch in s.channels.values():
        errors = [
            m for m in system_errors(ch, "system") if classify_reason(m, catalog.SYSTEM) == "channel-shutdown"
        ]
        if ch.state == CLOSED and ch.closed_by == "server" and errors:
            yield ch.topic, f'system error "{errors[-1]}", then phx_close'


@rule(
    "join-timeout",
    Severity.ERROR,
    "TIMED_OUT",
    "No reply to phx_join in time: check that the hop forwards early frames, that vsn matches, and slow "
    "RLS policies; the client leaves and rejoins after a backoff.",
    Confidence.LIKELY,
)
def _join_timeout(s: Session, c: Check) -> Evidence:
    for ch in s.channels.values():
        if ch.join_sent_at is None:
            continue
        if ch.gave_up:
            # The client's own behaviour says it timed out: it left, or joined again, while this join was
            # unanswered. Near its timeout (or followed by a rejoin, the retry) that is certain or likely; a
            # leave a second or two into a slow join, never retried, is the app going elsewhere.
            did = "left" if ch.left_at is not None else "joined again"
            retried = _next_join(s, ch) is not None
            waited = (ch.left_at or _next_join(s, ch) or c.now) - ch.join_sent_at
            late = f"; the reply came after {ch.join_latency_ms:.0f} ms" if ch.join_latency_ms else ""
            if waited >= 0.9 * c.timers.join:
                sure = Confidence.CERTAIN
            elif retried:
                sure = Confidence.LIKELY
            else:
                continue
            yield Ev(
                ch.topic,
                f"no phx_reply to phx_join for {ch.label}: the client {did} after {waited:.1f} s, "
                f"so it had given up on it{late}",
                sure,
            )
            continue
        late = ch.join_latency_ms is not None and ch.join_latency_ms >= c.timers.join * 1000
        if late:
            yield (
                ch.topic,
                (
                    f"the phx_reply to phx_join for {ch.label} came after {ch.join_latency_ms:.0f} ms, "
                    f"past the {c.timers.join:g} s join timeout: the client had already given up"
                ),
            )
            continue
        if ch.joined_at is not None or ch.reason:
            continue
        if ch.state not in (JOINING, LEAVING, ERRORED):
            continue
        waited = c.now - ch.join_sent_at
        end = s.ended_at if s.ended_at is not None else c.now
        if ch.state == LEAVING and ch.left_at is not None:
            continue  # left right after joining (left-after-join); leaving later than that is gave_up
        if waited >= c.timers.join or (c.final and end - ch.join_sent_at >= c.timers.join):
            yield ch.topic, f"no phx_reply to phx_join for {ch.label} within {c.timers.join:g} s"


def _next_join(s: Session, ch: Channel) -> float | None:
    later = [o.join_sent_at for o in s.instances(ch.topic) if o.seq > ch.seq and o.join_sent_at is not None]
    return min(later) if later else None


@rule(
    "duplicate-join",
    Severity.WARNING,
    "CLOSED right after subscribing, or double events",
    "Subscribe once per topic: reuse the channel object, and remove it in the effect cleanup "
    "(React StrictMode runs effects twice).",
)
def _duplicate_join(s: Session, c: Check) -> Evidence:
    for ch in s.channels.values():
        if ch.duplicate_joins:
            v1_no_ref = s.vsn == "1.0.0" and not ch.sent_join_ref
            closes = (
                " Its phx_close carries no ref for a client that sends no join_ref, so clients of that "
                "kind (realtime-js 1.x, Dart, kt) close the new channel with it."
                if v1_no_ref
                else ""
            )
            yield (
                ch.topic,
                (
                    f"{ch.duplicate_joins + 1} joins of {ch.topic} in quick succession (a second join, or "
                    f"a leave and a join again, while the first was still live); the server closes the "
                    f"older one.{closes}"
                ),
            )


LEFT_AFTER_JOIN_S = 2.0  # a leave this soon after the join reply is the client's code, not its user


@rule(
    "left-after-join",
    Severity.WARNING,
    'SUBSCRIBED, then CLOSED at once (or CHANNEL_ERROR "mismatch between server and client bindings")',
    "The client left the channel right after joining it: register every .on() listener before subscribe() "
    '(realtime-js leaves, reporting "mismatch between server and client bindings", when a postgres_changes '
    "listener came after it), and check effect cleanups that unsubscribe on re-render.",
)
def _left_after_join(s: Session, c: Check) -> Evidence:
    for ch in s.channels.values():
        since = ch.joined_at if ch.joined_at is not None else ch.join_sent_at
        # Leaving for good right after joining; a leave followed by a join again is the app re-subscribing.
        # Said once a join again has had its chance to come: StrictMode re-subscribes in the same tick.
        if (
            since is not None
            and ch.left_at is not None
            and 0 <= ch.left_at - since <= LEFT_AFTER_JOIN_S
            and not ch.gave_up
            and _next_join(s, ch) is None
            and (c.final or c.now - ch.left_at >= LEFT_AFTER_JOIN_S)
        ):
            what = "it was joined" if ch.joined_at is not None else "joining it, before the reply"
            more = (
                " realtime-js does this when its postgres_changes bindings differ from the server's reply "
                "(a listener added after subscribe())"
                if ch.bindings or ch.server_bindings
                else ""
            )
            yield ch.topic, f"the client left {ch.label} {ch.left_at - since:.2f} s after {what}.{more}"


# Liveness: the client's own heartbeats say what its timers are; rt_timers is the fallback.


def _interval(s: Session, c: Check) -> tuple[float, str]:
    return s.heartbeat_interval(c.timers.configured.heartbeat)


@rule(
    "client-silent",
    Severity.ERROR,
    "the client never SUBSCRIBES: its socket opened, nothing was sent",
    "The socket opened but the client never sent a frame, not even a heartbeat: its transport never saw "
    "`open` (a WebSocket wrapper that does not forward the open event or readyState, or one created "
    "before the page could use it). Check the transport passed to the Realtime client.",
)
def _client_silent(s: Session, c: Check) -> Evidence:
    cl = s.closed
    # Judged when the connection has ended: a client may open the socket long before it subscribes.
    if s.status != 101 or s.upgraded_at is None or s.frames_from_client or s.hop_counts.get("frame-dropped"):
        return
    if cl is None or not cl.recorded and not s.frames_from_server:
        return  # still open, or a capture with no frames at all (Firefox's HAR keeps none)
    lasted = cl.time - s.upgraded_at
    server_ended = cl.by_client is False or cl.ended_first in ("server", "hop")
    if server_ended and lasted < CLIENT_SILENT_S:
        return  # the other side ended it before the client had to say anything
    if lasted > 0:
        yield None, f"the socket was open {lasted:.1f} s and the client sent nothing (no join, no heartbeat)"


CLIENT_SILENT_S = 10.0  # clients join, or heartbeat, well within this once the socket is open


@rule(
    "no-heartbeat",
    Severity.ERROR,
    "CHANNEL_ERROR after the server's idle close, then reconnect",
    "The client sent no heartbeat for two of its intervals: Realtime closes a socket that sends nothing for "
    "60 s. Check that the client's heartbeat timer runs (a frozen wrapper, a throttled worker, a custom "
    "transport that swallows sends).",
)
def _no_heartbeat(s: Session, c: Check) -> Evidence:
    if s.status != 101 or s.upgraded_at is None or s.heartbeats.sent or not s.frames_from_client:
        return
    interval, source = _interval(s, c)
    end = s.ended_at if s.ended_at is not None else c.now
    if end - s.upgraded_at >= 2 * interval:
        yield (
            None,
            (
                f"no heartbeat in {end - s.upgraded_at:.0f} s, two of the client's {interval:g} s intervals "
                f"({source})"
            ),
        )


@rule(
    "heartbeat-timeout",
    Severity.ERROR,
    "CHANNEL_ERROR (heartbeat timeout), then reconnect",
    "Heartbeats must be answered within the interval: make the hop forward server frames promptly and not "
    "swallow phx_reply on topic phoenix.",
    Confidence.LIKELY,
)
def _heartbeat_timeout(s: Session, c: Check) -> Evidence:
    hb = s.heartbeats
    interval, source = _interval(s, c)
    sent = hb.oldest_unanswered()
    if (
        s.closed
        and s.closed.by_client
        and "heartbeat timeout" in s.closed.reason.lower().replace("hearbeat", "heartbeat")
    ):
        stale = (
            "; it sent no heartbeat on this connection, so the one it timed out was from its previous "
            "connection (realtime-js with `worker: true` keeps pendingHeartbeatRef across reconnects: "
            "supabase-js #2625)"
            if not hb.sent
            else ""
        )
        yield Ev(
            None,
            f'the client closed with {s.closed.code} "{s.closed.reason}"; '
            f"{hb.sent - hb.answered} of {hb.sent} heartbeats unanswered{stale}",
            Confidence.CERTAIN,
        )
    elif s.client_kind == "realtime-py":
        # realtime-py never times a heartbeat out: AsyncRealtimeClient._heartbeat (realtime/_async/client.py)
        # sends one with "ref": null every max(hb_interval, 15) s and reads no reply to it.
        return
    elif hb.unanswered_at_next:
        yield Ev(
            None,
            f"{hb.unanswered_at_next} heartbeat(s) still unanswered when the next was due "
            f"({hb.answered} of {hb.sent} answered)",
            Confidence.CERTAIN,
        )
    elif sent is not None and s.closed is not None and _client_side_end(s):
        # Still unanswered when the connection ended (or the client opened a new one): realtime-js closes at
        # the next tick when the last heartbeat has no reply.
        end = s.reopened_at if s.reopened_at is not None and not s.closed.recorded else s.closed.time
        if end - sent >= 0.5 * interval:
            yield (
                None,
                f"the heartbeat sent {end - sent:.1f} s before the connection ended"
                + (" (and the client connected again)" if s.reopened_at is not None else "")
                + f" was never answered; the client gives up after its {interval:g} s interval ({source})",
            )
    elif sent is not None and s.closed is None and c.now - sent >= interval:
        yield (
            None,
            (
                f"a heartbeat sent {c.now - sent:.1f} s ago is still unanswered; the client gives up after "
                f'{interval:g} s ({source}; realtime-js closes 1000 "heartbeat timeout")'
            ),
        )


def _client_side_end(s: Session) -> bool:
    """The end is the client's doing, or the capture cannot say (a HAR)."""
    cl = s.closed
    return cl is not None and (not cl.recorded or cl.by_client is True or cl.ended_first == "client")


@rule(
    "heartbeat-gap",
    Severity.WARNING,
    "CHANNEL_ERROR after the tab returns; server idle close",
    "The client's timers were throttled (background tab, sleeping device): use realtime-js's "
    "`worker: true` option and resubscribe on visibilitychange.",
)
def _heartbeat_gap(s: Session, c: Check) -> Evidence:
    hb = s.heartbeats
    if not hb.sent:
        return
    # The cadence: the client's median gap once there are three, else its known default (one gap is then
    # enough to compare); silence after the last heartbeat counts, up to the end of the connection.
    expected = (
        hb.typical_gap() if len(hb.gaps) >= 3 else _interval(s, c)[0] if s.client_kind else hb.typical_gap()
    )
    if not expected:
        return
    # Silence at the end counts once the connection has ended (while it is open, the next one may come).
    trailing = s.ended_at - hb.last_sent_at if s.ended_at is not None and hb.last_sent_at is not None else 0.0
    gap, where = max(
        (hb.max_gap_s, "between two heartbeats"),
        (trailing, "after the last heartbeat, until the connection ended"),
    )
    if gap > 2 * expected and gap - expected >= 1:
        yield None, f"client heartbeats every {expected:.1f} s, but {gap:.1f} s passed {where}"


@rule(
    "server-idle-close",
    Severity.ERROR,
    "CHANNEL_ERROR (socket closed: 1000), then reconnect",
    "The server closes sockets that send nothing for 60 s: the client's heartbeats are not reaching it "
    "(frozen wrapper readyState, throttled tab, a hop dropping client frames).",
    Confidence.LIKELY,
)
def _server_idle_close(s: Session, c: Check) -> Evidence:
    cl = s.closed
    if cl and cl.by_client is False and cl.code == closecodes.NORMAL:
        last = s.last_client_frame_at or s.upgraded_at
        if last is not None and cl.time - last >= 0.9 * c.timers.idle:
            yield None, f"the server closed with 1000 after {cl.time - last:.1f} s without a client frame"


@rule(
    "client-gone",
    Severity.INFO,
    "nothing: the client itself went away (tab closed, process exited, network lost)",
    "Nothing to fix in the hop: the client's side of the connection ended without a close frame. If the "
    "client did not mean to go, look at what killed it (a crash, a network change, a suspended device).",
)
def _client_gone(s: Session, c: Check) -> Evidence:
    if _lost_by(s, "client"):
        yield None, "the client's connection ended first, without a close frame" + _still_joined(s)


def _ended_before_socket(ch: Channel) -> bool:
    """The channel ended on its own (phx_close), before its socket did."""
    return ch.state == CLOSED and ch.closed_by is not None


def _lost_by(s: Session, side: str) -> bool:
    """The upgraded connection ended without a close frame, `side`'s TCP connection first."""
    cl = s.closed
    return cl is not None and cl.recorded and cl.code is None and cl.ended_first == side and s.status == 101


def _channels_all_ended(s: Session) -> bool:
    return bool(s.channels) and all(_ended_before_socket(ch) for ch in s.channels.values())


def _still_joined(s: Session) -> str:
    live = [ch.label for ch in s.channels.values() if ch.state in (JOINED, JOINING)]
    return f", with {', '.join(live[:3])} still joined" if live else ""


@rule(
    "idle-socket-dropped",
    Severity.WARNING,
    "CHANNEL_ERROR (socket closed: 1006) on a socket whose channels had all ended",
    "Realtime kills sockets left without channels (its channel tracker, every few minutes; no close "
    "frame). The client reconnects; if it should have kept a channel, find why the channel ended first.",
    Confidence.LIKELY,
)
def _idle_socket_dropped(s: Session, c: Check) -> Evidence:
    cl = s.closed
    if cl is None or not _lost_by(s, "server"):
        return
    if _channels_all_ended(s):
        last_end = max(
            (ch.closed_at or ch.left_at or ch.join_sent_at or cl.time) for ch in s.channels.values()
        )
        yield (
            None,
            (
                f"the server dropped the socket without a close frame {cl.time - last_end:.0f} s after its "
                "last channel ended"
            ),
        )


@rule(
    "proxy-idle-timeout",
    Severity.ERROR,
    "CHANNEL_ERROR (socket closed: 1006), then reconnect",
    "An intermediary's idle timer is shorter than the gap between frames (nginx proxy_read_timeout 60 s, "
    "Cloudflare ~100 s): raise it, and keep heartbeats flowing.",
    Confidence.LIKELY,
)
def _proxy_idle_timeout(s: Session, c: Check) -> Evidence:
    cl = s.closed
    if cl is None or not cl.recorded or cl.code is not None or s.status != 101:
        return
    if cl.ended_first == "client":
        return  # the client went away: client-gone
    if s.last_frame_at is None and s.upgraded_at is None:
        return
    if cl.ended_first == "server" and _channels_all_ended(s):
        return  # idle-socket-dropped
    silence = _silence_before_drop(s, c)
    if silence is not None:
        yield None, f"no frames for {silence:.1f} s, then the connection ended without a close frame"


def _silence_before_drop(s: Session, c: Check) -> float | None:
    """The silence before a connection ended without a close frame, if an idle timer explains it: at least
    a second, and with heartbeats flowing at least a missed one."""
    cl = s.closed
    assert cl is not None
    silence = cl.time - (s.last_frame_at or s.upgraded_at or cl.time)
    interval = s.heartbeat_interval(c.timers.configured.heartbeat)[0] if s.heartbeats.sent else 0.0
    return silence if silence >= 1.0 and silence >= 0.9 * interval else None


@rule(
    "server-gone",
    Severity.WARNING,
    "CHANNEL_ERROR (socket closed: 1006), then reconnect",
    "Realtime ends a socket with a close frame (1000, 1001, 1011, 1012): one lost without it while frames "
    "were flowing was cut between here and Realtime. The server or a hop in between crashed, restarted or "
    "lost its network (a deploy, a load balancer draining connections): look at their logs at that time.",
    Confidence.LIKELY,
)
def _server_gone(s: Session, c: Check) -> Evidence:
    if not _lost_by(s, "server") or _channels_all_ended(s):  # the latter: idle-socket-dropped
        return
    if (s.last_frame_at is not None or s.upgraded_at is not None) and _silence_before_drop(s, c) is not None:
        return  # proxy-idle-timeout
    yield (
        None,
        "the server's side of the connection ended first, without a close frame and with frames flowing"
        + _still_joined(s),
    )


@rule(
    "reserved-close-code",
    Severity.ERROR,
    "the client leg stays open, dead, until its heartbeat timeout",
    f"Never pass {closecodes.WORKER_THROWS} (or a reason over {closecodes.MAX_REASON_BYTES} bytes) to a "
    "Worker's close(): map them to 1000/1011 or call close() without arguments.",
)
def _reserved_close_code(s: Session, c: Check) -> Evidence:
    for hop in s.hops:
        if hop.what == "close-throws":
            yield None, hop.detail
            return


RECONNECT_SOON_S = 12.0  # realtime-js and realtime-py reconnect within 1-10 s of a socket close


@rule(
    "server-close",
    Severity.WARNING,
    "CHANNEL_ERROR (socket closed: <code>), then reconnect",
    "The server or a hop ended the socket: a 1012 is a restart or a settings change (reconnect; nothing to "
    "fix), a 1001 follows the join error it names (fix that), a 1011 is a server crash; codes Realtime "
    "never sends come from a hop (check its logs).",
)
def _server_close(s: Session, c: Check) -> Evidence:
    cl = s.closed
    if cl is not None and not cl.recorded and s.reopened_at is not None and s.status == 101:
        # A capture without close frames: the client connected again right after this socket ended, while
        # its heartbeats were answered: the other side ended it.
        hb = s.heartbeats
        live = [ch for ch in s.channels.values() if ch.state == JOINED]  # the client had not left them
        if live and hb.oldest_unanswered() is None and 0 <= s.reopened_at - cl.time <= RECONNECT_SOON_S:
            yield Ev(
                None,
                f"the capture keeps no close frame; the client connected again "
                f"{s.reopened_at - cl.time:.1f} s after this socket ended, with every heartbeat "
                f"answered: the server or a hop ended it",
                Confidence.LIKELY,
            )
        return
    if (
        cl is None
        or cl.by_client is not False
        or cl.code is None
        or cl.code in (closecodes.NORMAL, closecodes.MESSAGE_TOO_BIG)
    ):
        return
    if s.upstream_failed:
        return  # the hop closed it because its upstream failed: early-101 says so
    meaning = closecodes.realtime_meaning(cl.code) or "a code Realtime itself does not send: a hop closed it"
    reason = f' "{cl.reason}"' if cl.reason else ""
    why = ""
    if cl.code == closecodes.SERVICE_RESTART and any(
        m.message == catalog.say("system.disconnect") for ch in s.channels.values() for m in ch.system
    ):
        why = '; the server had pushed system "Server requested disconnect" first'
    elif cl.code == closecodes.GOING_AWAY:
        last = [(ch.topic, ch.reason) for ch in s.channels.values() if ch.reason and ch.joined_at is None]
        if last:
            why = f'; after {last[-1][0]} was refused: "{last[-1][1]}"'
    yield None, f"the server side closed with {cl.code}{reason}: {meaning}{why}"


@rule(
    "message-too-large",
    Severity.ERROR,
    "CHANNEL_ERROR (socket closed: 1009), a broadcast lost, or CLOSED",
    "Send smaller messages: Realtime closes the socket (1009) on a frame over 5,000,000 bytes (a Worker "
    "allows 32 MiB); a broadcast over the project's payload quota (3,000 KB by default) is answered "
    "payload_size_exceeded when acked and dropped silently otherwise; a presence track over it stops the "
    "channel.",
)
def _message_too_large(s: Session, c: Check) -> Evidence:
    yield from _reasons_of(s, "message-too-large")
    if s.closed and s.closed.code == closecodes.MESSAGE_TOO_BIG:
        side = {True: "client", False: "server", None: "hop"}[s.closed.by_client]
        yield None, f"closed by the {side} with 1009 {s.closed.reason!r}: a frame over the size limit"


@rule(
    "rtproxy-command",
    Severity.INFO,
    "what rtproxy did to the connection on request (rt.inject.server, rt.inject.client, rt.close, rt.expire)",
    "Nothing to fix: rtproxy did this because a command asked it to; the findings beside it are what the "
    "client made of it, as it would of the real failure.",
)
def _rtproxy_command(s: Session, c: Check) -> Evidence:
    done = [h for h in s.hops if h.what == COMMAND]
    if done:
        first = ", ".join(dict.fromkeys(h.detail for h in done[:3]))
        more = f" and {len(done) - 3} more" if len(done) > 3 else ""
        yield None, f"{first}{more}"


def _after_commands(s: Session, now: float) -> str:
    """The note a finding gets when rtproxy's own commands acted on the connection before it."""
    names = list(
        dict.fromkeys(h.detail.split(":", 1)[0] for h in s.hops if h.what == COMMAND and h.time <= now)
    )
    return f" (after rtproxy's {', '.join(names)} on this connection)" if names else ""


# ------------------------------------------------------------------------------------- running rules


def evaluate(s: Session, check: Check) -> list[Finding]:
    """All findings whose evidence is present now, in registry order; then, for what nothing explains, an
    unexplained-failure with the raw evidence."""
    out = _evaluate(s, check)
    out.extend(_unexplained(s, check, out))
    return out


def _evaluate(s: Session, check: Check) -> list[Finding]:
    out = []
    after = _after_commands(s, check.now) if s.hop_counts.get(COMMAND) else ""
    code = s.closed.code if s.closed is not None and s.closed.code is not None else None
    for r in RULES:
        explains = r.explains.replace("<code>", str(code)) if code is not None else r.explains
        try:
            for item in r.evidence(s, check):
                ev = item if isinstance(item, Ev) else Ev(item[0], item[1])
                confidence = Confidence.CANDIDATES if ev.candidates else (ev.confidence or r.confidence)
                out.append(
                    Finding(
                        r.code,
                        r.severity,
                        explains,
                        s.redactor.text(ev.topic) if ev.topic else None,
                        s.redactor.text(ev.text + ("" if r.code == "rtproxy-command" else after)),
                        r.fix,
                        s.conn,
                        check.now,
                        confidence,
                        ev.candidates,
                    )
                )
        except Exception as e:  # noqa: BLE001 - one broken rule must not hide the others
            out.append(rule_failed(r.code, e, s.conn, check.now))
    return out


def rule_failed(code: str, error: Exception, conn: str, now: float) -> Finding:
    """The finding that stands in for a rule that raised: the others still run."""
    return Finding(
        "rule-failed",
        Severity.INFO,
        "nothing",
        None,
        f"{code}: {type(error).__name__}: {error}",
        "Report this as an rtproxy bug.",
        conn,
        now,
    )


def clean_end(s: Session, ch: Channel, final: bool) -> bool | None:
    """Did this channel instance end joined-then-left-cleanly? None: it has not ended (or the capture
    cannot say how it did)."""
    if ch.implicit:
        return None  # the capture started after its join
    if ch.state == JOINED:
        return None if s.closed is None or not s.closed.recorded else not s.failed
    if ch.state == CLOSED:
        return ch.joined_at is not None and (
            ch.closed_by == "client" or not s.failed and ch.closed_by is None
        )
    if ch.state in (LEAVING, JOINING) and (s.closed is None or not s.closed.recorded):
        return None  # in flight when the capture (or the run) ended
    if ch.state == LEAVING:
        return ch.joined_at is not None and not final or (s.closed is not None and not s.failed)
    if ch.state == JOINING and not final:
        return None
    return False


def _unexplained(s: Session, check: Check, found: list[Finding]) -> list[Finding]:
    topics = {f.topic for f in found}
    conn_level = any(f.topic is None for f in found)
    out = []
    for ch in s.channels.values():
        topic = s.redactor.text(ch.topic)
        if topic in topics or clean_end(s, ch, check.final) is not False:
            continue
        # A connection-level finding explains a channel that failed with its socket, or never got a reply.
        if conn_level and (ch.reason is None or ch.reason.startswith("socket closed")):
            continue
        out.append(
            _unexplained_finding(
                s,
                check,
                topic,
                f"{ch.label} ended {ch.state}"
                + (f" ({ch.reason})" if ch.reason else "")
                + f" after {ch.sent} frame(s) out, {ch.received} in"
                + (f"; last system message: {ch.system[-1].message}" if ch.system else ""),
            )
        )
        topics.add(topic)
    if not found and not out and s.failed:
        cl = s.closed
        how = (
            f"status {s.status}"
            if s.status not in (None, 101)
            else f"close {cl.code if cl and cl.code is not None else 'without a close frame'}"
            + (f' "{cl.reason}"' if cl and cl.reason else "")
        )
        out.append(
            _unexplained_finding(s, check, None, f"the connection failed ({how}); no rule explains it")
        )
    return out


def _unexplained_finding(s: Session, check: Check, topic: str | None, text: str) -> Finding:
    r = UNEXPLAINED
    return Finding(
        r.code,
        r.severity,
        r.explains,
        topic,
        s.redactor.text(text),
        r.fix,
        s.conn,
        check.now,
        Confidence.LIKELY,
    )


# Symptom -> the findings it can follow from. The cause is listed first in a report; the symptom says
# which one it follows. (A cause that is itself a symptom of another is linked to that one.)
# The hop-* codes are rt_legs' (rtproxy_core/legs.py), put on a client leg's connection: what a hop in
# front of Realtime changed, which its client sees as an unanswered join or heartbeat: the frame never
# reached Realtime (dropped; early 101: the hop's upstream was not open yet, or refused), reached it after
# the client's timeout (delayed), or on a socket without the client's vsn (the query rewritten). A join
# sent again after a dropped one is not a duplicate on Realtime's side.
HOP_LOST_FRAMES = ("hop-frames-dropped", "hop-early-101", "hop-frames-delayed", "hop-query-rewritten")
SYMPTOM_OF: dict[str, tuple[str, ...]] = {
    "join-timeout": (
        "join-dropped-by-proxy",
        "vsn-missing",
        "serializer-mismatch",
        "early-101",
        "upstream-unreachable",
        "proxy-idle-timeout",
        "binary-as-text",
        "binding-mismatch",
        *HOP_LOST_FRAMES,
    ),
    "heartbeat-timeout": (
        "early-101",
        "upstream-unreachable",
        "vsn-missing",
        "serializer-mismatch",
        "proxy-idle-timeout",
        "server-close",
        "reserved-close-code",
        "join-dropped-by-proxy",
        *HOP_LOST_FRAMES,
    ),
    "server-idle-close": (
        "no-heartbeat",
        "heartbeat-gap",
        "client-silent",
        "join-dropped-by-proxy",
        "hop-frames-dropped",
    ),
    "proxy-idle-timeout": ("no-heartbeat", "heartbeat-gap", "client-silent"),
    "server-close": ("rate-limited", "tenant-not-found"),
    "join-error": ("token-expired",),
    "token-invalid": ("token-expired",),
    "upgrade-rejected": ("token-expired", "apikey-missing"),
    "channel-shutdown": ("token-expired", "database-unavailable", "rate-limited"),
    "left-after-join": ("binding-mismatch", "duplicate-join"),
    "duplicate-join": ("binding-mismatch", "hop-frames-dropped"),
    "message-too-large": (),
}


def link(findings: list[Finding]) -> list[Finding]:
    """Each symptom marked with the finding it follows, and the list ordered causes first, each followed
    by its symptoms (errors before warnings before info among the causes; registry order within)."""
    order = {r.code: i for i, r in enumerate(RULES)}
    rank = lambda f: (SEVERITY_ORDER[f.severity], order.get(f.code, len(order)))
    codes = {f.code for f in findings}
    linked = []
    for f in findings:
        cause = next((c for c in SYMPTOM_OF.get(f.code, ()) if c in codes and c != f.code), None)
        linked.append(replace(f, follows=cause) if cause != f.follows else f)
    # A reconnect loop follows the connection's own cause: its first root error or warning.
    roots = sorted(
        (
            f
            for f in linked
            if f.follows is None
            and f.code != "reconnect-loop"
            and f.severity in (Severity.ERROR, Severity.WARNING)
        ),
        key=rank,
    )
    if roots:
        linked = [replace(f, follows=roots[0].code) if f.code == "reconnect-loop" else f for f in linked]
    causes = sorted((f for f in linked if f.follows is None), key=rank)
    out: list[Finding] = []
    placed: set[int] = set()

    def place(f: Finding) -> None:
        if id(f) in placed:
            return
        placed.add(id(f))
        out.append(f)
        for g in sorted((g for g in linked if g.follows == f.code and id(g) not in placed), key=rank):
            place(g)

    for f in causes:
        place(f)
    for f in sorted(linked, key=rank):  # symptoms of a cause that is itself a symptom placed later: cycles
        place(f)
    return out


CODES = {r.code: r for r in RULES}


# Registered for its code, severity and fix; its evidence spans connections, so Diagnoser computes it.
RECONNECT_LOOP = Rule(
    "reconnect-loop",
    Severity.ERROR,
    "the client reconnects over and over; channels flap between errors",
    "Fix the finding of the individual connections (usually a rejected upgrade or a hop that accepts and "
    "then closes); the client's backoff restarts after every successful open.",
    lambda s, c: iter(()),
)
RULES.append(RECONNECT_LOOP)
CODES["reconnect-loop"] = RECONNECT_LOOP

# Registered for its code, severity and fix; evaluate() adds it where no other finding explains a failure.
UNEXPLAINED = Rule(
    "unexplained-failure",
    Severity.WARNING,
    "a channel or connection failed in a way no other finding explains",
    "The evidence is quoted as the wire shows it. Capture the run with a flow file (mitmdump -w) for close "
    "frames and the hop's own actions, and report it as an rtproxy gap if the cause is still unnamed.",
    lambda s, c: iter(()),
    Confidence.LIKELY,
)
RULES.append(UNEXPLAINED)
CODES["unexplained-failure"] = UNEXPLAINED
