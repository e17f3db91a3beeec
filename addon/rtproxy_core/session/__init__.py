"""Per-connection tracker: one Session per Realtime WebSocket, fed with events (events.py).

`Session.feed(event)` updates the state (vsn, channels and their states, join<->reply pairing, heartbeat
round trips, presence, postgres_changes bindings, system messages, close) and returns `Note`s: the lines
worth logging. It does no I/O and keeps bounded state, so it runs the same live and offline.

A channel is what Phoenix calls one: a join, identified by its join_ref (join_ref || ref of the phx_join),
until it ends. A topic joined again is a new channel instance (`Session.channels` holds them all, in
order; `Session.current` the latest per topic); replies, leaves, phx_close and phx_error go to the
instance their refs name, and a push that names an older instance is evidence (`stale_pushes`).

The modules, by role:
- channel.py: ChannelState (and its transitions), Channel, SystemMessage;
- heartbeats.py: Heartbeats, the client's heartbeat round trips and gaps;
- limits.py: the tracker's bounds (MAX_CHANNELS, ...), KEEP_FINISHED, Realtime's timers by default;
- notes.py: Note and NoteLevel, what feed returns;
- upgrade.py: the HTTP upgrade (is_realtime_path, rejection_text, realtime_error);
- state.py: SessionState, the connection's state, its channel instances and the views the rules read;
- messages.py: the per-frame handling (joins, pushes, replies, closes, system, presence, postgres);
- connection.py: Session, `feed` and the connection-level events (upgrade, hop, close).
"""

from .channel import CLOSED, ERRORED, JOINED, JOINING, LEAVING, Channel, ChannelState, SystemMessage
from .connection import Session
from .heartbeats import Heartbeats
from .limits import (
    CLIENT_HEARTBEAT_S,
    CLIENT_JOIN_TIMEOUT_S,
    DUPLICATE_WINDOW_S,
    GAVE_UP_MIN_S,
    KEEP_FINISHED,
    MAX_CHANNELS,
    MAX_HISTORY,
    MAX_PENDING,
    SERVER_IDLE_S,
)
from .notes import Note, NoteLevel
from .upgrade import is_realtime_path, realtime_error, rejection_text

__all__ = [
    "CLIENT_HEARTBEAT_S",
    "CLIENT_JOIN_TIMEOUT_S",
    "CLOSED",
    "DUPLICATE_WINDOW_S",
    "ERRORED",
    "GAVE_UP_MIN_S",
    "JOINED",
    "JOINING",
    "KEEP_FINISHED",
    "LEAVING",
    "MAX_CHANNELS",
    "MAX_HISTORY",
    "MAX_PENDING",
    "SERVER_IDLE_S",
    "Channel",
    "ChannelState",
    "Heartbeats",
    "Note",
    "NoteLevel",
    "Session",
    "SystemMessage",
    "is_realtime_path",
    "realtime_error",
    "rejection_text",
]
