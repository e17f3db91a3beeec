"""Faults a hop can inject to reproduce a bug report, decided per frame without I/O.

`parse_faults("swallow-heartbeats,delay-replies=500")` gives the spec; `FaultPlan(spec, vsn)` looks at
each frame and says what the hop should do (an Action). The mitmproxy layer carries the actions out.

Each fault is registered with `@fault`, like a rule with `@rule` (rules/): its name, argument form, what
it does, what the client sees and the finding that diagnoses it (a code in rules.RULES_BY_CODE), and a
function that parses its argument into FaultSpec fields. The `--set rt_fault` help and the docs' faults
table (`readme_table()`: docs/reference/faults.md, rendered by scripts/tables.py) are written from it.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import closecodes, frames


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


@dataclass(frozen=True, slots=True)
class Fault:
    name: str
    form: str | None  # the argument's form (`MS`), or None: the fault takes no argument
    does: str  # what it does: the --set help and the faults table
    client_sees: str
    finding: str  # the rule code that diagnoses it (rules.RULES_BY_CODE)
    finding_note: str  # the table's words after the code: when it applies, other findings (in backticks)
    parse: Callable[[str], dict[str, Any]]  # argument -> FaultSpec fields; raises ValueError

    @property
    def usage(self) -> str:
        return self.name + (f"={self.form}" if self.form else "")

    @property
    def readme_row(self) -> str:
        note = f" {self.finding_note}" if self.finding_note else ""
        return f"| `{self.usage}` | {self.does} | {self.client_sees} | `{self.finding}`{note} |"


FAULTS: dict[str, Fault] = {}  # name -> Fault, in the faults table's order


Parse = Callable[[str], dict[str, Any]]  # a fault's argument -> FaultSpec fields; raises ValueError


def fault(
    name: str, form: str | None, does: str, client_sees: str, finding: str, finding_note: str = ""
) -> Callable[[Parse], Parse]:
    def register(parse: Callable[[str], dict[str, Any]]) -> Callable[[str], dict[str, Any]]:
        assert name not in FAULTS, name
        FAULTS[name] = Fault(name, form, does, client_sees, finding, finding_note, parse)
        return parse

    return register


def readme_table() -> str:
    """The faults table of docs/reference/faults.md (scripts/tables.py renders it at build time)."""
    rows = [f.readme_row for f in FAULTS.values()]
    return "\n".join(["| fault | what it does | client sees | finding |", "|---|---|---|---|", *rows])


def help_text() -> str:
    """The faults, one `usage: what it does` each, for the --set rt_fault help."""
    return "; ".join(f"{f.usage}: {f.does}" for f in FAULTS.values())


def _number(name: str, raw: str, kind: type[float | int] = float) -> float:
    try:
        value: float = kind(raw)
    except ValueError:
        whole = " (a whole number)" if kind is int else ""
        raise ValueError(f"{name} needs a number{whole}, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {raw!r}")
    if kind is float and not math.isfinite(value):  # NaN or infinity: a timer that spins or never fires
        raise ValueError(f"{name} needs a finite number, got {raw!r}")
    return value


# ------------------------------------------------------------------------------------------- faults


@fault(
    "swallow-heartbeats",
    None,
    "drop the server's replies to heartbeats",
    'realtime-js: close 1000 "heartbeat timeout", CHANNEL_ERROR',
    "heartbeat-timeout",
)
def _swallow_heartbeats(arg: str) -> dict[str, Any]:
    return {"swallow_heartbeats": True}


@fault(
    "delay-replies",
    "MS",
    "deliver every phx_reply MS milliseconds late",
    "TIMED_OUT",
    "join-timeout",
    "(MS above the join timeout), `heartbeat-timeout`",
)
def _delay_replies(arg: str) -> dict[str, Any]:
    return {"delay_replies_ms": int(_number("delay-replies", arg, int))}


@fault("drop-join", None, "drop the client's phx_join frames", "TIMED_OUT", "join-dropped-by-proxy")
def _drop_join(arg: str) -> dict[str, Any]:
    return {"drop_join": True}


@fault(
    "shutdown",
    "MESSAGE",
    "after a join succeeds, push a system error with MESSAGE, then phx_close",
    "CLOSED (Python: CHANNEL_ERROR, then CLOSED)",
    "channel-shutdown",
    "for words Realtime never sends; for Realtime's own MESSAGE, the finding it names (`rate-limited` "
    "for `Too many messages per second`)",
)
def _shutdown(arg: str) -> dict[str, Any]:
    return {"shutdown": arg}


@fault(
    "close",
    "CODE:SECONDS[:REASON]",
    f"close both sides with CODE ({closecodes.SENDABLE}) and REASON, SECONDS after the upgrade",
    "CHANNEL_ERROR (socket closed: CODE)",
    "server-close",
    "(`message-too-large` for 1009)",
)
def _close(arg: str) -> dict[str, Any]:
    parts = arg.split(":", 2)
    if len(parts) < 2:
        raise ValueError(f"close needs CODE:SECONDS[:REASON], got {arg!r}")
    code = int(_number("close", parts[0], int))
    if why := closecodes.unsendable(code):
        raise ValueError(why)
    reason = parts[2] if len(parts) > 2 else ""
    if len(reason.encode()) > closecodes.MAX_REASON_BYTES:
        raise ValueError(f"close reason must be at most {closecodes.MAX_REASON_BYTES} bytes")
    return {"close": (code, _number("close", parts[1]), reason)}


@fault(
    "idle-timeout",
    "SECONDS",
    "drop the connection, with no close frame, after SECONDS without frames",
    "CHANNEL_ERROR (1006)",
    "proxy-idle-timeout",
)
def _idle_timeout(arg: str) -> dict[str, Any]:
    return {"idle_timeout_s": _number("idle-timeout", arg)}


@fault(
    "max-frame",
    "BYTES",
    "close with 1009 when a frame is larger than BYTES",
    "CHANNEL_ERROR (1009)",
    "message-too-large",
)
def _max_frame(arg: str) -> dict[str, Any]:
    return {"max_frame": int(_number("max-frame", arg, int))}


@fault(
    "strip-query",
    None,
    "strip the query string (apikey, vsn) from the upgrade sent upstream",
    "the upgrade fails: 401",
    "apikey-missing",
)
def _strip_query(arg: str) -> dict[str, Any]:
    return {"strip_query": True}


def parse_faults(text: str) -> FaultSpec:
    """Comma-separated faults, e.g. 'swallow-heartbeats,close=4000:5:bye'. Raises ValueError."""
    values: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, eq, arg = item.partition("=")
        name = name.strip()
        f = FAULTS.get(name)
        if f is None:
            near = difflib.get_close_matches(name, FAULTS, n=1)
            guess = f" (did you mean {near[0]}?)" if near else ""
            raise ValueError(f"unknown fault {name!r}{guess}; known: {', '.join(FAULTS)}")
        if f.form is None and eq:
            raise ValueError(f"{name} takes no argument")
        if f.form is not None and not arg:
            raise ValueError(f"{name} needs an argument: {f.usage}")
        values.update(f.parse(arg))
    return FaultSpec(**values)


@dataclass(slots=True)
class Action:
    drop: bool = False
    delay_ms: int = 0  # deliver the frame this much later (dropped now, re-sent then)
    inject_to_client: list[str] = field(default_factory=list)  # text frames to send after this one
    close: tuple[int, str] | None = None  # close both sides with this code and reason
    note: str = ""  # what the fault did, for the log
    fault: str = ""  # the fault that dropped, delayed or closed (its name in rt_fault)
    injected_by: str = ""  # the fault whose frames inject_to_client are


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
                close=(closecodes.MESSAGE_TOO_BIG, "Message is too large"),
                note=f"{len(data)}-byte frame over max-frame {spec.max_frame}: closed with 1009",
                fault="max-frame",
            )
        try:
            msg = frames.decode(data, binary=binary, from_client=from_client)
        except frames.DecodeError:
            return Action()
        if from_client:
            if msg.event == frames.PHX_JOIN:
                if spec.drop_join:
                    return Action(
                        drop=True, note=f"dropped phx_join for {msg.topic} (drop-join)", fault="drop-join"
                    )
                if msg.ref is not None:
                    self._joins[(msg.topic, msg.ref)] = msg.join_ref or msg.ref
            return Action()
        if msg.event != frames.PHX_REPLY:
            return Action()
        if spec.swallow_heartbeats and msg.topic == frames.PHOENIX:
            return Action(
                drop=True, note="swallowed a heartbeat reply (swallow-heartbeats)", fault="swallow-heartbeats"
            )
        action = Action()
        join_ref = self._joins.pop((msg.topic, msg.ref), None) if msg.ref is not None else None
        ok = isinstance(msg.payload, dict) and msg.payload.get("status") == "ok"
        if spec.shutdown and join_ref is not None and ok:
            sub = msg.topic.split(":", 1)[-1]
            system = frames.Message(
                msg.topic,
                frames.EV_SYSTEM,
                {"channel": sub, "extension": "system", "message": spec.shutdown, "status": "error"},
                None,
                join_ref,
            )
            close = frames.Message(msg.topic, frames.PHX_CLOSE, {}, join_ref, join_ref)
            action.inject_to_client = [
                frames.encode_text(m, self.vsn, from_client=False) for m in (system, close)
            ]
            action.note = f"shut {msg.topic} down after its join: system error {spec.shutdown!r}, phx_close"
            action.injected_by = "shutdown"
        if spec.delay_replies_ms:
            action.delay_ms, action.fault = spec.delay_replies_ms, "delay-replies"
            action.note = action.note or f"delayed a phx_reply by {spec.delay_replies_ms} ms (delay-replies)"
        return action
