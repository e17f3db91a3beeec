"""Replay one connection of a capture (sans-I/O): what each side said and when, as a `Script`, and two
players that run it against a live peer.

- `Script.from_connection(url, events)` turns one connection's events (a HAR entry, a flow) into the
  handshake answer, the frames in order (each decoded, with its time since the upgrade and, for a server's
  phx_reply, the client frame it answers), and how the connection ended.
- `ServerPlayer` plays the capture's server side to a live client (`rtreplay --serve`): each live client
  frame is matched against the capture's client frames of its topic, in order, by event (so heartbeats, on
  topic `phoenix`, match heartbeats whenever they come, and two channels joined in another order still
  match); the server frames that answered the matched frame follow it at the captured delay; the others (a
  `system` message, phx_close, a broadcast, the close) are sent at their captured offset from the last
  matched client frame. Refs are the live client's: a reply carries the ref of the live push it answers,
  and a push for a channel the live join_ref. Frames are encoded in the live connection's vsn. What the
  live client sends beyond the capture is answered where Realtime's answer is known: a heartbeat `ok`, a
  leave as Phoenix answers one, a join (a client's rejoin after a refusal) as the capture's last join on
  that topic was answered.
- `ClientPlayer` plays the capture's client side against a live upstream (`rtreplay --client`), each
  frame at its captured offset from the last thing that happened before it (a frame it sent, or the
  upstream's answer it was waiting for), tokens replaced by the user's key.

Both take the live clock as `now` (any monotonic seconds) and return `Action`s for the I/O layer
(rtproxy_tools/replay.py) to carry out: `Send` a frame, `End` the connection, `Note` a line to print.
Times divide by `speed`. Nothing here prints or sends. A token from the capture never leaves it verbatim:
`Script.from_connection` keeps each frame as rtsanitize stores it (sanitize.message: every JWT keeps header
and claims and loses its signature, every secret key's value becomes the marker) before decoding it, so
neither player holds one to send; `--client` puts the user's key where the capture had its token.
"""

from __future__ import annotations

import bisect
import dataclasses
import gzip
import heapq
import itertools
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

from . import closecodes, frames, sanitize
from .events import Closed, Event, Frame, Handshake, Hop, Opened, Upstream
from .redact import SECRET_KEYS, TOKEN_KEYS

# ------------------------------------------------------------------------------------------ script


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
    cause: int | None = None  # a server's phx_reply: the index of the client step it answers
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
        query = _query(upstream.url if upstream is not None else opened.url if opened else url)
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
        pending_null: list[int] = []  # heartbeats sent with a null ref (realtime-py), in order
        joins: dict[str, int] = {}  # topic -> index of its latest join so far
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
                if msg.ref is not None:
                    pending[(msg.topic, msg.ref)] = step.index
                elif step.heartbeat:
                    pending_null.append(step.index)
                continue
            if msg.event == frames.PHX_REPLY:
                if msg.ref is not None:
                    step.cause = pending.pop((msg.topic, msg.ref), None)
                elif msg.topic == frames.PHOENIX and pending_null:
                    step.cause = pending_null.pop(0)
            if step.cause is None and msg.topic != frames.PHOENIX:
                step.join = joins.get(msg.topic)
        script.closer = _closer(script.close)
        return script


def _query(url: str) -> dict[str, str]:
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


# ------------------------------------------------------------------------------------------ actions


@dataclass(slots=True)
class Send:
    data: str | bytes  # str: a text frame; bytes: a binary frame
    text: str  # what it is, for the line printed about it
    payload: Any = None


@dataclass(slots=True)
class End:
    """End the connection: a close frame with `code` and `reason`; code NO_CODE: a close frame without a
    code; code None: drop the TCP connection, no close frame."""

    code: int | None
    reason: str = ""


@dataclass(slots=True)
class Note:
    text: str


Action = Send | End | Note


def encode_server(msg: frames.Message, vsn: str) -> str | bytes | None:
    """A server frame for a live connection speaking `vsn`; None when it has no form there (a binary user
    broadcast on a 1.0.0 socket carries bytes JSON cannot hold)."""
    if msg.kind == frames.USER_BROADCAST and isinstance(msg.payload, dict):
        user_event, value = msg.payload.get("event", ""), msg.payload.get("payload")
        if vsn == frames.V2:
            return frames.encode_user_broadcast(msg.topic, user_event, value, msg.payload.get("meta"))
        if isinstance(value, (bytes, bytearray)):
            return None
        payload = {"type": "broadcast", "event": user_event, "payload": value}
        return frames.encode_text(
            frames.Message(msg.topic, frames.EV_BROADCAST, payload), vsn, from_client=False
        )
    if msg.kind is not None:  # kinds 0-3 from a server: no client reads them (frames' docstring)
        return None
    return frames.encode_text(msg, vsn, from_client=False)


