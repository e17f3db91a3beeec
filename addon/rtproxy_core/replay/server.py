"""The capture's server side, played to a live client (`rtreplay --serve`)."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator

from .. import frames
from .actions import Action, Clock, End, Matched, Note, Send
from .script import SERVER, Script, Step, describe


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


class ServerPlayer:
    """The capture's server side for one live client connection, from its 101 (`now` at construction).
    Feed the client's frames to client_frame(); due(now) gives what is due; next_due() says when."""

    def __init__(self, script: Script, vsn: str, now: float, speed: float = 1.0) -> None:
        self.script = script
        self.vsn = vsn
        self.clock = Clock(speed)
        self.happened = Matched(now)  # client steps matched by a live frame, and when
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
            due = self._due_unsolicited(u)
            if due is not None and (due <= now or closing):
                ready.append((due, u, 0, None, ""))
            elif due is not None:
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
