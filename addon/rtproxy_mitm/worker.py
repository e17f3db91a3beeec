"""Worker emulation: reroute WebSocket upgrades aimed at the worker host onto the Supabase Realtime URL,
the way the design's Cloudflare Worker would, in one of four modes (rt_mode).

Only upgrades are rerouted, only from the configured worker host(s) (or, in reverse mode with no
rt_worker_host, every upgrade arriving at the listener), and only to rt_supabase_url or the embedded
local server. Nothing a client sends (Host header, absolute-form URL, query) chooses the destination.

Once the upgrade has gone upstream (its `response`, or its `error`), the flow shows the request as the
client sent it again: its URL and Host. mitmweb's flow list, a HAR and a flow file then show the address
the client used, not rtproxy's internal one (the embedded server, the relay's `/<flow id>/…`); where it
went stays in the flow's metadata (UPSTREAM_URL) and its server connection.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from urllib.parse import urlsplit

from mitmproxy import ctx, http
from mitmproxy.proxy import mode_specs
from rtproxy_core.events import Event
from rtproxy_core.hop import (
    DEFAULT_COMPAT_DATE,
    MODES,
    ProjectUrl,
    parse_compat_date,
    parse_supabase_url,
    parse_worker_hosts,
)

from . import websockets_missing
from .embedded import EmbeddedUpstream
from .flowevents import ORIGINAL_HEADERS, ORIGINAL_URL, REALTIME, UPSTREAM_URL, client_url, is_upgrade
from .optionerror import reject, running
from .relay import Relay

logger = logging.getLogger("rtproxy")


class Worker:
    """Options rt_supabase_url, rt_worker_host, rt_mode; the `request` hook reroutes."""

    def __init__(self, report: Callable[[str, Event], None]) -> None:
        self.mode = "fixed"
        self.worker_hosts: frozenset[str] = frozenset()
        self.configured: ProjectUrl | None = None  # from rt_supabase_url; None -> embedded server
        self.embedded = EmbeddedUpstream()
        self.relay = Relay(report)

    def load(self, loader) -> None:
        loader.add_option(
            name="rt_supabase_url",
            typespec=str,
            default=os.environ.get("SUPABASE_URL", ""),
            help="Supabase project URL that rerouted Realtime upgrades go to: https://<ref>.supabase.co, "
            "or http://127.0.0.1:PORT for a local server; no path. Default: the SUPABASE_URL "
            "environment variable; empty: rtproxy starts its embedded local Realtime server on a "
            "free loopback port and names it in the log.",
        )
        loader.add_option(
            name="rt_worker_host",
            typespec=str,
            default="",
            help="Comma-separated host names whose WebSocket upgrades are rerouted (the Worker host, as "
            "the client addresses it). Empty: in reverse mode every upgrade arriving at the listener, "
            "in other modes none. Non-upgrade requests are never rerouted.",
        )
        loader.add_option(
            name="rt_mode",
            typespec=str,
            default="fixed",
            choices=MODES,  # mitmproxy's --options help and the console's picker list them; configure checks
            help="fixed: path and query kept verbatim, scheme/host/port/Host/SNI become the Supabase URL's, "
            "the upstream's handshake answer and every frame pass unchanged. relay: the design's JS "
            "relay as intended (path rule, query dropped, 101 before the upstream answers, early frames "
            "dropped, 1011 on upstream failure). as-written: the design's Worker code as written "
            "(answers 426 'Expected WebSocket': Request has no webSocket property). inspect: no "
            "rerouting, decode and track what passes.",
        )
        loader.add_option(
            name="rt_compat_date",
            typespec=str,
            default=DEFAULT_COMPAT_DATE,
            help="relay: the Workers compatibility date emulated (YYYY-MM-DD; default worker/wrangler.toml's). "
            "From 2026-03-17 (websocket_standard_binary_type) binary frames become the text "
            "'[object Blob]'; before it they pass as binary (checked against workerd by "
            "tests/test_parity.py). From 2026-04-07 (web_socket_auto_reply_to_close) an upstream close "
            "without a code ends the client with 1011 'Proxy server error'; before it a client close "
            "without a code ends the upstream with 1011 'Client connection error'.",
        )

    def configure(self, updated: set[str]) -> None:
        # Each bad value is reported (not only the first); a rejected value leaves the old one in effect.
        if "rt_mode" in updated:
            if ctx.options.rt_mode not in MODES:
                reject("rt_mode", f"unknown mode {ctx.options.rt_mode!r}; use one of {', '.join(MODES)}")
            else:
                if running() and ctx.options.rt_mode != self.mode:
                    logger.info(
                        f"rtproxy: rt_mode {self.mode} -> {ctx.options.rt_mode}: new connections use it, "
                        "open ones keep the mode they were opened with"
                    )
                self.mode = ctx.options.rt_mode
        if "rt_compat_date" in updated:
            try:
                self.relay.compat_date = parse_compat_date(ctx.options.rt_compat_date)
            except ValueError as e:
                reject("rt_compat_date", str(e))
        if "rt_supabase_url" in updated:
            value = ctx.options.rt_supabase_url.strip()
            try:
                self.configured = parse_supabase_url(value) if value else None
            except ValueError as e:
                reject("rt_supabase_url", f"{e}; expected https://<ref>.supabase.co or http://127.0.0.1:PORT")
        if "rt_worker_host" in updated:
            hosts = parse_worker_hosts(ctx.options.rt_worker_host)
            bad = [h for h in hosts if "/" in h or ":" in h.strip("[]") and not h.startswith("[")]
            if bad:
                reject("rt_worker_host", f"expected host names without scheme, port or path, got {bad[0]!r}")
            else:
                self.worker_hosts = frozenset(hosts)
        if updated & {"rt_mode", "rt_supabase_url"} and (needs := self._needs_websockets(updated)):
            reject(*needs)
        if (
            self.mode != "inspect"
            and not ("rt_legs" in ctx.options and ctx.options.rt_legs.strip())  # Legs sets inspect next
            and "connection_strategy" in ctx.options
            and ctx.options.connection_strategy != "lazy"
        ):
            # Eager connects to the (placeholder) worker host before any hook can reroute; a worker host
            # that does not exist would then fail every upgrade.
            logger.info("rtproxy: connection_strategy set to lazy so the worker host need not exist")
            ctx.options.update(connection_strategy="lazy")

    def running(self) -> None:
        self._start_servers()
        self._announce()

    def _announce(self) -> None:
        """Say where clients connect and where their upgrades go."""
        if self.mode == "inspect":
            logger.info("rtproxy: mode inspect: nothing is rerouted; Realtime connections are decoded")
            return
        dest = self.current_upstream().base if self.mode != "as-written" else "nowhere (426)"
        server = ctx.master.addons.get("proxyserver")
        addrs = server.listen_addrs() if server else []
        reverse = any(m.startswith("reverse:") for m in ctx.options.mode)
        for host, port, *_ in addrs[:1]:
            origin = f"http://{'127.0.0.1' if host in ('', '::', '0.0.0.0') else host}:{port}"
            if reverse:
                logger.info(
                    f"rtproxy: mode {self.mode}: Realtime clients connect to {origin} as the Worker "
                    f"(supabase-js: createClient('{origin}', key); "
                    f".venv/bin/rtclient {origin} --channel room1); upgrades go to {dest}"
                )
            else:
                hosts = ", ".join(sorted(self.worker_hosts)) or "no host (set rt_worker_host)"
                logger.info(f"rtproxy: mode {self.mode}: proxy at {origin}; upgrades to {hosts} go to {dest}")

    def done(self) -> None:
        self.embedded.stop()
        self.relay.stop()

    def _needs_websockets(self, updated: set[str] | frozenset[str] = frozenset()) -> tuple[str, str] | None:
        """(option, message) when this configuration would run websockets code (the relay, the embedded
        server) that this mitmproxy's Python cannot import. configure rejects that option, so the
        servers never start; of the two options, the one just `updated` is named."""
        if self.mode == "relay" and (missing := websockets_missing()):
            return "rt_mode", f"relay needs {missing}"
        instead = "set rt_supabase_url=https://<ref>.supabase.co"
        if (
            self.mode not in ("inspect", "as-written")
            and self.configured is None
            and (missing := websockets_missing(instead))
        ):
            option = "rt_supabase_url" if "rt_supabase_url" in updated else "rt_mode"
            return option, f"the embedded local Realtime server (rt_supabase_url not set) needs {missing}"
        return None

    def _start_servers(self) -> None:
        if self.mode in ("inspect", "as-written") or self._needs_websockets():
            return
        if self.configured is None:
            self.embedded.start()
        if self.mode == "relay":
            self.relay.start(self.current_upstream())

    def current_upstream(self) -> ProjectUrl:
        # A method, not a property: mitmproxy reads every attribute of an addon when it registers it,
        # and this one starts the embedded server.
        return self.configured or self.embedded.upstream

    def targets(self, flow: http.HTTPFlow) -> bool:
        """Is this upgrade the Worker's to handle? Decided by where the client connected, never by
        headers the client controls."""
        if self.worker_hosts:
            return flow.request.host.lower() in self.worker_hosts
        return isinstance(flow.client_conn.proxy_mode, mode_specs.ReverseMode)

    def response(self, flow: http.HTTPFlow) -> None:
        self._as_the_client_sent_it(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._as_the_client_sent_it(flow)

    @staticmethod
    def _as_the_client_sent_it(flow: http.HTTPFlow) -> None:
        """The rerouted request back to the client's URL (scheme, host, port, path and query; the Host
        header follows), now that it has gone upstream: what mitmproxy shows and stores of the flow."""
        original = flow.metadata.get(ORIGINAL_URL)
        if not original or flow.request.url == original:
            return
        # Not the url setter: it parses the URL as ASCII, and a path may hold any byte the client sent.
        scheme, _, rest = original.partition("://")
        authority, _, path = rest.partition("/")
        where = urlsplit(f"{scheme}://{authority}")
        r = flow.request
        r.scheme, r.host = scheme, where.hostname or authority
        r.port = where.port or (443 if scheme == "https" else 80)
        r.path = f"/{path}"

    def request(self, flow: http.HTTPFlow) -> None:
        if not is_upgrade(flow.request) or flow.response is not None:
            return
        if self.mode == "inspect" or not self.targets(flow):
            return
        r = flow.request
        flow.metadata[REALTIME] = True
        flow.metadata[ORIGINAL_URL] = client_url(flow)
        flow.metadata[ORIGINAL_HEADERS] = list(r.headers.items(multi=True))
        if self.mode == "as-written":
            # `const clientWebSocket = request.webSocket; if (!clientWebSocket) return new Response(
            # 'Expected WebSocket', { status: 426 })` - Request has no webSocket property in Workers.
            flow.response = http.Response.make(
                426, b"Expected WebSocket", {"content-type": "text/plain;charset=UTF-8"}
            )
            return
        if self.mode == "relay":
            self._start_servers()  # mode may have changed at runtime
            r.scheme, r.host, r.port = "http", "127.0.0.1", self.relay.port
            r.path = f"/{flow.id}{r.path}"
            return
        up = self.current_upstream()
        r.scheme, r.host, r.port = up.scheme, up.host, up.port  # setters rewrite Host; SNI follows host
        flow.metadata[UPSTREAM_URL] = r.url
