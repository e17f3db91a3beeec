"""Upstream stand-ins for tests that need to control the server side of a WebSocket (close it, drop it):
real `websockets` servers on 127.0.0.1."""

from __future__ import annotations

import asyncio

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed


class Upstream:
    """A WebSocket server a Worker connects to: `conns` gets each connection as it opens, `received` each
    message, `closed[conn]` the close frame it got ((code, reason), or None)."""

    def __init__(self) -> None:
        self.conns: asyncio.Queue[ServerConnection] = asyncio.Queue()
        self.received: asyncio.Queue[str | bytes] = asyncio.Queue()
        self.closed: dict[ServerConnection, asyncio.Future] = {}

    async def handler(self, ws: ServerConnection) -> None:
        done = self.closed[ws] = asyncio.get_running_loop().create_future()
        await self.conns.put(ws)
        try:
            async for message in ws:
                await self.received.put(message)
        except ConnectionClosed:
            pass
        rcvd = ws.protocol.close_rcvd
        done.set_result((rcvd.code, rcvd.reason) if rcvd else None)

    async def __aenter__(self) -> str:
        self._server = await serve(self.handler, "127.0.0.1", 0, compression=None)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc) -> None:
        self._server.close()
        await self._server.wait_closed()
