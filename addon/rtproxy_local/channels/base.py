"""The Hub's shared state and the end of a channel.

HubBase holds the open sockets (Conn), the members of each topic group (who a broadcast or a
presence_diff reaches), and the tenants' joins/events/presence RateCounters; a channel ends through
_stop (phx_close), _crash (phx_error) or _shutdown (a system error, then _stop), and _drop takes it out
of its group, its presence leaving with a presence_diff."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from rtproxy_core import closecodes, frames
from rtproxy_core.catalog import say

from ..limits import RateCounter
from ..state import Conn, Member

if TYPE_CHECKING:
    from ..config import ServerConfig

log = logging.getLogger("rtproxy.local")


class HubBase:
    """What every part of the Hub shares: sockets, topic groups, rate counters, a channel's end."""

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

    # ------------------------------------------------------------------------------------ a channel's end

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
        """The channel process is gone (Tracker.untrack/1): out of its group, its presence leaving."""
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

    # ------------------------------------------------------------------------------------ presence_diff

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
