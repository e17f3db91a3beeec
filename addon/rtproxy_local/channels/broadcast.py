"""Broadcast: a client's broadcast push (text, kind 3 user push, kind 0 binary push) delivered to its
topic group as each recipient's serializer writes it, with the ack and the rate and size limits."""

from __future__ import annotations

from typing import Any

from rtproxy_core import frames
from rtproxy_core.catalog import say

from ..limits import Atom, over_payload_quota
from ..state import FRAGMENT, Member
from .base import HubBase
from .reasons import DATABASE, POLICIES

# V1 subscribers of a kind-0 broadcast: Jason meets the {:binary, data} tuple and lib/realtime/logs.ex's
# Tuple encoder splices inspect text into the frame, which is then not JSON.
_TUPLE_ENCODED = '%{error: "unable to parse response"}'


class Broadcast(HubBase):
    """handle_in("broadcast"): the push, its recipients in the topic group, the ack."""

    def _recipients(self, m: Member) -> list[Member]:
        return [r for r in self._groups.get(m.group, []) if r is not m or m.self_broadcast]

    def _broadcast(self, m: Member, msg: frames.Message, raw: str | bytes) -> None:
        """BroadcastHandler.handle/3 and MessageDispatcher.dispatch/3."""
        cfg = self.cfg
        if m.private and cfg.database in DATABASE:
            if cfg.database.startswith("rpc"):  # a 3-tuple error the with/else does not match
                self._crash(m, 'WithClauseError in handle_in("broadcast")')
            return  # UnableToHandleBroadcast: logged, no reply, not sent
        if m.private and cfg.policies in POLICIES:
            return  # the write policy check failed: logged, not sent, no reply
        self.rate(m.conn.tenant, "events").add()  # increment_rate_counter/1
        if msg.kind == frames.USER_PUSH:
            send, term = self._user_broadcast(m, raw)
        elif msg.kind == frames.PUSH:  # {:binary, data}: fastlaned as kind 2 to V2 sockets
            assert isinstance(raw, bytes)  # a kind is a binary frame's
            data = raw[5 + sum(raw[1:5]) :]
            send, term = self._binary_broadcast(m, data), (Atom("binary"), data)
        else:
            payload = msg.payload
            send, term = (lambda r: r.conn.push(r.topic, frames.EV_BROADCAST, payload)), payload
        # (a kind-3 or kind-0 payload is a tuple, a text one a map or, from a broken client, anything)
        recipients = self._recipients(m)
        if not isinstance(term, (tuple, dict)):
            # V1JSONSerializer writes any payload; V2Serializer.fastlane!/1 raises on a non-map, inside
            # the sender's dispatch: its channel crashes (phx_error, no ack).
            for r in recipients:
                if r.conn.vsn != frames.V1:
                    self._crash(m, "ArgumentError in V2Serializer.fastlane!/1")
                    return
                send(r)
            recipients = []
        too_big = isinstance(term, (tuple, dict)) and over_payload_quota(term, cfg.max_payload_size_in_kb)
        limited = []
        if not too_big:
            for r in recipients:
                send(r)
                if self._delivered(r):
                    limited.append(r)
        if m.ack and m.conn.joins.get(m.topic) is m:
            if too_big:  # {:reply, {:error, :payload_size_exceeded}, socket}: the response is a string
                m.conn.reply(m.topic, m.socket_join_ref, msg.ref, "error", say("reply.payload_size_exceeded"))
            else:
                m.conn.reply(m.topic, m.socket_join_ref, msg.ref, "ok", {})
        for r in limited:  # each channel handles its :update_rate_counter after what it was doing
            if r.conn.joins.get(r.topic) is r:
                self._shutdown(r, say("system.too_many_messages"))

    def _delivered(self, r: Member) -> bool:
        """handle_info(:update_rate_counter): every delivery counts against the tenant's events/s; True
        if the recipient is to stop ("Too many messages per second")."""
        rate = self.rate(r.conn.tenant, "events")
        rate.add()
        return rate.triggered

    def _user_broadcast(self, m: Member, raw: str | bytes) -> tuple[Any, tuple[Any, ...]]:
        """A kind-3 push: relayed as kind 4 with the sender's bytes (V2Serializer.fastlane!/1), its meta
        dropped (build_broadcast/2 ignores it) and enc normalized to 0/1; JSON payloads reach V1 sockets
        as a broadcast embedding the bytes (UserBroadcast.convert_to_json_broadcast/1)."""
        assert isinstance(raw, (bytes, bytearray))
        jr, rf, tl, ul, ml, enc = raw[1:7]
        pos = 7 + jr + rf
        topic = bytes(raw[pos : pos + tl])
        user_event = bytes(raw[pos + tl : pos + tl + ul])
        meta = bytes(raw[pos + tl + ul : pos + tl + ul + ml])
        body = bytes(raw[pos + tl + ul + ml :])
        is_json = enc != frames.ENC_BINARY  # decode_binary/1: "if == 0, :binary, else :json"
        kind4 = bytes([frames.USER_BROADCAST, tl, ul, 0, 1 if is_json else 0]) + topic + user_event + body
        metadata = frames._loads(meta.decode()) if ml else {}  # frames.decode checked it

        def send(r: Member) -> None:
            if r.conn.vsn == frames.V2:
                r.conn.push_bytes(kind4)
            elif is_json:  # V1 sockets cannot carry binary user payloads: skipped
                r.conn.push_with_fragment(
                    r.topic,
                    frames.EV_BROADCAST,
                    {
                        "event": user_event.decode("utf-8", "replace"),
                        "payload": FRAGMENT,
                        "type": "broadcast",
                    },
                    body.decode("utf-8", "replace"),
                )

        return send, (user_event, Atom("json" if is_json else "binary"), body, metadata)

    @staticmethod
    def _binary_broadcast(m: Member, data: bytes) -> Any:
        def send(r: Member) -> None:
            if r.conn.vsn == frames.V2:
                r.conn.push_bytes(frames.encode_broadcast(r.topic, "broadcast", data))
            else:
                r.conn.push_text(
                    '{"ref":null,"event":"broadcast","payload":'
                    + _TUPLE_ENCODED
                    + ',"topic":'
                    + frames._dumps(r.topic)
                    + "}"
                )

        return send