# ------------------------------------------------------------------------------------------ players


class _Clock:
    """Capture time -> live time."""

    def __init__(self, speed: float) -> None:
        self.speed = speed if speed > 0 else 1.0

    def after(self, live: float, captured_delay: float) -> float:
        return live + max(0.0, captured_delay) / self.speed


class _Matched:
    """Which steps have happened live, and when: the anchor of what is timed after them."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.live: dict[int, float] = {}
        self._order: list[int] = []  # the steps in self.live, sorted

    def add(self, index: int, now: float) -> None:
        if index not in self.live:
            bisect.insort(self._order, index)
        self.live[index] = now

    def __contains__(self, index: int) -> bool:
        return index in self.live

    def __len__(self) -> int:
        return len(self.live)

    def before(self, index: int) -> int | None:
        """The last step before `index` (in capture order) that happened."""
        i = bisect.bisect_left(self._order, index)
        return self._order[i - 1] if i else None


class ServerPlayer:
    """The capture's server side for one live client connection, from its 101 (`now` at construction).
    Feed the client's frames to client_frame(); due(now) gives what is due; next_due() says when."""

    def __init__(self, script: Script, vsn: str, now: float, speed: float = 1.0) -> None:
        self.script = script
        self.vsn = vsn
        self.clock = _Clock(speed)
        self.happened = _Matched(now)  # client steps matched by a live frame, and when
        self.live_msgs: dict[int, frames.Message] = {}  # client step -> the live frame that matched it
        self.skipped: set[int] = set()  # client steps the live client went past without sending
        self.sent: set[int] = set()
        self.dropped: set[int] = set()  # server steps that will not be sent
        self._streams: dict[str, list[int]] = {}  # client steps by topic, in order; a cursor per topic
        for s in script.steps:
            if s.from_client and s.msg is not None:
                self._streams.setdefault(s.msg.topic, []).append(s.index)
        self._cursor: dict[str, int] = {}
        self._last_join: dict[str, int] = {}  # topic -> its last join: how a join beyond those is answered
        for topic, stream in self._streams.items():
            for i in stream:
                if self._event(i) == frames.PHX_JOIN:
                    self._last_join[topic] = i
        self._answers: dict[int, list[int]] = {}  # client step -> the server steps that answer it
        self._lost: dict[int, int] = {}  # client step -> answers the hop dropped in the capture
        self._unsolicited: list[int] = []  # the other server steps, in capture order
        for s in script.steps:
            if s.from_client:
                continue
            if s.dropped:
                self.dropped.add(s.index)  # the hop dropped it: the original client never got it
                if s.cause is not None:
                    self._lost[s.cause] = self._lost.get(s.cause, 0) + 1
            elif s.cause is not None:
                self._answers.setdefault(s.cause, []).append(s.index)
            else:
                self._unsolicited.append(s.index)
        self._head = 0  # self._unsolicited[:_head] are sent or dropped
        self._queue: list[tuple[float, int]] = []  # (due, server step): answers released by a match
        # (due, server step, seq, frame, what): a captured answer sent again, to a join beyond the capture's
        self._again: list[tuple[float, int, int, frames.Message, str]] = []
        self._seq = itertools.count(1)
        self._live_join: dict[str, str | None] = {}  # topic -> live join_ref of its latest matched join
        self._ref_map: dict[str, str | None] = {}  # captured ref/join_ref -> the live one
        self.ended = False
        self.unmatched = 0
        self.plausible = 0

    def _step(self, index: int) -> Step:
        return self.script.steps[index]

    # -------------------------------------------------------------------------- input

    def client_frame(self, data: str | bytes, binary: bool, now: float) -> list[Action]:
        """A live client frame: match it, release what answered it; heartbeats beyond the capture's (and a
        leave it does not have) are answered as Realtime would."""
        raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
        try:
            msg = frames.decode(raw, binary=binary, from_client=True)
        except frames.DecodeError as e:
            self.unmatched += 1
            return [Note(f"<- undecodable client frame ({e}): not matched")]
        live = describe(msg)
        if self.ended:
            return [Note(f"<- {live}: after the capture's end")]
        stream = self._streams.get(msg.topic, [])
        i = self._cursor.get(msg.topic, 0)
        j = next((k for k in range(i, len(stream)) if self._event(stream[k]) == msg.event), None)
        if j is None:
            return self._unmatched(msg, live, now)
        out: list[Action] = []
        for k in stream[i:j]:
            out.extend(self._skip(self._step(k)))
        self._cursor[msg.topic] = j + 1
        step = self._step(stream[j])
        self.happened.add(step.index, now)
        self.live_msgs[step.index] = msg
        captured = step.msg
        assert captured is not None
        self._adopt(captured, msg)
        answers = self._answers.get(step.index, [])
        for a in answers:
            heapq.heappush(self._queue, (self.clock.after(now, self._step(a).time - step.time), a))
        what = f"{len(answers)} answer(s) follow" if answers else "the capture has no answer to it"
        if step.dropped:
            what = "the hop dropped it in the capture: no answer"
        elif self._lost.get(step.index):
            what += f" (the hop dropped {self._lost[step.index]} answer(s) to it in the capture)"
        head = f"<- {live}: client frame {step.index + 1} of the capture (at {step.time:.3f} s); {what}"
        return [Note(head), *out]

    def _adopt(self, captured: frames.Message, msg: frames.Message) -> None:
        """Live frame `msg` stands for the capture's `captured`: its refs are the live ones from now on."""
        for old, new in ((captured.ref, msg.ref), (captured.join_ref, msg.join_ref)):
            if old is not None:
                self._ref_map[old] = new
        if msg.event == frames.PHX_JOIN:
            self._live_join[msg.topic] = msg.join_ref or msg.ref

    def _event(self, index: int) -> str:
        msg = self._step(index).msg
        assert msg is not None
        return msg.event

    def _skip(self, step: Step) -> list[Action]:
        self.skipped.add(step.index)
        for a in self._answers.get(step.index, []):
            self.dropped.add(a)
        if step.msg is not None and step.msg.event == frames.PHX_JOIN:
            # That channel was never joined live: what the server sent on it has nowhere to go.
            self.dropped.update(u for u in self._unsolicited if self._step(u).join == step.index)
        return [Note(f"   the live client went past client frame {step.index + 1} ({step.describe()})")]

    def _unmatched(self, msg: frames.Message, live: str, now: float) -> list[Action]:
        self.unmatched += 1
        if msg.topic == frames.PHOENIX and msg.event == frames.HEARTBEAT:
            self.plausible += 1
            reply = frames.Message(
                frames.PHOENIX, frames.PHX_REPLY, {"status": "ok", "response": {}}, msg.ref
            )
            return [
                Note(f"<- {live}: beyond the capture's heartbeats; answered ok, as Realtime would"),
                self._send(reply, "plausible"),
            ]
        if msg.event == frames.PHX_LEAVE:
            # Phoenix answers a leave with ok, then closes the channel (phoenix/lib/phoenix/channel/server.ex,
            # handle_info(%Message{event: "phx_leave"}): reply ok, then {:stop, {:shutdown, :left}}).
            self.plausible += 1
            jr = msg.join_ref or self._live_join.get(msg.topic)
            ok = frames.Message(msg.topic, frames.PHX_REPLY, {"status": "ok", "response": {}}, msg.ref, jr)
            close = frames.Message(msg.topic, frames.PHX_CLOSE, {}, jr, jr)
            return [
                Note(f"<- {live}: not in the capture; answered as Phoenix answers a leave (ok, phx_close)"),
                self._send(ok, "plausible"),
                self._send(close, "plausible"),
            ]
        if msg.event == frames.PHX_JOIN and msg.topic in self._last_join:
            return self._rejoin(msg, live, now)
        return [
            Note(f"<- {live}: not in the capture (no {msg.event} on {msg.topic} left to match); no answer")
        ]

    def _rejoin(self, msg: frames.Message, live: str, now: float) -> list[Action]:
        """A join beyond the capture's joins on its topic. Every client retries a refused join after its
        backoff (phoenix.js channel.js, which realtime-js's RealtimeChannel wraps: joinPush.receive("error")
        schedules rejoinTimer; realtime-py channel.py, on_join_push_error: rejoin_timer.schedule_timeout),
        and a capture saved after the first refusal holds fewer joins than the live client sends. Answered
        as the capture's last join on the topic was: its reply again (status and response as captured),
        with the live join's refs, at the captured delay; what the server pushed on the channel after that
        join is not sent again."""
        join = self._step(self._last_join[msg.topic])
        captured = join.msg
        assert captured is not None
        self._adopt(captured, msg)
        joins = sum(1 for i in self._streams[msg.topic] if self._event(i) == frames.PHX_JOIN)
        head = f"<- {live}: beyond the capture's {joins} join(s) on {msg.topic}"
        replies = self._answers.get(join.index, [])
        if not replies:
            why = " (the hop dropped it)" if self._lost.get(join.index) else ""
            return [Note(f"{head}; the last one (client frame {join.index + 1}) got no answer{why}: none")]
        self.plausible += 1
        out: list[Action] = []
        for a in replies:
            step = self._step(a)
            m = step.msg
            assert m is not None
            reply = frames.Message(msg.topic, m.event, m.payload, msg.ref, msg.join_ref, m.shape, m.kind)
            delay = step.time - join.time
            status = m.payload.get("status") if isinstance(m.payload, dict) else None
            out.append(
                Note(
                    f"{head}; answered as the capture answered its last (client frame {join.index + 1}):"
                    f" {status or m.event} after {delay:.3f} s"
                )
            )
            what = f"server frame {a + 1} of the capture again, to a join beyond the capture's"
            heapq.heappush(self._again, (self.clock.after(now, delay), a, next(self._seq), reply, what))
        return out

    # -------------------------------------------------------------------------- output

    def _send(self, msg: frames.Message, what: str) -> Action:
        data = encode_server(msg, self.vsn)
        if data is None:
            return Note(f"   {describe(msg)} has no vsn {self.vsn} form (a binary user payload): not sent")
        return Send(data, f"-> {describe(msg)} ({what})", msg.payload)

    def _live_message(self, step: Step) -> frames.Message:
        """The captured server frame with the live connection's refs."""
        m = step.msg
        assert m is not None
        if step.cause is not None and step.cause in self.live_msgs:
            push = self.live_msgs[step.cause]  # a reply answers the live push
            return frames.Message(m.topic, m.event, m.payload, push.ref, push.join_ref, m.shape, m.kind)
        join_ref: str | None
        if m.join_ref is not None:
            join_ref = self._ref_map.get(m.join_ref, m.join_ref)
        elif m.shape == frames.OBJECT and m.topic != frames.PHOENIX:
            join_ref = self._live_join.get(m.topic)  # a 1.0.0 object has none: the push is the live channel's
        else:
            join_ref = None  # a 2.0.0 frame that had none (a broadcast) has none
        ref = self._ref_map.get(m.ref, m.ref) if m.ref is not None else None
        if m.event in (frames.PHX_CLOSE, frames.PHX_ERROR):
            join_ref = join_ref or ref  # Phoenix puts the join's ref in both
            ref = ref if m.ref is not None else join_ref
        return frames.Message(m.topic, m.event, m.payload, ref, join_ref, m.shape, m.kind)

    def _anchored(self, index: int, captured_time: float) -> float:
        """Live time of something captured at `captured_time`: its captured offset from the last matched
        client frame before `index`, from the 101 when none is."""
        k = self.happened.before(index)
        if k is None:
            return self.clock.after(self.happened.started, captured_time)
        return self.clock.after(self.happened.live[k], captured_time - self._step(k).time)

    def _due_unsolicited(self, index: int) -> float | None:
        """When unsolicited step `index` is due; None while it waits for its channel's join."""
        step = self._step(index)
        if step.join is not None and step.join not in self.happened:
            return None
        return self._anchored(index, step.time)

    def _close_due(self) -> float | None:
        if self.script.closer != SERVER or self.ended:
            return None
        return self._anchored(len(self.script.steps), self.script.end)

    def _pending(self) -> Iterator[int]:
        """Unsolicited steps not sent or dropped, in order (the ones before _head are all done)."""
        u = self._unsolicited
        while self._head < len(u) and (u[self._head] in self.sent or u[self._head] in self.dropped):
            self._head += 1
        for i in range(self._head, len(u)):
            if u[i] not in self.sent and u[i] not in self.dropped:
                yield u[i]

    def _next_unsolicited(self) -> tuple[float, int] | None:
        """The first pending unsolicited step whose channel is joined: its due time (later ones are due no
        sooner: their anchor is the same or later)."""
        for u in self._pending():
            t = self._due_unsolicited(u)
            if t is not None:
                return t, u
        return None

    def next_due(self) -> float | None:
        """When the next thing is due (None: nothing until the client sends something)."""
        times = [q[0][0] for q in (self._queue, self._again) if q]
        nxt = self._next_unsolicited()
        if nxt is not None:
            times.append(nxt[0])
        close = self._close_due()
        if close is not None:
            times.append(close)
        return min(times) if times else None

    def due(self, now: float) -> list[Action]:
        """Everything due by `now`, in capture order within one instant; at the capture's close, what came
        before it in the capture goes first."""
        if self.ended:
            return []
        close = self._close_due()
        closing = close is not None and close <= now
        # (due, server step, 0 or _again's seq, the frame to send again or None, what)
        ready: list[tuple[float, int, int, frames.Message | None, str]] = []
        while self._queue and (self._queue[0][0] <= now or closing):
            t, index = heapq.heappop(self._queue)
            ready.append((t, index, 0, None, ""))
        while self._again and (self._again[0][0] <= now or closing):
            ready.append(heapq.heappop(self._again))
        for u in self._pending():
            t = self._due_unsolicited(u)
            if t is not None and (t <= now or closing):
                ready.append((t, u, 0, None, ""))
            elif t is not None:
                break
        out: list[Action] = []
        for _, index, _, again, what in sorted(ready, key=lambda r: r[:3]):
            if again is not None:
                out.append(self._send(again, what))
                continue
            if index in self.sent or index in self.dropped:
                continue
            self.sent.add(index)
            step = self._step(index)
            where = f"server frame {index + 1} of the capture, at {step.time:.3f} s"
            if step.msg is None:  # undecodable: as captured, so the client meets what the original met
                fr = step.frame
                data = fr.data if fr.binary else fr.data.decode("utf-8", "replace")
                out.append(Send(data, f"-> {step.describe()} ({where}, as captured)"))
                continue
            out.append(self._send(self._live_message(step), where))
        if closing:
            self.ended = True
            c = self.script.close
            assert c is not None
            out.append(End(c.code, c.reason))
        return out

    def summary(self) -> str:
        client = [s for s in self.script.steps if s.from_client]
        server = [s for s in self.script.steps if not s.from_client]
        parts = [
            f"matched {len(self.happened)} of {len(client)} client frame(s)",
            f"sent {len(self.sent)} of {len(server)} server frame(s)",
        ]
        if self.skipped:
            parts.append(f"{len(self.skipped)} client frame(s) the live client did not send")
        if self.unmatched:
            parts.append(f"{self.unmatched} live frame(s) not in the capture ({self.plausible} answered)")
        return ", ".join(parts)


