"""What a Session knows about its connection: the state its events build, the channel instances by
join (made, evicted when the cap is full, looked up by the refs a frame names), and the views the rules
and reports read (failed, upstream_failed, heartbeat_interval, summary)."""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Any

from .. import closecodes, frames
from ..events import Closed, FrameError, Hop, HopKind
from ..redact import Redactor
from .channel import CLOSED, ERRORED, Channel
from .heartbeats import Heartbeats
from .limits import CLIENT_HEARTBEAT_S, CLIENT_JOIN_TIMEOUT_S, MAX_CHANNELS, MAX_HISTORY, MAX_PENDING
from .pageview import PageView

if TYPE_CHECKING:
    from ..rules import Finding


class SessionState:
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
        self.presence_keys = 0  # presence keys kept, all channels together (≤ MAX_PRESENCE)
        self.binding_count = 0  # postgres_changes bindings kept, client's and server's (≤ MAX_BINDINGS)
        # Pushes the server answers, awaiting that answer (heartbeats are in self.heartbeats).
        self.pending: OrderedDict[tuple[str, str], tuple[str, float, Channel]] = OrderedDict()
        # Pushes sent with "ref": null (supabase-kt 3.0 joins), oldest first: Phoenix echoes a push's ref,
        # so a reply with a null ref answers the oldest null-ref push of its topic.
        self.pending_null: deque[tuple[str, float, Channel]] = deque(maxlen=MAX_PENDING)
        self.heartbeats = Heartbeats()
        self.hops: deque[Hop] = deque(maxlen=MAX_HISTORY)
        self.hop_counts: dict[str, int] = {}
        self.frames_from_client = 0
        self.frames_from_server = 0
        self.last_client_frame_at: float | None = None
        self.last_server_frame_at: float | None = None
        # The longest stretch without a client frame since the upgrade, (from, to): what the server's idle
        # timer sees (it restarts on any client data).
        self.client_silence: tuple[float, float] | None = None
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
        self.page: PageView | None = None  # what the page's probe saw of this socket (rt_page_probe)
        # The server's binary broadcasts, (time, topic, user event), the newest kept: what a page that
        # got them as Blob lost.
        self.binary_broadcasts: deque[tuple[float, str, str]] = deque(maxlen=MAX_HISTORY)
        self.binary_broadcast_count = 0
        self.findings: list[Finding] = []  # rules.Finding, filled by diagnosis.Diagnoser
        self.fired: set[tuple[str, str | None]] = set()  # (code, topic) reported (diagnosis.Diagnoser)
        self.checked_at: float | None = None  # event time the rules last ran

    # ------------------------------------------------------------------------------------ channel instances

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
            self.presence_keys -= len(gone.presence)
            self.binding_count -= len(gone.bindings) + len(gone.server_bindings)
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

    # ------------------------------------------------------------------------------------ views

    def heartbeat_interval(self, configured: float | None) -> tuple[float, str]:
        """The client's heartbeat interval and where it comes from: its own heartbeats, once two of its gaps
        agree, or one agrees with the interval expected (Heartbeats.interval); else the one the user
        configured (rt_timers; None: none); else the known default of the client its frames reveal; else
        rt_timers' default."""
        learned = self.heartbeats.interval(CLIENT_HEARTBEAT_S if configured is None else configured)
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
