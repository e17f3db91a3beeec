"""The two-leg view of a hop: one connection seen in front of a Worker (or any relay) and behind it.

rtproxy listens twice (rt_legs): the client-side listener's target is the hop, and the hop's upstream is
the upstream-side listener, whose target is Realtime. Each WebSocket upgrade on the first is a client leg
(what the page sent and got), each on the second an upstream leg (what the hop sent Realtime and got
back). This module records each leg, bounded, pairs a client leg with the upstream leg the hop opened for
it, and runs the leg-diff rules over each pair: what the hop changed. No I/O: it is fed events.py's
events, as Session is (the per-connection Session and its rules go on running on each leg as usual).

Pairing (`LegBook`): an upstream leg is a candidate's when it opened after the client leg opened and
before that leg ended, and the client leg has no upstream leg yet. Candidates are scored:
  path   3 the same path and query; 2 the same path; 1 one path ends with the other (a hop that adds or
         strips a prefix) or the upstream path is the design relay's rule applied to the client's
         (hop.relay_path); 0 otherwise;
  frames +2 when the upstream leg's first client frame is one of the client leg's first FIRST_FRAMES
         client frames (bytes alike; a binary frame also matches the text "[object Blob]").
A unique best score pairs at once (at the upstream leg's upgrade, by time and path). A tie waits for the
upstream leg's first client frame (then by time, path and first frames); if still tied, or when the
upstream leg ends first, or when a candidate's client leg ends, the client leg that opened first wins:
hops open their upstream connections in the order their clients came.

Frames are compared per direction (the client's frames with what reached the upstream, the upstream's
with what reached the client): each arriving frame is matched to the earliest unmatched frame sent with
the same bytes (a text "[object Blob]", or a text frame holding a binary frame's bytes, to a binary
frame: turned into text). What was sent and never matched was dropped; what arrived and matches nothing
was injected, or altered when a dropped frame has its topic, event and ref. Matched frames out of the
sender's order were reordered; those that took DELAY_S or more were delayed.

Findings of a pair are reported once each, on the client leg's connection. Request and handshake changes
are reported as soon as they show; frame and close changes once both legs have ended (or rtproxy stops).
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from . import closecodes, frames
from .events import Closed, Event, Frame, Handshake, Opened
from .hop import BLOB_TEXT, relay_path
from .redact import Redactor
from .rules import ERROR, INFO, WARNING, Finding, rule_failed
from .session import rejection_text

CLIENT, UPSTREAM = "client", "upstream"
METADATA = "rtproxy.leg"  # flow.metadata key of a leg's flow: leg_metadata(), read by the content view
MAX_FRAMES = 2000  # frames recorded per leg; later ones are counted, not compared
FIRST_FRAMES = 3  # client frames of a client leg looked at for pairing (its first may be dropped)
# A hop forwards a frame within one turn of its event loop: milliseconds, both legs timed by one clock
# (the one mitmproxy). A second is a hundred times that and a tenth of the clients' push and join timeout
# (realtime-js DEFAULT_TIMEOUT 10000 ms, realtime-py DEFAULT_TIMEOUT 10 s): a frame that late was held in a
# queue or behind a stalled hop, never slowed by the loopback between the legs.
DELAY_S = 1.0
MAX_FATES = 200  # frames per leg whose fate (dropped, delayed, ...) is kept for the content view
MAX_LISTED = 3  # frames quoted in a finding's evidence
KEEP_FINISHED = 100  # ended pairs (and upstream legs without a client leg) kept for commands and reports

# Request headers each leg has of its own: the hop's HTTP connection and its WebSocket handshake, and
# Host, which the host rule compares. A hop that relays WebSockets (workerd for any Worker, a pass-through
# fetch() included) terminates the client's handshake and makes its own upstream: RFC 6455 4.1, the key
# "MUST be a nonce consisting of a randomly selected 16-byte value" per connection, and RFC 7692 5, an
# extension is negotiated by "the client and the server" of one connection (permessage-deflate's context
# is per connection). Seen in workerd (tests/test_legs_workerd.py): its own Sec-WebSocket-Key upstream, and
# the client's offer `permessage-deflate; client_max_window_bits` sent as `...; client_max_window_bits=15`.
# Neither is something the hop changed for the client: they are per leg. (Sec-WebSocket-Protocol is not:
# the upstream picks from the client's list, so a hop that drops it changes what the client gets.)
PER_LEG_HEADERS = frozenset(
    {
        "host",
        "connection",
        "upgrade",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "content-length",
        "proxy-connection",
        "proxy-authorization",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
    }
)
# Headers a hop (Cloudflare's edge, a proxy) adds to say where a request came from: not a change.
FORWARDING_HEADERS = frozenset(
    {"forwarded", "via", "x-real-ip", "true-client-ip", "cdn-loop", "x-request-id", "traceparent"}
)
FORWARDING_PREFIXES = ("x-forwarded-", "cf-")
SECRET_HEADERS = frozenset({"authorization", "cookie", "x-api-key", "apikey"})


# ------------------------------------------------------------------------------------------ legs


@dataclass(slots=True)
class LegFrame:
    """One frame as a leg saw it: enough to match it on the other leg and to quote it."""

    n: int  # 1-based, among this leg's frames in this direction
    time: float
    from_client: bool
    binary: bool
    digest: str  # of the bytes
    length: int
    topic: str | None = None
    event: str | None = None
    ref: str | None = None
    blob: bool = False  # a text frame that is exactly "[object Blob]"

    @property
    def key(self) -> tuple[str, str, str | None] | None:
        return (self.topic, self.event, self.ref) if self.topic is not None and self.event else None


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def leg_frame(n: int, f: Frame) -> LegFrame:
    data = f.data if isinstance(f.data, bytes) else bytes(f.data)
    lf = LegFrame(n, f.time, f.from_client, f.binary, _digest(data), len(data))
    if not f.binary and data.strip() == BLOB_TEXT.encode():
        lf.blob = True
        return lf
    try:
        m = frames.decode(data, binary=f.binary, from_client=f.from_client, lazy=True)
    except frames.DecodeError:
        return lf
    lf.topic, lf.event, lf.ref = m.topic, m.event, m.ref
    return lf


@dataclass
class Leg:
    """One WebSocket connection on one side of the hop."""

    id: str  # the flow id
    side: str  # CLIENT | UPSTREAM
    listener: int | None = None  # the listen port it arrived on
    url: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    opened_at: float = 0.0
    status: int | None = None
    answered_at: float | None = None
    rejection: str | None = None
    out: list[LegFrame] = field(default_factory=list)  # from the client side of this leg
    back: list[LegFrame] = field(default_factory=list)  # from the server side of this leg
    frames_seen: int = 0
    capped_at: float | None = None  # the time of the last frame recorded, once MAX_FRAMES were
    close: Closed | None = None
    ended_at: float | None = None

    @property
    def conn(self) -> str:
        """The short id the tracker's log lines use for this connection."""
        return self.id[:6]

    @property
    def path(self) -> str:
        return _split(self.url)[0]

    @property
    def query(self) -> str:
        return _split(self.url)[1]

    @property
    def host(self) -> str | None:
        return next((v for k, v in self.headers if k.lower() == "host"), None)

    @property
    def upgraded(self) -> bool:
        return self.status == 101

    @property
    def ended(self) -> bool:
        return self.ended_at is not None

    def feed(self, event: Event) -> None:
        if isinstance(event, Frame):
            self.frames_seen += 1
            if self.frames_seen > MAX_FRAMES:
                return
            mine = self.out if event.from_client else self.back
            mine.append(leg_frame(len(mine) + 1, event))
            if self.frames_seen == MAX_FRAMES:
                self.capped_at = event.time
        elif isinstance(event, Opened):
            self.url, self.headers, self.opened_at = event.url, list(event.headers), event.time
        elif isinstance(event, Handshake):
            self.status, self.answered_at = event.status, event.time
            if event.status != 101:
                self.rejection = rejection_text(event.body)
        elif isinstance(event, Closed):
            self.close = event
            self.ended_at = event.time

    def end(self, t: float) -> None:
        """The leg is over: closed, refused, or failed."""
        if self.ended_at is None:
            self.ended_at = t

    def summary(self, r: Redactor) -> dict[str, Any]:
        return {
            "id": self.id,
            "conn": self.conn,
            "side": self.side,
            "listener": self.listener,
            "url": r.url(self.url),
            "status": self.status,
            "rejection": r.text(self.rejection) if self.rejection else None,
            "frames": {"out": len(self.out), "in": len(self.back), "seen": self.frames_seen},
            "close": None
            if self.close is None
            else {
                "code": self.close.code,
                "reason": r.text(self.close.reason),
                "by_client": self.close.by_client,
            },
        }


