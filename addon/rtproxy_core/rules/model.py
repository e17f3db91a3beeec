"""The vocabulary of the rules: a finding's severity and confidence, the evidence a rule yields, the
timers it may read, the Rule and the Finding it produces, and `@rule`, which registers one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from ..session import CLIENT_HEARTBEAT_S, CLIENT_JOIN_TIMEOUT_S, SERVER_IDLE_S, Session


class Severity(StrEnum):
    """How much a finding matters; its value is what reports print and JSON carries."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


class Confidence(StrEnum):
    """How sure a finding is."""

    CERTAIN = "certain"  # the wire shows it
    LIKELY = "likely"  # inferred, usually from timing
    CANDIDATES = "candidates"  # the wire cannot tell; the candidates are ranked by what it does show


class Outcome(StrEnum):
    """What a Realtime client tells the app: the status its subscribe callback reports (realtime-js's
    REALTIME_SUBSCRIBE_STATES in RealtimeChannel.ts, realtime-py's RealtimeSubscribeStates in types.py), or
    realtime-py's connect() raising (client.py: connect() re-raises after its retries; no channel is
    told) where realtime-js reports CHANNEL_ERROR. A finding's `explains` names the ones it claims."""

    SUBSCRIBED = "SUBSCRIBED"
    CHANNEL_ERROR = "CHANNEL_ERROR"
    TIMED_OUT = "TIMED_OUT"
    CLOSED = "CLOSED"
    CONNECT_RAISES = "connect() raises"


CLIENTS = ("realtime-js", "realtime-py")  # the clients an `explains` may speak for one by one
FAILURES = frozenset(o for o in Outcome if o is not Outcome.SUBSCRIBED)


def said_for(explains: str, client: str) -> str:
    """What `explains` says of `client`: its segment "; <client>: …" where it has one, else the text
    before the first such segment (which speaks for every client without one)."""
    general, *segments = re.split(rf";\s*(?=(?:{'|'.join(map(re.escape, CLIENTS))}):)", explains)
    for seg in segments:
        who, _, said = seg.partition(":")
        if who == client:
            return said.strip()
    return general


def claimed(explains: str, client: str) -> frozenset[Outcome]:
    """The outcomes `explains` claims for `client` (said_for). A text that names no outcome claims that the
    client reports no failure (it stays SUBSCRIBED, or is not told)."""
    text = said_for(explains, client)
    return frozenset(o for o in Outcome if o.value in text)


@dataclass(frozen=True, slots=True)
class Ev:
    """Evidence with more to say than (topic, text): its own confidence, or ranked candidate codes."""

    topic: str | None
    text: str
    confidence: Confidence | None = None  # None: the rule's default
    candidates: tuple[str, ...] = ()
    began: float | None = None  # when the evidence began (the silence, the unanswered join); None: now


Evidence = Iterator["tuple[str | None, str] | Ev"]  # (topic or None for the connection, evidence text)


class TimerSettings(NamedTuple):
    """What the user set of Realtime's three timers, in seconds; None: not configured."""

    join: float | None = None  # the client's join (and push) timeout
    heartbeat: float | None = None  # the client's heartbeat interval
    idle: float | None = None  # the server closes a socket after this long without client frames


class Timers:
    """Realtime's timers as the rules expect them, in seconds. `configured` holds what the user set
    (rt_timers, --timers; a test setup shortens them), None where they set nothing; `join`, `heartbeat` and
    `idle` are the timers in force: the configured one, else the default (session/limits.py's
    CLIENT_JOIN_TIMEOUT_S, CLIENT_HEARTBEAT_S, SERVER_IDLE_S). What the wire shows of a timer
    (the client's heartbeat cadence, the known default of the client its frames reveal) goes before a
    default, never before what the user configured."""

    __slots__ = ("configured",)
    configured: TimerSettings

    def __init__(
        self, join: float | None = None, heartbeat: float | None = None, idle: float | None = None
    ) -> None:
        object.__setattr__(self, "configured", TimerSettings(join, heartbeat, idle))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Timers is immutable (setting {name})")

    @property
    def join(self) -> float:
        return _in_force(self.configured.join, CLIENT_JOIN_TIMEOUT_S)

    @property
    def heartbeat(self) -> float:
        return _in_force(self.configured.heartbeat, CLIENT_HEARTBEAT_S)

    @property
    def idle(self) -> float:
        return _in_force(self.configured.idle, SERVER_IDLE_S)

    @classmethod
    def parse(cls, text: str) -> Timers:
        """'join=10,heartbeat=25,idle=60' (seconds; any subset, "" for none). Raises ValueError with the
        reason."""
        values: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, eq, raw = part.partition("=")
            if not eq or name.strip() not in TimerSettings._fields:
                raise ValueError(f"expected join=S,heartbeat=S,idle=S, got {part!r}")
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"{name.strip()} must be a number of seconds, got {raw!r}") from None
            if not value > 0:
                raise ValueError(f"{name.strip()} must be positive, got {raw!r}")
            values[name.strip()] = value
        return cls(**values)

    def __str__(self) -> str:
        """The configured timers, as parse() reads them ("" when none is)."""
        return ",".join(f"{k}={v:g}" for k, v in self.configured._asdict().items() if v is not None)

    def in_force(self) -> str:
        """Every timer in force, configured or default: 'join=10,heartbeat=25,idle=60'."""
        return f"join={self.join:g},heartbeat={self.heartbeat:g},idle={self.idle:g}"

    def __repr__(self) -> str:
        return f"Timers({self!s})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Timers) and self.configured == other.configured

    def __hash__(self) -> int:
        return hash(self.configured)


