"""Keeps mitmproxy's own output free of Realtime secrets.

mitmdump prints every flow and WebSocket message with its URL, and a Realtime URL carries the apikey in
its query. Unless the user opted in to secrets (rt_show_secrets), rtproxy sets mitmproxy's dumper_filter
so Realtime upgrade flows are left to rtproxy's own, redacted lines. A dumper_filter the user set is
kept, with a warning.
"""

from __future__ import annotations

import logging

from mitmproxy import ctx

logger = logging.getLogger("rtproxy")

REALTIME_FLOWS_HIDDEN = '!(~hq "^upgrade: *websocket" & ~u "/websocket")'


class Quiet:
    def configure(self, updated: set[str]) -> None:
        if "dumper_filter" not in ctx.options or not ({"rt_show_secrets", "dumper_filter"} & updated):
            return
        current = ctx.options.dumper_filter
        if ctx.options.rt_show_secrets:
            if current == REALTIME_FLOWS_HIDDEN:
                ctx.options.update(dumper_filter="")
        elif not current:
            ctx.options.update(dumper_filter=REALTIME_FLOWS_HIDDEN)
            logger.info("rtproxy: mitmproxy's own lines for Realtime upgrades are hidden (their URLs carry the "
                        "apikey); rtproxy logs them redacted. --set rt_show_secrets=true shows everything.")
        elif current != REALTIME_FLOWS_HIDDEN:
            logger.warning("rtproxy: your dumper_filter lets mitmproxy print Realtime URLs with their apikey; "
                           f"add & {REALTIME_FLOWS_HIDDEN} to it to keep them out of the log")
