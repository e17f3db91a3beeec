"""The capture's client side, played against a live upstream (`rtreplay --client`)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit

from .. import closecodes, frames, urls
from ..redact import SECRET_KEYS, TOKEN_KEYS
from .actions import Action, Clock, End, Matched, Send
from .script import CLIENT, SERVER, Script, Step, describe, url_query


def client_url(base: str, script: Script, key: str | None) -> str:
    """The upgrade URL for `rtreplay --client`: the socket `base` leads to (urls.resolve, as for rtclient
    and rtprobe) with the capture's query, its apikey the user's `key` (none when no key), never the
    capture's. ValueError from urls.resolve for a URL it refuses."""
    socket = urls.resolve(base).socket
    captured = urlsplit(script.url).query
    pieces, placed = [], False
    for piece in captured.split("&") if captured else []:
        name = piece.partition("=")[0]
        if name.lower() in SECRET_KEYS:
            if name.lower() == "apikey" and key and not placed:
                pieces.append(f"apikey={quote(key, safe='')}")
                placed = True
            continue
        pieces.append(piece)
    if key and not placed:
        pieces.append(f"apikey={quote(key, safe='')}")
    return f"{socket}?{'&'.join(pieces)}" if pieces else socket


def captured_credentials(script: Script) -> list[str]:
    """Where the capture carried a credential the client side would have sent (for the note that they are
    not sent)."""
    where = []
    q = url_query(script.url)
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
        self.clock = Clock(speed)
        self.happened = Matched(now)  # client steps sent and server steps seen, and when
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
