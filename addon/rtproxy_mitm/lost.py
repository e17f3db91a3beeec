"""A Realtime WebSocket whose connection is lost on one side is lost on the other side too.

Without this, mitmproxy answers a lost connection (TCP closed or reset, no close frame) by sending the
other side a close frame 1000: a client would see the server close cleanly where, through a Worker
(workerd) or nginx, it sees 1006, and an upstream would see the client leave cleanly where it sees the
connection drop. rtproxy stands in for the hop, so it passes the loss on as it is (internals.py,
`pass_lost_connections`; the real Workers in tests/test_parity.py).
"""

from __future__ import annotations

from collections.abc import Callable

from mitmproxy.version import VERSION

from . import internals
from .flowevents import is_realtime


class LostConnections:
    def __init__(self) -> None:
        self._undo: Callable[[], None] | None = None

    def load(self, loader) -> None:
        # Only where WebsocketLayer.relay_messages was read; elsewhere mitmproxy's own behaviour stays.
        if self._undo is None and internals.relay_messages_checked(VERSION):
            self._undo = internals.pass_lost_connections(is_realtime)

    def done(self) -> None:
        if self._undo is not None:
            self._undo()
            self._undo = None
