"""Each connection's log lines, `[rt <conn>] …`: one logger per connection, as websockets gives each
connection its own (`websockets/protocol.py`, `Protocol.__init__`: `self.logger = logging.LoggerAdapter(
logger, {"websocket": self})`), so the prefix is written in one place."""

from __future__ import annotations

import functools
import logging
from collections.abc import MutableMapping
from typing import Any

from rtproxy_core.events import conn_id

logger = logging.getLogger("rtproxy")


class ConnectionLog(logging.LoggerAdapter[logging.Logger]):
    """rtproxy's logger for one connection: every line starts `[rt <conn>] `."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        return f"[rt {self.extra['conn'] if self.extra else '?'}] {msg}", kwargs


@functools.lru_cache(maxsize=1024)
def connection_log(conn: str) -> ConnectionLog:
    """The logger of the connection rtproxy shows as `conn` (events.conn_id of its flow id)."""
    return ConnectionLog(logger, {"conn": conn})


def flow_log(flow_id: str) -> ConnectionLog:
    """The logger of the connection whose mitmproxy flow id is `flow_id`."""
    return connection_log(conn_id(flow_id))
