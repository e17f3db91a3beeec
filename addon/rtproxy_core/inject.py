"""Realtime messages composed for a live connection, without I/O: what `rt.inject.server`,
`rt.inject.client` and `rt.expire` put on the wire.

A message is encoded as the connection speaks (the vsn the server negotiated: a 1.0.0 object or a 2.0.0
array; a broadcast as a binary kind 3/4 on a 2.0.0 connection whose side has sent binary frames), with
`join_ref`/`ref` filled as the peer expects them for that channel:

- from the server: a channel's pushes (`system`, `presence_state`, …) carry its join_ref and no ref;
  broadcasts, `presence_diff` and `postgres_changes` carry neither, as Realtime fastlanes them past the
  channel process (realtime_channel/message_dispatcher.ex, do_dispatch -> serializer.fastlane!); a
  `phx_reply` answers the newest push of that channel still awaiting its reply (a heartbeat's, on topic
  `phoenix`), so the client takes it as that push's answer; `phx_close` carries the join_ref as both refs
  (Phoenix.Channel.Server, as the local server does). Nothing is sent for a channel that has ended
  (phx_close or phx_error): its process is gone, the real server would send nothing;
- from the client: the channel's join_ref and a ref of rtproxy's own (`rtproxy-N`), which no client uses,
  so the server's answer to it is never taken for the answer to one of the client's pushes.

Errors are ValueError with a line for the user (the command turns it into a CommandError).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from . import catalog, frames
from .session import CLOSED, ERRORED, JOINED, Channel, Session, limits

INJECTED_REF = "rtproxy-"  # prefix of the refs rtproxy gives the client pushes it injects
FASTLANED = frozenset({frames.EV_BROADCAST, frames.EV_PRESENCE_DIFF, frames.EV_POSTGRES_CHANGES})


@dataclass(frozen=True, slots=True)
class Composed:
    """One frame to inject: its bytes (text frames as str), and what it is, for the log."""

    data: str | bytes
    message: frames.Message
    to_client: bool

    @property
    def binary(self) -> bool:
        return isinstance(self.data, bytes)

    def describe(self) -> str:
        m = self.message
        refs = f"join_ref {m.join_ref or '-'}, ref {m.ref or '-'}"
        return f"{m.event} on {m.topic} ({refs}, {'binary' if self.binary else 'text'})"


def parse_payload(text: str) -> Any:
    """The JSON argument of a command: a JSON object (Realtime payloads are maps)."""
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:
        raise ValueError(f"the payload is no JSON: {e}") from None
    if not isinstance(value, dict):
        raise ValueError(f"the payload must be a JSON object, got {type(value).__name__}")  # noqa: TRY004
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# A value longer than limits.MAX_KEY is kept as its digest key (session/limits.py), not as it was.
_too_long = (
    f"rtproxy keeps only a digest of a value over {limits.MAX_KEY} characters, so it cannot compose this"
)


def channel(session: Session, topic: str) -> Channel:
    """The channel instance a message for `topic` belongs to: the latest join of it."""
    ch = session.current.get(limits.key(topic))
    if ch is None:
        known = ", ".join(sorted(session.current)[:10]) or "none yet"
        raise ValueError(f"no channel {topic!r} on this connection (channels: {known})")
    if limits.was_keyed(ch.topic) or ch.join_ref is not None and limits.was_keyed(ch.join_ref):
        raise ValueError(f"{_too_long} channel's frames: its topic or join_ref is too long")
    return ch


def _awaiting(session: Session, topic: str) -> str:
    """The ref of the newest push on `topic` still awaiting its reply (on `phoenix`: a heartbeat)."""
    if topic == frames.PHOENIX:
        refs = [ref for ref in session.heartbeats.pending if ref is not None]
    else:
        refs = [ref for (t, ref) in session.pending if t == limits.key(topic)]
    if refs and limits.was_keyed(refs[-1]):
        raise ValueError(f"{_too_long} reply: the ref it answers is too long")
    if not refs:
        raise ValueError(
            f"no push on {topic!r} is awaiting a reply: a phx_reply now would answer nothing the client "
            "sent (inject a system message or phx_close instead)"
        )
    return refs[-1]


def compose(session: Session, to_client: bool, topic: str, event: str, payload: Any, n: int = 1) -> Composed:
    """A message for `topic` from the server (to_client) or the client. `n` numbers rtproxy's own refs."""
    if not topic or not event:
        raise ValueError("topic and event must not be empty")
    ref: str | None
    join_ref: str | None
    if topic == frames.PHOENIX:
        join_ref = None
        if not to_client:
            ref = f"{INJECTED_REF}{n}"
        else:
            ref = _awaiting(session, topic) if event == frames.PHX_REPLY else None
    else:
        ch = channel(session, topic)
        join_ref = ch.join_ref
        if to_client:
            if ch.state in (CLOSED, ERRORED):
                raise ValueError(
                    f"{topic} has ended ({ch.state}): the server sends nothing more for it; the client "
                    "joins it again first"
                )
            if event == frames.PHX_REPLY:
                ref = _awaiting(session, topic)
            elif event == frames.PHX_CLOSE:
                ref = join_ref
            else:
                ref = None
            if event in FASTLANED:
                join_ref = None
        else:
            ref = f"{INJECTED_REF}{n}"
    msg = frames.Message(topic, event, payload, ref, join_ref)
    return Composed(_encode(session, msg, to_client), msg, to_client)


def _encode(session: Session, msg: frames.Message, to_client: bool) -> str | bytes:
    p = msg.payload
    user_broadcast = (
        msg.event == frames.EV_BROADCAST
        and isinstance(p, dict)
        and isinstance(p.get("event"), str)
        and session.vsn == frames.V2
        and session.binary_frames[not to_client] > 0  # this side of the connection sends binary frames
    )
    try:
        if user_broadcast and to_client:
            return frames.encode_user_broadcast(msg.topic, p["event"], p.get("payload"))
        if user_broadcast:
            return frames.encode_user_push(
                msg.topic, p["event"], p.get("payload"), join_ref=msg.join_ref, ref=msg.ref
            )
        return frames.encode_text(msg, session.vsn, from_client=not to_client)
    except ValueError as e:  # a topic or event over 255 bytes for a binary frame
        raise ValueError(f"cannot encode it: {e}") from None


def expire(session: Session, topic: str | None, now: float) -> list[Composed]:
    """What the real server sends when a channel's token expires: the `system` error
    "Token has expired N seconds ago", then `phx_close` (realtime_channel.ex handle_info(:confirm_token)
    -> shutdown_response/2: push_system_message("system", socket, "error", msg, channel_name), then
    {:stop, :normal, socket}, which Phoenix.Channel.Server answers with phx_close). N counts from the
    channel's token exp when it is known and past, else 0. `topic` None: the latest joined channel."""
    if topic is None:
        joined = [ch for ch in session.current.values() if ch.state == JOINED]
        if not joined:
            raise ValueError("no joined channel on this connection: name a topic")
        ch = joined[-1]
    else:
        ch = channel(session, topic)
    ago = now - ch.token_exp if ch.token_exp is not None and math.isfinite(ch.token_exp) else 0.0
    text = catalog.say("system.expired_token", n=max(0, int(ago)))
    sub = ch.topic.split(":", 1)[-1]
    system = compose(
        session,
        True,
        ch.topic,
        frames.EV_SYSTEM,
        {"channel": sub, "extension": "system", "message": text, "status": "error"},
    )
    return [system, compose(session, True, ch.topic, frames.PHX_CLOSE, {})]
