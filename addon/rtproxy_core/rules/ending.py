"""Rules for how a connection ended: lost without a close frame (by the client, the server, an idle
timer), closed by the server or a hop with a code, a frame over the size limit, and connections that end
and reopen over and over.
"""

from __future__ import annotations

from .. import catalog, closecodes
from ..events import HopKind
from ..session import CLOSED, JOINED, JOINING, Channel, Session
from .model import Check, Confidence, Ev, Evidence, Severity, rule
from .said import reasons_of


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
    follows=("dropped-while-offline", "no-heartbeat", "heartbeat-gap", "client-silent"),
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
    follows=("dropped-while-offline",),  # the page's own network went first (rt_page_probe saw `offline`)
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
    "CHANNEL_ERROR (heartbeat timeout): the client leg stays open, dead, until then",
    f"Never pass {closecodes.WORKER_THROWS} (or a reason over {closecodes.MAX_REASON_BYTES} bytes) to a "
    "Worker's close(): map them to 1000/1011 or call close() without arguments.",
)
def _reserved_close_code(s: Session, c: Check) -> Evidence:
    for hop in s.hops:
        if hop.what == HopKind.CLOSE_THROWS:
            yield None, hop.detail
            return


@rule(
    "close-not-forwarded",
    Severity.WARNING,
    "CLOSED for the client that closed (its close waits out its close timeout when nothing answers it); "
    "the server keeps the socket and its channels (presence, postgres_changes) open until its idle timeout",
    'Forward each side\'s close to the other with its code and reason (in a Worker: a "close" listener on '
    "both sockets calling the other's close(event.code, event.reason)), mapping 1005 and 1006 (no code, "
    "no close frame), which close() refuses, to 1000.",
)
def _close_not_forwarded(s: Session, c: Check) -> Evidence:
    """A close the relay did not pass on. workerd (1.20261117.1) measured with a Worker that accepts both
    sockets, forwards messages and never listens for "close" (tests/test_probe_verdicts.py): the client's
    close 4000 reaches the upstream at neither compatibility date; before web_socket_auto_reply_to_close
    (2026-04-07) the client gets no close back either, from it the runtime echoes the client's own
    (cloudflare/workerd src/workerd/api/web-socket.c++ WebSocket::readLoop: the reciprocal Close when
    allowHalfOpen is false). The wire in front of the relay cannot tell a close the server never got, so
    the evidence is the hop's (rtprobe's g-close names it from the client's side)."""
    for hop in s.hops:
        if hop.what == HopKind.CLOSE_NOT_FORWARDED:
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
    follows=("rate-limited", "tenant-not-found"),
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
    yield from reasons_of(s, "message-too-large")
    if s.closed and s.closed.code == closecodes.MESSAGE_TOO_BIG:
        side = {True: "client", False: "server", None: "hop"}[s.closed.by_client]
        yield None, f"closed by the {side} with 1009 {s.closed.reason!r}: a frame over the size limit"


@rule(
    "reconnect-loop",
    Severity.ERROR,
    "CHANNEL_ERROR over and over: the client reconnects, its channels flap between errors",
    "Fix the finding of the individual connections (usually a rejected upgrade or a hop that accepts and "
    "then closes); the client's backoff restarts after every successful open.",
)
def _reconnect_loop(s: Session, c: Check) -> Evidence:
    """Its evidence spans connections: diagnosis.Diagnoser finds it; link() makes it follow the
    connection's own cause."""
    return iter(())
