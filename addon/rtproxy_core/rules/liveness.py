"""Rules for the connection's liveness: the client's heartbeats (none, unanswered, or far apart) and the
server's idle close. The client's own heartbeats say what its timers are (Session.heartbeat_interval);
rt_timers, when configured, and the clients' defaults come after.
"""

from __future__ import annotations

from .. import closecodes
from ..events import HopKind
from ..session import Session
from .model import HOP_LOST_FRAMES, Check, Confidence, Ev, Evidence, Severity, rule


def _interval(s: Session, c: Check) -> tuple[float, str]:
    return s.heartbeat_interval(c.timers.configured.heartbeat)


@rule(
    "client-silent",
    Severity.ERROR,
    "TIMED_OUT: the join never leaves the client; its socket opened, nothing was sent",
    "The socket opened but the client never sent a frame, not even a heartbeat: its transport never saw "
    "`open` (a WebSocket wrapper that does not forward the open event or readyState, or one created "
    "before the page could use it). Check the transport passed to the Realtime client.",
)
def _client_silent(s: Session, c: Check) -> Evidence:
    cl = s.closed
    # Judged when the connection has ended: a client may open the socket long before it subscribes.
    if (
        s.status != 101
        or s.upgraded_at is None
        or s.frames_from_client
        or s.hop_counts.get(HopKind.FRAME_DROPPED)
        # a frame the hop took from the client (an rt_fault that dropped its join): the client did send
        or any(h.frame is not None and h.frame.from_client for h in s.hops)
    ):
        return
    if cl is None or not cl.recorded and not s.frames_from_server and not cl.frames_kept:
        return  # still open, or a capture that may not keep frames (Firefox's HAR keeps none)
    lasted = cl.time - s.upgraded_at
    server_ended = cl.by_client is False or cl.ended_first in ("server", "hop")
    if server_ended and lasted < CLIENT_SILENT_S:
        return  # the other side ended it before the client had to say anything
    if lasted > 0:
        yield None, f"the socket was open {lasted:.1f} s and the client sent nothing (no join, no heartbeat)"
    elif cl.frames_kept:
        # A HAR keeps the frames of the capture's other sockets: none here means none sent, but Chrome's
        # entry does not say how long the socket stayed open.
        yield Ev(
            None,
            "the socket was upgraded and the client sent nothing on it (no join, no heartbeat), while the "
            "capture keeps the frames of its other sockets; how long it stayed open is not recorded",
            Confidence.LIKELY,
        )


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
    follows=(
        "early-101",
        "upstream-unreachable",
        "vsn-missing",
        "serializer-mismatch",
        "proxy-idle-timeout",
        "server-close",
        "reserved-close-code",
        "join-dropped-by-proxy",
        "server-idle-close",  # heartbeats sent on a socket the server had closed are answered by no one
        *HOP_LOST_FRAMES,
        "dropped-while-offline",  # the page's network went away (rt_page_probe saw `offline`)
    ),
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
    # The gap is on the wire; its cause (throttled timers) is inferred from timing, unless the page's probe
    # saw the tab hidden or frozen through it (rt_page_probe): then it is certain.
    Confidence.LIKELY,
    follows=("dropped-while-offline",),
)
def _heartbeat_gap(s: Session, c: Check) -> Evidence:
    hb = s.heartbeats
    if not hb.sent:
        return
    # The cadence: the client's own once its gaps agree, else its known default (one gap is then enough to
    # compare); silence after the last heartbeat counts, up to the end of the connection.
    expected = _interval(s, c)[0] if s.client_kind or hb.interval() else None
    if not expected:
        return
    # Silence at the end counts once the connection has ended (while it is open, the next one may come).
    trailing = s.ended_at - hb.last_sent_at if s.ended_at is not None and hb.last_sent_at is not None else 0.0
    gap, where = max(
        (hb.max_gap_s, "between two heartbeats"),
        (trailing, "after the last heartbeat, until the connection ended"),
    )
    if gap > 2 * expected and gap - expected >= 1:
        began = hb.max_gap_from if gap == hb.max_gap_s else hb.last_sent_at
        said = f"client heartbeats every {expected:.1f} s, but {gap:.1f} s passed {where}"
        page = s.page
        if began is None or page is None:
            yield Ev(None, said, began=began)
            return
        if seen := page.during(began, began + gap, "hidden", "freeze"):
            # The page's probe saw the tab hidden or frozen in the gap: a hidden tab's timers are throttled
            # (a frozen one's stopped), which is the cause this finding names.
            yield Ev(
                None,
                f"{said}; the page's probe saw the tab {_page_spans(seen, began)}: a hidden tab's timers are "
                "throttled, a frozen one's stopped (seen by the page probe)",
                Confidence.CERTAIN,
                began=began,
            )
        elif seen := page.during(began, began + gap, "offline"):
            yield Ev(
                None,
                f"{said}; the page was {_page_spans(seen, began)}: the network, not throttled timers, kept "
                "its heartbeats off the wire (seen by the page probe)",
                began=began,
            )
        else:
            yield Ev(
                None,
                f"{said}; the page's probe reported the tab neither hidden, frozen nor offline",
                began=began,
            )


