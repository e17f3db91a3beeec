"""Faults a hop can inject to reproduce a bug report, decided per frame without I/O.

`parse_faults("swallow-heartbeats,delay-replies=500")` gives the spec; `FaultPlan(spec, vsn)` looks at
each frame and says what the hop should do (an Action). The mitmproxy layer carries the actions out.
Each fault names the symptom it produces and the finding that diagnoses it (README, "Faults").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from . import frames

# name -> (argument form or None, what it does). The README's table is generated from the same words.
FAULTS: dict[str, tuple[str | None, str]] = {
    "swallow-heartbeats": (None, "drop the server's replies to heartbeats"),
    "delay-replies": ("MS", "deliver every phx_reply MS milliseconds late"),
    "drop-join": (None, "drop the client's phx_join frames"),
    "shutdown": ("MESSAGE", "after a join succeeds, push a system error with MESSAGE, then phx_close"),
    "close": ("CODE:SECONDS[:REASON]", "close both sides with CODE (and REASON) SECONDS after the upgrade"),
    "idle-timeout": ("SECONDS", "drop the connection, with no close frame, after SECONDS without frames"),
    "max-frame": ("BYTES", "close with 1009 when a frame is larger than BYTES"),
    "strip-query": (None, "strip the query string (apikey, vsn) from the upgrade sent upstream"),
}


@dataclass(frozen=True, slots=True)
class FaultSpec:
    swallow_heartbeats: bool = False
    delay_replies_ms: int | None = None
    drop_join: bool = False
    shutdown: str | None = None
    close: tuple[int, float, str] | None = None  # code, after seconds, reason
    idle_timeout_s: float | None = None
    max_frame: int | None = None
    strip_query: bool = False

    @property
    def any(self) -> bool:
        return self != FaultSpec()


def _number(name: str, raw: str, kind: type = float) -> float:
    try:
        value = kind(raw)
    except ValueError:
        whole = " (a whole number)" if kind is int else ""
        raise ValueError(f"{name} needs a number{whole}, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {raw!r}")
    if kind is float and not math.isfinite(value):  # NaN or infinity: a timer that spins or never fires
        raise ValueError(f"{name} needs a finite number, got {raw!r}")
    return value


def parse_faults(text: str) -> FaultSpec:
    """Comma-separated faults, e.g. 'swallow-heartbeats,close=4000:5:bye'. Raises ValueError."""
    values: dict = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, eq, arg = item.partition("=")
        name = name.strip()
        if name not in FAULTS:
            raise ValueError(f"unknown fault {name!r}; known: {', '.join(FAULTS)}")
        form = FAULTS[name][0]
        if form is None and eq:
            raise ValueError(f"{name} takes no argument")
        if form is not None and not arg:
            raise ValueError(f"{name} needs an argument: {name}={form}")
        if name == "swallow-heartbeats":
            values["swallow_heartbeats"] = True
        elif name == "delay-replies":
            values["delay_replies_ms"] = int(_number(name, arg, int))
        elif name == "drop-join":
            values["drop_join"] = True
        elif name == "shutdown":
            values["shutdown"] = arg
        elif name == "close":
            parts = arg.split(":", 2)
            if len(parts) < 2:
                raise ValueError(f"close needs CODE:SECONDS[:REASON], got {arg!r}")
            code = int(_number(name, parts[0], int))
            if code in (1005, 1006, 1015) or not 1000 <= code <= 4999:
                raise ValueError(f"close code must be 1000-4999 and not 1005/1006/1015, got {code}")
            reason = parts[2] if len(parts) > 2 else ""
            if len(reason.encode()) > 123:
                raise ValueError("close reason must be at most 123 bytes")
            values["close"] = (code, _number(name, parts[1]), reason)
        elif name == "idle-timeout":
            values["idle_timeout_s"] = _number(name, arg)
        elif name == "max-frame":
            values["max_frame"] = int(_number(name, arg, int))
        elif name == "strip-query":
            values["strip_query"] = True
    return FaultSpec(**values)


@dataclass(slots=True)
class Action:
    drop: bool = False
    delay_ms: int = 0  # deliver the frame this much later (dropped now, re-sent then)
    inject_to_client: list[str] = field(default_factory=list)  # text frames to send after this one
    close: tuple[int, str] | None = None  # close both sides with this code and reason
    note: str = ""  # what the fault did, for the log


class FaultPlan:
    """Per-connection fault state. `vsn` is the serializer the server negotiated (for injected frames)."""

    def __init__(self, spec: FaultSpec, vsn: str) -> None:
        self.spec = spec
        self.vsn = vsn
        self._joins: dict[tuple[str, str], str] = {}  # (topic, ref) -> join_ref of pending joins

    def on_frame(self, from_client: bool, binary: bool, data: bytes) -> Action:
        spec = self.spec
        if spec.max_frame is not None and len(data) > spec.max_frame:
            return Action(
                drop=True,
                close=(1009, "Message is too large"),
                note=f"{len(data)}-byte frame over max-frame {spec.max_frame}: closed with 1009",
            )
        try:
            msg = frames.decode(data, binary=binary, from_client=from_client)
        except frames.DecodeError:
            return Action()
        if from_client:
            if msg.event == frames.PHX_JOIN:
                if spec.drop_join:
                    return Action(drop=True, note=f"dropped phx_join for {msg.topic} (drop-join)")
                if msg.ref is not None:
                    self._joins[(msg.topic, msg.ref)] = msg.join_ref or msg.ref
            return Action()
        if msg.event != frames.PHX_REPLY:
            return Action()
        if spec.swallow_heartbeats and msg.topic == frames.PHOENIX:
            return Action(drop=True, note="swallowed a heartbeat reply (swallow-heartbeats)")
        action = Action()
        join_ref = self._joins.pop((msg.topic, msg.ref), None) if msg.ref is not None else None
        ok = isinstance(msg.payload, dict) and msg.payload.get("status") == "ok"
        if spec.shutdown and join_ref is not None and ok:
            sub = msg.topic.split(":", 1)[-1]
            system = frames.Message(
                msg.topic,
                "system",
                {"channel": sub, "extension": "system", "message": spec.shutdown, "status": "error"},
                None,
                join_ref,
            )
            close = frames.Message(msg.topic, frames.PHX_CLOSE, {}, join_ref, join_ref)
            action.inject_to_client = [
                frames.encode_text(m, self.vsn, from_client=False) for m in (system, close)
            ]
            action.note = f"shut {msg.topic} down after its join: system error {spec.shutdown!r}, phx_close"
        if spec.delay_replies_ms:
            action.delay_ms = spec.delay_replies_ms
            action.note = action.note or f"delayed a phx_reply by {spec.delay_replies_ms} ms (delay-replies)"
        return action
