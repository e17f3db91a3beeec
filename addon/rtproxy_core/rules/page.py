"""Rules only the page can give (rt_page_probe): what the page's WebSocket did with the frames the wire
delivered (session.pageview.PageView, fed by the probe's PageEvents)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from ..session import Session
from .model import Check, Confidence, Ev, Evidence, EvidenceFn, Severity, rule

# The codes whose evidence is the page's (session.pageview.PageView), not the wire's: the flow's comment
# (report.finding_line) and the content view say so. A rule registered with page_rule is in it.
FROM_PAGE: set[str] = set()
SEEN_BY_PAGE = "seen by the page probe"  # what they add to the finding's code where it is shown


def page_rule(
    code: str, severity: Severity, explains: str, fix: str, confidence: Confidence = Confidence.CERTAIN
) -> Callable[[EvidenceFn], EvidenceFn]:
    """`rule`, for a rule whose evidence comes from the page's probe: its code goes in FROM_PAGE."""
    FROM_PAGE.add(code)
    return rule(code, severity, explains, fix, confidence)


@page_rule(
    "binary-delivered-as-blob",
    Severity.ERROR,
    "SUBSCRIBED, but binary broadcasts are silently lost (vsn 2.0.0)",
    "Make the WebSocket wrapper forward binaryType to the native socket (get binaryType() { return "
    "this.socket.binaryType } and its setter), or pass no transport: realtime-js sets binaryType = "
    "'arraybuffer' and decodes only an ArrayBuffer; a Blob becomes {} and the broadcast is dropped.",
)
def _binary_delivered_as_blob(s: Session, c: Check) -> Evidence:
    page = s.page
    if page is None or not page.blobs:
        return
    native = sorted({b for (kind, b), _ in page.delivered.items() if kind == "Blob"})
    lost = list(s.binary_broadcasts)[: page.blobs]
    by_topic: dict[str, list[str]] = {}
    for _, topic, event in lost:
        by_topic.setdefault(topic, []).append(event)
    said = (
        f"the page's socket delivered {page.blobs} binary frame(s) to the app's handler as a Blob (the native "
        f"socket's binaryType was {'/'.join(native)}, never set to 'arraybuffer'); realtime-js decodes only an "
        f"ArrayBuffer, so each became an empty message; the wire delivered {s.binary_broadcast_count} binary "
        "broadcast(s) to the page"
    )
    if not by_topic:
        yield Ev(None, said, began=page.first_blob_at)
    for topic, events in by_topic.items():
        names = ", ".join(f'"{e}"' for e in dict.fromkeys(events))
        yield Ev(
            topic,
            f"{said}; lost on {topic}: {len(events)} broadcast(s) (event {names}, binary kind 4)",
            began=page.first_blob_at,
        )


READY_STATES = {0: "CONNECTING", 1: "OPEN", 2: "CLOSING", 3: "CLOSED"}
MAX_ERROR = 200  # characters of one error the probe reported, quoted in the evidence


@page_rule(
    "send-on-closed-socket",
    Severity.WARNING,
    "SUBSCRIBED as far as the app knows, but what it sent after its socket closed is lost",
    "Read readyState from the native socket: a WebSocket wrapper that copies readyState once (per event, or "
    "at construction) tells realtime-js the socket is OPEN after it closed, and the native socket discards "
    "every send; forward readyState with a getter (get readyState() { return this.socket.readyState }), or "
    "pass no transport.",
)
def _send_on_closed_socket(s: Session, c: Check) -> Evidence:
    page = s.page
    if page is None:
        return
    closed = {state: n for state, n in page.sends_not_open.items() if state in (2, 3)}
    if not closed:
        return
    total = sum(closed.values())
    states = ", ".join(f"{READY_STATES[state]} ×{n}" for state, n in sorted(closed.items()))
    said = (
        f"the app sent {total} frame(s) while the page's native socket was not OPEN (readyState {states}); "
        "the browser discards a send on a closing or closed socket without an error, so the wire never saw "
        "them and nothing answered them"
    )
    if page.close is not None:
        said += f"; the page saw the socket close {page.close.get('code')} (wasClean={page.close.get('wasClean')})"
    if connecting := page.sends_not_open.get(0):
        said += f"; {connecting} more while it was CONNECTING (the browser throws on those)"
    yield Ev(None, said, began=page.first_send_closed_at)


