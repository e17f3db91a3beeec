"""One channel instance: a phx_join and what followed it, until the channel ended."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ..clip import clip
from ..redact import Redactor
from .limits import MAX_HISTORY


class ChannelState(StrEnum):
    """A channel instance's state, as every Realtime client names it (realtime-js CHANNEL_STATES,
    realtime-py ChannelStates).

    What moves an instance, and where (the tracker observes, so it takes any order a capture shows):
    - JOINING: the client's phx_join makes the instance (messages.py `_join`);
    - JOINED: an ok join reply within the client's join timeout (`_reply`); a server frame for a join the
      capture did not show (`_server`);
    - ERRORED: an error join reply, or a join reply past the join timeout (`_reply`); phx_error (`_server`);
      a rejoin while the join was unanswered ≥ GAVE_UP_MIN_S (`_join`); a socket that failed under a live
      channel (connection.py `_closed`);
    - LEAVING: the client's phx_leave (`_client`);
    - CLOSED: phx_close (`_server`); a socket that ended cleanly under a live channel, or under a leaving
      one (`_closed`).
    """

    JOINING = "joining"
    JOINED = "joined"
    ERRORED = "errored"
    LEAVING = "leaving"
    CLOSED = "closed"


# The members by their short names, as websockets' protocol.py exports its State's.
JOINING = ChannelState.JOINING
JOINED = ChannelState.JOINED
ERRORED = ChannelState.ERRORED
LEAVING = ChannelState.LEAVING
CLOSED = ChannelState.CLOSED


@dataclass(slots=True)
class SystemMessage:
    time: float
    extension: str
    status: str
    message: str


@dataclass
class Channel:
    """One channel instance: a phx_join and what followed it, until the channel ended."""

    topic: str
    state: ChannelState = JOINING
    join_ref: str | None = None
    seq: int = 1  # the how-manieth join of this topic on the connection
    join_sent_at: float | None = None
    joined_at: float | None = None
    join_latency_ms: float | None = None
    joins: int = 0
    duplicate_joins: int = 0
    reason: str | None = None  # last join error / close cause
    private: bool = False
    ack: bool = False  # joined with broadcast.ack: the server answers each broadcast
    bindings: list[dict[str, Any]] = field(default_factory=list)
    binding_ids: list[Any] = field(default_factory=list)
    server_bindings: list[dict[str, Any]] = field(default_factory=list)
    join_dropped: int = 0  # phx_join frames the hop dropped
    presence: set[str] = field(default_factory=set)
    system: deque[SystemMessage] = field(default_factory=lambda: deque(maxlen=MAX_HISTORY))
    push_errors: deque[tuple[str, str]] = field(
        default_factory=lambda: deque(maxlen=MAX_HISTORY)
    )  # (event, reason)
    sent: int = 0
    received: int = 0
    broadcasts_sent: int = 0
    broadcasts_received: int = 0
    postgres_changes: int = 0
    # Database changes that arrived with `errors` and without their record (realtime.apply_rls):
    # (change type, the errors), the last MAX_HISTORY; change_errors counts them all.
    change_errors: deque[tuple[str, tuple[str, ...]]] = field(
        default_factory=lambda: deque(maxlen=MAX_HISTORY)
    )
    change_error_count: int = 0
    closed_by: str | None = None  # "server" | "client"
    gave_up: bool = False  # the client left or rejoined while its join was unanswered: it timed out
    left_at: float | None = None  # the client's phx_leave
    stale_pushes: int = 0  # client pushes naming this instance after a newer join of the topic
    token_expired_s: float | None = None  # the join's access_token had expired this long before the join
    token_exp: float | None = None  # exp of the token the channel was joined with (or last given)
    implicit: bool = False  # server frames for a join the capture did not show (it started late)
    sent_join_ref: bool = True  # the client put a join_ref in its phx_join (realtime-js 1.x, old Dart: no)
    pushed_expired_s: float | None = None  # an access_token pushed on this channel had expired this long
    closed_at: float | None = None

    @property
    def label(self) -> str:
        """The topic (clipped: `clip.clip`), and which join of it when it was joined more than once."""
        topic = clip(self.topic)
        return topic if self.seq == 1 else f"{topic} (join {self.seq})"

    def outcome(self, now: float, join_timeout_s: float) -> str | None:
        """The last status the client's subscribe callback reported for this instance, as of `now` (the
        values of rules.Outcome): SUBSCRIBED once joined (and while leaving after that), TIMED_OUT when
        its join went unanswered for the client's join timeout (still unanswered at `now`, answered
        later, or given up on with a leave or rejoin), CHANNEL_ERROR when it errored otherwise (an error
        reply, phx_error, the socket failing), CLOSED when it closed. None: nothing yet (joining)."""
        if self.state == JOINED:
            return "SUBSCRIBED"
        if self.state == CLOSED:
            return "CLOSED"
        late = self.join_latency_ms is not None and self.join_latency_ms >= join_timeout_s * 1000
        timed_out = self.gave_up or (self.joined_at is None and late)
        if self.state == JOINING:
            waited = self.join_sent_at is not None and now - self.join_sent_at >= join_timeout_s
            return "TIMED_OUT" if waited else None
        if self.state == ERRORED:
            return "TIMED_OUT" if timed_out else "CHANNEL_ERROR"
        # LEAVING
        if timed_out:
            return "TIMED_OUT"
        return "SUBSCRIBED" if self.joined_at is not None else None

    def describe(self, redactor: Redactor) -> str:
        """One line: `realtime:room1: joined (12 ms), 3 in / 2 out[, reason]`."""
        lat = f" ({self.join_latency_ms:.0f} ms)" if self.join_latency_ms is not None else ""
        why = f", {clip(redactor.text(self.reason))}" if self.reason else ""
        return redactor.text(f"{self.label}: {self.state}{lat}, {self.received} in / {self.sent} out{why}")

    def summary(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "join": self.seq,
            "join_ref": self.join_ref,
            "state": self.state,
            "join_latency_ms": self.join_latency_ms,
            "joins": self.joins,
            "reason": self.reason,
            "private": self.private,
            "presence": len(self.presence),
            "bindings": len(self.bindings),
            "binding_ids": list(self.binding_ids),
            "sent": self.sent,
            "received": self.received,
            "broadcasts_sent": self.broadcasts_sent,
            "broadcasts_received": self.broadcasts_received,
            "postgres_changes": self.postgres_changes,
            "closed_by": self.closed_by,
        }
