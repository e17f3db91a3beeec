"""postgres_changes: the CDC subscription a join with bindings starts, and the changes delivered to it."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from rtproxy_core import frames
from rtproxy_core.catalog import say

from ..pgchanges import EVENTS, change_data
from ..state import Member
from .base import HubBase


class PostgresChanges(HubBase):
    """A channel's CDC subscription, and the changes the server emits to the bindings that match."""

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
