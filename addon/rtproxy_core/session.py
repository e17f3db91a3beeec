"""Per-connection tracker: one Session per Realtime WebSocket, fed with events (events.py).

`Session.feed(event)` updates the state (vsn, channels and their states, join<->reply pairing, heartbeat
round trips, presence, postgres_changes bindings, system messages, close) and returns `Note`s: the lines
worth logging. It does no I/O and keeps bounded state, so it runs the same live and offline.

A channel is what Phoenix calls one: a join, identified by its join_ref (join_ref || ref of the phx_join),
until it ends. A topic joined again is a new channel instance (`Session.channels` holds them all, in
order; `Session.current` the latest per topic); replies, leaves, phx_close and phx_error go to the
instance their refs name, and a push that names an older instance is evidence (`stale_pushes`).
"""

from __future__ import annotations

import json
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from . import closecodes, frames
from .events import (
    Closed,
    Event,
    Frame,
    FrameError,
    Handshake,
    Hop,
    HopKind,
    Opened,
    Upstream,
    UpstreamHandshake,
)
from .redact import Redactor, jwt_claims, jwt_expired

if TYPE_CHECKING:
    from .rules import Finding


class ChannelState(StrEnum):
    """A channel instance's state, as every Realtime client names it (realtime-js CHANNEL_STATES,
    realtime-py ChannelStates)."""

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


