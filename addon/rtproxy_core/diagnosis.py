"""Runs the rules over sessions: each finding is reported once per connection, and connections are
looked at together for reconnect loops. Used the same way live (mitmproxy hooks) and offline."""

from __future__ import annotations

from collections import deque
from urllib.parse import urlsplit

from . import frames
from .events import Event, Frame
from .redact import Redactor
from .rules import RECONNECT_LOOP, Check, Finding, Severity, Timers, evaluate, link
from .session import Note, NoteLevel, Session

LOOP_WINDOW_S = 60.0  # reconnects counted within this window
LOOP_SHORT_S = 10.0  # a connection that ends sooner than this counts as a failed one
LOOP_MIN = 3  # this many short connections in the window make a loop
MAX_LOOPS = 1000  # places whose reported loop is remembered
CHECK_EVERY_S = 1.0  # rules also run when this much event time passed without a note (time-based rules)
CHECK_AFTER_INFO_S = 0.25  # an info note runs them when they last ran at least this long ago


def place(url: str | None) -> str:
    """Where a connection goes (host and path): connections to one place are one client's attempts."""
    try:
        p = urlsplit(url or "")
        return f"{p.hostname}{p.path}"
    except ValueError:
        return url or ""


def joined_topics(events: list[Event]) -> set[str]:
    """The topics a connection's client joined (to tell a reconnect from another client's connection)."""
    out = set()
    for e in events:
        if isinstance(e, Frame) and e.from_client:
            try:
                m = frames.decode(e.data, binary=e.binary, from_client=True, lazy=True)
            except frames.DecodeError:
                continue
            if m.event == frames.PHX_JOIN:
                out.add(m.topic)
    return out


def _key(s: Session) -> str:
    return place(s.url)


def _loudest(notes: list[Note]) -> NoteLevel | None:
    """WARNING if a note is one, else INFO if one is, else None (no notes, or debug lines only)."""
    loudest = None
    for n in notes:
        if n.level == NoteLevel.WARNING:
            return n.level
        if n.level == NoteLevel.INFO:
            loudest = n.level
    return loudest


def ranked(findings: list[Finding]) -> list[Finding]:
    """The cause first: causes (errors before warnings before info, rule order within), each followed by
    the symptoms that follow from it (rules.link)."""
    return link(findings)


def top_finding(findings: list[Finding], topic: str | None = None) -> Finding | None:
    """The finding rtproxy names first, the one source of the flow's comment (rtproxy_mitm/marks.py) and of
    rt.channels: the first error or warning of `ranked`. With `topic` (as findings name it: redacted), the
    first one about that channel or about the whole connection (a finding without a topic, such as a
    dropped socket, is every channel's). None: nothing above info."""
    return next(
        (
            f
            for f in ranked(findings)
            if f.severity != Severity.INFO and (topic is None or f.topic in (topic, None))
        ),
        None,
    )


