"""Realtime's limits, computed the way the real server computes them.

- `external_size`: :erlang.external_size/1 of a payload as Jason decodes it, which is what
  Tenants.validate_payload_size/2 compares with max_payload_size_in_kb * 1000 + 500.
- `RateCounter`: Realtime.RateCounter (lib/realtime/rate_counter/rate_counter.ex): a count reset every
  tick into a bucket list of at most max_bucket_len, whose average per second (sum / buckets / tick) is
  the measurement; the limit triggers when the average reaches the value and clears when it drops below.
- `PresenceWindow`: PresenceHandler.limit_client_presence_event/1, N calls per window per channel.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

# External term format tags' sizes (erts external.c): version byte, then per term.
_VERSION = 1
_ATOM = 2  # SMALL_ATOM_UTF8_EXT: tag, length byte, then the name
_BINARY = 5  # BINARY_EXT: tag + 32-bit length
_MAP = 5  # MAP_EXT: tag + 32-bit arity
_LIST = 5  # LIST_EXT: tag + 32-bit length (then a NIL tail)
_NIL = 1
_FLOAT = 9  # NEW_FLOAT_EXT
_SMALL_TUPLE = 2  # SMALL_TUPLE_EXT: tag + arity byte


def external_size(term: Any, top: bool = True) -> int:
    """Bytes of `term` in Erlang's external format, for the values Jason produces (maps with string
    keys, lists, binaries, integers, floats, true/false/nil) plus tuples and `Atom`s."""
    n = _VERSION if top else 0
    if term is None:
        return n + _ATOM + 3  # nil
    if term is True:
        return n + _ATOM + 4
    if term is False:
        return n + _ATOM + 5
    if isinstance(term, Atom):
        return n + _ATOM + len(term.name.encode())
    if isinstance(term, int):
        if 0 <= term <= 255:
            return n + 2  # SMALL_INTEGER_EXT
        if -(2**31) <= term < 2**31:
            return n + 5  # INTEGER_EXT
        return n + 3 + (abs(term).bit_length() + 7) // 8  # SMALL_BIG_EXT: tag, n, sign, digits
    if isinstance(term, float):
        return n + _FLOAT
    if isinstance(term, str):
        return n + _BINARY + len(term.encode("utf-8", "surrogatepass"))
    if isinstance(term, (bytes, bytearray, memoryview)):
        return n + _BINARY + len(term)
    if isinstance(term, dict):
        return n + _MAP + sum(external_size(k, False) + external_size(v, False) for k, v in term.items())
    if isinstance(term, list):
        if not term:
            return n + _NIL
        return n + _LIST + _NIL + sum(external_size(v, False) for v in term)
    if isinstance(term, tuple):
        return n + _SMALL_TUPLE + sum(external_size(v, False) for v in term)
    raise TypeError(f"no external size for {type(term).__name__}")


class Atom:
    """An Elixir atom inside a term whose size is measured (e.g. :json in a kind-3 broadcast tuple)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


def over_payload_quota(payload: Any, max_payload_size_in_kb: int) -> bool:
    """Tenants.validate_payload_size/2: external size over max_payload_size_in_kb * 1000 + 500."""
    return external_size(payload) > max_payload_size_in_kb * 1000 + 500


class RateCounter:
    """One Realtime.RateCounter. add() is GenCounter.add; the tick runs on the event loop."""

    IDLE_SHUTDOWN_S = 300.0  # @idle_shutdown: a counter whose buckets stay all zero stops

    def __init__(
        self,
        limit: Callable[[], float | None],
        tick_s: Callable[[], float],
        max_bucket_len: int = 12,
        on_idle: Callable[[], None] | None = None,
    ) -> None:
        self._limit, self._tick_s, self.max_bucket_len = limit, tick_s, max_bucket_len
        self._on_idle = on_idle
        self._idle_ticks = 0
        self.count = 0
        self.bucket: list[int] = []
        self.avg = 0.0
        self.triggered = False
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.ticked = asyncio.Event()  # set at every tick, for whoever waits for the next average

    def start(self) -> RateCounter:
        """RateCounter.new/1: the counter starts with an immediate tick of 0 (init/1's tick(0))."""
        if self._timer is None:
            self._loop = asyncio.get_running_loop()
            self.bucket = [0]
            self._timer = self._loop.call_later(self._tick_s(), self._tick)
        return self

    def add(self, n: int = 1) -> None:
        self.start()
        self.count += n

    def _tick(self) -> None:
        tick = self._tick_s()
        self.bucket = ([self.count] + self.bucket)[: self.max_bucket_len]
        self.count = 0
        self.avg = sum(self.bucket) / len(self.bucket) / tick
        limit = self._limit()
        if limit is None:
            self.triggered = False
        elif self.triggered:
            self.triggered = self.avg >= limit  # maybe_trigger_limit/1: clears once below the value
        else:
            self.triggered = self.avg >= limit
        assert self._loop is not None
        self._idle_ticks = self._idle_ticks + 1 if not any(self.bucket) else 0
        self.ticked.set()
        if self._idle_ticks * tick >= self.IDLE_SHUTDOWN_S and self._on_idle is not None:
            self._timer = None
            self._on_idle()  # handle_info(:idle_shutdown): the next RateCounter.new starts afresh
            return
        self._timer = self._loop.call_later(tick, self._tick)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class PresenceWindow:
    """PresenceHandler.limit_client_presence_event/1: at most max_calls presence pushes per window."""

    __slots__ = ("counter", "reset_at")

    def __init__(self) -> None:
        self.counter = 0
        self.reset_at: float | None = None

    def allow(self, max_calls: int, window_ms: int, now: float | None = None) -> bool:
        now_ms = (now if now is not None else time.monotonic()) * 1000
        if self.reset_at is None or now_ms > self.reset_at:
            self.counter, self.reset_at = 1, now_ms + window_ms
            return True
        if self.counter >= max_calls:
            return False
        self.counter += 1
        return True
