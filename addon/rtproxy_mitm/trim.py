"""Bounded memory on long-lived Realtime flows (rt_keep_messages).

mitmproxy keeps every WebSocket message of a flow until the flow ends (and mitmweb until it is
cleared); a Realtime socket lives for hours. Trimming keeps the newest N messages of each Realtime flow.
mitmdump's dumper and mitmweb's view run after script addons and read messages[-1], so N >= 1 always.
"""

from __future__ import annotations

from mitmproxy import ctx, http

from .flowevents import is_realtime
from .optionerror import reject

DEFAULT_KEEP = 100  # ~0.37 KiB a message: 1,000 connections stay near 40 MB (measured by rtbench)


class Trim:
    def __init__(self) -> None:
        self.keep = DEFAULT_KEEP
        self.flows: set[str] = set()  # Realtime flows, decided once per flow, not per message

    def load(self, loader) -> None:
        loader.add_option(
            name="rt_keep_messages",
            typespec=int,
            default=DEFAULT_KEEP,
            help="Keep only the newest N WebSocket messages of each Realtime flow in mitmproxy's memory (and "
            "in what mitmweb shows and saves); 0 keeps all. rtproxy's own tracking is bounded anyway.",
        )

    def configure(self, updated: set[str]) -> None:
        if "rt_keep_messages" in updated:
            if ctx.options.rt_keep_messages < 0:
                reject(
                    "rt_keep_messages",
                    f"must be 0 (keep all) or a positive count, got {ctx.options.rt_keep_messages}",
                )
                return
            self.keep = ctx.options.rt_keep_messages

    def websocket_start(self, flow: http.HTTPFlow) -> None:
        if is_realtime(flow):
            self.flows.add(flow.id)

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        self.flows.discard(flow.id)

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        assert flow.websocket is not None
        if self.keep and flow.id in self.flows and len(flow.websocket.messages) > self.keep:
            del flow.websocket.messages[: -self.keep]
