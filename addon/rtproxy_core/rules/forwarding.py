"""Rules for what happened to frames between the client and Realtime: a hop that answered 101 before its
upstream did, dropped the client's first frames or relayed binary as text, and ends that disagree on the
serializer (vsn).
"""

from __future__ import annotations

from ..events import HopKind
from ..hop import BLOB_TEXT
from ..session import Session
from .model import Check, Evidence, Severity, rule


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
    "SUBSCRIBED, but broadcasts are silently lost",
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
    "SUBSCRIBED, but broadcasts are silently lost (vsn 2.0.0)",
    "Relay binary as binary: set binaryType = 'arraybuffer' on both legs of a Worker relay before "
    "accept() (or add the no_websocket_standard_binary_type flag); a Blob passed to send() is stringified.",
)
def _binary_as_text(s: Session, c: Check) -> Evidence:
    n = s.hop_counts.get(HopKind.BINARY_AS_TEXT, 0)
    if n:
        yield None, f"the hop relayed {n} binary frame(s) as the text {BLOB_TEXT!r}"
