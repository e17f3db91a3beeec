"""What the players return for the I/O layer to carry out, and the clock they share."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Send:
    data: str | bytes  # str: a text frame; bytes: a binary frame
    text: str  # what it is, for the line printed about it
    payload: Any = None


@dataclass(slots=True)
class End:
    """End the connection: a close frame with `code` and `reason`; code NO_CODE: a close frame without a
    code; code None: drop the TCP connection, no close frame."""

    code: int | None
    reason: str = ""


@dataclass(slots=True)
class Note:
    text: str


Action = Send | End | Note


class Clock:
    """Capture time -> live time."""

    def __init__(self, speed: float) -> None:
        self.speed = speed if speed > 0 else 1.0

    def after(self, live: float, captured_delay: float) -> float:
        return live + max(0.0, captured_delay) / self.speed


class Matched:
    """Which steps have happened live, and when: the anchor of what is timed after them."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.live: dict[int, float] = {}
        self._order: list[int] = []  # the steps in self.live, sorted

    def add(self, index: int, now: float) -> None:
        if index not in self.live:
            bisect.insort(self._order, index)
        self.live[index] = now

    def __contains__(self, index: int) -> bool:
        return index in self.live

    def __len__(self) -> int:
        return len(self.live)

    def before(self, index: int) -> int | None:
        """The last step before `index` (in capture order) that happened."""
        i = bisect.bisect_left(self._order, index)
        return self._order[i - 1] if i else None
