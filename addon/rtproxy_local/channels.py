"""Channels of the local Realtime server: joins, broadcast, presence, access tokens, postgres_changes.

No sockets here: a Conn is the server's handle on one open WebSocket (its vsn, its connect-time token and
a queue of outgoing frames that server.py drains in order); server.py feeds decoded client frames to
Hub.handle one at a time, awaiting each, because Phoenix's socket process runs a `phx_join` inside
itself: while a join sleeps its error backoff the socket answers nothing else.

Followed from supabase/realtime 833cf36 (docs/sources.md): RealtimeChannel (realtime_channel.ex join/3,
handle_in/3, handle_info/2), BroadcastHandler, PresenceHandler, MessageDispatcher, the V2 serializer, and
Phoenix's socket.ex and channel/server.ex as Realtime's fork runs them. Every string the server says
comes from rtproxy_core.catalog. Wire details: replies carry the channel's join_ref (join_ref || ref of
the join) and the push's ref; channel pushes (system, presence_state) carry that join_ref and ref null;
fastlane deliveries (broadcast, presence_diff, postgres_changes) carry neither; phx_close and phx_error
carry the join's own join_ref as both refs; server maps are Jason-encoded, hence sorted keys.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import random
import time
import uuid
from typing import TYPE_CHECKING, Any

from rtproxy_core import closecodes, frames
from rtproxy_core.catalog import say

from . import jwt
from .elixir import inspect
from .limits import Atom, PresenceWindow, RateCounter, over_payload_quota
from .pgchanges import EVENTS, BindingError, binding_id, change_data, parse_binding
from .state import FRAGMENT, Conn, Member, Ordered, flex_bool

__all__ = ["Hub"]

if TYPE_CHECKING:
    from .config import ServerConfig

log = logging.getLogger("rtproxy.local")

# Connect.lookup_or_start_connection/2 failures: (join reason, what a running channel's access_token
# refresh says; None: the catch-all inspect/1 of the error atom).
_DATABASE = {
    "initializing": ("join.initializing", say("system.initializing")),
    "connecting": (
        "join.tenant_database_connection_initializing",
        say("system.tenant_database_connection_initializing"),
    ),
    "no-connections": ("join.tenant_db_too_many_connections", say("system.tenant_db_too_many_connections")),
    "connect-rate": ("join.connect_rate_limit_reached", say("system.connect_rate_limit_reached")),
    "unavailable": ("join.tenant_database_unavailable", say("system.database_unavailable")),
    "rpc-timeout": ("join.rpc_timeout", say("system.rpc_timeout")),
    "rpc-error": ("join.rpc_error", say("system.rpc_error", term=":noconnection")),
}
# maybe_assign_policies/3 failures (private channels): (join reason, access_token refresh message).
_POLICIES = {
    "pool": ("join.increase_connection_pool", say("system.increase_connection_pool")),
    "unable-to-set": ("join.unable_to_set_policies", say("system.database_unavailable")),
    "query-canceled": ("join.query_canceled", say("system.query_canceled")),
    "missing-partition": ("join.missing_partition", say("system.database_unavailable")),
    "rls-error": ("join.unauthorized", "system.unauthorized"),
}
# What inspect(error, pretty: true) of the policy query's Postgrex.Error looks like (its ids vary).
_QUERY_CANCELED = (
    "%Postgrex.Error{\n  message: nil,\n  postgres: %{\n    code: :query_canceled,\n"
    '    message: "canceling statement due to statement timeout",\n    severity: "ERROR",\n'
    '    pg_code: "57014"\n  },\n  connection_id: 4242,\n  query: nil\n}'
)
# V1 subscribers of a kind-0 broadcast: Jason meets the {:binary, data} tuple and lib/realtime/logs.ex's
# Tuple encoder splices inspect text into the frame, which is then not JSON.
_TUPLE_ENCODED = '%{error: "unable to parse response"}'


def _join_reason(e: jwt.JWTError) -> str:
    """RealtimeChannel.join/3's else clauses for what confirm_token/1 returned."""
    return {
        jwt.MALFORMED: lambda: say("join.token_malformed"),
        jwt.SIGNATURE: lambda: say("join.signature_error"),
        jwt.SIGNER: lambda: say("join.error_generating_signer"),
        jwt.EXPIRED: lambda: say("join.expired_token", n=e.seconds_ago),
        jwt.CLAIMS: lambda: say("join.missing_claims"),
    }.get(e.kind, lambda: say("join.unknown"))()  # claim validators, claims not a map: the catch-all


