"""The events a Session consumes. Two sources produce them: mitmproxy hooks (live) and capture readers
(offline, HAR and flow files), so a capture diagnosed offline gets the same answer as the live run. A
third, live only: the page's probe (rt_page_probe), whose PageEvents say what the page did with the socket.

Times are seconds since the epoch (float), taken from the source (hook time, or the capture's own).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


@dataclass(slots=True)
class Opened:
    """The client's upgrade request, as the client sent it."""

    url: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    time: float = 0.0


@dataclass(slots=True)
class Upstream:
    """The upgrade request as the hop sent it upstream (after rerouting). Absent when unknown."""

    url: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    time: float = 0.0


@dataclass(slots=True)
class Handshake:
    """The answer the client got: 101, or a rejection with its body."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    time: float = 0.0


@dataclass(slots=True)
class UpstreamHandshake:
    """What the upstream answered the hop, when the hop has its own upstream leg (relay) and that answer
    differs from what the client got (the relay answered 101 before the upstream spoke)."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    time: float = 0.0


@dataclass(slots=True)
class Frame:
    """One WebSocket message, bytes as on the wire (reassembled, decompressed)."""

    from_client: bool
    binary: bool
    data: bytes
    time: float = 0.0


def conn_id(source_id: str) -> str:
    """A connection's id in everything rtproxy shows (`[rt 1a2b3c]`): the first six characters of the id
    its source gave it (mitmproxy's flow id)."""
    return source_id[:6]


class HopKind(StrEnum):
    """What a hop did (`Hop.what`); the value is the word the log and flow files show."""

    UPSTREAM_UNREACHABLE = "upstream-unreachable"  # no upstream answered the upgrade (mitmproxy's flow.error)
    UPSTREAM_FAILED = "upstream-failed"  # the relay's upstream leg failed after the client got its 101
    UPSTREAM_ERROR = (
        "upstream-error"  # an error event on the relay's upstream leg ("Network connection lost.")
    )
    CLIENT_ERROR = "client-error"  # an error event on the relay's client leg
    CLOSE_THROWS = "close-throws"  # the relay's close() threw (workerd refuses the code)
    # a close one side sent that the relay neither answered nor passed on (a Worker with no close listener)
    CLOSE_NOT_FORWARDED = "close-not-forwarded"
    # a refused upgrade the hop answered in its own words (a Worker's 502 instead of the server's 401 JSON)
    REFUSAL_REPLACED = "refusal-replaced"
    FRAME_DROPPED = (
        "frame-dropped"  # a frame the hop did not pass on (a fault; the relay before its upstream)
    )
    BINARY_AS_TEXT = "binary-as-text"  # a binary frame the relay passed on as text (event.data is a Blob)
    FAULT = "fault"  # an rt_fault fired (rtproxy_mitm/faults.py)
    COMMAND = "command"  # a live command acted on the flow (rtproxy_mitm/commands.py); flow files keep it


@dataclass(slots=True)
class Hop:
    """Something the hop itself did that the wire alone does not show: a relay dropped a frame, its
    upstream leg failed, its close() threw, a fault fired."""

    what: HopKind
    detail: str = ""
    time: float = 0.0
    frame: Frame | None = None


@dataclass(slots=True)
class Closed:
    """The end of the connection. code None: no close frame (TCP drop, or a failure before 101).

    ended_first: without a close frame, whose TCP connection ended first ("client" or "server") when the
    hop saw it, or "hop" when the hop itself dropped it. recorded False: the capture does not record how
    the connection ended (a HAR keeps no close frames), only about when; frames_kept, then: the capture
    keeps the connection's messages, so none recorded means none were sent (True: other sockets of the
    same HAR carry theirs), or cannot say (None)."""

    code: int | None
    reason: str = ""
    by_client: bool | None = None
    time: float = 0.0
    error: str = ""
    ended_first: str | None = None
    recorded: bool = True
    frames_kept: bool | None = None


@dataclass(slots=True)
class FrameError:
    """A capture's frame list holds something that is no WebSocket message the tracker can read.

    by "browser": an error the browser recorded in place of a frame (Chrome DevTools writes
    `{type: "error", opcode: -1, data: <its message>}`: the channel failed, e.g. "Invalid frame header"),
    evidence of how the connection went; by "reader": a frame the capture reader left out, `text` saying
    why ("time is not a number"). The tracker counts both per connection and the report shows them."""

    text: str
    time: float = 0.0
    by: str = "browser"


@dataclass(slots=True)
class PageEvent:
    """What the page's probe (rt_page_probe, page.py) saw of this connection's socket in the page, or of
    the page itself: `what` is the probe's word ("socket", "open", "message", "threw", "send-not-open",
    "error", "close"; the page's own "page", "visibility", "online", "offline", "freeze", "resume"),
    `sid` the probe's number for the socket (None for the page's own), `detail` the rest of what it
    reported (strings already redacted in the page). `time` is the page's clock."""

    what: str
    sid: int | None = None
    detail: dict[str, str | int | float | bool | None] = field(default_factory=dict)
    time: float = 0.0


Event = Opened | Upstream | Handshake | UpstreamHandshake | Frame | Hop | Closed | FrameError | PageEvent