def _split(url: str) -> tuple[str, str]:
    try:
        p = urlsplit(url)
    except ValueError:
        return url, ""
    return p.path or "/", p.query


# ------------------------------------------------------------------------------------------ frames


@dataclass
class Direction:
    """One direction of a pair: what the sender's leg sent and what the receiver's leg got."""

    sender: str  # "client" | "upstream": who sent the frames
    receiver: str
    sent: list[LegFrame]
    got: list[LegFrame]
    matched: list[tuple[LegFrame, LegFrame]] = field(default_factory=list)  # (sent, got), in got order
    as_text: list[tuple[LegFrame, LegFrame]] = field(default_factory=list)  # binary sent, text got
    dropped: list[LegFrame] = field(default_factory=list)
    injected: list[LegFrame] = field(default_factory=list)
    altered: list[tuple[LegFrame, LegFrame]] = field(default_factory=list)
    reordered: list[tuple[LegFrame, LegFrame]] = field(default_factory=list)  # (got first, sent first)
    delayed: list[tuple[LegFrame, LegFrame]] = field(default_factory=list)
    late: list[LegFrame] = field(default_factory=list)  # sent after the receiving leg ended: not compared
    held: int = 0  # dropped frames sent before the receiving leg was open

    @property
    def arrow(self) -> str:
        return f"{self.sender} → {self.receiver}"


def align(
    sender: str,
    receiver: str,
    sent: list[LegFrame],
    got: list[LegFrame],
    receiver_open_at: float | None,
    receiver_end: float | None,
    sent_cut: float | None = None,
    got_cut: float | None = None,
) -> Direction:
    """Match what arrived to what was sent (see the module docstring). `receiver_open_at`: when the
    receiving leg upgraded; `receiver_end`: when it ended (frames sent later had nowhere to go);
    `sent_cut`/`got_cut`: unmatched frames later than these are outside what both legs recorded (_cuts)."""
    d = Direction(sender, receiver, sent, got)
    considered = []
    for s in sent:
        if receiver_end is not None and s.time > receiver_end:
            d.late.append(s)
            continue
        considered.append(s)
    by_bytes: dict[tuple[str, bool], deque[int]] = {}
    binaries: deque[int] = deque()
    for i, s in enumerate(considered):
        by_bytes.setdefault((s.digest, s.binary), deque()).append(i)
        if s.binary:
            binaries.append(i)
    used = [False] * len(considered)

    def take(q: deque[int] | None) -> int | None:
        while q:
            i = q.popleft()
            if not used[i]:
                used[i] = True
                return i
        return None

    unmatched_got: list[LegFrame] = []
    for g in got:
        i = take(by_bytes.get((g.digest, g.binary)))
        if i is not None:
            d.matched.append((considered[i], g))
            continue
        if not g.binary:
            i = take(binaries) if g.blob else take(by_bytes.get((g.digest, True)))
            if i is not None:
                d.as_text.append((considered[i], g))
                continue
        unmatched_got.append(g)
    # Beyond what both legs recorded, a frame without its match says nothing.
    lost = [s for i, s in enumerate(considered) if not used[i] and (sent_cut is None or s.time <= sent_cut)]
    unmatched_got = [g for g in unmatched_got if got_cut is None or g.time <= got_cut]
    # Altered: a frame that arrived in place of a lost one with the same topic, event and ref.
    by_key: dict[tuple, deque[LegFrame]] = {}
    for s in lost:
        if s.key is not None:
            by_key.setdefault(s.key, deque()).append(s)
    replaced: set[int] = set()
    for g in unmatched_got:
        q = by_key.get(g.key) if g.key is not None else None
        if q:
            s = q.popleft()
            replaced.add(s.n)
            d.altered.append((s, g))
        else:
            d.injected.append(g)
    d.dropped = [s for s in lost if s.n not in replaced]
    d.held = sum(1 for s in d.dropped if receiver_open_at is None or s.time < receiver_open_at)
    # Reordered: arrived out of the order they were sent (outside one longest in-order run).
    order = sorted(d.matched + d.as_text, key=lambda sg: sg[1].n)
    in_order = _increasing([s.n for s, _ in order])
    for k, (s, _) in enumerate(order):
        if k in in_order:
            continue
        # (the one that arrived first, the one sent before it), for "got #5 before #4"
        later = next((o for o, _ in order[:k] if o.n > s.n), None)
        if later is not None:
            d.reordered.append((later, s))
        else:
            earlier = next((o for o, _ in order[k + 1 :] if o.n < s.n), s)
            d.reordered.append((s, earlier))
    d.delayed = [(s, g) for s, g in order if g.time - s.time >= DELAY_S]
    return d


