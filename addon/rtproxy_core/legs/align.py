"""Alignment: what one leg sent against what the other leg got, in one direction.

Frames are compared per direction (the client's frames with what reached the upstream, the upstream's
with what reached the client): each arriving frame is matched to the earliest unmatched frame sent with
the same bytes (a text "[object Blob]", or a text frame holding a binary frame's bytes, to a binary
frame: turned into text). What was sent and never matched was dropped; what arrived and matches nothing
was injected, or altered when a dropped frame has its topic, event and ref. Matched frames out of the
sender's order were reordered; those that took DELAY_S or more were delayed.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from dataclasses import dataclass, field

from .model import LegFrame

# A hop forwards a frame within one turn of its event loop: milliseconds, both legs timed by one clock
# (the one mitmproxy). A second is a hundred times that and a tenth of the clients' push and join timeout
# (realtime-js DEFAULT_TIMEOUT 10000 ms, realtime-py DEFAULT_TIMEOUT 10 s): a frame that late was held in a
# queue or behind a stalled hop, never slowed by the loopback between the legs.
DELAY_S = 1.0


@dataclass
class Direction:
    """One direction of a pair: what the sender's leg sent and what the receiver's leg got."""

    sender: str  # "client" | "upstream": who sent the frames
    receiver: str
    sent: list[LegFrame]
    got: list[LegFrame]
    matched: list[tuple[LegFrame, LegFrame]] = field(default_factory=list)  # (sent, got), in got order
    as_text: list[tuple[LegFrame, LegFrame]] = field(default_factory=list)  # binary sent, text got
    dropped: list[LegFrame] = field(default_factory=list)
    injected: list[LegFrame] = field(default_factory=list)
    altered: list[tuple[LegFrame, LegFrame]] = field(default_factory=list)
    reordered: list[tuple[LegFrame, LegFrame]] = field(default_factory=list)  # (got first, sent first)
    delayed: list[tuple[LegFrame, LegFrame]] = field(default_factory=list)
    late: list[LegFrame] = field(default_factory=list)  # sent after the receiving leg ended: not compared
    held: int = 0  # dropped frames sent before the receiving leg was open

    @property
    def arrow(self) -> str:
        return f"{self.sender} → {self.receiver}"


def align(
    sender: str,
    receiver: str,
    sent: list[LegFrame],
    got: list[LegFrame],
    receiver_open_at: float | None,
    receiver_end: float | None,
    sent_cut: float | None = None,
    got_cut: float | None = None,
) -> Direction:
    """Match what arrived to what was sent (see the module docstring). `receiver_open_at`: when the
    receiving leg upgraded; `receiver_end`: when it ended (frames sent later had nowhere to go);
    `sent_cut`/`got_cut`: unmatched frames later than these are outside what both legs recorded
    (book._cuts)."""
    d = Direction(sender, receiver, sent, got)
    considered: list[LegFrame] = []
    for s in sent:
        if receiver_end is not None and s.time > receiver_end:
            d.late.append(s)
            continue
        considered.append(s)
    by_bytes: dict[tuple[str, bool], deque[int]] = {}
    binaries: deque[int] = deque()
    for i, s in enumerate(considered):
        by_bytes.setdefault((s.digest, s.binary), deque()).append(i)
        if s.binary:
            binaries.append(i)
    used = [False] * len(considered)

    def take(q: deque[int] | None) -> int | None:
        while q:
            i = q.popleft()
            if not used[i]:
                used[i] = True
                return i
        return None

    unmatched_got: list[LegFrame] = []
    for g in got:
        k = take(by_bytes.get((g.digest, g.binary)))
        if k is not None:
            d.matched.append((considered[k], g))
            continue
        if not g.binary:
            k = take(binaries) if g.blob else take(by_bytes.get((g.digest, True)))
            if k is not None:
                d.as_text.append((considered[k], g))
                continue
        unmatched_got.append(g)
    # Beyond what both legs recorded, a frame without its match says nothing.
    lost = [s for i, s in enumerate(considered) if not used[i] and (sent_cut is None or s.time <= sent_cut)]
    unmatched_got = [g for g in unmatched_got if got_cut is None or g.time <= got_cut]
    # Altered: a frame that arrived in place of a lost one with the same topic, event and ref.
    by_key: dict[tuple[str, str, str | None], deque[LegFrame]] = {}
    for s in lost:
        if s.key is not None:
            by_key.setdefault(s.key, deque()).append(s)
    replaced: set[int] = set()
    for g in unmatched_got:
        q = by_key.get(g.key) if g.key is not None else None
        if q:
            s = q.popleft()
            replaced.add(s.n)
            d.altered.append((s, g))
        else:
            d.injected.append(g)
    d.dropped = [s for s in lost if s.n not in replaced]
    d.held = sum(1 for s in d.dropped if receiver_open_at is None or s.time < receiver_open_at)
    # Reordered: arrived out of the order they were sent (outside one longest in-order run).
    order = sorted(d.matched + d.as_text, key=lambda sg: sg[1].n)
    in_order = _increasing([s.n for s, _ in order])
    for k, (s, _) in enumerate(order):
        if k in in_order:
            continue
        # (the one that arrived first, the one sent before it), for "got #5 before #4"
        later = next((o for o, _ in order[:k] if o.n > s.n), None)
        if later is not None:
            d.reordered.append((later, s))
        else:
            earlier = next((o for o, _ in order[k + 1 :] if o.n < s.n), s)
            d.reordered.append((s, earlier))
    d.delayed = [(s, g) for s, g in order if g.time - s.time >= DELAY_S]
    return d


def _increasing(seq: list[int]) -> set[int]:
    """Indexes of one longest strictly increasing subsequence of seq (patience sorting)."""
    tails: list[int] = []  # values
    tails_at: list[int] = []  # index in seq of each tail
    prev = [-1] * len(seq)
    for i, v in enumerate(seq):
        j = bisect_left(tails, v)
        if j == len(tails):
            tails.append(v)
            tails_at.append(i)
        else:
            tails[j], tails_at[j] = v, i
        prev[i] = tails_at[j - 1] if j else -1
    out: set[int] = set()
    k = tails_at[-1] if tails_at else -1
    while k != -1:
        out.add(k)
        k = prev[k]
    return out
