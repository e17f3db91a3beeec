"""A leg: one WebSocket connection on one side of the hop, recorded from the events it is fed, bounded.

A client leg is what the page sent and got (the client-side listener), an upstream leg what the hop sent
Realtime and got back (the upstream-side listener). Each frame is kept as a `LegFrame`: enough to match it
on the other leg (a digest of its bytes) and to quote it (topic, event, ref), never the bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .. import frames
from ..events import Closed, Event, Frame, Handshake, Opened
from ..hop import BLOB_TEXT
from ..redact import Redactor
from ..session import rejection_text

CLIENT, UPSTREAM = "client", "upstream"
MAX_FRAMES = 2000  # frames recorded per leg; later ones are counted, not compared


@dataclass(slots=True)
class LegFrame:
    """One frame as a leg saw it: enough to match it on the other leg and to quote it."""

    n: int  # 1-based, among this leg's frames in this direction
    time: float
    from_client: bool
    binary: bool
    digest: str  # of the bytes
    length: int
    topic: str | None = None
    event: str | None = None
    ref: str | None = None
    blob: bool = False  # a text frame that is exactly "[object Blob]"

    @property
    def key(self) -> tuple[str, str, str | None] | None:
        return (self.topic, self.event, self.ref) if self.topic is not None and self.event else None


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def leg_frame(n: int, f: Frame) -> LegFrame:
    data = f.data if isinstance(f.data, bytes) else bytes(f.data)
    lf = LegFrame(n, f.time, f.from_client, f.binary, _digest(data), len(data))
    if not f.binary and data.strip() == BLOB_TEXT.encode():
        lf.blob = True
        return lf
    try:
        m = frames.decode(data, binary=f.binary, from_client=f.from_client, lazy=True)
    except frames.DecodeError:
        return lf
    lf.topic, lf.event, lf.ref = m.topic, m.event, m.ref
    return lf


def quote_frame(f: LegFrame, r: Redactor) -> str:
    """`#3 realtime:room phx_join ref 1 (text, 120 B)`: a frame as findings and the content view quote it."""
    kind = "binary" if f.binary else "text"
    if f.blob:
        what = repr(BLOB_TEXT)
    elif f.event:
        what = f"{r.text(f.topic or '')} {r.text(f.event)}" + (f" ref {r.text(f.ref)}" if f.ref else "")
    else:
        what = "undecodable"
    return f"#{f.n} {what} ({kind}, {f.length} B)"


@dataclass
class Leg:
    """One WebSocket connection on one side of the hop."""

    id: str  # the flow id
    side: str  # CLIENT | UPSTREAM
    listener: int | None = None  # the listen port it arrived on
    url: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    opened_at: float = 0.0
    status: int | None = None
    answered_at: float | None = None
    rejection: str | None = None
    out: list[LegFrame] = field(default_factory=list)  # from the client side of this leg
    back: list[LegFrame] = field(default_factory=list)  # from the server side of this leg
    frames_seen: int = 0
    capped_at: float | None = None  # the time of the last frame recorded, once MAX_FRAMES were
    close: Closed | None = None
    ended_at: float | None = None

    @property
    def conn(self) -> str:
        """The short id the tracker's log lines use for this connection."""
        return self.id[:6]

    @property
    def path(self) -> str:
        return _split(self.url)[0]

    @property
    def query(self) -> str:
        return _split(self.url)[1]

    @property
    def host(self) -> str | None:
        return next((v for k, v in self.headers if k.lower() == "host"), None)

    @property
    def upgraded(self) -> bool:
        return self.status == 101

    @property
    def ended(self) -> bool:
        return self.ended_at is not None

    def feed(self, event: Event) -> None:
        if isinstance(event, Frame):
            self.frames_seen += 1
            if self.frames_seen > MAX_FRAMES:
                return
            mine = self.out if event.from_client else self.back
            mine.append(leg_frame(len(mine) + 1, event))
            if self.frames_seen == MAX_FRAMES:
                self.capped_at = event.time
        elif isinstance(event, Opened):
            self.url, self.headers, self.opened_at = event.url, list(event.headers), event.time
        elif isinstance(event, Handshake):
            self.status, self.answered_at = event.status, event.time
            if event.status != 101:
                self.rejection = rejection_text(event.body)
        elif isinstance(event, Closed):
            self.close = event
            self.ended_at = event.time

    def end(self, t: float) -> None:
        """The leg is over: closed, refused, or failed."""
        if self.ended_at is None:
            self.ended_at = t

    def summary(self, r: Redactor) -> dict[str, Any]:
        return {
            "id": self.id,
            "conn": self.conn,
            "side": self.side,
            "listener": self.listener,
            "url": r.url(self.url),
            "status": self.status,
            "rejection": r.text(self.rejection) if self.rejection else None,
            "frames": {"out": len(self.out), "in": len(self.back), "seen": self.frames_seen},
            "close": None
            if self.close is None
            else {
                "code": self.close.code,
                "reason": r.text(self.close.reason),
                "by_client": self.close.by_client,
            },
        }


def _split(url: str) -> tuple[str, str]:
    try:
        p = urlsplit(url)
    except ValueError:
        return url, ""
    return p.path or "/", p.query


def query_params(query: str) -> list[tuple[str, str]]:
    """A URL's query as (name, value) pairs, blanks kept; an unparsable one as one name."""
    try:
        return parse_qsl(query, keep_blank_values=True)
    except ValueError:
        return [(query, "")]