# ------------------------------------------------------------------------------------------ client side


def client_url(base: str, script: Script, key: str | None) -> str:
    """The upgrade URL for `rtreplay --client`: the upstream's scheme, host and port (and its path, when it
    names one); the capture's path and query, with the apikey the user's `key` (none when no key), never
    the capture's."""
    parts = urlsplit(base)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss") or not parts.netloc:
        raise ValueError(f"expected an http(s):// or ws(s):// URL, got {base!r}")
    captured = urlsplit(script.url)
    path = parts.path.rstrip("/")
    if not path:
        path = captured.path or "/realtime/v1/websocket"
    elif not path.endswith("/websocket"):
        path += "/websocket"
    pieces, placed = [], False
    for piece in captured.query.split("&") if captured.query else []:
        name = piece.partition("=")[0]
        if name.lower() in SECRET_KEYS:
            if name.lower() == "apikey" and key and not placed:
                pieces.append(f"apikey={quote(key, safe='')}")
                placed = True
            continue
        pieces.append(piece)
    if key and not placed:
        pieces.append(f"apikey={quote(key, safe='')}")
    return urlunsplit((scheme, parts.netloc, path, "&".join(pieces), ""))


def captured_credentials(script: Script) -> list[str]:
    """Where the capture carried a credential the client side would have sent (for the note that they are
    not sent)."""
    where = []
    q = _query(script.url)
    if q.get("apikey"):
        where.append("the URL's apikey")
    for s in script.client_steps:
        payload = s.msg.payload if s.msg is not None else None
        if isinstance(payload, dict) and any(payload.get(k) for k in TOKEN_KEYS):
            where.append("access tokens in its frames")
            break
    return where