def _increasing(seq: list[int]) -> set[int]:
    """Indexes of one longest strictly increasing subsequence of seq (patience sorting)."""
    tails: list[int] = []  # values
    tails_at: list[int] = []  # index in seq of each tail
    prev = [-1] * len(seq)
    for i, v in enumerate(seq):
        j = bisect_left(tails, v)
        if j == len(tails):
            tails.append(v)
            tails_at.append(i)
        else:
            tails[j], tails_at[j] = v, i
        prev[i] = tails_at[j - 1] if j else -1
    out: set[int] = set()
    k = tails_at[-1] if tails_at else -1
    while k != -1:
        out.add(k)
        k = prev[k]
    return out


# ------------------------------------------------------------------------------------------ pairs


@dataclass
class Pair:
    """A client leg and, once it is known, the upstream leg the hop opened for it."""

    client: Leg
    upstream: Leg | None = None
    how: str = ""  # what paired them: "time, same path and query", ...
    findings: list[Finding] = field(default_factory=list)
    fired: set[str] = field(default_factory=set)
    final: bool = False
    _directions: tuple[Direction, Direction] | None = None

    def legs(self) -> list[Leg]:
        return [self.client] + ([self.upstream] if self.upstream is not None else [])

    def other(self, leg: Leg) -> Leg | None:
        return self.upstream if leg is self.client else self.client

    @property
    def changes(self) -> list[str]:
        return [f.code for f in self.findings if f.code in CODES]

    @property
    def ended(self) -> bool:
        return self.client.ended and (self.upstream is None or self.upstream.ended)

    def directions(self) -> tuple[Direction, Direction] | None:
        """(client → upstream, upstream → client), once both legs upgraded; kept once the pair is final."""
        c, u = self.client, self.upstream
        if u is None or not (c.upgraded and u.upgraded):
            return None
        if self._directions is not None:
            return self._directions
        out = align(CLIENT, UPSTREAM, c.out, u.out, u.answered_at, _end(u), *_cuts(sender=c, receiver=u))
        back = align(UPSTREAM, CLIENT, u.back, c.back, c.answered_at, _end(c), *_cuts(sender=u, receiver=c))
        if self.final:
            self._directions = (out, back)
        return out, back


def _end(leg: Leg) -> float | None:
    return leg.close.time if leg.close is not None else leg.ended_at


def _cuts(sender: Leg, receiver: Leg) -> tuple[float | None, float | None]:
    """(sent cutoff, got cutoff) once a leg stopped recording frames: a frame sent later than a second
    before the receiver's last recorded one may have arrived unrecorded; one that arrived after the
    sender's last recorded one may have been sent unrecorded."""
    sent_cut = receiver.capped_at - DELAY_S if receiver.capped_at is not None else None
    return sent_cut, sender.capped_at


# ------------------------------------------------------------------------------------------ rules


@dataclass(frozen=True, slots=True)
class LegCheck:
    now: float
    final: bool  # both legs have ended (or rtproxy stops)
    redactor: Redactor


@dataclass(frozen=True, slots=True)
class LegRule:
    code: str
    severity: str
    explains: str  # what the client sees
    fix: str
    evidence: Callable[[Pair, LegCheck], Iterator[str]]


LEG_RULES: list[LegRule] = []


def leg_rule(code: str, severity: str, explains: str, fix: str):
    def register(fn: Callable[[Pair, LegCheck], Iterator[str]]) -> Callable[[Pair, LegCheck], Iterator[str]]:
        LEG_RULES.append(LegRule(code, severity, explains, fix, fn))
        return fn

    return register


def _params(query: str) -> list[tuple[str, str]]:
    try:
        return parse_qsl(query, keep_blank_values=True)
    except ValueError:
        return [(query, "")]


def _answer(leg: Leg, r: Redactor) -> str:
    if leg.status is None:
        return "no answer"
    body = f" {r.text(leg.rejection)!r}" if leg.rejection else (" (empty body)" if leg.status != 101 else "")
    return f"{leg.status}{body}"


def _close_text(cl: Closed | None, r: Redactor) -> str:
    if cl is None:
        return "still open"
    if cl.code is None:
        return "ended without a close frame"
    return f"closed {cl.code}" + (f" {r.text(cl.reason)!r}" if cl.reason else "")


def _code(cl: Closed, r: Redactor) -> str:
    return f"{cl.code}" + (f" {r.text(cl.reason)!r}" if cl.reason else "")


def _frame(f: LegFrame, r: Redactor) -> str:
    kind = "binary" if f.binary else "text"
    if f.blob:
        what = repr(BLOB_TEXT)
    elif f.event:
        what = f"{r.text(f.topic or '')} {r.text(f.event)}" + (f" ref {r.text(f.ref)}" if f.ref else "")
    else:
        what = "undecodable"
    return f"#{f.n} {what} ({kind}, {f.length} B)"


