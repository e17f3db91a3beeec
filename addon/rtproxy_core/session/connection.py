"""The Session: `feed` takes each event of the connection; here are the connection-level ones (the
client's upgrade request, the hop's upstream request, the handshake answers, hop events, the close,
capture errors), and frames go to the per-frame handling (messages.py)."""

from __future__ import annotations

import dataclasses

from .. import frames
from ..clip import clip
from ..events import (
    Closed,
    Event,
    Frame,
    FrameError,
    Handshake,
    Hop,
    Opened,
    PageEvent,
    Upstream,
    UpstreamHandshake,
)
from ..redact import jwt_expired
from .channel import CLOSED, ERRORED, JOINED, JOINING, LEAVING
from .limits import MAX_HEADERS, MAX_HISTORY, MAX_TEXT, MAX_URL, opt_key
from .messages import Messages, keyed
from .notes import Note, NoteLevel
from .pageview import PageView
from .upgrade import header, rejection_text, url_query


class Session(Messages):
    """One Realtime connection, fed its events in order: `feed(event)` returns the Notes worth logging."""

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
            why = clip(self.redactor.text(self.upstream_rejection or "(empty body)"))
            client = f" (the client got {self.status} already)" if self.status else ""
            notes.append(
                Note(
                    NoteLevel.WARNING,
                    f"upstream rejected the hop's upgrade: {ev.status} {why}{client}",
                    always=True,
                )
            )
        elif isinstance(ev, Hop):
            self._hop(ev, notes)
        elif isinstance(ev, Closed):
            self._closed(ev, notes)
        elif isinstance(ev, FrameError):
            self._frame_error(ev, notes)
        elif isinstance(ev, PageEvent):
            if self.page is None:
                self.page = PageView()
            if text := self.page.feed(ev):
                notes.append(Note(NoteLevel.INFO, text))
        for note in notes:  # one last pass over everything printed: a client may put a token anywhere
            note.text = self.redactor.text(note.text)
        return notes

    def _opened(self, ev: Opened, notes: list[Note]) -> None:
        self.url, self.opened_at = clip(ev.url, MAX_URL), ev.time
        q = url_query(ev.url)
        self.client_vsn = opt_key(q.get("vsn"))
        self.vsn = frames.vsn_family(q.get("vsn")) or frames.V1
        apikey = header(ev.headers, "x-api-key") or q.get("apikey") or None
        self.apikey = clip(apikey, MAX_URL) if apikey else None
        if self.apikey:
            self.apikey_expired_s = jwt_expired(self.apikey, ev.time)
        if self.client_vsn is not None:  # realtime-py never sends vsn; realtime-js always does
            self.client_kind = "realtime-js"
        key = self.redactor.secret(self.apikey, ev.time) if self.apikey else "none"
        notes.append(
            Note(
                NoteLevel.INFO,
                f"connect {self.redactor.url(ev.url)} "
                f"(vsn {clip(self.client_vsn or 'absent → 1.0.0')}, apikey {key})",
                always=True,
            )
        )

    def _upstream(self, ev: Upstream, notes: list[Note]) -> None:
        self.upstream_url = clip(ev.url, MAX_URL)
        q = url_query(ev.url)
        self.upstream_apikey = bool(q.get("apikey") or header(ev.headers, "x-api-key"))
        self.upstream_vsn = opt_key(q.get("vsn"))
        # What the server negotiates is decided by the URL it receives, not the client's.
        self.vsn = frames.vsn_family(q.get("vsn")) or frames.V1
        notes.append(Note(NoteLevel.INFO, f"upstream {self.redactor.url(ev.url)}", always=True))

    def _handshake(self, ev: Handshake, notes: list[Note]) -> None:
        self.status = ev.status
        if ev.status == 101:
            self.upgraded_at = ev.time
            asked = frames.vsn_family(self.client_vsn) or self.client_vsn
            if asked == self.vsn:
                notes.append(Note(NoteLevel.INFO, f"upgraded (101), vsn {self.vsn}", always=True))
            else:
                notes.append(
                    Note(
                        NoteLevel.WARNING,
                        f"upgraded (101); the client speaks vsn {clip(str(asked))} but the upstream URL "
                        f"asks for {clip(self.upstream_vsn or 'none (so 1.0.0)')}",
                        always=True,
                    )
                )
            return
        self.rejection = rejection_text(ev.body)
        self.rejection_headers = [(clip(k, 100), clip(v, MAX_TEXT)) for k, v in ev.headers[:MAX_HEADERS]]
        why = clip(self.redactor.text(self.rejection)) if self.rejection else "(empty body)"
        notes.append(Note(NoteLevel.WARNING, f"upgrade rejected: {ev.status} {why}", always=True))

    def _hop(self, ev: Hop, notes: list[Note]) -> None:
        self.hops.append(bounded_hop(ev))
        count = self.hop_counts[ev.what] = self.hop_counts.get(ev.what, 0) + 1
        if ev.frame is not None and ev.frame.from_client:
            try:
                msg = frames.decode(ev.frame.data, binary=ev.frame.binary, from_client=True)
            except frames.DecodeError:
                msg = None
            if msg is not None:
                keyed(msg)
            if msg is not None and msg.event == frames.PHX_JOIN:
                jr = msg.join_ref or msg.ref
                ch = self._by_ref.get((msg.topic, jr)) if jr is not None else None
                if ch is None:  # dropped before the tracker saw it: the client did send it
                    self._client(msg, ev.frame.time, notes)
                    ch = self.current.get(msg.topic)
                if ch is not None:
                    ch.join_dropped += 1
        if count <= 3:  # the first few of a kind are logged; the counts go on
            notes.append(Note(NoteLevel.WARNING, f"hop: {ev.what}: {clip(self.redactor.text(ev.detail))}"))

    def _closed(self, ev: Closed, notes: list[Note]) -> None:
        if len(ev.reason) > MAX_TEXT or (ev.error and len(ev.error) > MAX_TEXT):
            ev = dataclasses.replace(
                ev, reason=clip(ev.reason, MAX_TEXT), error=ev.error and clip(ev.error, MAX_TEXT)
            )
        self.closed = ev
        if ev.code is None and self.status != 101:
            return  # a failed handshake was already reported
        who = {True: "client", False: "server", None: "network"}[ev.by_client]
        code = "no close frame" if ev.code is None else str(ev.code)
        reason = f" ({clip(self.redactor.text(ev.reason))})" if ev.reason else ""
        error = f", {clip(self.redactor.text(ev.error))}" if ev.error else ""
        dur = f" after {ev.time - self.upgraded_at:.1f} s" if self.upgraded_at else ""
        if not ev.recorded:
            notes.append(
                Note(
                    NoteLevel.INFO, f"connection ended{dur} (the capture records no close frame)", always=True
                )
            )
        elif ev.code is None and ev.ended_first in ("client", "server"):
            notes.append(
                Note(
                    NoteLevel.INFO,
                    f"closed by network: no close frame (the {ev.ended_first}'s side ended "
                    f"first){dur}{error}",
                    always=True,
                )
            )
        else:
            notes.append(Note(NoteLevel.INFO, f"closed by {who}: {code}{reason}{dur}{error}", always=True))
        if self.heartbeats.sent:
            notes.append(Note(NoteLevel.INFO, self.heartbeats.summary(), always=True))
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
            text = clip(ev.text, 200)
            why = text if text in dropped or len(dropped) < MAX_HISTORY else "other"
            dropped[why] = dropped.get(why, 0) + 1
            if sum(dropped.values()) == 1:
                notes.append(Note(NoteLevel.WARNING, f"capture: a frame was left out ({why})"))
            return
        self.error_frames.append(
            ev if len(ev.text) <= MAX_TEXT else dataclasses.replace(ev, text=clip(ev.text, MAX_TEXT))
        )
        self.error_frame_count += 1
        if self.error_frame_count <= 3:
            notes.append(Note(NoteLevel.WARNING, f"the browser recorded a WebSocket error: {clip(ev.text)}"))


def bounded_hop(ev: Hop) -> Hop:
    """A hop event as kept in `hops`: its detail clipped, its frame's data cut to MAX_TEXT bytes (what
    the rules read of a kept hop is its kind, detail, time and the frame's direction)."""
    if len(ev.detail) <= MAX_TEXT and (ev.frame is None or len(ev.frame.data) <= MAX_TEXT):
        return ev
    frame = ev.frame and dataclasses.replace(ev.frame, data=ev.frame.data[:MAX_TEXT])
    return dataclasses.replace(ev, detail=clip(ev.detail, MAX_TEXT), frame=frame)