def with_key(payload: Any, key: str | None) -> Any:
    """A client payload with the user's token (redact.TOKEN_KEYS: phx_join's access_token, ...) replaced
    by `key`, dropped when there is none. Any other JWT or secret is rtsanitize's marker already (the
    script's frames are sanitized), which no server accepts."""
    if not isinstance(payload, dict):
        return payload
    out = {}
    for k, v in payload.items():
        if k in TOKEN_KEYS and isinstance(v, str):
            if key:
                out[k] = key
            continue
        out[k] = v
    return out


def encode_client(msg: frames.Message, binary: bool) -> str | bytes:
    """A client frame in the form the capture had: 1.0.0 object, 2.0.0 array, or binary kind 0/3."""
    if binary and msg.kind == frames.USER_PUSH and isinstance(msg.payload, dict):
        return frames.encode_user_push(
            msg.topic,
            msg.payload.get("event", ""),
            msg.payload.get("payload"),
            join_ref=msg.join_ref,
            ref=msg.ref,
            meta=msg.payload.get("meta"),
        )
    if binary and msg.kind == frames.PUSH and isinstance(msg.payload, (bytes, bytearray)):
        return frames.encode_push(
            msg.topic, msg.event, bytes(msg.payload), join_ref=msg.join_ref, ref=msg.ref, from_client=True
        )
    return frames.encode_text(msg, frames.V1 if msg.shape == frames.OBJECT else frames.V2, from_client=True)


