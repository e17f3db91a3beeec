"""Channels of the local Realtime server: joins, broadcast, presence, access tokens, postgres_changes fan-out.

No sockets here: a Conn is the server's handle on one open WebSocket (its vsn, its connect-time token and
a queue of outgoing frames that server.py drains in order); server.py feeds decoded client frames to
Hub.handle one at a time, awaiting each, because Phoenix's socket process handles a `phx_join`
synchronously: while a join sleeps its error backoff, the socket answers nothing else.

Wire details follow Phoenix/Realtime (realtime-protocol.md §2.5, §3, §5): replies carry the push's
join_ref/ref; channel pushes (system, presence_state) carry the join_ref and ref null; fastlane deliveries
(broadcast, presence_diff, postgres_changes) carry neither; server maps are Jason-encoded, hence sorted keys.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import time
import uuid
from typing import TYPE_CHECKING, Any

from rtproxy_core import frames

from . import jwt
from .pgchanges import EVENTS, BindingError, binding_id, change_data, parse_binding
from .state import FRAGMENT, Conn, Member, flex_bool

__all__ = ["Hub"]

if TYPE_CHECKING:
    from .config import ServerConfig

log = logging.getLogger("rtproxy.local")

UNMATCHED = {"reason": "unmatched topic"}


class Hub:
    def __init__(self, config: ServerConfig | Any) -> None:
        self._config = config  # a ServerConfig, or anything with a `.config` (the server: config swappable)
        self.conns: list[Conn] = []
        self._groups: dict[tuple[str, bool, str], list[Member]] = {}

    @property
    def cfg(self) -> ServerConfig:
        return getattr(self._config, "config", self._config)

    # ------------------------------------------------------------------------------------ socket level

    def add(self, conn: Conn) -> None:
        self.conns.append(conn)

    def remove(self, conn: Conn) -> None:
        """Socket gone: its channels stop without phx_close (nobody to send it to); presence leaves."""
        for m in list(conn.joins.values()):
            self._drop(m)
        conn.joins.clear()
        if conn in self.conns:
            self.conns.remove(conn)

    @staticmethod
    def accepts(conn: Conn, msg: frames.Message) -> bool:
        """Does the socket's serializer decode this frame? Realtime drops the others silently (§5.6)."""
        if conn.vsn == frames.V1:
            return msg.shape == frames.OBJECT
        return msg.shape == frames.ARRAY or msg.kind in (frames.PUSH, frames.USER_PUSH)

    async def handle(self, conn: Conn, msg: frames.Message, raw: str | bytes) -> None:
        if msg.topic == "phoenix" and msg.event == "heartbeat":
            if not self.cfg.swallow_heartbeats:
                conn.reply("phoenix", None, msg.ref, "ok", {})
            return
        if msg.event == "phx_join":
            if msg.topic.startswith("realtime:"):
                await self._join(conn, msg)
            else:
                conn.reply(msg.topic, None, msg.ref, "error", UNMATCHED)
            return
        m = conn.joins.get(msg.topic)
        if m is None:  # Phoenix v1.8.11 socket.ex handle_in(nil, ...)
            if msg.event == "phx_leave":
                conn.reply(msg.topic, msg.join_ref, msg.ref, "ok", {})  # leaving an unknown topic: ok
            else:
                conn.reply(msg.topic, None, msg.ref, "error", UNMATCHED)
            return
        if msg.join_ref not in (None, m.join_ref) and m.join_ref is not None:
            # A previous join's message: Phoenix ignores it without a reply (for a leave, the close was
            # already sent). A null join_ref passes: Realtime's Phoenix fork keeps accepting those.
            log.debug("conn %d: ignored %r for stale join_ref on %s", conn.id, msg.event, msg.topic)
            return
        if msg.event == "phx_leave":
            conn.reply(m.topic, msg.join_ref, msg.ref, "ok", {})
            self._stop(m)
        elif msg.event == "broadcast":
            self._broadcast(m, msg, raw)
        elif msg.event == "presence" and msg.kind is None:
            self._presence(m, msg)
        elif msg.event == "access_token" and msg.kind is None:
            self._access_token(m, msg.payload)
        else:
            log.debug("conn %d: ignored %r on %s", conn.id, msg.event, msg.topic)

    # ------------------------------------------------------------------------------------ join / leave

    async def _join(self, conn: Conn, msg: frames.Message) -> None:
        cfg, topic = self.cfg, msg.topic
        old = conn.joins.pop(topic, None)
        if old is not None:
            self._drop(old)  # the old channel stops now; its phx_close follows this join's reply
        payload = msg.payload if isinstance(msg.payload, dict) else {}
        sub = topic.removeprefix("realtime:")
        m: Member | None = None
        if sub in cfg.unanswered_joins:
            log.debug("conn %d: join %s left unanswered (config)", conn.id, topic)
        else:
            outcome = self._admit(conn, msg, sub, payload)
            if isinstance(outcome, str):
                log.debug("conn %d: join %s refused: %s", conn.id, topic, outcome)
                await asyncio.sleep(max(cfg.join_error_backoff_ms, 0) / 1000)
                conn.reply(topic, msg.join_ref, msg.ref, "error", {"reason": outcome})
            else:
                m, echo, claims = outcome
                conn.joins[topic] = m
                self._groups.setdefault(m.group, []).append(m)
                conn.reply(topic, msg.join_ref, msg.ref, "ok", {"postgres_changes": echo})
        if old is not None:  # Phoenix queues the old channel's close to itself, behind the join reply
            conn.push(topic, "phx_close", {}, ref=old.join_ref, join_ref=old.join_ref)
        if m is not None:
            self._after_join(m, claims)

    def _admit(self, conn: Conn, msg: frames.Message, sub: str,
               payload: dict[str, Any]) -> str | tuple[Member, list[dict[str, Any]], dict[str, Any]]:
        """Realtime's join/3 checks in its order; a str is the error reason."""
        cfg = self.cfg
        if sub == "":
            return "TopicNameRequired: You must provide a topic name"
        if sub in cfg.join_errors:
            return cfg.join_errors[sub]
        config = payload.get("config")
        config = config if isinstance(config, dict) else None
        private = flex_bool(config.get("private")) if config else False
        if cfg.private_only and not private:
            return "PrivateOnly: This project only allows private channels"
        token = payload.get("user_token") or payload.get("access_token")
        if not isinstance(token, str) or token.startswith("sb_"):
            token = conn.token  # assign_access_token: publishable keys and no token mean the connect token
        try:
            claims = self._verify(token)
        except jwt.JWTError as e:
            return e.join_reason
        bc = config.get("broadcast") if config else None
        bc = bc if isinstance(bc, dict) else {}
        pr = config.get("presence") if config else None
        pr = pr if isinstance(pr, dict) else {}
        key = pr.get("key") if isinstance(pr.get("key"), str) else ""
        m = Member(conn, msg.topic, msg.join_ref, private,
                   self_broadcast=flex_bool(bc.get("self")), ack=flex_bool(bc.get("ack")),
                   presence_key=key or str(uuid.uuid1()),  # Realtime: a UUIDv1 when the key is empty
                   presence_enabled=flex_bool(pr.get("enabled")),  # else off until a track enables it
                   access_token=token)
        pcs = config.get("postgres_changes") if config else None
        echo = []
        for params in pcs if isinstance(pcs, list) else ():
            if isinstance(params, dict):
                entry = {**params, "id": binding_id(params)}  # the join reply echoes even bad params
                try:
                    m.bindings.append(parse_binding(params))
                except BindingError as e:
                    m.pg_error = m.pg_error or str(e)
                if cfg.binding_mismatch:
                    entry["table"] = f"{params.get('table') or '*'}_mismatch"
                echo.append(entry)
        return m, echo, claims

    def _after_join(self, m: Member, claims: dict[str, Any]) -> None:
        """Channel-process pushes that follow an ok join: presence_state, then the CDC outcome."""
        cfg = self.cfg
        if m.presence_enabled:
            m.conn.push(m.topic, "presence_state", self._presence_state(m.group), join_ref=m.join_ref)
        if m.sub in cfg.shutdown_channels:
            self._shutdown(m, cfg.shutdown_channels[m.sub])
            return
        error = m.pg_error
        if m.bindings or error:
            if error is None:
                bad = next((b for b in m.bindings if b.table in cfg.postgres_errors
                            or f"{b.schema}.{b.table}" in cfg.postgres_errors), None)
                if bad is not None:
                    error = ("Unable to subscribe to changes with given parameters. Please check Realtime is "
                             f"enabled for the given connect parameters: [{bad.log_params()}]")
            m.pg_active = error is None
            m.conn.push(m.topic, "system", {"channel": m.sub, "extension": "postgres_changes",
                                            "message": error or "Subscribed to PostgreSQL",
                                            "status": "error" if error else "ok"}, join_ref=m.join_ref)
        self._arm_token_timer(m, claims)

    def _stop(self, m: Member) -> None:
        """The channel process ends normally: Phoenix sends phx_close with join_ref as both refs."""
        if m.conn.joins.get(m.topic) is m:
            del m.conn.joins[m.topic]
        self._drop(m)
        m.conn.push(m.topic, "phx_close", {}, ref=m.join_ref, join_ref=m.join_ref)

    def _shutdown(self, m: Member, message: str) -> None:
        """Realtime's shutdown_response/2: a system error, then the channel stops."""
        log.debug("conn %d: channel %s shut down: %s", m.conn.id, m.topic, message)
        m.conn.push(m.topic, "system", {"channel": m.sub, "extension": "system", "message": message,
                                        "status": "error"}, join_ref=m.join_ref)
        self._stop(m)

    def _drop(self, m: Member) -> None:
        if m.timer is not None:
            m.timer.cancel()
            m.timer = None
        group = self._groups.get(m.group, [])
        if m in group:
            group.remove(m)
            if not group:
                del self._groups[m.group]
        if m.presence_meta is not None:
            left, m.presence_meta = m.presence_meta, None
            self._presence_diff(m.group, {}, {m.presence_key: {"metas": [left]}})

    # ------------------------------------------------------------------------------------ tokens

    def _verify(self, token: str) -> dict[str, Any]:
        cfg = self.cfg
        if not cfg.accept_any_apikey:
            return jwt.verify(token, cfg.jwt_secret)
        try:  # any key accepted: only an expired JWT still counts, since clients handle that case
            return jwt.verify(token, cfg.jwt_secret, check_signature=False)
        except jwt.JWTError as e:
            if e.kind == jwt.EXPIRED:
                raise
            return {}

    def _arm_token_timer(self, m: Member, claims: dict[str, Any]) -> None:
        """Realtime re-confirms the token when it expires (at most hourly) and shuts the channel if bad."""
        exp = claims.get("exp")
        if m.timer is not None:
            m.timer.cancel()
            m.timer = None
        if isinstance(exp, (int, float)) and not isinstance(exp, bool):
            delay = min(max(exp - time.time(), 0) + 0.001, 3600)
            m.timer = asyncio.get_running_loop().call_later(delay, self._token_check, m)

    def _token_check(self, m: Member) -> None:
        m.timer = None
        if m.conn.joins.get(m.topic) is not m:
            return
        try:
            claims = self._verify(m.access_token)
        except jwt.JWTError as e:
            self._shutdown(m, e.shutdown_message)
            return
        self._arm_token_timer(m, claims)

    def _access_token(self, m: Member, payload: Any) -> None:
        token = payload.get("access_token") if isinstance(payload, dict) else None
        if not isinstance(token, str) or token.startswith("sb_") or token == m.access_token:
            return  # Realtime ignores these; a good token gets no reply either
        try:
            claims = self._verify(token)
        except jwt.JWTError as e:
            self._shutdown(m, e.shutdown_message)
            return
        m.access_token = token
        self._arm_token_timer(m, claims)

    # ------------------------------------------------------------------------------------ broadcast

    def _recipients(self, m: Member) -> list[Member]:
        return [r for r in self._groups.get(m.group, []) if r is not m or m.self_broadcast]

    def _broadcast(self, m: Member, msg: frames.Message, raw: str | bytes) -> None:
        if msg.kind == frames.USER_PUSH:
            p = msg.payload
            enc = raw[6]  # kind 3 header byte 6: the user payload's encoding
            body = bytes(raw[7 + sum(raw[1:6]):])  # payload bytes verbatim, as Realtime relays them
            kind4 = bytearray(frames.encode_user_broadcast(m.topic, p["event"], body))
            kind4[4] = enc  # encode_user_broadcast marks raw bytes as binary; keep the sender's encoding
            for r in self._recipients(m):
                if r.conn.vsn == frames.V2:
                    r.conn.push_bytes(bytes(kind4))
                elif enc == frames.ENC_JSON:  # V1 sockets cannot carry binary user payloads: skipped
                    # UserBroadcast.convert_to_json_broadcast embeds the JSON bytes as a Jason.Fragment.
                    r.conn.push_with_fragment(r.topic, "broadcast", {
                        "event": p["event"], "payload": FRAGMENT, "type": "broadcast"},
                        body.decode("utf-8") or "null")
        elif msg.kind is None:
            for r in self._recipients(m):
                r.conn.push(r.topic, "broadcast", msg.payload)
        else:
            return  # kind 0 pushes with a binary payload: no Realtime handler uses them
        if m.ack:
            m.conn.reply(m.topic, msg.join_ref, msg.ref, "ok", {})

    # ------------------------------------------------------------------------------------ presence

    def _presence_state(self, group: tuple[str, bool, str]) -> dict[str, Any]:
        state: dict[str, Any] = {}
        for r in self._groups.get(group, []):
            if r.presence_meta is not None:
                state.setdefault(r.presence_key, {"metas": []})["metas"].append(r.presence_meta)
        return state

    def _presence_diff(self, group: tuple[str, bool, str], joins: dict[str, Any],
                       leaves: dict[str, Any]) -> None:
        for r in self._groups.get(group, []):
            r.conn.push(r.topic, "presence_diff", {"joins": joins, "leaves": leaves})

    def _presence(self, m: Member, msg: frames.Message) -> None:
        p = msg.payload
        if not isinstance(p, dict) or not isinstance(p.get("event"), str):
            m.conn.reply(m.topic, msg.join_ref, msg.ref, "ok", {})  # PresenceHandler.handle(_, _, s): ok
            return
        event = p["event"].lower()
        if event == "track":
            data = p.get("payload", {})
            if not isinstance(data, dict):
                m.conn.reply(m.topic, msg.join_ref, msg.ref, "error",
                             {"reason": "Presence track payload must be a map"})
                return
            m.conn.reply(m.topic, msg.join_ref, msg.ref, "ok", {})
            if m.presence_meta is not None and data == m.track_payload:
                return  # unchanged payload: no diff
            old = m.presence_meta
            meta = {**data, "phx_ref": base64.b64encode(os.urandom(12)).decode()}
            if old is not None:
                meta["phx_ref_prev"] = old["phx_ref"]  # Phoenix.Presence.update
            m.presence_meta, m.track_payload = meta, data
            if not m.presence_enabled:  # this track enables presence: sync the state first
                m.presence_enabled = True
                m.conn.push(m.topic, "presence_state", self._presence_state(m.group), join_ref=m.join_ref)
            leaves = {m.presence_key: {"metas": [old]}} if old is not None else {}
            self._presence_diff(m.group, {m.presence_key: {"metas": [meta]}}, leaves)
        elif event == "untrack":
            m.conn.reply(m.topic, msg.join_ref, msg.ref, "ok", {})
            old, m.presence_meta, m.track_payload = m.presence_meta, None, None
            if old is not None:
                self._presence_diff(m.group, {}, {m.presence_key: {"metas": [old]}})
        else:
            m.conn.reply(m.topic, msg.join_ref, msg.ref, "error", {})

    # ------------------------------------------------------------------------------------ postgres

    def emit_postgres_change(self, schema: str, table: str, type_: str, record: dict[str, Any] | None,
                             old_record: dict[str, Any] | None) -> int:
        type_ = type_.upper()
        if type_ not in EVENTS:
            raise ValueError(f"type must be one of {', '.join(EVENTS)}, got {type_!r}")
        row = (old_record if type_ == "DELETE" else record) or {}
        data = None
        delivered = 0
        for conn in self.conns:
            for m in conn.joins.values():
                if not m.pg_active:
                    continue
                ids = [b.id for b in m.bindings if b.matches(schema, table, type_, row)]
                if ids:
                    data = data or change_data(schema, table, type_, record, old_record)
                    conn.push(m.topic, "postgres_changes", {"data": data, "ids": ids})
                    delivered += 1
        return delivered
