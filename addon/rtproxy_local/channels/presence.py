"""Presence: presence_state after a join, track / untrack pushes and the presence_diff they send, within
the client's and the tenant's presence rate limits."""

from __future__ import annotations

import base64
import os
from typing import Any

from rtproxy_core import frames
from rtproxy_core.catalog import say

from ..limits import PresenceWindow, over_payload_quota
from ..state import Member, Ordered
from .base import HubBase
from .reasons import DATABASE, POLICIES


class Presence(HubBase):
    """handle_in("presence") and handle_info(:sync_presence)."""

    def _presence_state(self, group: tuple[str, bool, str]) -> dict[str, Any]:
        state: dict[str, Any] = {}
        for r in self._groups.get(group, []):
            if r.presence_meta is not None:
                state.setdefault(r.presence_key, {"metas": []})["metas"].append(r.presence_meta)
        return state

    def _sync_presence(self, m: Member) -> None:
        """handle_info(:sync_presence) -> PresenceHandler.sync/1: presence_state, within the rate limit."""
        if not m.presence_read or m.conn.joins.get(m.topic) is not m:
            return
        if not self._presence_event(m):
            self._shutdown(m, say("system.too_many_presence_messages"))
            return
        m.conn.push(
            m.topic, frames.EV_PRESENCE_STATE, self._presence_state(m.group), join_ref=m.socket_join_ref
        )

    def _presence_event(self, m: Member) -> bool:
        """limit_presence_event/1: the tenant's presence events per second, counted when allowed."""
        rate, limit = self.rate(m.conn.tenant, "presence"), self.cfg.max_presence_events_per_second
        if limit is not None and rate.avg > limit:
            return False
        rate.add()
        return True

    def _presence(self, m: Member, msg: frames.Message) -> None:
        """handle_in("presence") -> PresenceHandler.handle/3."""
        cfg, p = self.cfg, msg.payload
        if m.private and cfg.database in DATABASE:
            if cfg.database.startswith("rpc"):
                self._crash(m, 'WithClauseError in handle_in("presence")')
            else:  # UnableToHandlePresence
                m.conn.reply(m.topic, m.socket_join_ref, msg.ref, "error", {})
            return
        if not isinstance(p, dict) or "event" not in p:
            m.conn.reply(m.topic, m.socket_join_ref, msg.ref, "ok", {})  # handle(_, _, socket): ok
            return
        if not isinstance(p["event"], str):  # String.downcase/2 raises
            self._crash(m, "FunctionClauseError in PresenceHandler.handle/3")
            return
        if m.presence_window is None:
            m.presence_window = PresenceWindow()
        if not m.presence_window.allow(cfg.client_presence_max_calls, cfg.client_presence_window_ms):
            self._shutdown(m, say("system.client_presence_rate_limit"))
            return
        event = p["event"].lower()
        if event == "track":
            if m.private and cfg.policies in POLICIES:
                m.conn.reply(m.topic, m.socket_join_ref, msg.ref, "error", {})
                return
            self._track(m, msg, p.get("payload", {}))
        elif event == "untrack":
            m.conn.reply(m.topic, m.socket_join_ref, msg.ref, "ok", {})
            old, m.presence_meta, m.track_payload = m.presence_meta, None, None
            if old is not None:
                self._presence_diff(m.group, {}, {m.presence_key: {"metas": [old]}})
        else:  # UnknownPresenceEvent: {:reply, :error, socket}
            m.conn.reply(m.topic, m.socket_join_ref, msg.ref, "error", {})

    def _track(self, m: Member, msg: frames.Message, data: Any) -> None:
        """PresenceHandler.track/2. Enabling presence with a track sends no presence_state."""
        if not isinstance(data, dict):
            m.conn.reply(
                m.topic,
                m.socket_join_ref,
                msg.ref,
                "error",
                {"reason": say("reply.presence_payload_not_a_map")},
            )
            return
        if m.presence_meta is not None and data == m.track_payload:
            m.conn.reply(m.topic, m.socket_join_ref, msg.ref, "ok", {})  # no payload change: no diff
            return
        if over_payload_quota(data, self.cfg.max_payload_size_in_kb):
            self._shutdown(m, say("system.track_size_exceeded"))
            return
        if not self._presence_event(m):
            self._shutdown(m, say("system.too_many_presence_messages"))
            return
        m.conn.reply(m.topic, m.socket_join_ref, msg.ref, "ok", {})
        old = m.presence_meta
        meta = Ordered({"phx_ref": base64.b64encode(os.urandom(12)).decode()})  # atom keys first
        if old is not None:
            meta["phx_ref_prev"] = old["phx_ref"]  # Phoenix.Presence.update
        meta.update({k: data[k] for k in sorted(data)})
        m.presence_meta, m.track_payload = meta, data
        if m.presence_read is None:  # a private channel's read is authorized now, checked at delivery
            m.presence_via_channel = True
        m.presence_enabled, m.presence_read = True, True
        leaves = {m.presence_key: {"metas": [old]}} if old is not None else {}
        self._presence_diff(m.group, {m.presence_key: {"metas": [meta]}}, leaves)
