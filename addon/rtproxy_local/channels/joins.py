"""Joins: phx_join (the old channel of the topic stopping first, a refusal after the error backoff),
RealtimeChannel.join/3's checks in its order, and what the channel process starts after a join."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from rtproxy_core import closecodes, frames
from rtproxy_core.catalog import say

from .. import jwt
from ..pgchanges import BindingError, binding_id, parse_binding
from ..state import Conn, Member, Ordered, flex_bool
from .base import log
from .presence import Presence
from .reasons import DATABASE, POLICIES, db_reason, join_reason, policy_reason
from .tokens import Tokens


class Joins(Tokens, Presence):
    """phx_join: its checks, then the token check, postgres_changes and presence_state it starts."""

    async def _join(self, conn: Conn, msg: frames.Message) -> None:
        cfg, topic = self.cfg, msg.topic
        old = conn.joins.pop(topic, None)
        if old is not None:
            self._drop(old)  # the old channel stops now; its phx_close follows this join's reply
        if not topic.startswith("realtime:"):  # UserSocket routes only "realtime:*"
            conn.reply(topic, None, msg.ref, "error", {"reason": say("join.unmatched_topic")})
            return
        sub = topic.removeprefix("realtime:")
        m: Member | None = None
        disconnect = False
        if sub in cfg.unanswered_joins:
            log.debug("conn %d: join %s left unanswered (config)", conn.id, topic)
        else:
            tracked = sub != ""  # join("realtime:", ...) returns before Tracker.track/1
            if tracked:
                conn.tracked = True
                conn.channel_processes += 1
            try:
                outcome = self._admit(conn, msg, sub)
            except Exception:
                if tracked:
                    conn.channel_processes -= 1
                raise
            if isinstance(outcome, tuple):
                reason, disconnect = outcome
                log.debug("conn %d: join %s refused: %s", conn.id, topic, reason)
                conn.hold()  # join_error/1 sleeps inside the socket process: nothing else goes out meanwhile
                try:
                    await asyncio.sleep(max(cfg.join_error_backoff_ms, 0) / 1000)
                finally:
                    held = conn.take_held()
                conn.reply(topic, msg.join_ref, msg.ref, "error", {"reason": reason})
                if tracked:
                    conn.channel_processes -= 1  # terminate/2: Tracker.untrack/1
            else:
                m = outcome
                held = []
                conn.joins[topic] = m
                self._groups.setdefault(m.group, []).append(m)
                conn.reply(
                    topic,
                    msg.join_ref,
                    msg.ref,
                    "ok",
                    {
                        "postgres_changes": [
                            Ordered({"id": binding_id(p), **{k: p[k] for k in sorted(p)}})
                            for p in m.pg_params
                        ]
                    },
                )
        if old is not None:  # Phoenix queued the old channel's close to itself before this join ran
            conn.push(topic, frames.PHX_CLOSE, {}, ref=old.join_ref, join_ref=old.join_ref)
        if sub not in cfg.unanswered_joins:
            if disconnect:  # %Phoenix.Socket.Broadcast{event: "disconnect"}, sent before the backoff
                conn.cause = "disconnect after " + reason.split(":")[0]
                conn.close(closecodes.GOING_AWAY)
            else:
                conn.replay(held)
        if m is not None:
            self._after_join(m, msg.payload)

    def _admit(self, conn: Conn, msg: frames.Message, sub: str) -> Member | tuple[str, bool]:
        """RealtimeChannel.join/3's checks, in its order; (reason, disconnect the socket) if refused."""
        cfg = self.cfg
        if sub == "":
            return say("join.topic_required"), False
        if sub in cfg.join_errors:
            return cfg.join_errors[sub], False
        params = frames.as_object(msg.payload)
        config = frames.as_object(params.get("config"))
        bc, pr = frames.as_object(config.get("broadcast")), frames.as_object(config.get("presence"))
        private = flex_bool(config.get("private"))
        if cfg.restarting:  # SignalHandler.shutdown_in_progress?/0
            return say("join.shutdown_in_progress"), False
        if cfg.tenants and conn.tenant not in cfg.tenants:  # the tenant was deleted after connect
            return say("join.tenant_not_found"), True
        presence_enabled = flex_bool(pr.get("enabled")) or cfg.presence_enabled
        if cfg.private_only and not private:
            return say("join.private_only"), False
        if (
            not conn.counted
            and cfg.max_concurrent_users is not None
            and self.users(conn.tenant) >= cfg.max_concurrent_users
        ):
            return say("join.too_many_connections"), False
        joins = self.rate(conn.tenant, "joins")
        if joins.triggered:
            return say("join.too_many_joins"), True
        joins.add()
        if len(conn.joins) >= cfg.max_channels_per_client:
            return say("join.too_many_channels"), False
        token = self._join_token(conn, params)
        try:
            claims = self._verify(token)
        except jwt.JWTError as e:
            return join_reason(e), False
        exp = claims.get("exp")
        if isinstance(exp, int) and exp - int(time.time()) <= 0:  # confirm_token/1: exp_diff > 0 or else
            return say("join.invalid_exp"), False
        if cfg.database in DATABASE:
            return db_reason(cfg.database), False
        if private:
            if cfg.policies in POLICIES:
                return policy_reason(cfg.policies, sub), False
            if sub in cfg.denied_topics:
                return say("join.unauthorized", topic=sub), False
        replay = bc.get("replay") if "replay" in bc else None
        if "replay" in bc and not private:
            return say("join.invalid_replay_channel"), False
        if isinstance(replay, dict):
            since, limit = replay.get("since"), replay.get("limit")
            limit = 25 if limit is None or limit is False else limit  # replay_params["limit"] || 25
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in (since, limit)):
                return say("join.invalid_replay_params"), False
        key = pr.get("key")
        m = Member(
            conn,
            msg.topic,
            msg.join_ref,
            msg.join_ref or msg.ref,
            private,
            self_broadcast=flex_bool(bc.get("self")),
            ack=flex_bool(bc.get("ack")),
            presence_key=str(uuid.uuid1()) if key in (None, "") else str(key),
            presence_enabled=presence_enabled,
            access_token=token,
            presence_read=True if not private or presence_enabled else None,
        )
        m.pg_params = self._pg_params(params, sub)
        m.is_new_api = "config" in params  # new_api?/1
        for p in m.pg_params:
            try:
                m.bindings.append(parse_binding(p))
            except BindingError as e:
                m.pg_error = m.pg_error or str(e)
        if cfg.binding_mismatch:
            m.pg_params = [{**p, "table": f"{p.get('table') or '*'}_mismatch"} for p in m.pg_params]
        self._arm_token_check(m, claims)
        return m

    @staticmethod
    def _join_token(conn: Conn, params: dict[str, Any]) -> str:
        """assign_access_token/2: an sb_ key (access_token || user_token) means the connect token; else
        user_token, then access_token, then the connect token."""
        at, ut = params.get("access_token"), params.get("user_token")
        first = at if at is not None and at is not False else ut
        if isinstance(first, str) and first.startswith("sb_"):
            return conn.token
        if isinstance(ut, str):
            return ut
        if isinstance(at, str):
            return at
        return conn.token

    @staticmethod
    def _pg_params(params: dict[str, Any], sub: str) -> list[dict[str, Any]]:
        """pg_change_params/5: the join's config.postgres_changes list (nil entries dropped); a join
        without `config` (legacy clients) gets one binding from its topic, schema:table:filter."""
        if "config" not in params:
            parts = sub.split(":", 2)
            return [dict(zip(("schema", "table", "filter"), parts))]
        pcs = params["config"].get("postgres_changes") if isinstance(params["config"], dict) else None
        return [p for p in pcs if isinstance(p, dict)] if isinstance(pcs, list) else []

    def _after_join(self, m: Member, params: Any) -> None:
        """What the channel process sent itself during join/3, in that order: :postgres_subscribe,
        :notify_replication_ready, :sync_presence. Then UsersCounter.add/2."""
        cfg = self.cfg
        m.conn.counted = True
        if m.pg_params:
            self._postgres_subscribe(m)
        config = params.get("config") if isinstance(params, dict) else None
        bc = config.get("broadcast") if isinstance(config, dict) else None
        ready_opt_in = isinstance(bc, dict) and bc.get("replication_ready") not in (None, False)  # !!get_in
        if ready_opt_in:
            self._replication_check(m, time.monotonic() + cfg.replication_ready_timeout_s)
        if m.presence_enabled:
            self._sync_presence(m)
        if m.sub in cfg.shutdown_channels and m.conn.joins.get(m.topic) is m:
            self._shutdown(m, cfg.shutdown_channels[m.sub])

    def _replication_check(self, m: Member, deadline: float) -> None:
        """handle_info(:notify_replication_ready): poll every 500 ms until the deadline."""
        if m.conn.joins.get(m.topic) is not m:
            return
        if self.cfg.replication_ready:
            m.conn.push(
                m.topic,
                frames.EV_SYSTEM,
                {
                    "channel": m.sub,
                    "extension": "system",
                    "status": "ok",
                    "message": say("system.replication_ready"),
                },
                join_ref=m.socket_join_ref,
            )
        elif time.monotonic() >= deadline:
            self._shutdown(m, say("system.replication_not_ready"))
        else:
            loop = asyncio.get_running_loop()
            m.set_timer("replication", loop.call_later(0.5, self._replication_check, m, deadline))
