"""Rules for a refused upgrade: nothing else can work until the upgrade does.

A refusal that names its cause is that cause's finding (reasons.py, over the catalog); these are the ones
the status, the URL and the headers tell: no apikey, a wrong path, the hop's own exception, a gateway that
could not reach Realtime, and a refusal that says nothing, whose candidate causes are ranked by what the
request shows.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from .. import catalog, frames, neterrors
from ..events import HopKind
from ..redact import jwt_claims
from ..session import Session
from .model import Check, Ev, Evidence, Severity, ago, rule
from .said import gateway_named, named, rejection


@rule(
    "apikey-missing",
    Severity.ERROR,
    "CHANNEL_ERROR in a reconnect loop; realtime-py: connect() raises InvalidStatus, no channel is told",
    "Forward the query string verbatim (in a Worker: url.search). Browsers can only send the apikey in "
    "the query; Realtime answers 401 without it.",
)
def _apikey_missing(s: Session, c: Check) -> Evidence:
    rej = rejection(s)
    if (
        rej
        and rej.status == 401
        and ("api key is missing" in rej.text.lower() or gateway_named(rej.text) == "apikey-missing")
    ):
        if s.apikey and s.upstream_apikey is False:
            where = "the client sent one but the upstream URL has none"
        elif s.apikey:  # a capture of the client's side: what it sent did not reach Realtime
            where = "the client's request has one, so a hop between it and Realtime dropped it"
        else:
            where = "no apikey query parameter and no x-api-key header"
        yield None, f'{rej.request} was answered 401 {{"error": "{rej.text}"}}: {where}'


@rule(
    "path-wrong",
    Severity.ERROR,
    'CHANNEL_ERROR ("channel error: transport failure": the upgrade was refused, the socket never opened) in a reconnect loop; '
    "realtime-py: connect() raises InvalidStatus, no channel is told",
    "Map the path 1:1: hosted Realtime is /realtime/v1/websocket, a self-hosted server /socket/websocket.",
)
def _path_wrong(s: Session, c: Check) -> Evidence:
    rej = rejection(s)
    if rej and rej.status == 404 and "tenant not found" not in rej.text.lower():
        path = (s.upstream_url or s.url or "").split("?")[0]
        yield None, f"{rej.request} was answered 404 {rej.text or '(no JSON error)'} for {path}"


@rule(
    "worker-exception",
    Severity.ERROR,
    'CHANNEL_ERROR ("channel error: transport failure": the upgrade was refused, the socket never opened) in a reconnect loop; '
    "realtime-py: connect() raises InvalidStatus, no channel is told",
    "The hop's code threw while handling the upgrade: fix the exception (check `wrangler tail`); a Worker "
    "proxy should pass the upgrade through with fetch(new Request(upstreamUrl, request)).",
)
def _worker_exception(s: Session, c: Check) -> Evidence:
    rej = rejection(s)
    if rej and rej.status == 500 and worker_threw(rej.text):
        yield None, f"{rej.request} was answered 500 ({threw_text(rej.text)}) instead of 101"


# What a client is answered when a Worker's fetch handler throws (an uncaught exception or a rejected
# promise: fetch() given a ws(s):// URL, `new Response(null, {status: 101})`, `request.webSocket.accept()`,
# `env.MISSING.split()`), measured against each of those in tests/test_probe_verdicts.py:
# - workerd (rtworker, wrangler dev's runtime; npm workerd 1.20261117.1): `500 Internal Server Error`,
#   headers only `Connection: close` and `Content-Length: 21`, body `Internal Server Error` (no
#   Content-Type). cloudflare/workerd src/workerd/io/worker-entrypoint.c++ WorkerEntrypoint::requestImpl's
#   catch: sendSyntheticStatus(500, "Internal Server Error"); src/workerd/server/server-test.c++ expects
#   the same bytes.
# - Cloudflare, deployed: 500 text/html, the "error 1101" page: <title>Worker threw exception | <host> |
#   Cloudflare</title>, <span class="cf-error-code">1101</span>, <h2>Worker threw exception</h2>
#   (Cloudflare's Workers metrics docs: status "Worker threw exception", error code 1101).
# - a relay's own words: rtproxy's relay mode says "handler failed".
WORKERD_THREW = "Internal Server Error"
_THREW_MARKS = ("1101", "worker threw exception", "handler failed")


def worker_threw(text: str) -> bool:
    """Does a 500's body say the hop's own code threw: Cloudflare's error 1101 page, workerd's bare
    `Internal Server Error`, a relay's "handler failed"? The one predicate rtprobe and the rules share."""
    low = text.lower()
    return text.strip() == WORKERD_THREW or any(k in low for k in _THREW_MARKS)