def _listed(items: list, show: Callable[[Any], str]) -> str:
    shown = ", ".join(show(x) for x in items[:MAX_LISTED])
    return shown + (f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


def _quoted(p: Pair) -> str:
    u = p.upstream
    return f"client leg {p.client.conn}" + (f", upstream leg {u.conn}" if u is not None else "")


@leg_rule(
    "hop-no-upstream-leg",
    ERROR,
    "the upgrade never reached Realtime: the hop answered the client by itself",
    "Point the hop's upstream (SUPABASE_URL) at rtproxy's upstream-side listener. If it is, the hop answered "
    "without opening it: a 426 from code that expects `request.webSocket`, an exception (`wrangler tail`), "
    "a route that never reaches the Worker.",
)
def _no_upstream_leg(p: Pair, c: LegCheck) -> Iterator[str]:
    cl = p.client
    if p.upstream is None and c.final:
        r = c.redactor
        if cl.status is None:
            error = cl.close.error if cl.close is not None and cl.close.error else ""
            got = "got no answer" + (f" (rtproxy could not reach the hop: {r.text(error)})" if error else "")
        else:
            then = f", then {_close_text(cl.close, r)}" if cl.upgraded else ""
            got = f"was answered {_answer(cl, r)}{then}"
        yield (
            f"client leg {cl.conn} ({r.text(cl.path)}) {got}; no upgrade arrived on the upstream-side listener "
            "while it was open"
        )


@leg_rule(
    "hop-path-rewritten",
    WARNING,
    "404 from Realtime when the new path is not its socket's (/realtime/v1/websocket)",
    "Forward the path verbatim: the upstream URL is SUPABASE_URL + pathname + search.",
)
def _path_rewritten(p: Pair, c: LegCheck) -> Iterator[str]:
    u, r = p.upstream, c.redactor
    if u is not None and u.path != p.client.path:
        rule = (
            " (the design relay's rule: a path not under /realtime becomes /realtime/v1)"
            if u.path == relay_path(p.client.path)
            else ""
        )
        yield f"client leg {p.client.conn} asked for {r.text(p.client.path)}; upstream leg {u.conn} got {r.text(u.path)}{rule}"


@leg_rule(
    "hop-query-rewritten",
    WARNING,
    "401 `API key is missing` without apikey; a 1.0.0 socket without vsn (2.0.0 frames unanswered)",
    "Keep the query: the upstream URL is SUPABASE_URL + pathname + search (the design's relay builds it "
    "from the path alone).",
)
def _query_rewritten(p: Pair, c: LegCheck) -> Iterator[str]:
    u, r = p.upstream, c.redactor
    if u is None:
        return
    cq, uq = _params(p.client.query), _params(u.query)
    if sorted(cq) == sorted(uq):
        return
    cn, un = dict(cq), dict(uq)
    parts = []
    if lost := [k for k in cn if k not in un]:
        parts.append("lost " + ", ".join(r.text(k) for k in lost))
    if added := [k for k in un if k not in cn]:
        parts.append("added " + ", ".join(r.text(k) for k in added))
    changed = [
        k for k in cn if k in un and sorted(v for n, v in cq if n == k) != sorted(v for n, v in uq if n == k)
    ]
    if changed:
        parts.append("changed " + ", ".join(r.text(k) for k in changed))
    if not parts:
        parts.append("reordered")
    yield (
        f"client leg {p.client.conn}: {r.url(p.client.url)}; upstream leg {u.conn}: {r.url(u.url)} "
        f"({'; '.join(parts)})"
    )


@leg_rule(
    "hop-host-rewritten",
    INFO,
    "nothing: a hop addresses its upstream by the upstream's name",
    "Nothing to fix: every hop does this, and rtproxy's reverse listeners set Host to their own target "
    "(mitmproxy's reverse mode, unless keep_host_header). Realtime takes the tenant from Host, so the hop's "
    "must be the project's host, as a fetch() to SUPABASE_URL sends it.",
)
def _host_rewritten(p: Pair, c: LegCheck) -> Iterator[str]:
    u, r = p.upstream, c.redactor
    if u is not None and (p.client.host or "").lower() != (u.host or "").lower():
        yield (
            f"Host {r.text(p.client.host or '(none)')!r} on client leg {p.client.conn}, "
            f"{r.text(u.host or '(none)')!r} on upstream leg {u.conn}"
        )


def _header_map(headers: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in headers:
        name = k.lower()
        if name not in PER_LEG_HEADERS:
            out.setdefault(name, []).append(v)
    return out


def _forwarding(name: str) -> bool:
    return name in FORWARDING_HEADERS or name.startswith(FORWARDING_PREFIXES)


def _header_value(name: str, values: list[str], r: Redactor) -> str:
    if name in SECRET_HEADERS:
        return ", ".join(r.secret(v) for v in values)
    text = r.text(", ".join(values))
    return repr(text if len(text) <= 60 else text[:59] + "…")


@leg_rule(
    "hop-headers-rewritten",
    WARNING,
    "Realtime does not get what the client sent (an x-api-key or Authorization header, its subprotocol, "
    "client info)",
    "Pass the request's headers on: fetch(new Request(upstreamURL, request)) keeps them; "
    "new WebSocket(url) sends none of them.",
)
def _headers_rewritten(p: Pair, c: LegCheck) -> Iterator[str]:
    u, r = p.upstream, c.redactor
    if u is None:
        return
    ch, uh = _header_map(p.client.headers), _header_map(u.headers)
    removed = [k for k in ch if k not in uh]
    changed = [k for k in ch if k in uh and ch[k] != uh[k]]
    added = [k for k in uh if k not in ch and not _forwarding(k)]
    if not (removed or changed or added):
        return
    parts = []
    if removed:
        parts.append("removed " + ", ".join(removed))
    if changed:
        parts.append(
            "changed "
            + ", ".join(f"{k} {_header_value(k, ch[k], r)} → {_header_value(k, uh[k], r)}" for k in changed)
        )
    if added:
        parts.append("added " + ", ".join(added))
    yield f"from client leg {p.client.conn} to upstream leg {u.conn}: {'; '.join(parts)}"


@leg_rule(
    "hop-early-101",
    ERROR,
    "open then close: CHANNEL_ERROR with the real reason hidden from the browser",
    "Open the upstream first and answer the client only with the upstream's answer (pass-through "
    "fetch(new Request(upstreamUrl, request))): then a 401/404/429 reaches the client with its JSON body.",
)
def _early_101(p: Pair, c: LegCheck) -> Iterator[str]:
    cl, u, r = p.client, p.upstream, c.redactor
    if u is None or cl.status != 101 or cl.answered_at is None:
        return
    if u.status is None:
        if c.final:
            yield f"client leg {cl.conn} got 101; the hop's upgrade on upstream leg {u.conn} was never answered"
        return
    if u.status != 101:
        yield f"client leg {cl.conn} got 101; upstream leg {u.conn} was answered {_answer(u, r)}"
    elif u.answered_at is not None and cl.answered_at < u.answered_at:
        when = (
            " (the hop sent that upgrade only after answering the client)"
            if u.opened_at > cl.answered_at
            else ""
        )
        yield (
            f"client leg {cl.conn} got 101 {u.answered_at - cl.answered_at:.3f} s before upstream leg {u.conn} "
            f"was answered 101{when}"
        )


@leg_rule(
    "hop-refusal-changed",
    ERROR,
    "a different error than Realtime's: the client's message and retry are wrong",
    "Return the upstream's refusal as it is (`return fetch(new Request(upstreamUrl, request))`): status and "
    'JSON body (`{"error": ...}`).',
)
def _refusal_changed(p: Pair, c: LegCheck) -> Iterator[str]:
    cl, u, r = p.client, p.upstream, c.redactor
    if u is None or u.status in (None, 101) or cl.status in (None, 101):
        return
    if cl.status != u.status or cl.rejection != u.rejection:
        yield f"upstream leg {u.conn} was answered {_answer(u, r)}; client leg {cl.conn} got {_answer(cl, r)}"


def _final_directions(p: Pair, c: LegCheck) -> tuple[Direction, Direction]:
    return p.directions() if c.final else None  # type: ignore[return-value]


def _counts(d: Direction, p: Pair) -> str:
    s, g = (p.client, p.upstream) if d.sender == CLIENT else (p.upstream, p.client)
    assert s is not None and g is not None
    return f"{d.sender} leg {s.conn} sent {len(d.sent)}, {d.receiver} leg {g.conn} got {len(d.got)}"


@leg_rule(
    "hop-frames-dropped",
    ERROR,
    "TIMED_OUT joins, missing broadcasts or heartbeats",
    "Queue client frames until the upstream leg is open (or open it before answering 101), and forward "
    "every frame both ways.",
)
def _frames_dropped(p: Pair, c: LegCheck) -> Iterator[str]:
    dirs = _final_directions(p, c)
    if not dirs:
        return
    parts = []
    for d in dirs:
        if d.dropped:
            held = f", {d.held} sent before the {d.receiver} leg was open" if d.held else ""
            parts.append(
                f"{len(d.dropped)} {d.sender} frame(s) never reached the {d.receiver}{held}: "
                f"{_listed(d.dropped, lambda f: _frame(f, c.redactor))} ({_counts(d, p)})"
            )
    if parts:
        yield "; ".join(parts)


@leg_rule(
    "hop-frames-delayed",
    WARNING,
    "slow joins, pushes and heartbeats; TIMED_OUT once a delay reaches the client's 10 s",
    "Forward each frame as it arrives: no batching, no awaiting other work per message.",
)
def _frames_delayed(p: Pair, c: LegCheck) -> Iterator[str]:
    dirs = _final_directions(p, c)
    if not dirs:
        return
    parts = []
    for d in dirs:
        if d.delayed:
            s, g = max(d.delayed, key=lambda sg: sg[1].time - sg[0].time)
            parts.append(
                f"{len(d.delayed)} {d.sender} frame(s) took {DELAY_S:g} s or more to reach the {d.receiver}, "
                f"longest {g.time - s.time:.1f} s: {_frame(s, c.redactor)}"
            )
    if parts:
        yield "; ".join(parts)


@leg_rule(
    "hop-frames-reordered",
    WARNING,
    "replies and broadcasts out of order; a push before its channel's join",
    "Forward frames in the order they arrive: one queue per direction, no per-frame async work racing.",
)
def _frames_reordered(p: Pair, c: LegCheck) -> Iterator[str]:
    dirs = _final_directions(p, c)
    if not dirs:
        return
    parts = []
    for d in dirs:
        if d.reordered:
            first, before = d.reordered[0]
            parts.append(
                f"{len(d.reordered)} {d.sender} frame(s) out of order: the {d.receiver} got "
                f"{_frame(first, c.redactor)} before {_frame(before, c.redactor)}"
            )
    if parts:
        yield "; ".join(parts)


@leg_rule(
    "hop-binary-as-text",
    ERROR,
    "silent loss of broadcasts (vsn 2.0.0)",
    "Relay binary as binary: set binaryType = 'arraybuffer' on both legs of a Worker relay before "
    "accept() (or add the no_websocket_standard_binary_type flag); a Blob passed to send() is stringified.",
)
def _binary_as_text(p: Pair, c: LegCheck) -> Iterator[str]:
    dirs = _final_directions(p, c)
    if not dirs:
        return
    parts = []
    for d in dirs:
        if d.as_text:
            parts.append(
                f"{len(d.as_text)} binary {d.sender} frame(s) reached the {d.receiver} as text: "
                + _listed(d.as_text, lambda sg: f"{_frame(sg[0], c.redactor)} → {_frame(sg[1], c.redactor)}")
            )
    if parts:
        yield "; ".join(parts)


@leg_rule(
    "hop-frames-altered",
    WARNING,
    "the server (or the client) acts on something other than what was sent",
    "Forward event.data unchanged; a hop that must rewrite a frame should re-encode it as the connection's "
    "vsn does.",
)
def _frames_altered(p: Pair, c: LegCheck) -> Iterator[str]:
    dirs = _final_directions(p, c)
    if not dirs:
        return
    parts = []
    for d in dirs:
        if d.altered:
            parts.append(
                f"{len(d.altered)} {d.sender} frame(s) reached the {d.receiver} changed: "
                + _listed(d.altered, lambda sg: f"{_frame(sg[0], c.redactor)} → {_frame(sg[1], c.redactor)}")
            )
    if parts:
        yield "; ".join(parts)


@leg_rule(
    "hop-frames-injected",
    WARNING,
    "replies to pushes never made, joins or heartbeats the app did not send",
    "Find where the hop sends frames of its own (a keep-alive, a replayed join): Realtime's heartbeats come "
    "from the client.",
)
def _frames_injected(p: Pair, c: LegCheck) -> Iterator[str]:
    dirs = _final_directions(p, c)
    if not dirs:
        return
    parts = []
    for d in dirs:
        if d.injected:
            parts.append(
                f"the {d.receiver} got {len(d.injected)} frame(s) the {d.sender} never sent: "
                f"{_listed(d.injected, lambda f: _frame(f, c.redactor))}"
            )
    if parts:
        yield "; ".join(parts)


def _same_code(a: int | None, b: int | None) -> bool:
    """1005 (a close frame without a code) cannot be sent on; a hop that sends 1000 for it keeps it."""
    return a == b or {a, b} <= {closecodes.NORMAL, closecodes.NO_CODE}


def _close_origin(p: Pair) -> tuple[Leg, Leg, str] | None:
    """(the leg a close began on, the other leg, who began it), when a peer (not the hop) sent a close
    frame with a code: the client on the client leg, the upstream on the upstream leg."""
    cl, u = p.client, p.upstream
    if u is None:
        return None
    began = []
    if cl.close is not None and cl.close.code is not None and cl.close.by_client is True:
        began.append((cl.close.time, 0, cl, u, "client"))
    if u.close is not None and u.close.code is not None and u.close.by_client is False:
        began.append((u.close.time, 1, u, cl, "upstream"))
    if not began:
        return None
    _, _, a, b, who = min(began, key=lambda x: x[:2])
    return a, b, who


def _close_rule_applies(p: Pair, c: LegCheck) -> tuple[Leg, Leg, str] | None:
    if not c.final or p.upstream is None or not (p.client.upgraded and p.upstream.upgraded):
        return None
    return _close_origin(p)


@leg_rule(
    "hop-close-changed",
    WARNING,
    "the other side gets another close code: a reconnect where the client was done, or the server's reason "
    "lost (realtime-js reconnects on every code but 1000)",
    "Forward close codes and reasons: `a.addEventListener('close', e => b.close(e.code, e.reason))` (a close "
    "without a code, 1005, cannot be sent: use 1000).",
)
def _close_changed(p: Pair, c: LegCheck) -> Iterator[str]:
    found = _close_rule_applies(p, c)
    if found is None:
        return
    a, b, who = found
    assert a.close is not None
    if b.close is not None and b.close.code is not None and not _same_code(a.close.code, b.close.code):
        yield (
            f"the {who} closed {a.side} leg {a.conn} with {_code(a.close, c.redactor)}; "
            f"the hop closed {b.side} leg {b.conn} with {_code(b.close, c.redactor)}"
        )


@leg_rule(
    "hop-close-lost",
    WARNING,
    "CHANNEL_ERROR (socket closed: 1006) instead of the server's close; or Realtime keeps a gone client's "
    "channels until its idle timeout",
    "Close the other leg when one closes, with its code and reason: `a.addEventListener('close', e => "
    "b.close(e.code, e.reason))`; a close() that throws (1005, 1006) leaves the other leg open.",
)
def _close_lost(p: Pair, c: LegCheck) -> Iterator[str]:
    found = _close_rule_applies(p, c)
    if found is None:
        return
    a, b, who = found
    if b.close is None or b.close.code is None:
        then = (
            "was still open when rtproxy stopped"
            if b.close is None and not b.ended
            else "ended without a close frame"
        )
        assert a.close is not None
        yield f"the {who} closed {a.side} leg {a.conn} with {_code(a.close, c.redactor)}; {b.side} leg {b.conn} {then}"


CODES = {r.code: r for r in LEG_RULES}


def evaluate(p: Pair, check: LegCheck) -> list[Finding]:
    """New findings of a pair (also appended to p.findings): each code once per pair."""
    new = []
    for r in LEG_RULES:
        if r.code in p.fired:
            continue
        try:
            text = next(iter(r.evidence(p, check)), None)
        except Exception as e:  # noqa: BLE001 - one broken rule must not hide the others
            p.fired.add(r.code)
            new.append(rule_failed(r.code, e, p.client.conn, check.now))
            continue
        if text is None:
            continue
        p.fired.add(r.code)
        new.append(
            Finding(
                r.code,
                r.severity,
                r.explains,
                None,
                check.redactor.text(text),
                r.fix,
                p.client.conn,
                check.now,
            )
        )
    p.findings.extend(new)
    return new


def readme_table() -> str:
    """The README's table of the leg rules, in registry order."""
    rows = ["| code | severity | what the client sees | fix |", "|---|---|---|---|"]
    rows += [f"| `{r.code}` | {r.severity} | {r.explains} | {r.fix} |" for r in LEG_RULES]
    return "\n".join(rows)


# ------------------------------------------------------------------------------------------ the book


@dataclass
class Update:
    """What changed for a pair: new findings, and whether it was just paired or just ended."""

    pair: Pair
    findings: list[Finding]
    paired: bool = False
    final: bool = False


def parse_ports(value: str) -> tuple[int, int]:
    """rt_legs: "CLIENT_PORT,UPSTREAM_PORT". Raises ValueError with the reason."""
    parts = [p.strip() for p in value.split(",")]
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ValueError(
            f"expected CLIENT_PORT,UPSTREAM_PORT (the listen ports of the client-side and the upstream-side "
            f"listener, e.g. 8080,8081), got {value!r}"
        )
    a, b = int(parts[0]), int(parts[1])
    if not (0 < a < 65536 and 0 < b < 65536):
        raise ValueError(f"ports are 1-65535, got {value!r}")
    if a == b:
        raise ValueError(f"the client side and the upstream side need two listeners, got port {a} twice")
    return a, b


_PATH_WORDS = {3: "same path and query", 2: "same path", 1: "related path", 0: "time only"}


def path_score(client: Leg, upstream: Leg) -> int:
    cp, up = client.path, upstream.path
    if cp == up:
        return 3 if sorted(_params(client.query)) == sorted(_params(upstream.query)) else 2
    if up.endswith(cp) or cp.endswith(up) or up == relay_path(cp):
        return 1
    return 0


def frame_score(client: Leg, upstream: Leg) -> int:
    if not upstream.out:
        return 0
    first = upstream.out[0]
    for f in client.out[:FIRST_FRAMES]:
        if (f.digest, f.binary) == (first.digest, first.binary) or (f.binary and first.blob):
            return 2
    return 0


class LegBook:
    """Every leg on the two listeners, and their pairs. Live legs are kept until they end; ended pairs,
    and upstream legs no client leg claimed, KEEP_FINISHED of each."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        self.redactor = redactor or Redactor()
        self.pairs: dict[str, Pair] = {}  # live pairs, by client leg id
        self.pending: dict[str, Leg] = {}  # upstream legs not paired yet
        self.by_upstream: dict[str, Pair] = {}  # live pairs, by upstream leg id
        self.finished: deque[Pair] = deque(maxlen=KEEP_FINISHED)
        self.strays: deque[Leg] = deque(maxlen=KEEP_FINISHED)  # upstream legs without a client leg

    # ----------------------------------------------------------------------------- lookups

    def pair_of(self, leg_id: str) -> Pair | None:
        p = self.pairs.get(leg_id) or self.by_upstream.get(leg_id)
        if p is None:
            p = next(
                (q for q in self.finished if leg_id in (q.client.id, q.upstream and q.upstream.id)), None
            )
        return p

    def leg(self, leg_id: str) -> Leg | None:
        if leg_id in self.pending:
            return self.pending[leg_id]
        p = self.pair_of(leg_id)
        if p is not None:
            return p.client if p.client.id == leg_id else p.upstream
        return next((s for s in self.strays if s.id == leg_id), None)

    def by_conn(self, conn: str) -> Leg | None:
        """The leg whose short id (the tracker's conn) is `conn`, newest first."""
        for p in [*self.pairs.values(), *reversed(self.finished)]:
            for leg in p.legs():
                if leg.conn == conn:
                    return leg
        return next((leg for leg in [*self.pending.values(), *self.strays] if leg.conn == conn), None)

    def all_pairs(self) -> list[Pair]:
        return list(self.finished) + list(self.pairs.values())

    def unpaired_upstream(self) -> list[Leg]:
        return list(self.strays) + list(self.pending.values())

    # ----------------------------------------------------------------------------- events in

    def open(self, leg_id: str, side: str, opened: Opened, listener: int | None = None) -> list[Update]:
        leg = Leg(leg_id, side, listener)
        leg.feed(opened)
        if side == CLIENT:
            self.pairs[leg_id] = Pair(leg)
            return []
        self.pending[leg_id] = leg
        return self._pair(leg, force=False, now=opened.time)

    def feed(self, leg_id: str, event: Event) -> list[Update]:
        leg = self.leg(leg_id)
        if leg is None or leg.ended and not isinstance(event, Closed):
            return []
        leg.feed(event)
        t = event.time
        if leg_id in self.pending:
            if isinstance(event, Frame) and event.from_client and len(leg.out) == 1:
                return self._pair(leg, force=True, now=t)
            return []
        p = self.pair_of(leg_id)
        if p is not None and not p.final and isinstance(event, Handshake):
            return self._check(p, t)
        return []

    def end(self, leg_id: str, t: float) -> list[Update]:
        leg = self.leg(leg_id)
        if leg is None:
            return []
        leg.end(t)
        out: list[Update] = []
        if leg_id in self.pending:
            out += self._pair(leg, force=True, now=t)
            if leg_id in self.pending:
                self.strays.append(self.pending.pop(leg_id))
        p = self.pair_of(leg_id)
        if p is None or p.final:
            return out
        if leg is p.client:
            # An upstream leg still waiting to be paired may be this client's: decide before it is final.
            for up in list(self.pending.values()):
                if p.upstream is None and self._candidate(p, up):
                    out += self._pair(up, force=True, now=t)
        if p.ended:
            out.append(self._final(p, t))
        else:
            out += self._check(p, t)
        return out

    def finish(self, t: float) -> list[Update]:
        """rtproxy stops: whatever is open ends with the run."""
        out: list[Update] = []
        for up in list(self.pending.values()):
            out += self._pair(up, force=True, now=t)
        for up_id in list(self.pending):
            self.strays.append(self.pending.pop(up_id))
        for p in list(self.pairs.values()):
            out.append(self._final(p, t))
        return out

    # ----------------------------------------------------------------------------- pairing and rules

    @staticmethod
    def _candidate(p: Pair, up: Leg) -> bool:
        cl = p.client
        return (
            p.upstream is None
            and cl.opened_at <= up.opened_at
            and (cl.ended_at is None or cl.ended_at >= up.opened_at)
        )

    def _pair(self, up: Leg, force: bool, now: float) -> list[Update]:
        cands = [p for p in self.pairs.values() if self._candidate(p, up)]
        if not cands:
            return []
        scored = sorted(
            ((path_score(p.client, up), frame_score(p.client, up), p) for p in cands),
            key=lambda x: (-(x[0] + x[1]), x[2].client.opened_at),
        )
        ps, fs, best = scored[0]
        ties = sum(1 for a, b, _ in scored[1:] if a + b == ps + fs)
        if ties and not force:
            return []
        best.upstream = up
        best.how = "time, " + _PATH_WORDS[ps] + (", first frames" if fs else "")
        if ties:
            best.how += f" (tied with {ties} other client leg(s): the first opened)"
        del self.pending[up.id]
        self.by_upstream[up.id] = best
        return [Update(best, evaluate(best, LegCheck(now, False, self.redactor)), paired=True)]

    def _check(self, p: Pair, now: float) -> list[Update]:
        new = evaluate(p, LegCheck(now, False, self.redactor))
        return [Update(p, new)] if new else []

    def _final(self, p: Pair, now: float) -> Update:
        p.final = True
        new = evaluate(p, LegCheck(now, True, self.redactor))
        self.pairs.pop(p.client.id, None)
        if p.upstream is not None:
            self.by_upstream.pop(p.upstream.id, None)
        self.finished.append(p)
        return Update(p, new, final=True)


# ------------------------------------------------------------------------------------------ output


def pair_json(p: Pair, r: Redactor) -> dict[str, Any]:
    frames_json = {}
    dirs = p.directions()
    for d in dirs or ():
        frames_json[d.arrow] = {
            "sent": len(d.sent),
            "got": len(d.got),
            "dropped": len(d.dropped),
            "as_text": len(d.as_text),
            "altered": len(d.altered),
            "injected": len(d.injected),
            "reordered": len(d.reordered),
            "delayed": len(d.delayed),
        }
    return {
        "client": p.client.summary(r),
        "upstream": p.upstream.summary(r) if p.upstream is not None else None,
        "paired_by": p.how or None,
        "ended": p.final,
        "changes": p.changes,
        "frames": frames_json,
        "findings": [f.as_dict() for f in p.findings],
    }


def report_json(book: LegBook, ports: tuple[int, int] | None) -> dict[str, Any]:
    r = book.redactor
    return {
        "client_port": ports[0] if ports else None,
        "upstream_port": ports[1] if ports else None,
        "pairs": [pair_json(p, r) for p in book.all_pairs()],
        "upstream_without_client": [leg.summary(r) for leg in book.unpaired_upstream()],
    }


def report_markdown(book: LegBook) -> str:
    pairs, strays = book.all_pairs(), book.unpaired_upstream()
    if not pairs and not strays:
        return ""
    out = [
        "## Hop legs",
        "",
        "| client leg | upstream leg | paired by | the hop changed |",
        "|---|---|---|---|",
    ]
    for p in pairs:
        up = p.upstream.conn if p.upstream is not None else "—"
        changes = ", ".join(f"`{c}`" for c in p.changes) or ("nothing" if p.final else "nothing yet")
        out.append(f"| {p.client.conn} | {up} | {p.how or '—'} | {changes} |")
    for leg in strays:
        out.append(f"| — | {leg.conn} | no client leg | — |")
    out.append("")
    for p in pairs:
        for f in p.findings:
            out += [
                f"- **{f.code}** ({f.severity}) on client leg {p.client.conn} — {f.explains}",
                f"  - evidence: {f.evidence}",
                f"  - fix: {f.fix}",
            ]
    out.append("")
    return "\n".join(out)


def _side_word(leg: Leg) -> str:
    return f"{leg.side} leg" + (f" (listener {leg.listener})" if leg.listener else "")


def describe(book: LegBook, leg_id: str) -> list[str]:
    """rt.channels' lines for a leg: its pair, what the hop changed, the frames so far."""
    leg = book.leg(leg_id)
    if leg is None:
        return []
    p = book.pair_of(leg_id)
    if p is None:
        return [f"{_side_word(leg)} of the hop: no client leg paired"]
    other = p.other(leg)
    if other is None:
        lines = [f"{_side_word(leg)} of the hop: no upstream leg" + ("" if p.final else " yet")]
    else:
        lines = [f"{_side_word(leg)} of the hop, paired with {other.side} leg {other.conn} by {p.how}"]
    changes = ", ".join(p.changes)
    lines.append(("the hop changed: " if p.final else "the hop changed so far: ") + (changes or "nothing"))
    for d in p.directions() or ():
        lines.append(
            f"frames {d.arrow}: {len(d.sent)} sent, {len(d.got)} got"
            + "".join(
                f", {n} {what}"
                for n, what in (
                    (len(d.dropped), "not arrived" if not p.final else "dropped"),
                    (len(d.as_text), "as text"),
                    (len(d.altered), "altered"),
                    (len(d.injected), "injected"),
                    (len(d.reordered), "reordered"),
                    (len(d.delayed), "delayed"),
                )
                if n
            )
        )
    return lines


def fates(p: Pair, leg: Leg, r: Redactor) -> list[list[Any]]:
    """[time, from_client, text] for each frame of `leg` that did not pass the hop unchanged (for the
    content view; frames are found by their time and direction)."""
    dirs = p.directions() if p.final else None
    if not dirs:
        return []
    out: list[list[Any]] = []
    for d in dirs:
        sending = (d.sender == CLIENT) == (leg.side == CLIENT)
        peer = d.receiver if sending else d.sender
        if sending:
            out += [
                [s.time, s.from_client, f"dropped by the hop: it never reached the {peer}"] for s in d.dropped
            ]
            out += [[s.time, s.from_client, f"sent after the {peer} leg had ended"] for s in d.late]
            out += [
                [s.time, s.from_client, f"reached the {peer} as text: {_frame(g, r)}"] for s, g in d.as_text
            ]
            out += [
                [s.time, s.from_client, f"reached the {peer} changed: {_frame(g, r)}"] for s, g in d.altered
            ]
            out += [
                [s.time, s.from_client, f"reached the {peer} {g.time - s.time:.1f} s later"]
                for s, g in d.delayed
            ]
            out += [
                [a.time, a.from_client, f"reached the {peer} out of order: after #{b.n}"]
                for b, a in d.reordered
            ]
        else:
            out += [
                [g.time, g.from_client, f"injected by the hop: the {peer} never sent it"] for g in d.injected
            ]
            out += [
                [g.time, g.from_client, f"the {peer} sent it as binary: {_frame(s, r)}"] for s, g in d.as_text
            ]
            out += [
                [g.time, g.from_client, f"the {peer} sent it otherwise: {_frame(s, r)}"] for s, g in d.altered
            ]
            out += [
                [g.time, g.from_client, f"the {peer} sent it {g.time - s.time:.1f} s earlier"]
                for s, g in d.delayed
            ]
    return out[:MAX_FATES]


def leg_metadata(p: Pair, leg: Leg, r: Redactor) -> dict[str, Any]:
    """What a flow keeps of its leg (flow.metadata; flow files keep it): the content view reads it."""
    other = p.other(leg)
    return {
        "side": leg.side,
        "listener": leg.listener,
        "paired_with": other.id if other is not None else None,
        "paired_conn": other.conn if other is not None else None,
        "paired_by": p.how or None,
        "ended": p.final,
        "changes": p.changes,
        "fates": fates(p, leg, r),
        "compared_until": _compared_until(p),
    }


def _compared_until(p: Pair) -> float | None:
    """The time after which frames were not compared (a leg stopped recording at MAX_FRAMES)."""
    caps = [leg.capped_at for leg in p.legs() if leg.capped_at is not None]
    return min(caps) - DELAY_S if caps else None


def stray_metadata(leg: Leg) -> dict[str, Any]:
    return {
        "side": leg.side,
        "listener": leg.listener,
        "paired_with": None,
        "paired_conn": None,
        "paired_by": None,
        "ended": leg.ended,
        "changes": [],
        "fates": [],
        "compared_until": None,
    }


def view_lines(meta: dict[str, Any], time: float | None, from_client: bool | None) -> list[str]:
    """The content view's lines about a message's leg and its pair (`meta`: leg_metadata)."""
    side = f"{meta.get('side')} leg" + (f" (listener {meta['listener']})" if meta.get("listener") else "")
    if meta.get("paired_conn"):
        other = UPSTREAM if meta.get("side") == CLIENT else CLIENT
        lines = [f"# hop: {side}, paired with {other} leg {meta['paired_conn']} by {meta.get('paired_by')}"]
    elif meta.get("side") == CLIENT:
        lines = [f"# hop: {side}, no upstream leg" + ("" if meta.get("ended") else " yet")]
    else:
        lines = [f"# hop: {side}, paired with no client leg"]
    changes = ", ".join(meta.get("changes") or []) or "nothing"
    lines.append(f"# the hop changed{'' if meta.get('ended') else ' so far'}: {changes}")
    if time is not None and meta.get("ended") and meta.get("paired_conn"):
        fate = next((t for at, fc, t in meta.get("fates") or [] if at == time and fc == from_client), None)
        until = meta.get("compared_until")
        if fate is None and until is not None and time > until:
            fate = f"not compared (each leg's first {MAX_FRAMES} frames are)"
        lines.append(f"# this frame: {fate or 'passed the hop unchanged'}")
    return lines
