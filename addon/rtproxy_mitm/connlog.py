"""Each connection's log lines, `[rt <conn>] …`: one logger per connection, as websockets gives each
connection its own (`websockets/protocol.py`, `Protocol.__init__`: `self.logger = logging.LoggerAdapter(
logger, {"websocket": self})`), so the prefix is written in one place, and so is what bounds the log:

- every line is clipped (`rtproxy_core.clip.clip_line`: a field past 200 characters, a line past 1,500);
- at most `Rate.lines` ordinary lines per connection per `Rate.per_s` seconds (`rt_log_rate`, the
  Tracker's option; `set_rate`); the rest are counted, and when the interval is over (the next line, the
  Tracker's 1 s tick: `roll_over`) or the connection ends (`end`), ONE line says how many:
  `… 460 more lines suppressed for this connection in the last 10 s`;
- findings (`ConnectionLog.finding`), errors, and the lines the caller passes `capped=False` (the
  connection's own: its upgrade and its end) are never suppressed. A finding is reported once per
  (code, topic) (rtproxy_core/diagnosis.py), so there are no identical repeats to count; a code found
  again on another topic (400 joins refused alike) is one short line each, numbered, its explanation and
  fix written with the first.
"""

from __future__ import annotations

import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from rtproxy_core.clip import clip_line
from rtproxy_core.events import conn_id

logger = logging.getLogger("rtproxy")


@dataclass(frozen=True, slots=True)
class Rate:
    """At most `lines` capped lines per connection per `per_s` seconds."""

    lines: int
    per_s: float

    def __str__(self) -> str:
        return f"{self.lines}/{self.per_s:g}s"


DEFAULT_RATE = Rate(40, 10.0)  # a page's start (upgrade, then a join and a reply per channel) fits in it
OFF = ("off", "0")
_RATE_RE = re.compile(r"\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*s?\s*")


def parse_rate(text: str) -> Rate | None:
    """`rt_log_rate`'s value: `LINES/SECONDSs` (`40/10s`), or `off` (None: no cap). ValueError says why not."""
    if text.strip().lower() in OFF:
        return None
    m = _RATE_RE.fullmatch(text)
    if m is None:
        raise ValueError(f"expected LINES/SECONDS such as {DEFAULT_RATE}, or off; got {text!r}")
    lines, per_s = int(m.group(1)), float(m.group(2))
    if lines < 1 or per_s <= 0:
        raise ValueError(f"{text!r}: lines and seconds must be positive (off: no cap)")
    return Rate(lines, per_s)


_rate: Rate | None = DEFAULT_RATE


def set_rate(rate: Rate | None) -> None:
    """The cap of every connection's log from now on (None: none)."""
    global _rate
    _rate = rate


def _seconds(s: float) -> str:
    return f"{s:.0f}" if s >= 10 else f"{s:.1f}"


class ConnectionLog(logging.LoggerAdapter[logging.Logger]):
    """rtproxy's logger for one connection: every line starts `[rt <conn>] ` and is clipped; ordinary
    lines are capped at the module's rate (`set_rate`). `clock` tells the time (tests give their own)."""

    def __init__(self, base: logging.Logger, conn: str, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(base, {"conn": conn})
        self.conn = conn
        self.clock = clock
        self.started = -float("inf")  # the current interval's start
        self.written = 0  # capped lines written in it
        self.suppressed = 0  # and dropped
        self.suppressed_level = logging.DEBUG  # the loudest dropped
        self.codes: dict[str, int] = {}  # findings logged, by code

    @property
    def rate(self) -> Rate | None:
        return _rate

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        return clip_line(f"[rt {self.conn}] {msg}"), kwargs

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        """`capped=False` among the keywords: a line of the connection's own, never suppressed."""
        capped = kwargs.pop("capped", True)
        if not self.isEnabledFor(level):
            return
        if capped and level < logging.ERROR and not self._admit(level):
            return
        super().log(level, msg, *args, **kwargs)

    def finding(self, level: int, code: str, full: str, short: str) -> None:
        """A finding's line, never suppressed nor counted against the cap. The first of its code on this
        connection is `full` (with what it explains and the fix); each later one is `short`, numbered."""
        n = self.codes[code] = self.codes.get(code, 0) + 1
        if n == 1:
            self.log(level, full, capped=False)
        else:
            self.log(
                level, f"{short} (#{n:,} {code} of this connection: its fix as in the first)", capped=False
            )

    def _admit(self, level: int) -> bool:
        rate = self.rate
        if rate is None:
            return True
        now = self.clock()
        if now - self.started >= rate.per_s:
            self.roll_over(now)
            self.started = now
        if self.written < rate.lines:
            self.written += 1
            return True
        self.suppressed += 1
        self.suppressed_level = max(self.suppressed_level, level)
        _held[self.conn] = self
        return False

    def roll_over(self, now: float | None = None, force: bool = False) -> None:
        """Start the next interval if this one is over (or `force`: the connection ended), writing the one
        line that counts what it suppressed."""
        now = self.clock() if now is None else now
        rate = self.rate
        if not force and rate is not None and now - self.started < rate.per_s:
            return
        _held.pop(self.conn, None)
        if self.suppressed:
            span = now - self.started if rate is None else min(now - self.started, rate.per_s)
            n, level = self.suppressed, self.suppressed_level
            self.suppressed, self.suppressed_level = 0, logging.DEBUG
            super().log(
                level,
                f"… {n:,} more line{'s' if n != 1 else ''} suppressed for this connection in the last "
                f"{_seconds(span)} s (rt_log_rate {rate or 'off'})",
            )
        self.started, self.written = -float("inf"), 0


MAX_LOGS = 4096  # connection logs kept; one pushed out writes its count of suppressed lines first
_logs: OrderedDict[str, ConnectionLog] = OrderedDict()
_held: dict[str, ConnectionLog] = {}  # the logs holding a count of suppressed lines


def connection_log(conn: str) -> ConnectionLog:
    """The logger of the connection rtproxy shows as `conn` (events.conn_id of its flow id)."""
    log = _logs.get(conn)
    if log is None:
        log = _logs[conn] = ConnectionLog(logger, conn)
        while len(_logs) > MAX_LOGS:
            _logs.popitem(last=False)[1].roll_over(force=True)
    else:
        _logs.move_to_end(conn)
    return log


def flow_log(flow_id: str) -> ConnectionLog:
    """The logger of the connection whose mitmproxy flow id is `flow_id`."""
    return connection_log(conn_id(flow_id))


def roll_over() -> None:
    """Each connection whose interval is over writes its count of suppressed lines (the Tracker's tick)."""
    for log in list(_held.values()):
        log.roll_over()


def end(conn: str) -> None:
    """The connection ended: its count of suppressed lines is written now, and its log let go (a line
    after this, a hop the relay reports late, starts a new one)."""
    log = _logs.pop(conn, None)
    if log is not None:
        log.roll_over(force=True)