def threw_text(text: str) -> str:
    """A 500 body as evidence (rules and rtprobe): the 1101 page is HTML, quoted by what it says."""
    if "worker threw exception" in text.lower() and "<" in text:
        return 'Cloudflare\'s error 1101 page, "Worker threw exception"'
    if text.strip() == WORKERD_THREW:
        return f"{WORKERD_THREW} (workerd's answer when the Worker throws)"
    return text.strip()[:120] or "an empty body"


@rule(
    "refusal-replaced",
    Severity.WARNING,
    'CHANNEL_ERROR ("channel error: transport failure") in a reconnect loop, as for the refusal it hides: the '
    "client never learns why (an expired token, a missing apikey and a suspended project look alike); "
    "realtime-py: connect() raises InvalidStatus with the hop's status",
    "Return the upstream's answer when it is not a 101: in a Worker, `return upstreamResponse` (its status, "
    'headers and JSON body) instead of a Response of your own, so Realtime\'s {"error": ...} reaches the client.',
)
def _refusal_replaced(s: Session, c: Check) -> Evidence:
    """A hop that answers a refused upgrade in its own words (a Worker's `new Response("no upgrade",
    {status: 502})` when fetch() got no webSocket). In front of the hop the wire shows only the hop's answer,
    so the evidence is the hop's (a harness that sees both answers) or a client's that can make the server
    refuse: rtprobe's c-upstream-status sends an invalid apikey and expects Realtime's JSON body back."""
    for hop in s.hops:
        if hop.what == HopKind.REFUSAL_REPLACED:
            yield None, hop.detail
            return


@rule(
    "upgrade-rejected",
    Severity.ERROR,
    'CHANNEL_ERROR ("channel error: transport failure": the upgrade was refused, the socket never opened) in a reconnect loop; '
    "realtime-py: connect() raises InvalidStatus, no channel is told",
    "The answer was not an upgrade: make the hop forward `Upgrade: websocket` and `Connection: upgrade` "
    "over HTTP/1.1 (nginx: proxy_http_version 1.1 and both headers), keep request headers small (cookies), "
    "and send a supported vsn. When the cause is not certain, the candidates are listed most likely first "
    "and Realtime's log holds the answer.",
    follows=("token-expired", "apikey-missing"),
)
def _upgrade_rejected(s: Session, c: Check) -> Evidence:
    rej = rejection(s)
    if rej is None or rej.status in _GATEWAY_STATUSES and _gateway(s):
        return
    status, text, who = rej.status, rej.text, rej.request
    if text and named(text, catalog.UPGRADE) or gateway_named(text):
        return  # the server (or a gateway) named it: that finding says so
    if status == 404 and text != "":
        return  # path-wrong
    if status == 500 and worker_threw(text):
        return  # worker-exception
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
        scored.append((85, "token-expired", f"the apikey JWT had expired {ago(s.apikey_expired_s)} before"))
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


def _query_vsn(url: str) -> str | None:
    try:
        return dict(parse_qsl(urlsplit(url).query)).get("vsn")
    except ValueError:
        return None


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
    'CHANNEL_ERROR ("channel error: transport failure": the hop answered the upgrade itself, the socket '
    "never opened); realtime-py: connect() raises InvalidStatus, no channel is told",
    "The hop could not connect to the Supabase URL: check its host name, port, TLS and that it is "
    "reachable from where the hop runs.",
)
def _upstream_unreachable(s: Session, c: Check) -> Evidence:
    rej = rejection(s)
    if rej and rej.status in _GATEWAY_STATUSES and (gw := _gateway(s)):
        yield (
            None,
            (
                f"{rej.request} was answered {rej.status} by {gw} ({rej.text[:100] or 'empty body'}): the "
                "gateway in front of Realtime could not reach it"
            ),
        )
        return
    for hop in s.hops:
        if hop.what in (HopKind.UPSTREAM_UNREACHABLE, HopKind.UPSTREAM_FAILED):
            yield None, f"connecting upstream failed: {hop.detail}"
            return


@rule(
    "connect-failed",
    Severity.ERROR,
    'CHANNEL_ERROR ("channel error: transport failure": the socket never opened) in a reconnect loop; '
    "realtime-py: connect() raises (OSError; InvalidStatus from a proxy in front), no channel is told",
    "The browser could not reach the socket's host: the error it recorded (the evidence) names why. Check the "
    "URL's host and port, that the server is up, and that the network reaches it (a network that blocks "
    "the Supabase host needs a proxy of your own in front of it).",
)
def _connect_failed(s: Session, c: Check) -> Evidence:
    """The client's own connect failed, with no answer to the upgrade and no hop to blame: a browser's
    net error (Chrome's HAR `_error`). A hop that could not reach upstream is upstream-unreachable."""
    cl = s.closed
    if (
        s.status is not None
        or cl is None
        or not cl.error
        or any(h.what == HopKind.UPSTREAM_UNREACHABLE for h in s.hops)
    ):
        return
    what = neterrors.meaning(cl.error)
    yield (
        None,
        f"the socket never connected: the browser recorded {cl.error!r}" + (f": {what}" if what else ""),
    )
