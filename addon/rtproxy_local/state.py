"""Per-socket and per-channel state of the local Realtime server, and how frames are queued for sending."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from rtproxy_core import frames

from .pgchanges import Binding


@dataclass(frozen=True, slots=True)
class Close:
    """Queued after the frames that must go out before the close frame."""

    code: int
    reason: str = ""


# Stands where a Jason.Fragment (verbatim JSON text) goes; random so no user string can collide with it.
_FRAGMENT = f"\x00fragment-{uuid.uuid4().hex}\x00"
_FRAGMENT_JSON = json.dumps(_FRAGMENT)


class Ordered(dict):
    """A map whose keys are already in the order Jason writes them: Erlang sorts atom keys before
    binaries, so Realtime's own keys (:id in a join reply's bindings, :phx_ref in presence metas) come
    before the client's."""


def jason_order(v: Any) -> Any:
    """Jason writes small maps in key order; mirror it so frames are byte-comparable with Realtime's."""
    if isinstance(v, Ordered):
        return {k: jason_order(x) for k, x in v.items()}
    if isinstance(v, dict):
        return {k: jason_order(v[k]) for k in sorted(v)}
    if isinstance(v, list):
        return [jason_order(x) for x in v]
    return v


def flex_bool(v: Any, default: bool = False) -> bool:
    """RealtimeWeb.Channels.Payloads.FlexibleBoolean.cast/1: booleans, and strings that downcase to
    "true"/"false"; anything else fails the cast and the field keeps its default (Join.validate/1 only
    logs InvalidJoinPayload and applies the changes that did cast)."""
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    return default


FRAGMENT = _FRAGMENT


@dataclass(slots=True)
class Seen:
    """One upgrade as the server saw it, for a harness that asks what reached the server (rtworker check):
    the path, the vsn asked for, which credential came (never its value: `key` is a short digest that can
    only be compared with the digest of a key the harness knows), the answer, and how the socket ended."""

    id: int
    path: str
    vsn: str | None
    key: str  # key_digest() of the apikey or x-api-key the server used, "" when none came
    answer: str  # "101" once upgraded, "STATUS ERROR" for a refusal, "" for neither (websockets refused it)
    close: str = ""  # the close story once the socket ended: "client sent 4000", "server sent 1000 (...)"
    client_close: int | None = None  # the close code the client's side sent, when it sent one


def key_digest(key: str | None) -> str:
    """12 hex digits of SHA-256: equal keys give equal digests; nothing usable as the key."""
    return hashlib.sha256(key.encode()).hexdigest()[:12] if key else ""


