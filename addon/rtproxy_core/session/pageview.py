"""What the page's probe (rt_page_probe) saw of one connection's socket, and of the page around it: the
PageEvents a Session is fed, kept as counts and bounded lists."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

from ..clip import clip
from ..events import PageEvent
from .limits import MAX_HISTORY, MAX_TEXT, MAX_URL

# The page's states the probe reports (visibilitychange, freeze/resume, online/offline), each with the one
# that ends it.
GOOD_STATES = {"visible": "hidden", "resume": "freeze", "online": "offline"}
BAD_STATES = frozenset(GOOD_STATES.values())


@dataclass
class PageView:
    asked: str | None = None  # the URL the native socket was given (a wrapper's rewrite, if any)
    opened: str | None = None  # the URL it opened
    binary_type: str | None = None  # the native socket's binaryType when it was made
    opened_at: float | None = None
    # messages delivered, by (type as delivered, native binaryType then): ("Blob", "blob") -> 3
    delivered: Counter[tuple[str, str]] = field(default_factory=Counter)
    first_blob_at: float | None = None
    threw: deque[tuple[float, str, str]] = field(default_factory=lambda: deque(maxlen=MAX_HISTORY))
    threw_count: int = 0
    sends_not_open: Counter[int] = field(default_factory=Counter)  # by readyState
    first_send_closed_at: float | None = None  # the first send while CLOSING or CLOSED
    close: dict[str, str | int | float | bool | None] | None = None
    close_at: float | None = None
    # The page's own state over time: (time, what) for visibility ("visible"/"hidden"), online/offline,
    # freeze/resume.
    states: deque[tuple[float, str]] = field(default_factory=lambda: deque(maxlen=MAX_HISTORY))

    @property
    def blobs(self) -> int:
        return sum(n for (kind, _), n in self.delivered.items() if kind == "Blob")

    def spans(self, *kinds: str) -> list[tuple[str, float, float | None]]:
        """The page's spans in a state of `kinds` ("hidden", "freeze", "offline"), as (state, from, until;
        None: still), each state on its own (a tab hidden and offline is both)."""
        out: list[tuple[str, float, float | None]] = []
        began: dict[str, float] = {}
        for t, what in self.states:
            if what in BAD_STATES:
                began.setdefault(what, t)
            elif (bad := GOOD_STATES.get(what)) is not None and bad in began:
                out.append((bad, began.pop(bad), t))
        out.extend((bad, t, None) for bad, t in began.items())
        return sorted((sp for sp in out if sp[0] in kinds), key=lambda sp: sp[1])

    def during(self, start: float, end: float, *kinds: str) -> list[tuple[str, float, float | None]]:
        """The spans (`spans`) that cover some of [start, end]."""
        return [sp for sp in self.spans(*kinds) if sp[1] <= end and (sp[2] is None or sp[2] >= start)]

    def hidden_during(self, start: float, end: float) -> bool:
        """Was the page hidden or frozen for some of [start, end]?"""
        return bool(self.during(start, end, "hidden", "freeze"))

    def feed(self, ev: PageEvent) -> str | None:
        """Take one event; the note worth logging, if any."""
        d = ev.detail
        if ev.what == "socket":
            self.asked, self.opened = (
                clip(str(d.get("asked") or ""), MAX_URL),
                clip(str(d.get("url") or ""), MAX_URL),
            )
            self.binary_type = clip(str(d.get("binaryType") or ""), 100)
            rewrote = f" (given {self.asked})" if self.asked and self.asked != self.opened else ""
            return f"page: socket {self.opened}{rewrote}, binaryType {self.binary_type}"
        if ev.what == "open":
            self.opened_at = ev.time
        elif ev.what == "message":
            key = (clip(str(d.get("type")), 100), clip(str(d.get("binaryType")), 100))
            if key not in self.delivered and len(self.delivered) >= MAX_HISTORY:
                key = ("other", "other")
            self.delivered[key] += 1
            if key[0] == "Blob" and self.first_blob_at is None:
                self.first_blob_at = ev.time
                return f"page: a binary frame was delivered to the app as a Blob (native binaryType {key[1]})"
        elif ev.what == "threw":
            self.threw_count += 1
            self.threw.append((ev.time, clip(str(d.get("type")), 100), clip(str(d.get("error")), MAX_TEXT)))
            if self.threw_count <= 3:
                return f"page: the app's message handler threw on a {d.get('type')} message: {d.get('error')}"
        elif ev.what == "send-not-open":
            state = d.get("readyState")
            known = isinstance(state, int) and not isinstance(state, bool) and 0 <= state <= 3
            self.sends_not_open[state if known and isinstance(state, int) else -1] += 1  # WebSocket's 4
            if state in (2, 3) and self.first_send_closed_at is None:
                self.first_send_closed_at = ev.time
            if sum(self.sends_not_open.values()) == 1:
                return f"page: the app sent on the socket while its readyState was {state}"
        elif ev.what == "close":
            self.close = {  # the probe's fields (code, reason, wasClean), each bounded
                clip(str(k), 100): clip(v, MAX_TEXT) if isinstance(v, str) else v
                for k, v in list(d.items())[:MAX_HISTORY]
                if v is None or isinstance(v, (str, int, float))
            }
            self.close_at = ev.time
            return f"page: close seen by the page: {d.get('code')} {d.get('reason') or ''} wasClean={d.get('wasClean')}"
        elif ev.what == "visibility":
            self.states.append((ev.time, clip(str(d.get("state")), 100)))
            return f"page: tab {d.get('state')}"
        elif ev.what in ("online", "offline", "freeze", "resume"):
            self.states.append((ev.time, ev.what))
            return f"page: {ev.what}"
        elif ev.what == "page":
            if d.get("visibility") == "hidden":
                self.states.append((ev.time, "hidden"))
            if d.get("online") is False:
                self.states.append((ev.time, "offline"))
        return None

    def summary(self) -> dict[str, object]:
        return {
            "socket": self.opened,
            "given": self.asked,
            "binaryType": self.binary_type,
            "delivered": {f"{k} (binaryType {b})": n for (k, b), n in self.delivered.items()},
            "handler_threw": self.threw_count,
            "sends_not_open": sum(self.sends_not_open.values()),
            "close": self.close,
            "states": [[round(t, 3), w] for t, w in self.states],
        }