class Diagnoser:
    def __init__(self, timers: Timers | None = None) -> None:
        self.timers = timers or Timers()
        self._recent: deque[tuple[str, float, float, bool]] = deque(maxlen=200)  # key, opened, ended, failed
        # place -> when the last connection counted in its reported loop ended: a loop is reported once,
        # and a later one to the same place (after a healthy connection, or any gap) is a new loop.
        self._loops: dict[str, float] = {}

    def feed(self, s: Session, event: Event) -> tuple[list[Note], list[Finding]]:
        """Feed one event; run the rules when it produced a warning, an info note (a join, a reply) at
        least CHECK_AFTER_INFO_S after they last ran, or a second of event time passed since. Rules are
        not run per heartbeat or broadcast, nor per join of a join flood (a rule pass reads every channel,
        so one per join made a flood of n joins cost n²): that keeps the per-frame cost near the
        decoder's, live and offline alike. What an info note deferred is found by the next pass: live,
        the tracker's 1 s tick; offline, the next event or the end."""
        notes = s.feed(event)
        t = event.time or s.last_frame_at or s.opened_at or 0.0
        last = s.checked_at
        # Per frame, the common case is: no note, checked less than a second ago.
        if last is not None and t - last < CHECK_EVERY_S:
            loudest = _loudest(notes)
            if loudest is None or (loudest == NoteLevel.INFO and t - last < CHECK_AFTER_INFO_S):
                return notes, []
        s.checked_at = t
        return notes, self.check(s, t)

    def check(self, s: Session, now: float, final: bool = False) -> list[Finding]:
        """New findings for `s` (also appended to s.findings)."""
        fired = s.fired  # per-connection state lives on the session: nothing to forget, nothing to inherit
        new = []
        for f in evaluate(s, Check(now, final, self.timers)):
            if (f.code, f.topic) not in fired:
                fired.add((f.code, f.topic))
                new.append(f)
        s.findings.extend(new)
        return new

    def tick(self, s: Session, now: float) -> list[Finding]:
        """The live tracker's pass over every connection, once a second (wall time, the clock of live
        frames): `check`, noted as the connection's last pass, so `feed` does not run its own one-second
        pass again within that second."""
        if s.checked_at is None or now > s.checked_at:
            s.checked_at = now
        return self.check(s, now)

    def end(self, s: Session) -> list[Finding]:
        """The connection ended: last check, then whether it is one of a reconnect loop."""
        end = s.closed.time if s.closed else (s.last_frame_at or s.opened_at or 0.0)
        new = self.check(s, end, final=True)
        start = s.opened_at if s.opened_at is not None else end
        key = _key(s)
        self._recent.append((key, start, end, s.failed))
        # A loop: failed connections to the same place, one after the other, each short-lived. Healthy
        # connections in a row, or parallel ones (several tabs), are not.
        short: list[tuple[float, float]] = []
        for k, a, b, failed in reversed(self._recent):
            if k != key:
                continue
            if not failed or b - a >= LOOP_SHORT_S or end - a > LOOP_WINDOW_S or (short and b > short[-1][0]):
                break
            short.append((a, b))
        if not short:
            self._loops.pop(key, None)  # a healthy or long-lived connection: the loop, if any, is over
        if len(short) < LOOP_MIN:
            return new
        last = self._loops.pop(
            key, None
        )  # re-inserted: the dict's order is then least recently looping first
        self._loops[key] = end
        while len(self._loops) > MAX_LOOPS:
            self._loops.pop(next(iter(self._loops)))
        if last is None or min(a for a, _ in short) > last:  # a new loop, not the one already reported
            span = end - min(a for a, _ in short)
            f = Finding(
                RECONNECT_LOOP.code,
                RECONNECT_LOOP.severity,
                RECONNECT_LOOP.explains,
                None,
                f"{len(short)} connections to {key} within {span:.1f} s, each ended within "
                f"{LOOP_SHORT_S:g} s of opening",
                RECONNECT_LOOP.fix,
                s.conn,
                end,
            )
            s.findings.append(f)
            new.append(f)
        return new


Connection = tuple[str, list[Event]]  # (url, events): one WebSocket connection read from a capture


def diagnose_captures(
    captures: list[list[Connection]], redactor: Redactor | None = None, timers: Timers | None = None
) -> list[Session]:
    """Diagnose connections read from capture files (one list per file), in the order they opened.

    A capture knows what came next: when its client opened the next connection to the same place and
    joined the same channels again, which says how this one ended when the capture keeps no close frames
    (a HAR). That is looked up within one file only; two files may be two users of one project."""
    timers = timers or Timers()
    everything = sorted(
        ((url, events, n) for n, conns in enumerate(captures) for url, events in conns),
        key=lambda c: c[1][0].time if c[1] else 0.0,
    )
    joined = [joined_topics(events) for _, events, _ in everything]
    diagnoser = Diagnoser(timers)
    sessions = []
    for i, (url, events, n) in enumerate(everything):
        s = Session(conn=str(i + 1), redactor=redactor, join_timeout_s=timers.join)
        if events:
            s.reopened_at = next(
                (
                    later[0].time
                    for (u, later, m), topics in zip(everything[i + 1 :], joined[i + 1 :])
                    if m == n
                    and later
                    and place(u) == place(url)
                    and later[0].time >= events[0].time
                    and topics & joined[i]
                ),
                None,
            )
        for event in events:
            diagnoser.feed(s, event)
        diagnoser.end(s)
        sessions.append(s)
    return sessions
