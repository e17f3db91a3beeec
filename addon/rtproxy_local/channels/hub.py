"""Hub: the local server's channels, taking each decoded client frame as Phoenix's socket does."""

from __future__ import annotations

from rtproxy_core import frames
from rtproxy_core.catalog import say

from ..state import Conn
from .base import log
from .broadcast import Broadcast
from .joins import Joins


class Hub(Joins, Broadcast):
    """The channels of every socket of the local server (server.py owns the sockets)."""

    @staticmethod
    def accepts(conn: Conn, msg: frames.Message) -> bool:
        """Does the socket's serializer decode this frame? Realtime drops the others silently (socket.ex
        handle_in/2 rescues the decode error)."""
        if conn.vsn == frames.V1:
            return msg.shape == frames.OBJECT
        return msg.shape == frames.ARRAY or msg.kind in (frames.PUSH, frames.USER_PUSH)

    async def handle(self, conn: Conn, msg: frames.Message, raw: str | bytes) -> None:
        """Phoenix.Socket.__in__/2 and handle_in/4, as Realtime's fork runs them."""
        if msg.topic == frames.PHOENIX and msg.event == frames.HEARTBEAT:
            if not self.cfg.swallow_heartbeats:
                conn.reply(frames.PHOENIX, None, msg.ref, "ok", {})
            return
        m = conn.joins.get(msg.topic)
        if msg.event == frames.PHX_JOIN:
            await self._join(conn, msg)
            return
        if m is None:
            if msg.event == frames.PHX_LEAVE:  # leaving a topic that is not joined: ok anyway
                conn.reply(msg.topic, msg.join_ref, msg.ref, "ok", {})
            else:  # encode_ignore/2: no join_ref
                conn.reply(msg.topic, None, msg.ref, "error", {"reason": say("join.unmatched_topic")})
            return
        if msg.event == frames.PHX_LEAVE:
            # The fork kept this check for leaves: a stale leave raced a server close and gets nothing.
            if m.join_ref not in (msg.join_ref, None):
                log.debug("conn %d: ignored phx_leave for stale join_ref on %s", conn.id, msg.topic)
                return
            conn.reply(m.topic, m.socket_join_ref, msg.ref, "ok", {})
            self._stop(m)
            return
        # Realtime's Phoenix fork (branch v1.8-no-drop-missing-join-refs) delivers a push whatever its
        # join_ref: stale or missing. Upstream Phoenix 1.8.3+ drops them (socket.ex handle_in/4).
        if msg.event == frames.EV_BROADCAST:
            self._broadcast(m, msg, raw)
        elif msg.event == frames.EV_PRESENCE:
            self._presence(m, msg)
        elif msg.event == frames.EV_ACCESS_TOKEN:
            self._access_token(m, msg.payload)
        else:  # handle_in(type, payload, socket): counted, logged at info, no reply
            self.rate(conn.tenant, "events").add()
            log.debug("conn %d: ignored %r on %s", conn.id, msg.event, msg.topic)