PAGE_STATE_WORDS = {"hidden": "hidden", "freeze": "frozen", "offline": "offline"}


def _page_spans(spans: list[tuple[str, float, float | None]], began: float) -> str:
    """ "hidden from 0.3 s before the gap until 3.1 s into it", for each span."""

    def at(t: float) -> str:
        if abs(t - began) < 0.05:
            return "the gap's start"
        return f"{abs(t - began):.1f} s {'before the gap' if t < began else 'into the gap'}"

    return " and ".join(
        f"{PAGE_STATE_WORDS[state]} from {at(start)}"
        + (f" until {at(until)}" if until is not None else f", still {PAGE_STATE_WORDS[state]} when it ended")
        for state, start, until in spans
    )


@rule(
    "server-idle-close",
    Severity.ERROR,
    "CHANNEL_ERROR (socket closed: 1000), then reconnect",
    "The server closes sockets that send nothing for 60 s: the client's heartbeats are not reaching it "
    "(frozen wrapper readyState, throttled tab, a hop dropping client frames).",
    Confidence.LIKELY,
    follows=("no-heartbeat", "heartbeat-gap", "client-silent", "join-dropped-by-proxy", "hop-frames-dropped"),
)
def _server_idle_close(s: Session, c: Check) -> Evidence:
    cl = s.closed
    idle = c.timers.idle
    if cl and cl.by_client is False and cl.code == closecodes.NORMAL:
        last = s.last_client_frame_at or s.upgraded_at
        if last is not None and cl.time - last >= 0.9 * idle:
            yield None, f"the server closed with 1000 after {cl.time - last:.1f} s without a client frame"
            return
    # Realtime's endpoint sets no WebSocket timeout, so Phoenix's applies: a socket that receives nothing
    # for 60 s is closed by the server (docs/sources.md, "Server timers"). A client silent that long had
    # lost its socket on the server's side, whatever the client did next; the server's silence after it
    # agrees (a server frame after the timer would have fired says the socket lived: something else spoke).
    silence = s.client_silence
    if silence is None or silence[1] - silence[0] < idle:
        return
    closed_at = silence[0] + idle
    if s.last_server_frame_at is not None and s.last_server_frame_at > closed_at:
        return
    yield Ev(
        None,
        f"the client sent nothing for {silence[1] - silence[0]:.1f} s (from {silence[0] - (s.upgraded_at or 0):.1f} s "
        f"after the upgrade); the server closes a socket after {idle:g} s without a client frame, and sent "
        "nothing after that: what the client sent next went to a socket the server had closed",
        Confidence.CERTAIN,
        began=closed_at,
    )