class ClientPlayer:
    """The capture's client side against a live upstream, from the 101 (`now` at construction). Its frames
    keep the capture's refs and join_refs, so what comes back pairs with them as it did; each is sent at
    its captured offset from the last thing that happened before it: a frame it sent, or a server frame it
    waited for (the reply to one of its pushes, or the next frame of that topic and event) once that came.
    Tokens are the user's `key` (none when there is none), never the capture's."""

    CLOSE_GRACE_S = 2.0  # the capture's server closed: how long past that the client waits for the upstream
    WAIT_S = 1.0  # how much longer a frame waits for the server frames that came before it in the capture

    def __init__(self, script: Script, key: str | None, now: float, speed: float = 1.0) -> None:
        self.script = script
        self.key = key
        self.clock = _Clock(speed)
        self.happened = _Matched(now)  # client steps sent and server steps seen, and when
        self._client = [s.index for s in script.steps if s.from_client and s.msg is not None]
        self._next = 0  # position in self._client of the next client step to send
        self._server_streams: dict[str, list[int]] = {}
        self._replies: dict[tuple[str, str], int] = {}  # (topic, ref) of a push -> the captured reply
        for s in script.steps:
            if s.from_client or s.msg is None or s.dropped:
                continue
            if s.cause is not None and s.msg.ref is not None:
                self._replies[(s.msg.topic, s.msg.ref)] = s.index
            else:
                self._server_streams.setdefault(s.msg.topic, []).append(s.index)
        self._cursor: dict[str, int] = {}
        # What the capture's client had received before each of its frames (since its previous frame), and
        # before its end: the server frames the replay waits for, WAIT_S past their time at most.
        self._waits: dict[int, list[int]] = {}
        since: list[int] = []
        for s in script.steps:
            if s.from_client and s.msg is not None:
                self._waits[s.index], since = since, []
            elif not s.from_client and s.msg is not None and not s.dropped:
                since.append(s.index)
        self._waits[len(script.steps)] = since
        self.ended = False
        self.received = 0
        self.recognized = 0
        self.late = 0  # frames sent after waiting WAIT_S for server frames that did not come

    def _step(self, index: int) -> Step:
        return self.script.steps[index]

    def _due(self, index: int, captured_time: float) -> float:
        """When the step at `index` (len(steps): the end) is due: at its captured offset from the last thing
        that happened before it, WAIT_S later while server frames it came after have not come."""
        t = self._anchored(index, captured_time)
        return t if all(w in self.happened for w in self._waits.get(index, ())) else t + self.WAIT_S

    def _anchored(self, index: int, captured_time: float) -> float:
        k = self.happened.before(index)
        if k is None:
            return self.clock.after(self.happened.started, captured_time)
        return self.clock.after(self.happened.live[k], captured_time - self._step(k).time)

    def server_frame(self, data: str | bytes, binary: bool, now: float) -> tuple[frames.Message | None, str]:
        """A frame from the upstream: decoded (None: it does not decode), and which of the capture's server
        frames it is, if any."""
        self.received += 1
        raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
        try:
            msg = frames.decode(raw, binary=binary, from_client=False)
        except frames.DecodeError as e:
            return None, f"undecodable: {e}"
        index: int | None = None
        if msg.event == frames.PHX_REPLY and msg.ref is not None:
            index = self._replies.pop((msg.topic, msg.ref), None)
        if index is None:
            stream = self._server_streams.get(msg.topic, [])
            i = self._cursor.get(msg.topic, 0)
            j = next((k for k in range(i, len(stream)) if self._event(stream[k]) == msg.event), None)
            if j is not None:
                self._cursor[msg.topic] = j + 1
                index = stream[j]
        if index is None:
            return msg, "not in the capture"
        self.recognized += 1
        self.happened.add(index, now)
        return msg, f"server frame {index + 1} of the capture, at {self._step(index).time:.3f} s"

    def _event(self, index: int) -> str:
        msg = self._step(index).msg
        assert msg is not None
        return msg.event

    def _due_client(self) -> float | None:
        if self._next >= len(self._client):
            return None
        index = self._client[self._next]
        return self._due(index, self._step(index).time)

    def _close_due(self) -> float | None:
        if self.ended or self._next < len(self._client):
            return None
        t = self._due(len(self.script.steps), self.script.end)
        return t + self.CLOSE_GRACE_S if self.script.closer == SERVER else t

    def next_due(self) -> float | None:
        t = self._due_client()
        return t if t is not None else self._close_due()

    def due(self, now: float) -> list[Action]:
        out: list[Action] = []
        while (t := self._due_client()) is not None and t <= now:
            step = self._step(self._client[self._next])
            if not all(w in self.happened for w in self._waits[step.index]):
                self.late += 1
            self._next += 1
            self.happened.add(step.index, now)
            out.append(self._send(step))
        t = self._close_due()
        if t is not None and t <= now:
            self.ended = True
            c = self.script.close
            if self.script.closer == CLIENT and c is not None:
                out.append(End(c.code, c.reason))  # code None: the client dropped its connection
            else:  # the capture's server ended it (and the upstream did not), or it does not say: done
                out.append(End(closecodes.NORMAL))
        return out

    def _send(self, step: Step) -> Send:
        m = step.msg
        assert m is not None
        payload = m.payload if m.kind == frames.USER_PUSH else with_key(m.payload, self.key)
        live = frames.Message(m.topic, m.event, payload, m.ref, m.join_ref, m.shape, m.kind)
        return Send(
            encode_client(live, step.frame.binary),
            f"-> {describe(live)} (client frame {step.index + 1} of the capture, at {step.time:.3f} s)",
            payload,
        )


# ------------------------------------------------------------------------------------------ refusals

# Headers a replayed refusal does not copy: the connection's own (recomputed), and cookies (credentials).
_NOT_REPLAYED = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "content-encoding",
        "date",
        "set-cookie",
        "upgrade",
        "sec-websocket-accept",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
    }
)


def refusal(script: Script) -> tuple[int, list[tuple[str, str]], bytes]:
    """The captured refusal as a replay answers it: status, the headers that say something (content-type,
    the gateway's own: Via, X-Kong-*, CF-Ray, ...), and the body, decoded if it was stored compressed, with
    any credential in it replaced as rtsanitize replaces one."""
    assert script.status is not None
    body = script.body
    encoding = next((v.lower().strip() for k, v in script.headers if k.lower() == "content-encoding"), "")
    if encoding in ("gzip", "deflate") and body:
        try:
            body = gzip.decompress(body) if encoding == "gzip" else zlib.decompress(body)
        except (OSError, zlib.error, EOFError):
            pass  # the capture stored it decoded already (a HAR's content.text)
    body = sanitize.data(body)[0]
    headers = [(k, sanitize.header(k, v)[0]) for k, v in script.headers if k.lower() not in _NOT_REPLAYED]
    return script.status, headers, body
