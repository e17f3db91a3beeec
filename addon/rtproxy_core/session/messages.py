"""Session's per-frame half: each decoded Phoenix message moves the channel instance it names (joins,
pushes, leaves, replies paired with their push, phx_close/phx_error, system messages, presence,
postgres_changes bindings) and counts what the rules read; heartbeats go to Heartbeats."""

from __future__ import annotations

import json
from typing import Any

from .. import frames
from ..clip import clip
from ..events import Frame
from ..redact import jwt_claims, jwt_expired
from .channel import CLOSED, ERRORED, JOINED, JOINING, LEAVING, Channel, SystemMessage
from .limits import (
    DUPLICATE_WINDOW_S,
    GAVE_UP_MIN_S,
    MAX_BINDING_KEYS,
    MAX_BINDINGS,
    MAX_CHANNELS,
    MAX_PENDING,
    MAX_PRESENCE,
    MAX_TEXT,
    key,
    opt_key,
)
from .notes import Note, NoteLevel
from .state import SessionState


class Messages(SessionState):
    """The frame handlers Session.feed reaches through `_frame`."""

    def _frame(self, f: Frame, notes: list[Note]) -> None:
        self.last_frame_at = f.time
        if f.binary:
            self.binary_frames[f.from_client] += 1
        if f.from_client:
            since = self.last_client_frame_at or self.upgraded_at
            if since is not None and (
                self.client_silence is None
                or f.time - since > self.client_silence[1] - self.client_silence[0]
            ):
                self.client_silence = (since, f.time)
            self.frames_from_client += 1
            self.last_client_frame_at = f.time
        else:
            self.frames_from_server += 1
            self.last_server_frame_at = f.time
        try:
            # The tracker counts broadcasts; it parses their user payload only for the debug lines.
            msg = frames.decode(f.data, binary=f.binary, from_client=f.from_client, lazy=not self.debug)
        except frames.DecodeError as e:
            self.decode_errors += 1
            if self.decode_errors <= 3:
                side = "client" if f.from_client else "server"
                notes.append(
                    Note(NoteLevel.WARNING, f"undecodable {side} frame ({len(f.data)} bytes): {clip(str(e))}")
                )
            return
        keyed(msg)
        if self.debug:
            arrow = "→" if f.from_client else "←"
            payload = _short(self.redactor.payload(msg.payload, f.time))
            kind = f" kind {msg.kind}" if msg.kind is not None else ""
            notes.append(
                Note(
                    NoteLevel.DEBUG,
                    f"{arrow} {clip(msg.topic)} {clip(msg.event)} ref={clip(str(msg.ref))} "
                    f"join_ref={clip(str(msg.join_ref))}{kind} {payload}",
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
            self.pending_null.append((event, t, ch))
            return
        self.pending[(ch.topic, ref)] = (event, t, ch)
        if len(self.pending) > MAX_PENDING:
            self.pending.popitem(last=False)

    def _client(self, msg: frames.Message, t: float, notes: list[Note]) -> None:
        ev, topic = msg.event, msg.topic
        if topic == frames.PHOENIX and ev == frames.HEARTBEAT:
            # realtime-js starts its heartbeat timer when the socket opens (@supabase/phoenix 0.4.5
            # Socket.onConnOpen -> resetHeartbeat: setTimeout(sendHeartbeat, heartbeatIntervalMs)): its
            # first heartbeat is one interval after the upgrade, a gap like the others. realtime-py sends
            # its first at once (realtime/_async/client.py _heartbeat: send, then sleep).
            opened = self.upgraded_at if self.client_kind == "realtime-js" else None
            self.heartbeats.sent_one(msg.ref, t, opened)
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
        if prev is not None and (prev.join_ref != join_ref or join_ref is None):
            # (Two joins without any ref are two joins: only a ref can say a join was sent again.)
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
        payload = frames.as_object(msg.payload)
        config = frames.as_object(payload.get("config"))
        ch.private = bool(config.get("private"))
        broadcast = frames.as_object(config.get("broadcast"))
        if "broadcast" in config and config["broadcast"] is None and self.client_kind is None:
            self.client_kind = "realtime-py"  # its join config carries "broadcast": null
        ch.ack = broadcast.get("ack") in (True, "true")
        pg = config.get("postgres_changes")
        self._keep_bindings(ch, "bindings", pg)
        extras = [
            w
            for w, on in (("private", ch.private), (f"{len(ch.bindings)} postgres_changes", ch.bindings))
            if on
        ]
        again = f" (join #{ch.seq})" if ch.seq > 1 else ""
        notes.append(
            Note(
                NoteLevel.INFO,
                f"join {clip(ch.topic)} ref={clip(str(msg.ref))}{again}"
                + (f" [{', '.join(extras)}]" if extras else ""),
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
        payload = frames.as_object(msg.payload)
        if ev == frames.PHX_CLOSE:
            if ch is not self.current.get(topic):
                if ch.state not in (CLOSED, ERRORED):
                    ch.closed_by = "client" if ch.state == LEAVING else "server"
                    ch.state, ch.closed_at = CLOSED, t
                notes.append(
                    Note(NoteLevel.INFO, f"{clip(topic)}: server closed {ch.label}, an earlier join", topic)
                )
                return
            ch.closed_by = "server" if ch.state != LEAVING else "client"
            ch.closed_at = t
            last = ch.system[-1] if ch.system else None
            if last and last.status == "error" and ch.state != LEAVING:
                ch.reason = last.message
            ch.state = CLOSED
            level = NoteLevel.INFO if ch.closed_by == "client" else NoteLevel.WARNING
            why = f": {clip(self.redactor.text(ch.reason))}" if ch.reason and ch.closed_by == "server" else ""
            notes.append(Note(level, f"{ch.label} closed (phx_close from server){why}", topic))
        elif ev == frames.PHX_ERROR:
            ch.state, ch.reason = ERRORED, f"phx_error {_short(payload)}"
            notes.append(Note(NoteLevel.WARNING, f"{ch.label} phx_error {_short(payload)}", topic))
        elif ev == frames.EV_SYSTEM:
            sm = SystemMessage(
                t,
                clip(str(payload.get("extension", "")), 100),
                clip(str(payload.get("status", "")), 100),
                clip(str(payload.get("message", "")), MAX_TEXT),
            )
            ch.system.append(sm)
            level = NoteLevel.WARNING if sm.status == "error" else NoteLevel.INFO
            notes.append(
                Note(
                    level,
                    f"system {ch.label} {clip(sm.extension)} {clip(sm.status)}: "
                    f"{clip(self.redactor.text(sm.message))}",
                    topic,
                )
            )
        elif ev == frames.EV_PRESENCE_STATE:
            self._presence(ch, None, payload)
            notes.append(Note(NoteLevel.INFO, f"presence {ch.label}: {len(ch.presence)} present", topic))
        elif ev == frames.EV_PRESENCE_DIFF:
            joins, leaves = payload.get("joins"), payload.get("leaves")
            self._presence(
                ch, leaves if isinstance(leaves, dict) else {}, joins if isinstance(joins, dict) else {}
            )
        elif ev == frames.EV_POSTGRES_CHANGES or ev in ("INSERT", "UPDATE", "DELETE"):
            ch.postgres_changes += 1
            # The change itself: in `data` since postgres_changes (2022), the payload itself before.
            change = frames.as_object(payload.get("data")) if ev == frames.EV_POSTGRES_CHANGES else payload
            errors = change.get("errors")
            if isinstance(errors, list) and errors:
                ch.change_error_count += 1
                ch.change_errors.append(
                    (clip(str(change.get("type") or ev), 100), tuple(str(e)[:200] for e in errors[:5]))
                )
        elif ev == frames.EV_BROADCAST:
            ch.broadcasts_received += 1
            if msg.kind is not None:
                self.binary_broadcast_count += 1
                self.binary_broadcasts.append((t, topic, str(payload.get("event", ""))[:100]))

    def _presence(self, ch: Channel, leaves: dict[str, Any] | None, joins: dict[str, Any]) -> None:
        """presence_state (leaves None: the whole set anew) or presence_diff; the keys kept are bounded
        for the whole connection (MAX_PRESENCE), each in key() form."""
        before = len(ch.presence)
        if leaves is None:
            ch.presence = set()
        else:
            ch.presence.difference_update(key(k) for k in leaves)
        room = MAX_PRESENCE - (self.presence_keys - before + len(ch.presence))
        for k in joins:
            if room <= 0:
                break
            if (kk := key(k)) not in ch.presence:
                ch.presence.add(kk)
                room -= 1
        self.presence_keys += len(ch.presence) - before

    def _pop_null(self, topic: str) -> tuple[str, float, Channel] | None:
        """The oldest push of `topic` sent with a null ref, taken: the one a null-ref reply answers."""
        for i, item in enumerate(self.pending_null):
            if item[2].topic == topic:
                del self.pending_null[i]
                return item
        return None

    def _reply(self, msg: frames.Message, t: float, notes: list[Note]) -> None:
        payload = frames.as_object(msg.payload)
        status = payload.get("status")
        response = payload.get("response")
        topic = msg.topic
        if topic == frames.PHOENIX:
            self.heartbeats.answered_one(msg.ref, t)
            return
        pending = self.pending.pop((topic, msg.ref), None) if msg.ref is not None else self._pop_null(topic)
        if pending is None:
            return
        event, sent_at, ch = pending
        ch.received += 1
        reason = _reason(response)
        if reason is not None:
            reason = clip(reason, MAX_TEXT)
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
                        f"{ch.label}: join reply ({clip(str(status))}) after {ms:.0f} ms, the client had "
                        "joined again already",
                        topic,
                    )
                )
            elif ms >= self.join_timeout_s * 1000 and ch.state == JOINING:
                ch.state, ch.join_latency_ms = ERRORED, ms  # the client reported TIMED_OUT already
                notes.append(
                    Note(
                        NoteLevel.WARNING,
                        f"{ch.label} join reply ({clip(str(status))}) came after {ms:.0f} ms, past the "
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
                ch.state, ch.reason = ERRORED, reason or clip(f"join reply status {status!r}", MAX_TEXT)
                notes.append(
                    Note(
                        NoteLevel.WARNING,
                        f"{ch.label} join error after {ms:.0f} ms: {clip(self.redactor.text(ch.reason))}",
                        topic,
                    )
                )
        elif event == frames.PHX_LEAVE:
            notes.append(Note(NoteLevel.INFO, f"{ch.label} leave acknowledged ({clip(str(status))})", topic))
        elif status != "ok":
            ch.push_errors.append((event, reason or clip(str(status), MAX_TEXT)))
            notes.append(
                Note(
                    NoteLevel.WARNING,
                    f"{ch.label} {clip(event)} rejected: {clip(self.redactor.text(reason or str(status)))}",
                    topic,
                )
            )

    def _bindings(self, ch: Channel, response: Any) -> None:
        pg = response.get("postgres_changes") if isinstance(response, dict) else None
        self._keep_bindings(ch, "server_bindings", pg)
        ch.binding_ids = [b.get("id") for b in ch.server_bindings]

    def _keep_bindings(self, ch: Channel, which: str, pg: Any) -> None:
        """Set the channel's client (`bindings`) or server (`server_bindings`) postgres_changes list, as
        bounded_bindings keeps it, within what is left of the connection's MAX_BINDINGS."""
        old = len(getattr(ch, which))
        room = max(0, MAX_BINDINGS - (self.binding_count - old))
        kept = bounded_bindings(pg[:room] if isinstance(pg, list) else None)
        setattr(ch, which, kept)
        self.binding_count += len(kept) - old


def keyed(msg: frames.Message) -> None:
    """The message's refs, topic and event in the form the Session keeps and matches them in (limits.key):
    the same function for a push and its reply, so they still pair."""
    msg.topic, msg.event = key(msg.topic), key(msg.event)
    msg.ref, msg.join_ref = opt_key(msg.ref), opt_key(msg.join_ref)


def _bounded_value(value: Any) -> Any:
    if isinstance(value, str):
        return key(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value if not isinstance(value, int) or abs(value) < 2**63 else clip(str(value), 64)
    return {
        "clipped": clip(_short(value, MAX_TEXT), MAX_TEXT)
    }  # not a string, as the rules read it; a fixed size


def bounded_bindings(pg: Any) -> list[dict[str, Any]]:
    """A postgres_changes list as kept: bindings of MAX_BINDING_KEYS fields, strings in key()
    form (the client's and the server's through the same function, so they compare as before)."""
    if not isinstance(pg, list):
        return []
    return [
        {key(k): _bounded_value(v) for k, v in list(b.items())[:MAX_BINDING_KEYS]}
        for b in pg
        if isinstance(b, dict)
    ]


def _short(value: Any, limit: int = 160) -> str:
    text = json.dumps(frames.jsonable(value), ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _reason(response: Any) -> str | None:
    if isinstance(response, dict):
        reason = response.get("reason")
        if isinstance(reason, str):
            return reason
        return ", ".join(str(v) for v in response.values()) or None
    if isinstance(response, str):
        return response
    return None
