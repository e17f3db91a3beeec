"""Bench baseline: the least a mitmproxy Worker stand-in does. Reroutes every WebSocket upgrade to
--set reroute_to=HOST:PORT (plain ws) and nothing else: no decoding, no tracking, no logging.

    mitmdump --mode reverse:http://worker.invalid --set connection_strategy=lazy \
        -s addon/rtproxy_tools/bare_reroute.py --set reroute_to=127.0.0.1:54321

Used by rtbench (bench/) as configuration (2), the yardstick for rtproxy's own cost.
"""

from __future__ import annotations

from mitmproxy import ctx, http


class Reroute:
    def __init__(self) -> None:
        self.target: tuple[str, int] | None = None

    def load(self, loader) -> None:
        loader.add_option("reroute_to", str, "", "HOST:PORT that WebSocket upgrades are sent to (plain ws).")

    def configure(self, updated: set[str]) -> None:
        if "reroute_to" in updated and ctx.options.reroute_to:
            host, port = ctx.options.reroute_to.rsplit(":", 1)
            self.target = (host, int(port))

    def request(self, flow: http.HTTPFlow) -> None:
        if self.target and flow.request.headers.get("upgrade", "").lower() == "websocket":
            flow.request.scheme = "http"
            flow.request.host, flow.request.port = self.target


addons = [Reroute()]