class NoteLevel(StrEnum):
    """How loud a Note is: the log level a live run writes it at (rtproxy_mitm/tracker.py)."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"


MAX_CHANNELS = 500  # per connection; a client that joins more is hostile or broken
MAX_PENDING = 1000  # pushes awaiting a reply
MAX_HISTORY = 20  # system messages and hop events kept per channel / connection
# Ended connections kept for commands and reports: the tracker's finished sessions, and the two-leg view's
# ended pairs and upstream legs no client leg claimed (rtproxy_core.legs), KEEP_FINISHED of each.
KEEP_FINISHED = 100
DUPLICATE_WINDOW_S = 1.0  # clients back off ≥ 1 s before a rejoin; a second join sooner is a duplicate
# Realtime's timers by default (rules.Timers: what the user configured goes first).
CLIENT_HEARTBEAT_S = (
    25.0  # realtime-js (HEARTBEAT_INTERVAL 25000) and realtime-py (DEFAULT_HEARTBEAT_INTERVAL 25)
)
CLIENT_JOIN_TIMEOUT_S = 10.0  # both clients' DEFAULT_TIMEOUT
SERVER_IDLE_S = 60.0  # Realtime closes a socket after this long without a client frame
GAVE_UP_MIN_S = 1.0  # no client times a join out sooner; a leave or rejoin sooner is the app's own doing


@dataclass(slots=True)
class Note:
    level: NoteLevel
    text: str
    topic: str | None = None


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
        """The topic, and which join of it when it was joined more than once."""
        return self.topic if self.seq == 1 else f"{self.topic} (join {self.seq})"

    def describe(self, redactor: Redactor) -> str:
        """One line: `realtime:room1: joined (12 ms), 3 in / 2 out[, reason]`."""
        lat = f" ({self.join_latency_ms:.0f} ms)" if self.join_latency_ms is not None else ""
        why = f", {redactor.text(self.reason)}" if self.reason else ""
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


@dataclass
class Heartbeats:
    sent: int = 0
    answered: int = 0
    rtt_sum_ms: float = 0.0
    rtt_max_ms: float = 0.0
    last_sent_at: float | None = None
    max_gap_s: float = 0.0
    unanswered_at_next: int = 0  # heartbeats still pending when the next one went out
    gaps: deque[float] = field(default_factory=lambda: deque(maxlen=64))

    # Heartbeats waiting for their reply, oldest first: by ref, and (Python's null refs) in order.
    pending: OrderedDict[str, float] = field(default_factory=OrderedDict)
    pending_null: deque[float] = field(default_factory=lambda: deque(maxlen=MAX_PENDING))

    def oldest_unanswered(self) -> float | None:
        """When the oldest heartbeat still waiting for its reply was sent."""
        times = [next(iter(self.pending.values()))] if self.pending else []
        if self.pending_null:
            times.append(self.pending_null[0])
        return min(times) if times else None

    first_sent_at: float | None = None

    def interval(self) -> float | None:
        """The client's heartbeat interval as its own heartbeats show it (median gap), from one gap on."""
        if not self.gaps:
            return None
        ordered = sorted(self.gaps)
        return ordered[len(ordered) // 2]

    def sent_one(self, ref: str | None, t: float) -> None:
        if self.first_sent_at is None:
            self.first_sent_at = t
        if self.last_sent_at is not None:
            self.max_gap_s = max(self.max_gap_s, t - self.last_sent_at)
            self.gaps.append(t - self.last_sent_at)
            if self.sent > self.answered:
                self.unanswered_at_next += 1
        self.sent += 1
        self.last_sent_at = t
        if ref is None:
            self.pending_null.append(t)
        else:
            self.pending[ref] = t
            if len(self.pending) > MAX_PENDING:
                self.pending.popitem(last=False)

    def answered_one(self, ref: str | None, t: float) -> None:
        sent_at = (
            self.pending.pop(ref, None)
            if ref is not None
            else (self.pending_null.popleft() if self.pending_null else None)
        )
        if sent_at is None:
            return
        rtt = (t - sent_at) * 1000
        self.answered += 1
        self.rtt_sum_ms += rtt
        self.rtt_max_ms = max(self.rtt_max_ms, rtt)

    def typical_gap(self) -> float | None:
        """The client's usual heartbeat interval (median gap), once there are a few."""
        if len(self.gaps) < 2:
            return None
        ordered = sorted(self.gaps)
        return ordered[len(ordered) // 2]

    def summary(self) -> str:
        avg = f"{self.rtt_sum_ms / self.answered:.1f}" if self.answered else "-"
        return (
            f"heartbeats: {self.sent} sent, {self.answered} answered, rtt avg {avg} ms "
            f"max {self.rtt_max_ms:.1f} ms, longest gap {self.max_gap_s:.1f} s"
        )


def is_realtime_path(path: str) -> bool:
    """Does an upgrade path look like a Realtime socket? (/realtime/v1/websocket, /socket/websocket)"""
    p = path.split("?", 1)[0].rstrip("/")
    return p.endswith("/websocket") and ("/realtime/" in p or p.startswith("/socket/"))


def _query(url: str) -> dict[str, str]:
    try:
        return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    except ValueError:
        return {}


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    name = name.lower()
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def _short(value: Any, limit: int = 160) -> str:
    text = json.dumps(frames.jsonable(value), ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Session:
    """State of one Realtime connection. `conn` is a short id used in notes."""

    def __init__(
        self,
        conn: str = "",
        redactor: Redactor | None = None,
        debug: bool = False,
        join_timeout_s: float = CLIENT_JOIN_TIMEOUT_S,
    ) -> None:
        self.conn = conn
        self.join_timeout_s = join_timeout_s  # the client's: a later reply finds it already TIMED_OUT
        self.redactor = redactor or Redactor()
        self.debug = debug  # build per-frame notes only when someone will read them
        self.url: str | None = None
        self.upstream_url: str | None = None
        self.client_vsn: str | None = None  # vsn the client asked for (None: absent)
        self.vsn: str = frames.V1  # serializer the server negotiates
        self.apikey: str | None = None  # kept for diagnosis; printed only through the redactor
        self.upstream_apikey: bool | None = None
        self.upstream_vsn: str | None = None
        self.upstream_status: int | None = None  # the upstream's answer to the hop, when it differs
        self.upstream_rejection: str | None = None
        self.status: int | None = None
        self.rejection: str | None = None  # the server's {"error": ...} text, or the body's start
        self.rejection_headers: list[tuple[str, str]] = []
        self.opened_at: float | None = None
        self.upgraded_at: float | None = None
        self.closed: Closed | None = None
        self.channels: OrderedDict[int, Channel] = OrderedDict()  # every instance, in order of its join
        self.current: dict[str, Channel] = {}  # the latest instance of each topic
        self._by_ref: dict[tuple[str, str], Channel] = {}  # (topic, join_ref) -> instance
        self._serial = 0
        self._joins: dict[str, int] = {}  # topic -> joins seen
        self.dropped_channels = 0  # joins not tracked: the cap was full of live channels
        self.evicted_channels = 0  # ended channels forgotten to make room
        self.stale_pushes = 0  # client pushes that named an older join of their topic
        # Pushes the server answers, awaiting that answer (heartbeats are in self.heartbeats).
        self.pending: OrderedDict[tuple[str, str], tuple[str, float, Channel]] = OrderedDict()
        self.heartbeats = Heartbeats()
        self.hops: deque[Hop] = deque(maxlen=MAX_HISTORY)
        self.hop_counts: dict[str, int] = {}
        self.frames_from_client = 0
        self.frames_from_server = 0
        self.last_client_frame_at: float | None = None
        self.last_frame_at: float | None = None
        self.decode_errors = 0
        self.binary_frames = {True: 0, False: 0}  # binary frames, by from_client
        self.error_frames: deque[FrameError] = deque(maxlen=MAX_HISTORY)  # errors the browser recorded
        self.error_frame_count = 0
        self.dropped_frames: dict[str, int] = {}  # frames the capture reader left out, by why
        self.broken = False  # the live tracker hit an internal error on this connection and stopped
        self.shape_mismatches = 0  # client frames the server's serializer cannot read
        self.binary_on_v1 = 0  # client binary frames on a 1.0.0 connection
        self.binary_from_server_on_v1 = 0
        self.client_kind: str | None = None  # "realtime-js" | "realtime-py", from what the client sends
        self.apikey_expired_s: float | None = None  # the upgrade's apikey JWT had expired this long before
        self.reopened_at: float | None = None  # offline: when the next connection to the same place opened
        self.findings: list[Finding] = []  # rules.Finding, filled by diagnosis.Diagnoser
        self.fired: set[tuple[str, str | None]] = set()  # (code, topic) reported (diagnosis.Diagnoser)
        self.checked_at: float | None = None  # event time the rules last ran

    # ------------------------------------------------------------------------------------ feeding

    def feed(self, ev: Event) -> list[Note]:
        notes: list[Note] = []
        if isinstance(ev, Frame):
            self._frame(ev, notes)
        elif isinstance(ev, Opened):
            self._opened(ev, notes)
        elif isinstance(ev, Upstream):
            self._upstream(ev, notes)
        elif isinstance(ev, Handshake):
            self._handshake(ev, notes)
        elif isinstance(ev, UpstreamHandshake):
            self.upstream_status = ev.status
            self.upstream_rejection = rejection_text(ev.body)
            why = self.redactor.text(self.upstream_rejection or "(empty body)")
            client = f" (the client got {self.status} already)" if self.status else ""
            notes.append(
                Note(NoteLevel.WARNING, f"upstream rejected the hop's upgrade: {ev.status} {why}{client}")
            )
        elif isinstance(ev, Hop):
            self._hop(ev, notes)
        elif isinstance(ev, Closed):
            self._closed(ev, notes)
        elif isinstance(ev, FrameError):
            self._frame_error(ev, notes)
        for note in notes:  # one last pass over everything printed: a client may put a token anywhere
            note.text = self.redactor.text(note.text)
        return notes

    def channel(self, topic: str) -> Channel | None:
        """The current instance of `topic`; one is made for frames of a join the capture did not show."""
        ch = self.current.get(topic)
        if ch is None:
            ch = self._new_instance(topic, None)
            if ch is not None:
                ch.implicit = True
        return ch

    def _new_instance(self, topic: str, join_ref: str | None) -> Channel | None:
        if len(self.channels) >= MAX_CHANNELS:
            # Make room by forgetting the oldest instance that has ended and is not its topic's current one.
            old = next(
                (
                    k
                    for k, ch in self.channels.items()
                    if ch.state in (CLOSED, ERRORED) and self.current.get(ch.topic) is not ch
                ),
                None,
            )
            if old is None:
                self.dropped_channels += 1
                return None
            gone = self.channels.pop(old)
            if gone.join_ref is not None and self._by_ref.get((gone.topic, gone.join_ref)) is gone:
                del self._by_ref[(gone.topic, gone.join_ref)]
            self.evicted_channels += 1
        seq = self._joins[topic] = self._joins.get(topic, 0) + 1
        ch = Channel(topic, join_ref=join_ref, seq=seq)
        self._serial += 1
        self.channels[self._serial] = ch
        self.current[topic] = ch
        if join_ref is not None:
            self._by_ref[(topic, join_ref)] = ch
        return ch

    def instance(self, topic: str, join_ref: str | None) -> Channel | None:
        """The instance a frame's join_ref names; the current one when it names none (1.0.0 servers)."""
        if join_ref is not None:
            ch = self._by_ref.get((topic, join_ref))
            if ch is not None:
                return ch
        return self.current.get(topic)

    def instances(self, topic: str) -> list[Channel]:
        return [ch for ch in self.channels.values() if ch.topic == topic]

    def _opened(self, ev: Opened, notes: list[Note]) -> None:
        self.url, self.opened_at = ev.url, ev.time
        q = _query(ev.url)
        self.client_vsn = q.get("vsn")
        self.vsn = frames.vsn_family(self.client_vsn) or frames.V1
        self.apikey = _header(ev.headers, "x-api-key") or q.get("apikey") or None
        if self.apikey:
            self.apikey_expired_s = jwt_expired(self.apikey, ev.time)
        if self.client_vsn is not None:  # realtime-py never sends vsn; realtime-js always does
            self.client_kind = "realtime-js"
        key = self.redactor.secret(self.apikey, ev.time) if self.apikey else "none"
        notes.append(
            Note(
                NoteLevel.INFO,
                f"connect {self.redactor.url(ev.url)} "
                f"(vsn {self.client_vsn or 'absent → 1.0.0'}, apikey {key})",
            )
        )

    def _upstream(self, ev: Upstream, notes: list[Note]) -> None:
        self.upstream_url = ev.url
        q = _query(ev.url)
        self.upstream_apikey = bool(q.get("apikey") or _header(ev.headers, "x-api-key"))
        self.upstream_vsn = q.get("vsn")
        # What the server negotiates is decided by the URL it receives, not the client's.
        self.vsn = frames.vsn_family(q.get("vsn")) or frames.V1
        notes.append(Note(NoteLevel.INFO, f"upstream {self.redactor.url(ev.url)}"))

    def _handshake(self, ev: Handshake, notes: list[Note]) -> None:
        self.status = ev.status
        if ev.status == 101:
            self.upgraded_at = ev.time
            asked = frames.vsn_family(self.client_vsn) or self.client_vsn
            if asked == self.vsn:
                notes.append(Note(NoteLevel.INFO, f"upgraded (101), vsn {self.vsn}"))
            else:
                notes.append(
                    Note(
                        NoteLevel.WARNING,
                        f"upgraded (101); the client speaks vsn {asked} but the upstream URL "
                        f"asks for {self.upstream_vsn or 'none (so 1.0.0)'}",
                    )
                )
            return
        self.rejection = rejection_text(ev.body)
        self.rejection_headers = list(ev.headers)
        why = self.redactor.text(self.rejection) if self.rejection else "(empty body)"
        notes.append(Note(NoteLevel.WARNING, f"upgrade rejected: {ev.status} {why}"))

    def _hop(self, ev: Hop, notes: list[Note]) -> None:
        self.hops.append(ev)
        count = self.hop_counts[ev.what] = self.hop_counts.get(ev.what, 0) + 1
        if ev.frame is not None and ev.frame.from_client:
            try:
                msg = frames.decode(ev.frame.data, binary=ev.frame.binary, from_client=True)
            except frames.DecodeError:
                msg = None
            if msg is not None and msg.event == frames.PHX_JOIN:
                jr = msg.join_ref or msg.ref
                ch = self._by_ref.get((msg.topic, jr)) if jr is not None else None
                if ch is None:  # dropped before the tracker saw it: the client did send it
                    self._client(msg, ev.frame.time, notes)
                    ch = self.current.get(msg.topic)
                if ch is not None:
                    ch.join_dropped += 1
        if count <= 3:  # the first few of a kind are logged; the counts go on
            notes.append(Note(NoteLevel.WARNING, f"hop: {ev.what}: {self.redactor.text(ev.detail)}"))

    def _closed(self, ev: Closed, notes: list[Note]) -> None:
        self.closed = ev
        if ev.code is None and self.status != 101:
            return  # a failed handshake was already reported
        who = {True: "client", False: "server", None: "network"}[ev.by_client]
        code = "no close frame" if ev.code is None else str(ev.code)
        reason = f" ({self.redactor.text(ev.reason)})" if ev.reason else ""
        error = f", {self.redactor.text(ev.error)}" if ev.error else ""
        dur = f" after {ev.time - self.upgraded_at:.1f} s" if self.upgraded_at else ""
        if not ev.recorded:
            notes.append(Note(NoteLevel.INFO, f"connection ended{dur} (the capture records no close frame)"))
        elif ev.code is None and ev.ended_first in ("client", "server"):
            notes.append(
                Note(
                    NoteLevel.INFO,
                    f"closed by network: no close frame (the {ev.ended_first}'s side ended "
                    f"first){dur}{error}",
                )
            )
        else:
            notes.append(Note(NoteLevel.INFO, f"closed by {who}: {code}{reason}{dur}{error}"))
        if self.heartbeats.sent:
            notes.append(Note(NoteLevel.INFO, self.heartbeats.summary()))
        # A client that closes its own socket normally is done with its channels; anything else is the
        # "socket closed: <code>" CHANNEL_ERROR clients report.
        clean = not self.failed
        for ch in self.channels.values():
            if ch.state in (JOINING, JOINED, LEAVING) and not ev.recorded:
                pass  # how it ended is not known: the channels keep their last known state
            elif ch.state in (JOINING, JOINED, LEAVING):
                ch.state = CLOSED if clean or ch.state == LEAVING else ERRORED
                if not clean:
                    ch.reason = ch.reason or f"socket closed: {code}{reason}"
            notes.append(Note(NoteLevel.INFO, "  " + ch.describe(self.redactor), ch.topic))

    def _frame_error(self, ev: FrameError, notes: list[Note]) -> None:
        """Count what a capture held in place of a frame; log the first few."""
        if ev.by == "reader":
            dropped = self.dropped_frames
            why = ev.text if ev.text in dropped or len(dropped) < MAX_HISTORY else "other"
            dropped[why] = dropped.get(why, 0) + 1
            if sum(dropped.values()) == 1:
                notes.append(Note(NoteLevel.WARNING, f"capture: a frame was left out ({why})"))
            return
        self.error_frames.append(ev)
        self.error_frame_count += 1
        if self.error_frame_count <= 3:
            notes.append(Note(NoteLevel.WARNING, f"the browser recorded a WebSocket error: {ev.text}"))

    # ------------------------------------------------------------------------------------ frames

    def _frame(self, f: Frame, notes: list[Note]) -> None:
        self.last_frame_at = f.time
        if f.binary:
            self.binary_frames[f.from_client] += 1
        if f.from_client:
            self.frames_from_client += 1
            self.last_client_frame_at = f.time
        else:
            self.frames_from_server += 1
        try:
            # The tracker counts broadcasts; it parses their user payload only for the debug lines.
            msg = frames.decode(f.data, binary=f.binary, from_client=f.from_client, lazy=not self.debug)
        except frames.DecodeError as e:
            self.decode_errors += 1
            if self.decode_errors <= 3:
                side = "client" if f.from_client else "server"
                notes.append(Note(NoteLevel.WARNING, f"undecodable {side} frame ({len(f.data)} bytes): {e}"))
            return
        if self.debug:
            arrow = "→" if f.from_client else "←"
            payload = _short(self.redactor.payload(msg.payload, f.time))
            kind = f" kind {msg.kind}" if msg.kind is not None else ""
            notes.append(
                Note(
                    NoteLevel.DEBUG,
                    f"{arrow} {msg.topic} {msg.event} ref={msg.ref} join_ref={msg.join_ref}{kind} {payload}",
                    msg.topic,
                )
            )
        if f.from_client:
            self._check_shape(msg, notes)
            self._client(msg, f.time, notes)
        else:
            self._server(msg, f.time, notes)

    def _check_shape(self, msg: frames.Message, notes: list[Note]) -> None:
        expected = frames.shape_for(self.vsn)
        if msg.shape == expected or (self.vsn == frames.V2 and msg.shape == frames.BINARY):
            return
        if msg.shape == frames.BINARY:
            self.binary_on_v1 += 1
        self.shape_mismatches += 1
        if self.shape_mismatches == 1:
            sent = {
                frames.OBJECT: "1.0.0 JSON objects",
                frames.ARRAY: "2.0.0 JSON arrays",
                frames.BINARY: "2.0.0 binary frames",
            }[msg.shape]
            whose = "the upstream URL asks for" if self.upstream_url else "the connection negotiated"
            notes.append(
                Note(
                    NoteLevel.WARNING,
                    f"client sends {sent} but {whose} vsn {self.vsn}: a Realtime server "
                    "drops such frames without a reply",
                    msg.topic,
                )
            )

    def _pend(self, ch: Channel, ref: str | None, event: str, t: float) -> None:
        if ref is None:
            return
        self.pending[(ch.topic, ref)] = (event, t, ch)
        if len(self.pending) > MAX_PENDING:
            self.pending.popitem(last=False)

    def _client(self, msg: frames.Message, t: float, notes: list[Note]) -> None:
        ev, topic = msg.event, msg.topic
        if topic == frames.PHOENIX and ev == frames.HEARTBEAT:
            self.heartbeats.sent_one(msg.ref, t)
            if msg.ref is None and self.client_kind is None:
                self.client_kind = "realtime-py"  # its heartbeats carry "ref": null
            return
        if ev == frames.PHX_JOIN:
            self._join(msg, t, notes)
            return
        ch = self.instance(topic, msg.join_ref) if msg.join_ref is not None else self.current.get(topic)
        if ch is None:
            ch = self.channel(topic)
            if ch is None:
                return
        cur = self.current.get(topic)
        if msg.join_ref is not None and cur is not None and ch is not cur:
            ch.stale_pushes += 1  # Realtime's Phoenix fork still delivers it, to the current channel
            self.stale_pushes += 1
        ch.sent += 1
        if ev == frames.PHX_LEAVE:
            if ch.state == JOINING and ch.join_sent_at is not None and t - ch.join_sent_at >= GAVE_UP_MIN_S:
                ch.gave_up = True
            ch.state, ch.left_at = LEAVING, t
            notes.append(Note(NoteLevel.INFO, f"leave {ch.label}", topic))
        elif ev == frames.EV_BROADCAST:
            ch.broadcasts_sent += 1
            if not ch.ack:
                return  # answered only when the channel joined with broadcast.ack
        elif ev == frames.EV_ACCESS_TOKEN:
            token = msg.payload.get("access_token") if isinstance(msg.payload, dict) else None
            self._check_token(ch, token, t, "access_token", notes)
            return  # Realtime never answers an accepted access_token
        self._pend(ch, msg.ref, ev, t)

    def _join(self, msg: frames.Message, t: float, notes: list[Note]) -> None:
        topic = msg.topic
        join_ref = msg.join_ref or msg.ref
        prev = self.current.get(topic)
        duplicate = False
        if prev is not None and prev.join_ref != join_ref:
            # A second join while the first is live: StrictMode-style double subscribe. A rejoin after a
            # timeout or error comes a backoff (≥ 1 s) later and is not one; a rejoin while the first
            # join was still unanswered means the client gave up on it.
            recent = prev.join_sent_at is not None and t - prev.join_sent_at < DUPLICATE_WINDOW_S
            # A rapid re-subscribe counts too: joined, left and joined again within the window.
            duplicate = prev.state == JOINED or recent and prev.state in (JOINING, LEAVING)
            if (
                prev.state == JOINING
                and prev.join_sent_at is not None
                and t - prev.join_sent_at >= GAVE_UP_MIN_S
            ):
                prev.gave_up = True  # join-timeout says so; the reason stays the server's (none)
                prev.state = ERRORED
        if prev is not None and prev.join_ref == join_ref and join_ref is not None:
            ch = prev  # the same join sent again (a capture with a repeat): one instance
        else:
            new = self._new_instance(topic, join_ref)
            if new is None:
                if self.dropped_channels == 1:
                    notes.append(
                        Note(
                            NoteLevel.WARNING,
                            f"{MAX_CHANNELS} live channels on this connection: further joins are not tracked",
                        )
                    )
                return
            ch = new
        ch.sent_join_ref = msg.join_ref is not None
        # A leave and a join again is harmless when the client sends join_refs (it ignores the old
        # channel's phx_close by its join_ref); a second join while the first is live never is.
        if duplicate and prev is not None and (prev.state in (JOINED, JOINING) or not ch.sent_join_ref):
            ch.duplicate_joins = prev.duplicate_joins + 1
        ch.sent += 1
        ch.state, ch.join_sent_at, ch.reason = JOINING, t, None
        ch.joins += 1
        payload = msg.payload if isinstance(msg.payload, dict) else {}
        config = frames.as_object(payload.get("config"))
        ch.private = bool(config.get("private"))
        broadcast = frames.as_object(config.get("broadcast"))
        if "broadcast" in config and config["broadcast"] is None and self.client_kind is None:
            self.client_kind = "realtime-py"  # its join config carries "broadcast": null
        ch.ack = broadcast.get("ack") in (True, "true")
        pg = config.get("postgres_changes")
        ch.bindings = [b for b in pg if isinstance(b, dict)] if isinstance(pg, list) else []
        extras = [
            w
            for w, on in (("private", ch.private), (f"{len(ch.bindings)} postgres_changes", ch.bindings))
            if on
        ]
        again = f" (join #{ch.seq})" if ch.seq > 1 else ""
        notes.append(
            Note(
                NoteLevel.INFO,
                f"join {ch.topic} ref={msg.ref}{again}" + (f" [{', '.join(extras)}]" if extras else ""),
                ch.topic,
            )
        )
        token = payload.get("access_token") or payload.get("user_token")
        self._check_token(
            ch,
            token if isinstance(token, str) else self.apikey,
            t,
            "join access_token" if isinstance(token, str) else "join (connect token)",
            notes,
            at_join=True,
        )
        self._pend(ch, msg.ref, frames.PHX_JOIN, t)

    def _check_token(
        self, ch: Channel, token: Any, t: float, what: str, notes: list[Note], at_join: bool = False
    ) -> None:
        """Compare the token's exp with the time of the frame that carried it."""
        if not isinstance(token, str) or token.startswith("sb_"):
            return
        claims = jwt_claims(token)
        exp = claims.get("exp") if claims else None
        ago = jwt_expired(token, t)
        if isinstance(exp, (int, float)) and not isinstance(exp, bool) and (ago is None or at_join):
            ch.token_exp = float(exp)
        if ago is not None:
            if at_join:
                ch.token_expired_s = ago
            elif ch.pushed_expired_s is None:
                ch.pushed_expired_s = ago
            notes.append(Note(NoteLevel.WARNING, f"{ch.label}: {what} expired {ago:.0f} s ago", ch.topic))

    def _server(self, msg: frames.Message, t: float, notes: list[Note]) -> None:
        ev, topic = msg.event, msg.topic
        if msg.kind is not None and self.vsn == frames.V1:
            self.binary_from_server_on_v1 += 1
        if ev == frames.PHX_REPLY:
            self._reply(msg, t, notes)
            return
        # phx_close/phx_error carry the join's join_ref as both refs; a 1.0.0 server sends only the ref.
        ref = (
            msg.join_ref
            if msg.join_ref is not None
            else (msg.ref if ev in (frames.PHX_CLOSE, frames.PHX_ERROR) else None)
        )
        ch = self.instance(topic, ref)
        if ev == frames.PHX_CLOSE and ref is None and ch is not None:
            # A 1.0.0 client that sends no join_ref gets phx_close without a ref. Right after a new join of
            # the topic it is the server closing the older join it still held (Phoenix's duplicate join).
            older = [
                o
                for o in self.instances(topic)
                if o is not ch and o.state != CLOSED and o.join_latency_ms is not None and o.seq < ch.seq
            ]
            if older and ch.state == JOINING:
                ch = older[-1]
        if ch is None:
            ch = self.channel(topic)
            if ch is None:
                return
            ch.state = JOINED  # pushes for a topic we never saw joined (capture started late)
        ch.received += 1
        payload = msg.payload if isinstance(msg.payload, dict) else {}
        if ev == frames.PHX_CLOSE:
            if ch is not self.current.get(topic):
                if ch.state not in (CLOSED, ERRORED):
                    ch.closed_by = "client" if ch.state == LEAVING else "server"
                    ch.state, ch.closed_at = CLOSED, t
                notes.append(
                    Note(NoteLevel.INFO, f"{topic}: server closed {ch.label}, an earlier join", topic)
                )
                return
            ch.closed_by = "server" if ch.state != LEAVING else "client"
            ch.closed_at = t
            last = ch.system[-1] if ch.system else None
            if last and last.status == "error" and ch.state != LEAVING:
                ch.reason = last.message
            ch.state = CLOSED
            level = NoteLevel.INFO if ch.closed_by == "client" else NoteLevel.WARNING
            why = f": {self.redactor.text(ch.reason)}" if ch.reason and ch.closed_by == "server" else ""
            notes.append(Note(level, f"{ch.label} closed (phx_close from server){why}", topic))
        elif ev == frames.PHX_ERROR:
            ch.state, ch.reason = ERRORED, f"phx_error {_short(payload)}"
            notes.append(Note(NoteLevel.WARNING, f"{ch.label} phx_error {_short(payload)}", topic))
        elif ev == frames.EV_SYSTEM:
            sm = SystemMessage(
                t,
                str(payload.get("extension", "")),
                str(payload.get("status", "")),
                str(payload.get("message", "")),
            )
            ch.system.append(sm)
            level = NoteLevel.WARNING if sm.status == "error" else NoteLevel.INFO
            notes.append(
                Note(
                    level,
                    f"system {ch.label} {sm.extension} {sm.status}: {self.redactor.text(sm.message)}",
                    topic,
                )
            )
        elif ev == frames.EV_PRESENCE_STATE:
            ch.presence = set(list(payload)[:10000])
            notes.append(Note(NoteLevel.INFO, f"presence {ch.label}: {len(ch.presence)} present", topic))
        elif ev == frames.EV_PRESENCE_DIFF:
            joins, leaves = payload.get("joins"), payload.get("leaves")
            if isinstance(leaves, dict):
                ch.presence.difference_update(leaves)
            if isinstance(joins, dict) and len(ch.presence) < 10000:
                ch.presence.update(joins)
        elif ev == frames.EV_POSTGRES_CHANGES or ev in ("INSERT", "UPDATE", "DELETE"):
            ch.postgres_changes += 1
        elif ev == frames.EV_BROADCAST:
            ch.broadcasts_received += 1

    def _reply(self, msg: frames.Message, t: float, notes: list[Note]) -> None:
        payload = msg.payload if isinstance(msg.payload, dict) else {}
        status = payload.get("status")
        response = payload.get("response")
        topic = msg.topic
        if topic == frames.PHOENIX:
            self.heartbeats.answered_one(msg.ref, t)
            return
        pending = self.pending.pop((topic, msg.ref), None) if msg.ref is not None else None
        if pending is None:
            return
        event, sent_at, ch = pending
        ch.received += 1
        reason = _reason(response)
        if event == frames.PHX_JOIN:
            ms = (t - sent_at) * 1000
            if ch.gave_up or ch is not self.current.get(topic):
                ch.join_latency_ms = ms  # the client had already moved on
                if status == "ok" and not ch.gave_up:
                    ch.joined_at = t  # joined, though the client had left or re-subscribed meanwhile
                    self._bindings(ch, response)
                notes.append(
                    Note(
                        NoteLevel.INFO,
                        f"{ch.label}: join reply ({status}) after {ms:.0f} ms, the client had "
                        "joined again already",
                        topic,
                    )
                )
            elif ms >= self.join_timeout_s * 1000 and ch.state == JOINING:
                ch.state, ch.join_latency_ms = ERRORED, ms  # the client reported TIMED_OUT already
                notes.append(
                    Note(
                        NoteLevel.WARNING,
                        f"{ch.label} join reply ({status}) came after {ms:.0f} ms, past the "
                        f"client's {self.join_timeout_s:g} s join timeout",
                        topic,
                    )
                )
            elif status == "ok":
                ch.state, ch.joined_at, ch.join_latency_ms = JOINED, t, ms
                self._bindings(ch, response)
                ids = (
                    f" (postgres_changes ids {', '.join(map(str, ch.binding_ids))})" if ch.binding_ids else ""
                )
                notes.append(Note(NoteLevel.INFO, f"{ch.label} joined in {ms:.0f} ms{ids}", topic))
            else:
                ch.state, ch.reason = ERRORED, reason or f"join reply status {status!r}"
                notes.append(
                    Note(
                        NoteLevel.WARNING,
                        f"{ch.label} join error after {ms:.0f} ms: {self.redactor.text(ch.reason)}",
                        topic,
                    )
                )
        elif event == frames.PHX_LEAVE:
            notes.append(Note(NoteLevel.INFO, f"{ch.label} leave acknowledged ({status})", topic))
        elif status != "ok":
            ch.push_errors.append((event, reason or str(status)))
            notes.append(
                Note(
                    NoteLevel.WARNING,
                    f"{ch.label} {event} rejected: {self.redactor.text(reason or str(status))}",
                    topic,
                )
            )

    @staticmethod
    def _bindings(ch: Channel, response: Any) -> None:
        pg = response.get("postgres_changes") if isinstance(response, dict) else None
        ch.server_bindings = [b for b in pg if isinstance(b, dict)] if isinstance(pg, list) else []
        ch.binding_ids = [b.get("id") for b in ch.server_bindings]

    # ------------------------------------------------------------------------------------ views

    def heartbeat_interval(self, configured: float | None) -> tuple[float, str]:
        """The client's heartbeat interval and where it comes from: its own heartbeats (from one gap on);
        else the one the user configured (rt_timers; None: none); else the known default of the client its
        frames reveal; else rt_timers' default."""
        learned = self.heartbeats.interval()
        if learned is not None and learned > 0:
            return learned, "its own heartbeats"
        if configured is not None:
            return configured, "rt_timers"
        if self.client_kind is None:
            return CLIENT_HEARTBEAT_S, "rt_timers"
        return CLIENT_HEARTBEAT_S, f"{self.client_kind}'s default"

    @property
    def ended_at(self) -> float | None:
        return self.closed.time if self.closed is not None else None

    @property
    def upstream_failed(self) -> bool:
        """Did the hop's upstream leg fail: refused (its answer to the hop was not 101) or not reached?"""
        return self.upstream_status not in (None, 101) or HopKind.UPSTREAM_FAILED in self.hop_counts

    @property
    def failed(self) -> bool:
        """Did the connection itself fail (as opposed to ending because the client was done)?"""
        if self.status is not None and self.status != 101:
            return True
        if self.upstream_failed:
            return True
        c = self.closed
        if c is None or not c.recorded:
            return False
        # by_client None with a code: the capture has the close handshake but not who began it (HTTP
        # Toolkit's HAR): a normal code then says nothing failed, as a HAR without a close says nothing.
        return not (c.by_client is not False and c.code in closecodes.CLEAN and "timeout" not in c.reason)

    def summary(self) -> dict[str, Any]:
        r = self.redactor
        return {
            "conn": self.conn,
            "url": r.url(self.url) if self.url else None,
            "upstream_url": r.url(self.upstream_url) if self.upstream_url else None,
            "status": self.status,
            "rejection": r.text(self.rejection) if self.rejection else None,
            "vsn": self.vsn,
            "client_vsn": self.client_vsn,
            "apikey_sent": self.apikey is not None,
            "frames_from_client": self.frames_from_client,
            "frames_from_server": self.frames_from_server,
            "decode_errors": self.decode_errors,
            "untracked_joins": self.dropped_channels,
            "heartbeats": {
                "sent": self.heartbeats.sent,
                "answered": self.heartbeats.answered,
                "rtt_max_ms": round(self.heartbeats.rtt_max_ms, 1),
                "max_gap_s": round(self.heartbeats.max_gap_s, 1),
            },
            "close": None
            if self.closed is None
            else {
                "code": self.closed.code,
                "reason": r.text(self.closed.reason),
                "by_client": self.closed.by_client,
            },
            "channels": [
                ch.summary() | {"topic": r.text(ch.topic), "reason": r.text(ch.reason) if ch.reason else None}
                for ch in self.channels.values()
            ],
        }


def _reason(response: Any) -> str | None:
    if isinstance(response, dict):
        reason = response.get("reason")
        if isinstance(reason, str):
            return reason
        return ", ".join(str(v) for v in response.values()) or None
    if isinstance(response, str):
        return response
    return None


def realtime_error(body: bytes | None) -> str | None:
    """The message of Realtime's upgrade refusal body, JSON {"error": "..."}; None if it is not one."""
    try:
        obj = json.loads((body or b"")[:2000].decode("utf-8", "replace"))
    except (ValueError, RecursionError):  # RecursionError: hostile nesting in a rejection body
        return None
    return obj["error"] if isinstance(obj, dict) and isinstance(obj.get("error"), str) else None


def rejection_text(body: bytes) -> str | None:
    """The `error` of Realtime's JSON rejection body, else the start of the body as text."""
    if not body:
        return None
    error = realtime_error(body)
    return error if error is not None else " ".join(body[:2000].decode("utf-8", "replace").split())[:200]