def _in_force(configured: float | None, default: float) -> float:
    return default if configured is None else configured


@dataclass(frozen=True, slots=True)
class Check:
    """What a rule may look at besides the session."""

    now: float
    final: bool  # the connection has ended (or the capture has)
    timers: Timers


EvidenceFn = Callable[[Session, Check], Evidence]  # what a rule runs: the session, now -> its evidence


@dataclass(frozen=True, slots=True)
class Rule[SubjectT, CheckT]:
    """One finding code and what it says: severity, the client-visible outcome it explains, the fix, how
    sure its evidence makes it by default, the function that yields its evidence, and the findings it can
    follow from as a symptom (the first of them present is its cause: link()).

    The evidence function yields evidence texts: a bare text (about the whole connection), a (topic,
    text) pair, or an Ev. SubjectT is what it looks at and CheckT what else it may read: a Session and a
    Check for the connection's rules (`SessionRule`), a Pair of legs and a LegCheck for the leg rules
    (rtproxy_core.legs); engine.findings_of runs either kind."""

    code: str
    severity: Severity
    explains: str
    fix: str
    evidence: Callable[[SubjectT, CheckT], Iterable[str | tuple[str | None, str] | Ev]]
    confidence: Confidence = Confidence.CERTAIN
    follows: tuple[str, ...] = ()

    def outcomes(self, client: str) -> frozenset[Outcome]:
        """What this rule claims `client` reports (claimed())."""
        return claimed(self.explains, client)


SessionRule = Rule[Session, Check]


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    severity: Severity
    explains: str
    topic: str | None
    evidence: str
    fix: str
    conn: str = ""
    time: float = 0.0
    confidence: Confidence = Confidence.CERTAIN
    candidates: tuple[str, ...] = ()
    follows: str | None = None  # the code of the finding this one is a symptom of
    began: float | None = None  # when its evidence began (Ev.began); None: when it was found (`time`)

    def outcomes(self, client: str) -> frozenset[Outcome]:
        """What this finding claims `client` reports (claimed())."""
        return claimed(self.explains, client)

    @property
    def anchor(self) -> float:
        """The time this finding is ranked by: when its evidence began, else when it was found."""
        return self.time if self.began is None else self.began

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": str(self.severity),
            "topic": self.topic,
            "explains": self.explains,
            "evidence": self.evidence,
            "fix": self.fix,
            "confidence": str(self.confidence),
            "candidates": list(self.candidates),
            "follows": self.follows,
            "began": round(self.anchor, 3),
        }


REGISTERED: dict[
    str, SessionRule
] = {}  # code -> Rule, as the rule modules register them; engine.ORDER orders them


def rule(
    code: str,
    severity: Severity,
    explains: str,
    fix: str,
    confidence: Confidence = Confidence.CERTAIN,
    follows: tuple[str, ...] = (),
) -> Callable[[EvidenceFn], EvidenceFn]:
    """Register the decorated function as the evidence of finding `code` (see Rule)."""

    def register(fn: EvidenceFn) -> EvidenceFn:
        if code in REGISTERED:
            raise ValueError(f"rule {code!r} is registered twice")
        REGISTERED[code] = Rule(code, severity, explains, fix, fn, confidence, follows)
        return fn

    return register


# The leg rules' codes (legs.py: what a hop in front of Realtime changed, put on a client leg's connection)
# for a frame of the client's that was lost, which its client sees as an unanswered join or heartbeat: the
# frame never reached Realtime (dropped; early 101: the hop's upstream was not open yet, or refused),
# reached it after the client's timeout (delayed), or on a socket without the client's vsn (the query
# rewritten).
HOP_LOST_FRAMES = ("hop-frames-dropped", "hop-early-101", "hop-frames-delayed", "hop-query-rewritten")


def ago(seconds: float) -> str:
    """A duration in evidence: "40 s", "5 min", "2.0 h"."""
    seconds = abs(seconds)
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"
