"""The embedded default upstream: rtproxy's local Realtime server, started inside mitmproxy's event loop
when no Supabase URL is configured, so rtproxy works out of the box."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from rtproxy_core.hop import ProjectUrl

if TYPE_CHECKING:
    from rtproxy_local.server import LocalRealtime

logger = logging.getLogger("rtproxy")


class EmbeddedUpstream:
    def __init__(self) -> None:
        self.server: LocalRealtime | None = None
        self._task: asyncio.Task | None = None

    @property
    def upstream(self) -> ProjectUrl:
        """Starts the server on first use (the Worker only asks when no rt_supabase_url is set)."""
        if self.server is None:
            self.start()
        assert self.server is not None and self.server.port is not None
        return ProjectUrl("http", "127.0.0.1", self.server.port)

    def start(self) -> None:
        if self.server is not None:
            return
        # Imported here: the server is websockets code, and a mitmproxy without websockets runs rtproxy
        # with a Supabase URL (the Worker says what to install when this would be needed).
        from rtproxy_local.server import LocalRealtime, ServerConfig

        # rtproxy logs each connection itself; the server's own per-connection lines would repeat it.
        logging.getLogger("rtproxy.local").setLevel(logging.WARNING)
        self.server = LocalRealtime(ServerConfig())
        self.server.bind("127.0.0.1", 0)  # synchronous: the port is known before the first flow
        self._task = asyncio.get_running_loop().create_task(self.server.serve())
        logger.info(f"rtproxy: no rt_supabase_url set; embedded local Realtime server at {self.server.url}")

    def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        if self._task is not None:
            self._task.cancel()
        self.server = self._task = None
