"""The leg rules: what a hop changed between a client leg and its upstream leg, one rule per change.

Each rule is registered with `@leg_rule(code, severity, explains, fix)` on a function that looks at a
`Pair` and a `LegCheck` and yields one evidence text when the pair shows the change. The codes are hop-*
(they are put on the client leg's connection, beside its own rules' findings, and never share a code with
them). This module holds the rules and what they need; `book.evaluate` runs them over a pair, each code
once per pair, when the pair forms, at each handshake and when it ends: the request and handshake rules
look at the legs as they are, the frame and close rules wait for a final pair (both legs ended) and read
its two directions (`Pair.directions()`, align.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import closecodes
from ..events import Closed
from ..hop import relay_path
from ..redact import SECRET_HEADERS, Redactor
from ..rules import Rule, Severity, rules_table
from .align import DELAY_S, Direction
from .model import CLIENT, Leg, LegFrame, query_params, quote_frame

if TYPE_CHECKING:
    from .book import Pair

MAX_LISTED = 3  # frames quoted in a finding's evidence

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


@dataclass(frozen=True, slots=True)
class LegCheck:
    """What a leg rule may look at besides the pair."""

    now: float
    final: bool  # both legs have ended (or rtproxy stops)
    redactor: Redactor


LegRule = Rule["Pair", LegCheck]  # a leg rule: the main rules' Rule, over a pair of legs


LEG_RULES: list[LegRule] = []  # in the order they are written here: evaluate's and the docs' table's


def leg_rule(
    code: str, severity: Severity, explains: str, fix: str
) -> Callable[[Callable[[Pair, LegCheck], Iterator[str]]], Callable[[Pair, LegCheck], Iterator[str]]]:
    """Registers the decorated function, yielding evidence texts, as the leg rule `code` (appended to
    LEG_RULES); book.evaluate runs it with the rules engine's findings_of."""

    def register(fn: Callable[[Pair, LegCheck], Iterator[str]]) -> Callable[[Pair, LegCheck], Iterator[str]]:
        if any(r.code == code for r in LEG_RULES):
            raise ValueError(f"leg rule {code!r} is registered twice")
        LEG_RULES.append(Rule(code, severity, explains, fix, fn))
        return fn

    return register


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


def _sent_got(sg: tuple[LegFrame, LegFrame], r: Redactor) -> str:
    return f"{quote_frame(sg[0], r)} → {quote_frame(sg[1], r)}"


def _listed(items: list[Any], show: Callable[[Any], str]) -> str:
    shown = ", ".join(show(x) for x in items[:MAX_LISTED])
    return shown + (f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


@leg_rule(
    "hop-no-upstream-leg",
    Severity.ERROR,
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
    Severity.WARNING,
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
    Severity.WARNING,
    "401 `API key is missing` without apikey; a 1.0.0 socket without vsn (2.0.0 frames unanswered)",
    "Keep the query: the upstream URL is SUPABASE_URL + pathname + search (the design's relay builds it "
    "from the path alone).",
)
def _query_rewritten(p: Pair, c: LegCheck) -> Iterator[str]:
    u, r = p.upstream, c.redactor
    if u is None:
        return
    cq, uq = query_params(p.client.query), query_params(u.query)
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
    Severity.INFO,
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
    Severity.WARNING,
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
    Severity.ERROR,
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
    Severity.ERROR,
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


def _final_directions(p: Pair, c: LegCheck) -> tuple[Direction, Direction] | None:
    """Both directions of a final pair whose legs both upgraded; None before (frames still in flight)."""
    return p.directions() if c.final else None


def _counts(d: Direction, p: Pair) -> str:
    s, g = (p.client, p.upstream) if d.sender == CLIENT else (p.upstream, p.client)
    assert s is not None and g is not None
    return f"{d.sender} leg {s.conn} sent {len(d.sent)}, {d.receiver} leg {g.conn} got {len(d.got)}"


@leg_rule(
    "hop-frames-dropped",
    Severity.ERROR,
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
                f"{_listed(d.dropped, lambda f: quote_frame(f, c.redactor))} ({_counts(d, p)})"
            )
    if parts:
        yield "; ".join(parts)


@leg_rule(
    "hop-frames-delayed",
    Severity.WARNING,
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
                f"longest {g.time - s.time:.1f} s: {quote_frame(s, c.redactor)}"
            )
    if parts:
        yield "; ".join(parts)


@leg_rule(
    "hop-frames-reordered",
    Severity.WARNING,
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
                f"{quote_frame(first, c.redactor)} before {quote_frame(before, c.redactor)}"
            )
    if parts:
        yield "; ".join(parts)


@leg_rule(
    "hop-binary-as-text",
    Severity.ERROR,
    "SUBSCRIBED, but broadcasts are silently lost (vsn 2.0.0)",
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
                + _listed(d.as_text, lambda sg: _sent_got(sg, c.redactor))
            )
    if parts:
        yield "; ".join(parts)


@leg_rule(
    "hop-frames-altered",
    Severity.WARNING,
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
                + _listed(d.altered, lambda sg: _sent_got(sg, c.redactor))
            )
    if parts:
        yield "; ".join(parts)


@leg_rule(
    "hop-frames-injected",
    Severity.WARNING,
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
                f"{_listed(d.injected, lambda f: quote_frame(f, c.redactor))}"
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
    Severity.WARNING,
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
    Severity.WARNING,
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


LEG_RULES_BY_CODE: dict[str, LegRule] = {r.code: r for r in LEG_RULES}  # hop-* code -> its rule


def readme_table() -> str:
    """The docs' table of the leg rules (docs/reference/findings.md), in registry order."""
    return rules_table(LEG_RULES)