class Conn:
    """One open socket, as the channel layer sees it."""

    def __init__(self, cid: int, vsn: str, tenant: str, token: str) -> None:
        self.id, self.vsn, self.tenant, self.token = cid, vsn, tenant, token
        self.joins: dict[str, Member] = {}
        self.outq: asyncio.Queue[str | bytes | Close] = asyncio.Queue()
        self.closing = False
        self.cause = ""  # why the server closed it, for the close log line
        self.counted = False  # UsersCounter.add/2: a join succeeded on this socket
        self.tracked = False  # RealtimeChannel.Tracker has an entry for this socket (a join was tried)
        self.channel_processes = 0  # the Tracker's count: joins under way plus joined channels
        self.abort: Any = None  # drops the TCP connection with no close frame (set by the server)
        self.held: list[str | bytes | Close] | None = None  # frames queued while a join error backs off

    def _put(self, item: str | bytes | Close) -> None:
        if self.held is not None:
            self.held.append(item)
        else:
            self.outq.put_nowait(item)

    def hold(self) -> None:
        """Phoenix runs a join inside the socket process: while it sleeps its error backoff, nothing else
        is written. Frames for this socket wait (take_held, then replay)."""
        self.held = []

    def take_held(self) -> list[str | bytes | Close]:
        held, self.held = self.held or [], None
        return held

    def replay(self, items: list[str | bytes | Close]) -> None:
        """Queue frames held back, in order; a close among them ends the socket there."""
        for item in items:
            self.outq.put_nowait(item)
            if isinstance(item, Close):
                self.closing = True
                return

    def push(
        self, topic: str, event: str, payload: Any, *, ref: str | None = None, join_ref: str | None = None
    ) -> None:
        if not self.closing:
            msg = frames.Message(topic, event, jason_order(payload), ref=ref, join_ref=join_ref)
            self._put(frames.encode_text(msg, self.vsn, from_client=False))

    def reply(self, topic: str, join_ref: str | None, ref: str | None, status: str, response: Any) -> None:
        # %{status: ..., response: ...} as users' pastes show it on OTP 26+ (status first)
        self.push(
            topic,
            frames.PHX_REPLY,
            Ordered({"status": status, "response": response}),
            ref=ref,
            join_ref=join_ref,
        )

    def push_with_fragment(self, topic: str, event: str, payload: Any, fragment: str) -> None:
        """Like push; the value FRAGMENT inside `payload` is replaced by the JSON text `fragment` as is."""
        if not self.closing:
            msg = frames.Message(topic, event, jason_order(payload))
            text = frames.encode_text(msg, self.vsn, from_client=False)
            self._put(text.replace(_FRAGMENT_JSON, fragment, 1))

    def push_bytes(self, data: bytes) -> None:
        if not self.closing:
            self._put(data)

    def push_text(self, text: str) -> None:
        """A text frame as is (Realtime sends some that are not valid JSON)."""
        if not self.closing:
            self._put(text)

    def close(self, code: int = 1000, reason: str = "") -> None:
        if self.closing:
            return
        if self.held is not None:  # it waits behind the join too; what comes first is still written
            if not any(isinstance(i, Close) for i in self.held):
                self.held.append(Close(code, reason))
            return
        self.closing = True
        self.outq.put_nowait(Close(code, reason))


@dataclass(eq=False)
class Member:
    """A joined channel: one topic on one socket (a RealtimeChannel process)."""

    conn: Conn
    topic: str
    join_ref: str | None  # as the join carried it: Phoenix's channels_inverse, used by phx_close/phx_error
    socket_join_ref: str | None  # join_ref || ref: what the channel's own pushes and replies carry
    private: bool
    self_broadcast: bool
    ack: bool
    presence_key: str
    presence_enabled: bool
    access_token: str
    presence_read: bool | None = True  # public: always; private: evaluated when presence is enabled
    presence_via_channel: bool = False  # presence_diff routed through the channel (it carries the join_ref)
    is_new_api: bool = True  # the join had a `config`; legacy joins get changes as INSERT/UPDATE/DELETE
    pg_params: list[dict[str, Any]] = field(default_factory=list)
    bindings: list[Binding] = field(default_factory=list)
    pg_error: str | None = None  # unparsable postgres_changes params: reported after the join
    pg_active: bool = False  # CDC subscription succeeded: postgres changes are delivered
    pg_failures: int = 0  # transient CDC failures so far
    presence_meta: dict[str, Any] | None = None
    track_payload: Any = None
    presence_window: Any = None  # limits.PresenceWindow
    timers: dict[str, asyncio.TimerHandle] = field(
        default_factory=dict
    )  # confirm_token, postgres, replication

    @property
    def sub(self) -> str:
        return self.topic.removeprefix("realtime:")

    @property
    def group(self) -> tuple[str, bool, str]:
        # Realtime's tenant topic: public and private channels of one name are separate, as are tenants.
        return (self.conn.tenant, self.private, self.topic)

    def set_timer(self, name: str, handle: asyncio.TimerHandle | None) -> None:
        old = self.timers.pop(name, None)
        if old is not None:
            old.cancel()
        if handle is not None:
            self.timers[name] = handle

    def cancel_timers(self) -> None:
        for t in self.timers.values():
            t.cancel()
        self.timers.clear()
