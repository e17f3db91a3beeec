"""A captured connection as a replay needs it: the handshake answer, each frame as a `Step`, how it ended."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from .. import closecodes, frames, sanitize
from ..events import Closed, Event, Frame, Handshake, Hop, Opened, Upstream


@dataclass(slots=True)
class Step:
    """One frame of the capture."""

    index: int
    from_client: bool
    time: float  # seconds since the upgrade (the handshake's time)
    frame: Frame
    msg: frames.Message | None  # None: it does not decode (sent as captured, never matched)
    error: str = ""  # why it does not decode
    dropped: bool = False  # the hop dropped it: the other side never got it
    cause: int | None = (
        None  # a server phx_reply (or a leave's phx_close): the index of the client step it answers
    )
    join: int | None = None  # a server frame on a channel: the index of the capture's join it belongs to

    @property
    def heartbeat(self) -> bool:
        return (
            self.msg is not None and self.msg.topic == frames.PHOENIX and self.msg.event == frames.HEARTBEAT
        )

    def describe(self) -> str:
        return describe(self.msg) if self.msg is not None else f"undecodable frame ({self.error})"


def describe(msg: frames.Message) -> str:
    """`realtime:room1 phx_join ref=1`: what a line says about a frame (the payload goes after it)."""
    refs = [f"ref={msg.ref}"] if msg.ref is not None else []
    if msg.join_ref is not None and msg.join_ref != msg.ref:
        refs.append(f"join_ref={msg.join_ref}")
    kind = f" (binary kind {msg.kind})" if msg.kind is not None else ""
    return " ".join([msg.topic, msg.event, *refs]) + kind


SERVER, CLIENT = "server", "client"  # who ends the connection in the capture


@dataclass
class Script:
    """One captured connection, as a replay needs it."""

    url: str
    vsn: str  # the serializer the captured connection spoke
    status: int | None  # the handshake's status; None: the upgrade failed before any answer
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    latency: float = 0.0  # seconds from the upgrade request to its answer
    steps: list[Step] = field(default_factory=list)
    close: Closed | None = None  # how it ended, as recorded (None, or recorded False: not recorded)
    closer: str | None = None  # SERVER or CLIENT: who ended it; None: the capture does not say
    end: float = 0.0  # seconds from the upgrade to the end
    error: str = ""  # why the upgrade failed, when it got no answer
    undecodable: int = 0

    @property
    def client_steps(self) -> list[Step]:
        return [s for s in self.steps if s.from_client]

    @property
    def server_steps(self) -> list[Step]:
        return [s for s in self.steps if not s.from_client]

    @property
    def path(self) -> str:
        try:
            return urlsplit(self.url).path or "/"
        except ValueError:
            return "/"

    def describe_close(self) -> str:
        c = self.close
        if self.status != 101:
            return "-"
        if c is None or not c.recorded:
            return "not recorded"
        who = {SERVER: "by the server", CLIENT: "by the client", None: "by either side"}[self.closer]
        if c.code is None:
            return f"no close frame ({who})"
        return f"{c.code}{f' {c.reason!r}' if c.reason else ''} {who}"

    @classmethod
    def from_connection(cls, url: str, events: list[Event]) -> Script:
        opened = next((e for e in events if isinstance(e, Opened)), None)
        upstream = next((e for e in events if isinstance(e, Upstream)), None)
        hs = next((e for e in events if isinstance(e, Handshake)), None)
        # The serializer the server spoke is the one the URL it received asked for (Session._upstream).
        query = url_query(upstream.url if upstream is not None else opened.url if opened else url)
        script = cls(
            url=opened.url if opened else url,
            vsn=frames.vsn_family(query.get("vsn")) or frames.V1,
            status=hs.status if hs else None,
        )
        t0 = opened.time if opened else 0.0
        if hs is not None:
            script.headers, script.body = list(hs.headers), hs.body
            script.latency = max(0.0, hs.time - t0) if hs.time and t0 else 0.0
            t0 = hs.time or t0
        pending: dict[tuple[str, str], int] = {}  # (topic, ref) of client pushes awaiting their reply
        # Pushes sent with a null ref, per topic, in order (realtime-py's heartbeats, the joins of clients
        # that send no ref): Phoenix echoes a push's ref in its reply (Phoenix.Channel.Server, reply/2 via
        # the socket_ref), so a reply with a null ref answers the oldest of them, as the rules pair them.
        pending_null: dict[str, list[int]] = {}
        joins: dict[str, int] = {}  # topic -> index of its latest join so far
        # topic -> the client's phx_leave not yet followed by a phx_close: Phoenix answers a leave with its
        # reply and then phx_close (the channel stops {:shutdown, :left}), so that close is the leave's too
        leaves: dict[str, int] = {}
        for e in events:
            frame, dropped = (e.frame, True) if isinstance(e, Hop) and e.frame is not None else (e, False)
            if isinstance(e, Closed):
                script.close = e
                script.end = max(0.0, e.time - t0) if e.time else 0.0
                script.error = e.error
                continue
            if not isinstance(frame, Frame):
                continue
            # The frame as rtsanitize stores it (the same function): from here on no credential of the
            # capture's is in the script, so no player can send one and no line print one.
            clean, _ = sanitize.message(frame.data, binary=frame.binary, from_client=frame.from_client)
            if clean is not frame.data:
                frame = dataclasses.replace(frame, data=clean)
            step = Step(
                len(script.steps), frame.from_client, max(0.0, frame.time - t0), frame, None, "", dropped
            )
            try:
                step.msg = frames.decode(frame.data, binary=frame.binary, from_client=frame.from_client)
            except frames.DecodeError as err:
                step.error = str(err)
                script.undecodable += 1
            script.steps.append(step)
            msg = step.msg
            if msg is None:
                continue
            if frame.from_client:
                if msg.event == frames.PHX_JOIN:
                    joins[msg.topic] = step.index
                    leaves.pop(msg.topic, None)
                elif msg.event == frames.PHX_LEAVE:
                    leaves[msg.topic] = step.index
                if msg.ref is not None:
                    pending[(msg.topic, msg.ref)] = step.index
                else:
                    pending_null.setdefault(msg.topic, []).append(step.index)
                continue
            if msg.event == frames.PHX_REPLY:
                if msg.ref is not None:
                    step.cause = pending.pop((msg.topic, msg.ref), None)
                elif waiting := pending_null.get(msg.topic):
                    step.cause = waiting.pop(0)
            elif msg.event == frames.PHX_CLOSE and msg.topic in leaves:
                step.cause = leaves.pop(msg.topic)
            if step.cause is None and msg.topic != frames.PHOENIX:
                step.join = joins.get(msg.topic)
        script.closer = _closer(script.close)
        return script


def url_query(url: str) -> dict[str, str]:
    try:
        return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    except ValueError:
        return {}


def _closer(c: Closed | None) -> str | None:
    """Who ended the connection, as a replay must reproduce it: the server side sends the close (or drops
    the TCP connection), or the client side does. A close whose side the capture does not record (HTTP
    Toolkit's HAR) is read as Session.failed reads it: a normal code is the client's (done, page gone), any
    other the server's."""
    if c is None or not c.recorded:
        return None
    if c.code is None:
        return CLIENT if c.ended_first == "client" else SERVER
    if c.by_client is None:
        return CLIENT if c.code in closecodes.CLEAN else SERVER
    return CLIENT if c.by_client else SERVER
