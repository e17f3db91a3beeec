"""Pairing: which upstream leg the hop opened for which client leg, and the pairs' findings over time.

`LegBook` is fed each leg's events (events.py's, as Session is) and pairs an upstream leg with a client
leg: an upstream leg is a candidate's when it opened after the client leg opened and before that leg
ended, and the client leg has no upstream leg yet. Candidates are scored:
  path   3 the same path and query; 2 the same path; 1 one path ends with the other (a hop that adds or
         strips a prefix) or the upstream path is the design relay's rule applied to the client's
         (hop.relay_path); 0 otherwise;
  frames +2 when the upstream leg's first client frame is one of the client leg's first FIRST_FRAMES
         client frames (bytes alike; a binary frame also matches the text "[object Blob]").
A unique best score pairs at once (at the upstream leg's upgrade, by time and path). A tie waits for the
upstream leg's first client frame (then by time, path and first frames); if still tied, or when the
upstream leg ends first, or when a candidate's client leg ends, the client leg that opened first wins:
hops open their upstream connections in the order their clients came.

Findings of a pair are reported once each, on the client leg's connection. Request and handshake changes
are reported as soon as they show; frame and close changes once both legs have ended (or rtproxy stops).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from ..events import Closed, Event, Frame, Handshake, Opened
from ..hop import relay_path
from ..redact import Redactor
from ..rules import Finding, findings_of
from ..session import KEEP_FINISHED
from .align import DELAY_S, Direction, align
from .model import CLIENT, UPSTREAM, Leg, query_params
from .rules import LEG_RULES, LEG_RULES_BY_CODE, LegCheck

FIRST_FRAMES = 3  # client frames of a client leg looked at for pairing (its first may be dropped)


@dataclass
class Pair:
    """A client leg and, once it is known, the upstream leg the hop opened for it."""

    client: Leg
    upstream: Leg | None = None
    how: str = ""  # what paired them: "time, same path and query", ...
    findings: list[Finding] = field(default_factory=list)
    fired: set[str] = field(default_factory=set)  # codes evaluated to a finding: not run again
    final: bool = False
    _directions: tuple[Direction, Direction] | None = None

    def legs(self) -> list[Leg]:
        return [self.client] + ([self.upstream] if self.upstream is not None else [])

    def other(self, leg: Leg) -> Leg | None:
        return self.upstream if leg is self.client else self.client

    @property
    def changes(self) -> list[str]:
        """The codes of what the hop changed, in the order found (a rule that failed is no change)."""
        return [f.code for f in self.findings if f.code in LEG_RULES_BY_CODE]

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


@dataclass
class Update:
    """What changed for a pair: new findings, and whether it was just paired or just ended."""

    pair: Pair
    findings: list[Finding]
    paired: bool = False
    final: bool = False


def evaluate(p: Pair, check: LegCheck) -> list[Finding]:
    """Runs the leg rules (rules.LEG_RULES, in order) over a pair: its new findings, also appended to
    p.findings, each code once per pair. A rule that raises stands as a rule-failed finding; the others
    still run."""
    new: list[Finding] = []
    for r in LEG_RULES:
        if r.code in p.fired:
            continue
        found = findings_of(r, p, check, p.client.conn, check.now, check.redactor, first=True)
        if found:
            p.fired.add(r.code)
            new.extend(found)
    p.findings.extend(new)
    return new


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
        return 3 if sorted(query_params(client.query)) == sorted(query_params(upstream.query)) else 2
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
