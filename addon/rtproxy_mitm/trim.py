"""Bounded memory on long-lived Realtime flows (rt_keep_messages, rt_keep_bytes).

mitmproxy keeps every WebSocket message of a flow until the flow ends (and mitmweb until it is
cleared); a Realtime socket lives for hours, and Realtime takes frames up to 5,000,000 bytes. Trimming
keeps the newest messages of each Realtime flow: at most rt_keep_messages of them, and no more than
rt_keep_bytes of content together, whichever bites first. mitmdump's dumper and mitmweb's view run after
script addons and read messages[-1], so the newest message is always kept, however big.

The byte total of each flow is kept running (added once per message, taken off once when the message is
trimmed), so a message costs O(1) amortised, never a re-sum of the list. Sanitize runs after Trim and may
put a sanitized copy in the newest message's place (internals.store_message_copy): at the next message,
the previous newest is counted again as it stands, so the total follows what the flow really holds.
"""

from __future__ import annotations

from dataclasses import dataclass

from mitmproxy import ctx, http

from .flowevents import is_realtime
from .optionerror import reject

DEFAULT_KEEP = 100  # ~0.37 KiB a message: 1,000 connections stay near 40 MB (measured by rtbench)
DEFAULT_KEEP_BYTES = 4 * 2**20  # 4 MiB a flow: 100 heartbeats are ~10 KiB; big broadcasts are not


@dataclass(slots=True)
class Kept:
    """What one Realtime flow's message list holds, as Trim counted it."""

    total: int = 0  # content bytes of the messages in the list
    newest: int = 0  # the newest message's size when it was counted


class Trim:
    def __init__(self) -> None:
        self.keep = DEFAULT_KEEP
        self.keep_bytes = DEFAULT_KEEP_BYTES
        self.flows: dict[str, Kept] = {}  # Realtime flows, decided once per flow, not per message

    def load(self, loader) -> None:
        loader.add_option(
            name="rt_keep_messages",
            typespec=int,
            default=DEFAULT_KEEP,
            help="Keep only the newest N WebSocket messages of each Realtime flow in mitmproxy's memory (and "
            "in what mitmweb shows and saves); 0 keeps all. rtproxy's own tracking is bounded anyway.",
        )
        loader.add_option(
            name="rt_keep_bytes",
            typespec=int,
            default=DEFAULT_KEEP_BYTES,
            help="Keep the newest WebSocket messages of each Realtime flow only while their content adds up "
            f"to at most N bytes (default {DEFAULT_KEEP_BYTES}, 4 MiB); 0: no byte cap. Applies together "
            "with rt_keep_messages, whichever bites first. The newest message is always kept, so one "
            "message bigger than N is kept alone.",
        )

    def configure(self, updated: set[str]) -> None:
        if "rt_keep_messages" in updated:
            if ctx.options.rt_keep_messages < 0:
                reject(
                    "rt_keep_messages",
                    f"must be 0 (keep all) or a positive count, got {ctx.options.rt_keep_messages}",
                )
            else:
                self.keep = ctx.options.rt_keep_messages
        if "rt_keep_bytes" in updated:
            if ctx.options.rt_keep_bytes < 0:
                reject(
                    "rt_keep_bytes",
                    f"must be 0 (no byte cap) or a positive number of bytes, got {ctx.options.rt_keep_bytes}",
                )
            else:
                self.keep_bytes = ctx.options.rt_keep_bytes

    def websocket_start(self, flow: http.HTTPFlow) -> None:
        if is_realtime(flow):
            assert flow.websocket is not None
            msgs = flow.websocket.messages
            self.flows[flow.id] = Kept(
                sum(len(m.content) for m in msgs), len(msgs[-1].content) if msgs else 0
            )

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        self.flows.pop(flow.id, None)

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        kept = self.flows.get(flow.id)
        if kept is None:
            return
        assert flow.websocket is not None
        msgs = flow.websocket.messages
        if len(msgs) >= 2:  # the previous newest, as it stands now (Sanitize may have replaced it)
            kept.total += len(msgs[-2].content) - kept.newest
        kept.newest = len(msgs[-1].content)
        kept.total += kept.newest
        drop = len(msgs) - self.keep if self.keep and len(msgs) > self.keep else 0
        if not drop and not (self.keep_bytes and kept.total > self.keep_bytes):
            return
        total = kept.total - sum(len(m.content) for m in msgs[:drop])
        if self.keep_bytes:
            while total > self.keep_bytes and drop < len(msgs) - 1:  # the newest stays
                total -= len(msgs[drop].content)
                drop += 1
        del msgs[:drop]
        kept.total = total