@page_rule(
    "handler-threw",
    Severity.ERROR,
    "SUBSCRIBED, but the frames the app's message handler threw on were never processed (a reply, a "
    "broadcast or a change lost)",
    "Fix the error the evidence quotes: the socket's message handler (realtime-js's onmessage, or a wrapper's "
    "or the app's own listener) threw on those frames, so realtime-js never processed them. The browser's "
    "console has its stack.",
)
def _handler_threw(s: Session, c: Check) -> Evidence:
    page = s.page
    if page is None or not page.threw_count:
        return
    errors = dict.fromkeys(error[:MAX_ERROR] for _, _, error in page.threw)
    kinds = ", ".join(
        f"{kind} ×{n}" for kind, n in sorted(Counter(kind for _, kind, _ in page.threw).items())
    )
    quoted = "; ".join(f'"{e}"' for e in list(errors)[:3])
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    yield Ev(
        None,
        f"the app's message handler threw on {page.threw_count} frame(s) the page's socket delivered "
        f"({kinds}); realtime-js never processed them; the page reported: {quoted}{more}",
        began=page.threw[0][0] if page.threw else None,
    )


# How far from the page's offline span the socket's end may be seen: the browser may fire `offline` just
# after the socket it kills reports its close, and what it held while offline (the heartbeat, the close
# frame) crosses the wire as it comes back online.
OFFLINE_SLACK_S = 2.0


# realtime-js's close when a heartbeat goes unanswered: @supabase/phoenix 0.4.5 socket.js heartbeatTimeout,
# `this.teardown(() => this.reconnectTimer.scheduleTimeout(), WS_CLOSE_NORMAL, "heartbeat timeout")`. Offline,
# no reply can come (Chromium's offline mode keeps the socket and stops its frames), so this is how it ends.
HEARTBEAT_TIMEOUT = "heartbeat timeout"


@page_rule(
    "dropped-while-offline",
    Severity.WARNING,
    "CHANNEL_ERROR (socket closed: 1006, or realtime-js's 1000 heartbeat timeout) while the page was "
    "offline, then reconnect once it is back",
    "Nothing is wrong with the proxy or the server: the page's network went away (the browser fired "
    "`offline`) and the socket with it. realtime-js reconnects on its reconnect timer (reconnectAfterMs) "
    "and rejoins its channels once the network is back; what was broadcast or changed meanwhile is not "
    "replayed, so refetch it on resubscribe (the subscribe callback's SUBSCRIBED after a CHANNEL_ERROR).",
)
def _dropped_while_offline(s: Session, c: Check) -> Evidence:
    page, cl = s.page, s.closed
    if page is None or (cl is None and page.close is None):
        return
    # An end the network explains: no close frame on the wire (or 1006, which no peer sends), the page's
    # close unclean, or the client's own close for a heartbeat nothing answered. A close frame either
    # side chose for another reason is someone's decision, not the network's.
    wire_abnormal = cl is not None and (cl.code is None or cl.code == 1006)
    page_abnormal = page.close is not None and (
        page.close.get("wasClean") is False or page.close.get("code") == 1006
    )
    reasons = [
        cl.reason if cl is not None and cl.by_client is not False else "",
        str((page.close or {}).get("reason")),
    ]
    timed_out = any(HEARTBEAT_TIMEOUT in r.lower() for r in reasons)
    if not (wire_abnormal or page_abnormal or timed_out):
        return
    # The end as the first to see it saw it: offline, Chromium holds the close's answer, so the page's close
    # event can come after `online` while the wire saw the client's close frame long before.
    ends = [t for t in (page.close_at, cl.time if cl is not None else None) if t is not None]
    ended = min(ends)
    # A heartbeat timeout was decided when the heartbeat went unanswered: offline any time from its send,
    # the reply could not come. Chromium's offline mode holds the socket's frames, so the wire may see the
    # heartbeat and the close only as the page comes back online.
    sent = s.heartbeats.oldest_unanswered() if timed_out else None
    start = min(sent, ended) if sent is not None else ended
    spans = page.during(start - OFFLINE_SLACK_S, ended + OFFLINE_SLACK_S, "offline")
    if not spans:
        return
    _, went, back = spans[-1]
    when = f"{ended - went:.1f} s before" if went <= ended else f"{went - ended:.1f} s after"
    said = f"the page went offline (the browser's `offline` event) {when} its socket closed"
    if page.close is not None:
        why = f" {page.close.get('reason')}" if page.close.get("reason") else ""
        said += f" ({page.close.get('code')}{why}, wasClean={page.close.get('wasClean')}, as the page saw it)"
    if sent is not None:
        rel = sent - went
        said += (
            f"; the heartbeat that went unanswered crossed the wire {abs(rel):.1f} s "
            f"{'after' if rel >= 0 else 'before'} it went offline"
        )
    if cl is not None:
        said += "; the wire saw " + (
            "the connection end without a close frame"
            + (f", the {cl.ended_first}'s side first" if cl.ended_first else "")
            if cl.code is None
            else f"a close {cl.code}"
            + (f' "{cl.reason}"' if cl.reason else "")
            + (" from the client" if cl.by_client else "")
        )
    if back is not None:
        said += f"; back online {back - went:.1f} s after it went offline"
        if back <= ended:
            said += " (what the browser held while offline crossed the wire then)"
    yield Ev(None, said, began=went)