def _shutdown_text(e: jwt.JWTError) -> str:
    """handle_in("access_token") / handle_info(:confirm_token): what a running channel is told."""
    if e.kind == jwt.MALFORMED:
        return say("system.token_malformed")
    if e.kind == jwt.EXPIRED:
        return say("system.expired_token", n=e.seconds_ago)
    if e.kind == jwt.CLAIMS:
        return say("system.missing_claims")
    if e.kind == jwt.INVALID_CLAIM:  # inspect/1 of Joken's keyword list
        message = str(e.now) if e.claim == "exp" else '"Invalid token"'
        return say("system.invalid_claim", term=message, claim=inspect(e.claim), value=inspect(e.claim_val))
    return say(
        "system." + e.kind
    )  # inspect/1 of :signature_error, :error_generating_signer, :expected_claims_map


class Hub:
    def __init__(self, config: ServerConfig | Any) -> None:
        self._config = config  # a ServerConfig, or anything with a `.config` (the server: config swappable)
        self.conns: list[Conn] = []
        self._groups: dict[tuple[str, bool, str], list[Member]] = {}
        self._rates: dict[tuple[str, str], RateCounter] = {}

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

    def close(self) -> None:
        for r in self._rates.values():
            r.close()
        self._rates.clear()
        for conn in self.conns:
            for m in conn.joins.values():
                m.cancel_timers()

    def users(self, tenant: str) -> int:
        """UsersCounter.tenant_users/1: sockets of the tenant on which a join succeeded."""
        return sum(1 for c in self.conns if c.tenant == tenant and c.counted)

    def _forget_rate(self, tenant: str, kind: str) -> None:
        self._rates.pop((tenant, kind), None)

    def rate(self, tenant: str, kind: str) -> RateCounter:
        """The tenant's joins/events/presence RateCounter (Tenants.*_per_second_rate/1)."""
        r = self._rates.get((tenant, kind))
        if r is None:
            limit = {
                "joins": lambda: self.cfg.max_joins_per_second,
                "events": lambda: self.cfg.max_events_per_second,
                "presence": lambda: self.cfg.max_presence_events_per_second,
            }[kind]
            r = self._rates[(tenant, kind)] = RateCounter(
                limit, lambda: self.cfg.rate_tick_s, on_idle=lambda: self._forget_rate(tenant, kind)
            )
        return r.start()

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

    # ------------------------------------------------------------------------------------ join / leave

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
            return _join_reason(e), False
        exp = claims.get("exp")
        if isinstance(exp, int) and exp - int(time.time()) <= 0:  # confirm_token/1: exp_diff > 0 or else
            return say("join.invalid_exp"), False
        if cfg.database in _DATABASE:
            return self._db_reason(cfg.database), False
        if private:
            if cfg.policies in _POLICIES:
                return self._policy_reason(cfg.policies, sub), False
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

    def _db_reason(self, condition: str) -> str:
        key = _DATABASE[condition][0]
        return say(key, term=":noconnection") if condition == "rpc-error" else say(key)

    def _policy_reason(self, condition: str, sub: str) -> str:
        key = _POLICIES[condition][0]
        if condition == "query-canceled":
            return say(key, term=_QUERY_CANCELED)
        return say(key, topic=sub) if condition == "rls-error" else say(key)

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

    def _stop(self, m: Member) -> None:
        """The channel process ends normally: Phoenix sends phx_close with the join's join_ref as both refs."""
        if m.conn.joins.get(m.topic) is m:
            del m.conn.joins[m.topic]
        self._drop(m)
        m.conn.push(m.topic, frames.PHX_CLOSE, {}, ref=m.join_ref, join_ref=m.join_ref)

    def _crash(self, m: Member, why: str) -> None:
        """The channel process raised: Phoenix's socket sees it go down and sends phx_error."""
        log.debug("conn %d: channel %s crashed: %s", m.conn.id, m.topic, why)
        if m.conn.joins.get(m.topic) is m:
            del m.conn.joins[m.topic]
        self._drop(m)
        m.conn.push(m.topic, frames.PHX_ERROR, {}, ref=m.join_ref, join_ref=m.join_ref)

    def _shutdown(self, m: Member, message: str) -> None:
        """shutdown_response/2: a system error, then the channel stops."""
        log.debug("conn %d: channel %s shut down: %s", m.conn.id, m.topic, message)
        m.conn.push(
            m.topic,
            frames.EV_SYSTEM,
            {"channel": m.sub, "extension": "system", "message": message, "status": "error"},
            join_ref=m.socket_join_ref,
        )
        self._stop(m)

    def _drop(self, m: Member) -> None:
        m.cancel_timers()
        m.conn.channel_processes -= 1  # terminate/2: Tracker.untrack/1
        group = self._groups.get(m.group, [])
        if m in group:
            group.remove(m)
            if not group:
                del self._groups[m.group]
        if m.presence_meta is not None:
            left, m.presence_meta = m.presence_meta, None
            self._presence_diff(m.group, {}, {m.presence_key: {"metas": [left]}})

    def disconnect_tenant(self, tenant: str | None) -> int:
        """UserSocket.disconnect/1: a `system` "Server requested disconnect" to every joined channel
        (fastlane: no refs, no `channel` key), then every socket of the tenant closes 1012. Returns how
        many sockets."""
        n = 0
        for conn in list(self.conns):
            if tenant is not None and conn.tenant != tenant:
                continue
            for m in conn.joins.values():
                conn.push(
                    m.topic,
                    frames.EV_SYSTEM,
                    {"extension": "system", "message": say("system.disconnect"), "status": "ok"},
                )
            conn.cause = "tenant drain"
            conn.close(closecodes.SERVICE_RESTART)
            n += 1
        return n

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

    def _arm_token_check(self, m: Member, claims: dict[str, Any]) -> None:
        """confirm_token/1: re-check the token after min(@confirm_token_ms_interval, exp - now)."""
        exp = claims.get("exp")
        if not isinstance(exp, int) or isinstance(exp, bool):
            m.set_timer("confirm_token", None)
            return
        exp_diff = exp - int(time.time())
        delay = max(min(self.cfg.confirm_token_interval_s, exp_diff), 0.001)
        m.set_timer("confirm_token", asyncio.get_running_loop().call_later(delay, self._token_check, m))

    def _token_check(self, m: Member) -> None:
        """handle_info(:confirm_token)."""
        m.timers.pop("confirm_token", None)
        if m.conn.joins.get(m.topic) is not m:
            return
        try:
            claims = self._verify(m.access_token)
        except jwt.JWTError as e:
            if e.kind == jwt.MALFORMED:  # {:error, :token_malformed, msg} matches no clause there
                self._crash(m, "CaseClauseError in handle_info(:confirm_token)")
            else:
                self._shutdown(m, _shutdown_text(e))
            return
        if self._exp_passed(m, claims):
            return
        self._arm_token_check(m, claims)

    def _exp_passed(self, m: Member, claims: dict[str, Any]) -> bool:
        """confirm_token/1's `exp_diff when exp_diff > 0` failing (a whole-second race with the claim
        validator): {:error, exp_diff}, which the channel is told as inspect/1 of the number."""
        exp = claims.get("exp")
        if isinstance(exp, int) and not isinstance(exp, bool) and exp - int(time.time()) <= 0:
            self._shutdown(m, str(exp - int(time.time())))
            return True
        return False

    def _access_token(self, m: Member, payload: Any) -> None:
        """handle_in("access_token", ...)."""
        if not isinstance(payload, dict) or "access_token" not in payload:
            self.rate(m.conn.tenant, "events").add()  # the catch-all handle_in/3
            return
        token = payload["access_token"]
        if token is None or token == m.access_token or isinstance(token, str) and token.startswith("sb_"):
            return  # ignored, no reply
        if not isinstance(token, str):
            self.rate(m.conn.tenant, "events").add()
            return
        m.access_token = token
        try:
            claims = self._verify(token)
        except jwt.JWTError as e:
            self._shutdown(m, _shutdown_text(e))
            return
        cfg = self.cfg
        if cfg.database in _DATABASE:
            self._shutdown(m, _DATABASE[cfg.database][1])
            return
        if m.private:
            if cfg.policies in _POLICIES:
                text = _POLICIES[cfg.policies][1]
                self._shutdown(m, say(text, topic=m.sub) if text.startswith("system.") else text)
                return
            if m.sub in cfg.denied_topics:
                self._shutdown(m, say("system.unauthorized", topic=m.sub))
                return
        if self._exp_passed(m, claims):
            return
        self._arm_token_check(m, claims)
        if m.pg_params:  # the subscription is made again with the new claims, after a short backoff
            low, high = cfg.postgres_resubscribe_s
            loop = asyncio.get_running_loop()
            m.set_timer("postgres", loop.call_later(random.uniform(low, high), self._postgres_subscribe, m))

    # ------------------------------------------------------------------------------------ postgres_changes

    def _postgres_subscribe(self, m: Member) -> None:
        """handle_info(:postgres_subscribe): the CDC subscription, then a postgres_changes system message.
        Parameter errors are final; database errors are retried after 5-10 s."""
        m.timers.pop("postgres", None)
        if m.conn.joins.get(m.topic) is not m:
            return
        cfg = self.cfg
        error, retry = m.pg_error, False
        if error is None:
            bad = next(
                (
                    b
                    for b in m.bindings
                    if b.table in cfg.postgres_errors
                    or f"{b.schema}.{b.table}" in cfg.postgres_errors
                    or b.schema in cfg.postgres_errors
                ),
                None,
            )
            if bad is not None:
                error = say("postgres.subscription_insert_failed", params=bad.log_params())
            elif m.pg_failures < cfg.postgres_transient_errors:
                m.pg_failures += 1
                error, retry = say("postgres.too_many_database_timeouts"), True
        m.pg_active = error is None
        m.conn.push(
            m.topic,
            frames.EV_SYSTEM,
            {
                "channel": m.sub,
                "extension": "postgres_changes",
                "message": error or say("postgres.subscribed"),
                "status": "error" if error else "ok",
            },
            join_ref=m.socket_join_ref,
        )
        if retry:
            low, high = cfg.postgres_retry_s
            loop = asyncio.get_running_loop()
            m.set_timer("postgres", loop.call_later(random.uniform(low, high), self._postgres_subscribe, m))

    def emit_postgres_change(
        self,
        schema: str,
        table: str,
        type_: str,
        record: dict[str, Any] | None,
        old_record: dict[str, Any] | None,
    ) -> int:
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
                # message_dispatcher.ex builds the ids with [id | acc]: the last matching binding first
                ids = [b.id for b in m.bindings if b.matches(schema, table, type_, row)][::-1]
                if ids:
                    data = data or change_data(schema, table, type_, record, old_record)
                    if m.is_new_api:
                        conn.push(m.topic, frames.EV_POSTGRES_CHANGES, {"data": data, "ids": ids})
                    else:  # a legacy join: the event is the change's type, the payload the change itself
                        conn.push(m.topic, type_, data)
                    delivered += 1
        return delivered

    # ------------------------------------------------------------------------------------ broadcast

    def _recipients(self, m: Member) -> list[Member]:
        return [r for r in self._groups.get(m.group, []) if r is not m or m.self_broadcast]

    def _broadcast(self, m: Member, msg: frames.Message, raw: str | bytes) -> None:
        """BroadcastHandler.handle/3 and MessageDispatcher.dispatch/3."""
        cfg = self.cfg
        if m.private and cfg.database in _DATABASE:
            if cfg.database.startswith("rpc"):  # a 3-tuple error the with/else does not match
                self._crash(m, 'WithClauseError in handle_in("broadcast")')
            return  # UnableToHandleBroadcast: logged, no reply, not sent
        if m.private and cfg.policies in _POLICIES:
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

    # ------------------------------------------------------------------------------------ presence

    def _presence_state(self, group: tuple[str, bool, str]) -> dict[str, Any]:
        state: dict[str, Any] = {}
        for r in self._groups.get(group, []):
            if r.presence_meta is not None:
                state.setdefault(r.presence_key, {"metas": []})["metas"].append(r.presence_meta)
        return state

    def _presence_diff(
        self, group: tuple[str, bool, str], joins: dict[str, Any], leaves: dict[str, Any]
    ) -> None:
        """MessageDispatcher.dispatch/3 for presence_diff: members that may read presence get it, fastlaned
        (no refs) and counted against the tenant's presence events; a private member whose presence was
        off at join gets it through its channel process (with its join_ref)."""
        fastlaned = 0
        for r in self._groups.get(group, []):
            if r.presence_read:
                via = r.presence_via_channel
                r.conn.push(
                    r.topic,
                    frames.EV_PRESENCE_DIFF,
                    {"joins": joins, "leaves": leaves},
                    join_ref=r.socket_join_ref if via else None,
                )
                fastlaned += not via
        if fastlaned and group[0]:
            self.rate(group[0], "presence").add(fastlaned)

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
        if m.private and cfg.database in _DATABASE:
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
            if m.private and cfg.policies in _POLICIES:
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
