"""The client's heartbeats on one connection: their round trips and the gaps between them."""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

from .limits import MAX_PENDING

AGREE = 0.2  # two heartbeat gaps within 20 % of each other show a cadence (timers jitter; 25 s is not 30 s)


def _agree(a: float, b: float) -> bool:
    return abs(a - b) <= AGREE * max(a, b)


@dataclass
class Heartbeats:
    """The client's heartbeats (topic "phoenix"), sent and answered, paired by ref."""

    sent: int = 0
    answered: int = 0
    rtt_sum_ms: float = 0.0
    rtt_max_ms: float = 0.0
    first_sent_at: float | None = None
    last_sent_at: float | None = None
    max_gap_s: float = 0.0
    max_gap_from: float | None = None  # when the longest gap began (the heartbeat before it)
    unanswered_at_next: int = 0  # heartbeats still pending when the next one went out
    gaps: deque[float] = field(default_factory=lambda: deque(maxlen=64))

    # Heartbeats waiting for their reply, oldest first: by ref, and (Python's null refs) in order.
    pending: OrderedDict[str, float] = field(default_factory=OrderedDict)
    pending_null: deque[float] = field(default_factory=lambda: deque(maxlen=MAX_PENDING))
    # interval()'s last answer, by (sent, default): the gaps change only when a heartbeat is sent, and
    # the rules ask on every pass (64 gaps: 4,096 comparisons each time).
    _interval: tuple[tuple[int, float | None], float | None] | None = field(default=None, repr=False)

    def oldest_unanswered(self) -> float | None:
        """When the oldest heartbeat still waiting for its reply was sent."""
        times = [next(iter(self.pending.values()))] if self.pending else []
        if self.pending_null:
            times.append(self.pending_null[0])
        return min(times) if times else None

    def interval(self, default: float | None = None) -> float | None:
        """The client's heartbeat interval as its own heartbeats show it, once two observations agree
        (within AGREE): two gaps, or one gap and the client's known `default`. The cadence is then the
        median of the gaps that agree. One gap alone, or gaps that all differ, say nothing: a laptop that
        slept between its only two heartbeats makes one long gap, not a slow client."""
        key = (self.sent, default)
        if self._interval is not None and self._interval[0] == key:
            return self._interval[1]
        value = self._compute_interval(default)
        self._interval = (key, value)
        return value

    def _compute_interval(self, default: float | None) -> float | None:
        gaps = sorted(self.gaps)
        if gaps and gaps[0] < 0:  # out-of-order times: every pair compared
            best: list[float] = []
            for g in gaps:  # the largest group of gaps agreeing with one of them (the shortest on a tie)
                group = [h for h in gaps if _agree(g, h)]
                if len(group) > len(best):
                    best = group
        else:
            # The same groups, found in one sweep: for gaps >= 0 those agreeing with g are the sorted run
            # from the first h >= 0.8 g to the last h <= 1.25 g, and both ends only move up as g does.
            lo = hi = best_lo = best_hi = 0
            for i, g in enumerate(gaps):
                while not _agree(g, gaps[lo]):
                    lo += 1
                hi = max(hi, i)
                while hi + 1 < len(gaps) and _agree(g, gaps[hi + 1]):
                    hi += 1
                if hi + 1 - lo > best_hi - best_lo:
                    best_lo, best_hi = lo, hi + 1
            best = gaps[best_lo:best_hi]
        if len(best) >= 2 or best and default is not None and _agree(best[0], default):
            return best[len(best) // 2]
        return None

    def sent_one(self, ref: str | None, t: float, timer_started_at: float | None = None) -> None:
        """A heartbeat went out at `t`; `timer_started_at`: when the client's heartbeat timer started, for
        a client whose first heartbeat comes one interval after that (the first gap it shows)."""
        if self.first_sent_at is None:
            self.first_sent_at = t
            if timer_started_at is not None and t > timer_started_at:
                self.gaps.append(t - timer_started_at)
        if self.last_sent_at is not None:
            if t - self.last_sent_at > self.max_gap_s:
                self.max_gap_s, self.max_gap_from = t - self.last_sent_at, self.last_sent_at
            self.gaps.append(t - self.last_sent_at)
            if self.sent > self.answered:
                self.unanswered_at_next += 1
        self.sent += 1
        self.last_sent_at = t
        if ref is None:
            self.pending_null.append(t)
        else:
            self.pending[ref] = t
            if len(self.pending) > MAX_PENDING:
                self.pending.popitem(last=False)

    def answered_one(self, ref: str | None, t: float) -> None:
        sent_at = (
            self.pending.pop(ref, None)
            if ref is not None
            else (self.pending_null.popleft() if self.pending_null else None)
        )
        if sent_at is None:
            return
        rtt = (t - sent_at) * 1000
        self.answered += 1
        self.rtt_sum_ms += rtt
        self.rtt_max_ms = max(self.rtt_max_ms, rtt)

    def summary(self) -> str:
        avg = f"{self.rtt_sum_ms / self.answered:.1f}" if self.answered else "-"
        return (
            f"heartbeats: {self.sent} sent, {self.answered} answered, rtt avg {avg} ms "
            f"max {self.rtt_max_ms:.1f} ms, longest gap {self.max_gap_s:.1f} s"
        )
