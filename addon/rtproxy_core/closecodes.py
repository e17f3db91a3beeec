"""WebSocket close codes, in one place: which codes a close frame can carry through rtproxy (`sendable`),
which the local server's websockets can send (`websockets_can_send`), which make a Cloudflare Worker's
`close()` throw (`worker_close_error`), and what the codes Realtime (and the local server) send mean
(`REALTIME_SENDS`).

Every other module asks this one: the `close=CODE` fault, `rtproxy_mitm.internals.close_with_code`, the
relay, the local server and the diagnosis rules. Where each rule comes from (mitmproxy and wsproto,
websockets, workerd), quoted: docs/sources.md, "Close codes".
"""

from __future__ import annotations

NORMAL = 1000
GOING_AWAY = 1001  # Phoenix's "disconnect"
PROTOCOL_ERROR = 1002
NO_CODE = 1005  # what a close frame without a code reports; never sent as a code
NO_CLOSE_FRAME = 1006  # what a connection that ended without a close frame reports; never sent
MESSAGE_TOO_BIG = 1009
SERVER_ERROR = 1011
SERVICE_RESTART = 1012  # Phoenix's :socket_drain
LOCAL_ONLY = (NO_CODE, NO_CLOSE_FRAME, 1015)  # wsproto LOCAL_ONLY_CLOSE_REASONS: reported, never sent
# A close that says nothing failed: done (1000), the page going away (1001), a close frame without a code.
CLEAN = frozenset({NORMAL, GOING_AWAY, NO_CODE})
# Codes only a server sends: RFC 6455 7.4.1 names 1011 a server's ("a server is terminating the connection
# because it encountered an unexpected condition"), IANA's close code registry 1012-1014 (Service Restart,
# Try Again Later, Bad Gateway); a page cannot send any of them (WebSocket.close() takes 1000 or 3000-4999).
SERVER_ONLY = frozenset({1011, 1012, 1013, 1014})
# RFC 6455 5.5: a control frame's payload is at most 125 bytes, the code taking 2; a Worker's close() throws
# on a longer reason ("reason longer than 123 bytes"), wsproto refuses to send one.
MAX_REASON_BYTES = 123

_SENDABLE = ((1000, 1003), (1007, 1013), (3000, 4999))  # wsproto _process_close, above
_WEBSOCKETS = ((1000, 1003), (1007, 1014), (3000, 4999))  # websockets Close.check, above
_WORKER_REFUSES = frozenset({1004, 1005, 1006, 1015})  # workerd WebSocket::close, above, and not 1000-4999


def _spell(ranges: tuple[tuple[int, int], ...]) -> str:
    parts = [f"{lo}-{hi}" if lo != hi else str(lo) for lo, hi in ranges]
    return ", ".join(parts[:-1]) + " or " + parts[-1]


SENDABLE = _spell(_SENDABLE)  # "1000-1003, 1007-1013 or 3000-4999", for messages
WORKER_THROWS = "1004, 1005, 1006, 1015 or a code outside 1000-4999"  # for messages


def in_range(code: int) -> bool:
    """A code a close frame can carry at all (1000-4999), sendable or not."""
    return 1000 <= code <= 4999


def clip_reason(reason: str) -> bytes:
    """`reason` as UTF-8, cut to MAX_REASON_BYTES without splitting a character."""
    raw = reason.encode()
    return raw if len(raw) <= MAX_REASON_BYTES else raw[:MAX_REASON_BYTES].decode("utf-8", "ignore").encode()


def sendable(code: int) -> bool:
    """Can a close frame carry `code` to the other side through mitmproxy?"""
    return any(lo <= code <= hi for lo, hi in _SENDABLE)


def unsendable(code: int) -> str | None:
    """Why `code` cannot be sent in a close frame, as one line naming what can; None if it can. The words
    in quotes are wsproto's: the reason of the 1002 mitmproxy would close both sides with instead."""
    if sendable(code):
        return None
    if not 1000 <= code <= 4999:
        why = "CLOSE with invalid code"
    elif code in LOCAL_ONLY:
        why = "remote CLOSE with local-only reason"
    else:
        why = "CLOSE with unknown reserved code"
    return f'close code {code} cannot be sent (mitmproxy closes with 1002 "{why}" instead): use {SENDABLE}'


def websockets_can_send(code: int) -> bool:
    """Does the websockets library put `code` in a close frame (and accept it in one)?"""
    return any(lo <= code <= hi for lo, hi in _WEBSOCKETS)


def worker_close_error(code: int) -> str | None:
    """The TypeError message a Worker's `ws.close(code)` throws, or None if it sends the close frame."""
    if not 1000 <= code < 5000 or code in _WORKER_REFUSES:
        return f"Invalid WebSocket close code: {code}."
    return None


# The codes Realtime itself closes a socket with (docs/sources.md, "Close codes"), and what each means;
# the local server sends the same ones for the same reasons.
REALTIME_SENDS: dict[int, str] = {
    NORMAL: "cowboy's idle timeout: the server received nothing from the client for that long",
    GOING_AWAY: "Phoenix's disconnect: Realtime sends it right after a join answered "
    "ClientJoinRateLimitReached or TenantNotFound",
    PROTOCOL_ERROR: "a WebSocket protocol error in what the client sent",
    MESSAGE_TOO_BIG: "a frame over Realtime's max_frame_size (5,000,000 bytes)",
    SERVER_ERROR: "the server's socket process crashed",
    SERVICE_RESTART: 'service restart: a tenant drain ("Server requested disconnect": the project\'s '
    "Realtime settings changed) or a Realtime node shutting down",
}


def realtime_meaning(code: int) -> str | None:
    """What Realtime means by closing with `code`; None for a code Realtime never sends."""
    return REALTIME_SENDS.get(code)
