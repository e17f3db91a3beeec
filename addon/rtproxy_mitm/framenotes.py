"""What rtproxy did to single WebSocket messages, for the Realtime view: a frame a fault dropped or held
back, a frame rtproxy put on the wire itself (the shutdown fault's, a held-back frame delivered late, a
live command's).

mitmproxy's own flags say only that a message was dropped or injected (`WebSocketMessage.dropped`,
`.injected`); the notes say by what. They are kept in the flow's metadata (`FRAME_NOTES`:
`[[timestamp, from_client, kind, by], ...]`, a message found by its timestamp and direction, as the legs'
fates are), so flow files keep them and `mitmweb -r FILE` shows them again. A live command's frames are
noted too (commands.py announces each one); for a flow file written before that, the flow's `COMMANDS`
metadata says which command acted when (`injected_by`).
"""

from __future__ import annotations

from typing import Any

from mitmproxy import http, websocket

from .flowevents import COMMANDS

FRAME_NOTES = "rtproxy.frame_notes"
MAX_NOTES = 1000  # per flow, newest kept (rt_keep_messages bounds the messages they describe too)

DROPPED = "dropped"  # never reached the other side
DELAYED = "delayed"  # held back here; a copy went out later (LATE)
INJECTED = "injected"  # rtproxy sent it; the peer it seems to come from never did
LATE = "late"  # the held-back copy of a DELAYED frame


def note(flow: http.HTTPFlow, m: websocket.WebSocketMessage, kind: str, by: str) -> None:
    """Say what rtproxy did to message `m` of `flow` (`by`: "fault drop-join", ...)."""
    notes = flow.metadata.setdefault(FRAME_NOTES, [])
    notes.append([m.timestamp, m.from_client, kind, by])
    if len(notes) > MAX_NOTES:
        del notes[:-MAX_NOTES]


def notes_of(flow: http.HTTPFlow, m: websocket.WebSocketMessage) -> list[tuple[str, str]]:
    """The (kind, by) notes on message `m`: what rtproxy did to it."""
    return [
        (str(kind), str(by))
        for at, from_client, kind, by in flow.metadata.get(FRAME_NOTES) or []
        if at == m.timestamp and bool(from_client) == m.from_client
    ]


def injected_by(flow: http.HTTPFlow, m: websocket.WebSocketMessage) -> str | None:
    """The live command that injected `m`, unnoted (the last one the flow's COMMANDS names before it), for
    a flow written before commands noted their frames; None where they do (any noted command frame): an
    unnoted injected frame there is a script's."""
    if any(str(by).startswith("rt.") for *_, by in flow.metadata.get(FRAME_NOTES) or []):
        return None
    commands: list[Any] = flow.metadata.get(COMMANDS) or []
    before = [str(what) for t, what in commands if float(t) <= m.timestamp]
    return before[-1].split(":", 1)[0] if before else None


class FrameNotes:
    """Part: notes the frames rtproxy's faults inject when they reach the flow. A fault announces one
    (`injecting`) before mitmproxy's `inject.websocket`, which adds the message later; its
    websocket_message finds it by direction and bytes. Runs before Sanitize, which stores a copy."""

    def __init__(self) -> None:
        self.pending: dict[str, list[tuple[bool, bytes, str, str]]] = {}  # flow id -> from_client, data, note

    def injecting(self, flow: http.HTTPFlow, to_client: bool, data: bytes, kind: str, by: str) -> None:
        self.pending.setdefault(flow.id, []).append((not to_client, data, kind, by))

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        pending = self.pending.get(flow.id)
        if not pending:
            return
        assert flow.websocket is not None
        m = flow.websocket.messages[-1]
        if not m.injected:
            return
        for i, (from_client, data, kind, by) in enumerate(pending):
            if from_client == m.from_client and data == m.content:
                del pending[i]
                note(flow, m, kind, by)
                return

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        self.pending.pop(flow.id, None)
