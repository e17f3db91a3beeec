"""LocalRealtime: a Supabase-Realtime-compatible WebSocket server on loopback, for development and tests.

It is rtproxy's embedded default upstream, started from a synchronous mitmproxy hook inside mitmproxy's
running loop: `bind()` opens the listening socket synchronously (so the URL is known at once; the kernel
queues early connections) and `serve()` serves it in a task.

Fidelity (supabase/realtime 833cf36, docs/sources.md): the upgrade is answered like
RealtimeWeb.UserSocket.connect/3 + handle_error/2 (JSON `{"error": ...}` bodies after
CONNECT_ERROR_BACKOFF_MS; 403 with an empty body for an unsupported vsn, from Phoenix); frames the
socket's serializer cannot decode, invalid UTF-8 included, are dropped without a reply and the socket
stays open (RealtimeWeb.Socket.handle_in/2 rescues them; the endpoint sets validate_utf8: false); the
server never pings or heartbeats; a socket that receives nothing for idle_timeout_s is closed with 1000,
like cowboy; RealtimeChannel.Tracker kills sockets whose channels are all gone (no close frame) every
no_channel_timeout_s; a tenant drain and a shutdown close sockets with 1012.

TLS (`LocalRealtime(config, tls=True)`): the same server over https/wss with a throwaway local CA
(tls.py), so a Worker in workerd can be given an https:// project URL as in production; `.url` is then
https://…, and `.ca_pem` the CA clients must trust.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import http
import itertools
import json
import logging
import socket
import ssl
from collections.abc import AsyncIterator
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from rtproxy_core import closecodes, frames
from rtproxy_core.catalog import say
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response

from . import jwt
from .channels import Hub
from .config import ServerConfig
from .state import Close, Conn, Seen, key_digest
from .tls import LocalTLS

__all__ = ["LocalRealtime", "ServerConfig"]

log = logging.getLogger("rtproxy.local")
# websockets' own "connection open"/"rejected" lines repeat ours; keep them out of the addon's log.
_ws_log = logging.getLogger("rtproxy.local.websockets")
_ws_log.setLevel(logging.WARNING)

WS_PATHS = ("/realtime/v1/websocket", "/socket/websocket")  # gateway path, and Realtime's own mount
EMIT_PATH = "/local/v1/emit"
SHUTDOWN_CODE = closecodes.SERVICE_RESTART  # Phoenix :socket_drain
_UPGRADE_REFUSALS = {
    jwt.MALFORMED: "upgrade.token_malformed",
    jwt.SIGNATURE: "upgrade.signature_error",
    jwt.SIGNER: "upgrade.error_generating_signer",
    jwt.EXPIRED: "upgrade.expired_token",
    jwt.CLAIMS: "upgrade.missing_claims",
}


class _Connection(ServerConnection):
    """Notes when bytes last arrived (cowboy restarts its idle timer on any data, pings included) and
    whether each message started as a text or a binary frame, so messages can be read as bytes: Realtime
    does not validate UTF-8 (websockets would close with 1007)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.last_rx = self.loop.time()
        self.rt: tuple[str, str, str] | None = None  # (vsn, tenant, token) once the upgrade is accepted
        self.seen: Seen | None = None
        self.text_messages: collections.deque[bool] = collections.deque()

    def data_received(self, data: bytes) -> None:
        self.last_rx = self.loop.time()
        super().data_received(data)

    def process_event(self, event: Any) -> None:
        if isinstance(event, Frame) and event.opcode in (Opcode.TEXT, Opcode.BINARY):
            self.text_messages.append(event.opcode is Opcode.TEXT)
        super().process_event(event)


def _response(status: int, body: bytes = b"", content_type: str | None = None) -> Response:
    headers = Headers(
        [("Date", formatdate(usegmt=True)), ("Connection", "close"), ("Content-Length", str(len(body)))]
    )
    if content_type:
        headers["Content-Type"] = content_type
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = ""  # forced odd statuses (reject_upgrade) have no standard phrase
    return Response(status, phrase, headers, body)


def _json(status: int, obj: Any) -> Response:
    body = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
    return _response(status, body, "application/json; charset=utf-8")


def _tenant(host: str) -> str:
    """Realtime's external_id: the Host's first label (String.split(host, ".", parts: 2)), port stripped."""
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host[1:]
    else:
        host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return host.split(".", 1)[0]


class LocalRealtime:
    """`tls`: False serves ws:// and http://; True makes a throwaway CA and a loopback certificate
    (tls.LocalTLS.create()) and serves wss:// and https://; a LocalTLS serves that one."""

    def __init__(self, config: ServerConfig | None = None, *, tls: bool | LocalTLS = False) -> None:
        self.config = config if config is not None else ServerConfig()
        self.tls: LocalTLS | None = LocalTLS.create() if tls is True else tls or None
        self.hub = Hub(self)  # reads self.config on each use, so the config can be swapped
        self.host: str | None = None
        self.port: int | None = None
        self._sock: socket.socket | None = None
        self._server: Server | None = None
        self._ids = itertools.count(1)
        self._seen_ids = itertools.count(1)
        self._handlers: set[asyncio.Task[Any]] = set()
        self._closing = False
        self._serve_started = False
        self._done = asyncio.Event()
        self._shutdown: asyncio.Task[None] | None = None
        # The last upgrades as the server saw them (Seen: no credential in it), newest last.
        self.seen: collections.deque[Seen] = collections.deque(maxlen=256)

    # ------------------------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        if self.host is None or self.port is None:
            raise RuntimeError("bind() first")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    @property
    def ca_pem(self) -> str | None:
        """The PEM of the CA that signed the server's certificate (None without TLS): what clients trust."""
        return self.tls.ca_pem if self.tls else None

    def client_ssl(self) -> ssl.SSLContext | None:
        """A client context trusting this server's CA (None without TLS)."""
        return self.tls.client_context() if self.tls else None

    @property
    def connections(self) -> int:
        """Open WebSockets (upgraded and not yet closed)."""
        return len(self.hub.conns)

    def bind(self, host: str = "127.0.0.1", port: int = 0) -> LocalRealtime:
        """Open the listening socket now, synchronously; sets .host, .port and .url."""
        if self._sock is not None:
            raise RuntimeError("already bound")
        family, _, _, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(addr)
            sock.listen(128)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self.host, self.port = sock.getsockname()[:2]
        return self

    def disconnect(self, tenant: str | None = None) -> int:
        """UserSocket.disconnect/1, what Realtime does when a tenant's settings change or it is deleted or
        reloaded: every joined channel gets `system` "Server requested disconnect", then the tenant's
        sockets close with 1012. None: every tenant. Returns how many sockets."""
        return self.hub.disconnect_tenant(tenant)

    async def serve(self) -> None:
        """Serve the bound socket until close()."""
        if self._sock is None:
            raise RuntimeError("bind() first")
        if self._serve_started:
            raise RuntimeError("serve() already called")
        self._serve_started = True
        try:
            if self._closing:
                return
            # create_connection=_Connection: every connection the handlers get is one.
            self._server = await serve(
                self._handler,  # type: ignore[arg-type]
                sock=self._sock,
                ssl=self.tls.server_context() if self.tls else None,
                process_request=self._process_request,  # type: ignore[arg-type]
                create_connection=_Connection,
                compression=None,  # no deflate: byte-predictable frames
                ping_interval=None,  # Realtime never pings; only clients keep the socket alive
                max_size=self.config.max_frame_bytes,
                open_timeout=30,
                server_header=None,
                logger=_ws_log,
            )
            log.info("local Realtime listening at %s", self.url)
            if self._closing:
                self._begin_shutdown()
            sweeper = asyncio.get_running_loop().create_task(self._sweep_channelless())
            try:
                await self._server.wait_closed()
            finally:
                sweeper.cancel()
                self.hub.close()
        finally:
            self._done.set()

    def close(self) -> None:
        """Stop listening and close every socket with 1012. Idempotent; await wait_closed() after."""
        if self._closing:
            return
        self._closing = True
        if self._server is not None:
            self._begin_shutdown()
        elif not self._serve_started and self._sock is not None:
            self._sock.close()  # serve() never ran; it will return at once if it does

    async def wait_closed(self) -> None:
        if self._serve_started:
            await self._done.wait()

    @contextlib.asynccontextmanager
    async def running(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[LocalRealtime]:
        self.bind(host, port)
        task = asyncio.get_running_loop().create_task(self.serve())
        try:
            yield self
        finally:
            self.close()
            await self.wait_closed()
            await task

    def _begin_shutdown(self) -> None:
        assert self._server is not None
        self._server.server.close()  # stop accepting at once
        for conn in list(self.hub.conns):
            conn.cause = conn.cause or "server shutdown"
            conn.close(SHUTDOWN_CODE)
        # The server's loop, not get_running_loop(): close() may come from a sync hook outside a task.
        self._shutdown = self._server.get_loop().create_task(self._finish_shutdown())

    async def _finish_shutdown(self) -> None:
        assert self._server is not None
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=5)
        self._server.close()  # stragglers get websockets' 1001; waits for every handler

    # ------------------------------------------------------------------------------------ API

    def emit_postgres_change(
        self,
        *,
        schema: str = "public",
        table: str,
        type: str = "INSERT",
        record: dict[str, Any] | None = None,
        old_record: dict[str, Any] | None = None,
    ) -> int:
        """Deliver a fake row change to every channel with a matching binding; returns how many."""
        n = self.hub.emit_postgres_change(schema, table, type, record, old_record)
        log.debug("postgres change %s %s.%s delivered to %d channel(s)", type, schema, table, n)
        return n

    # ------------------------------------------------------------------------------------ upgrade

    async def _process_request(self, ws: _Connection, request: Request) -> Response | None:
        cfg = self.config
        parts = urlsplit(request.path)
        path = parts.path  # never log the query: it holds the apikey
        query = dict(parse_qsl(parts.query, keep_blank_values=True))  # Plug: the last duplicate wins
        if path == EMIT_PATH:
            return self._emit_http(query)
        if path not in WS_PATHS:
            log.info("rejected %s: 404 no route", path)
            return _response(404, b"Not Found", "text/plain; charset=utf-8")
        vsn = frames.vsn_family(query.get("vsn"))
        if vsn is None:  # Phoenix negotiates the serializer before UserSocket.connect: no backoff
            log.info("rejected %s: 403 unsupported vsn %r", path, (query.get("vsn") or "")[:20])
            return _response(403)
        tenant = _tenant(request.headers.get("Host", ""))
        api_keys = request.headers.get_all("x-api-key")  # access_token/2: :proplists.lookup, the first one
        token = api_keys[0] if api_keys else query.get("apikey")
        refusal = self._connect_refusal(tenant, token)
        seen = Seen(next(self._seen_ids), path, query.get("vsn"), key_digest(token), "")
        self.seen.append(seen)
        if refusal is not None:
            status, message = refusal
            seen.answer = f"{status} {message}".rstrip()
            await asyncio.sleep(max(cfg.connect_error_backoff_ms, 0) / 1000)
            log.info("rejected %s tenant=%s: %d %s", path, tenant, status, message)
            return _json(status, {"error": message}) if message else _response(status)
        assert token is not None
        ws.rt = (vsn, tenant, token)
        ws.seen = seen
        ws.protocol.max_size = cfg.max_frame_bytes  # per connection, so runtime changes apply
        return None

    def _connect_refusal(self, tenant: str, token: str | None) -> tuple[int, str] | None:
        """UserSocket.connect/3's checks, in its order, answered as handle_error/2 does."""
        cfg = self.config
        if cfg.reject_upgrade is not None:
            return cfg.reject_upgrade
        if cfg.tenants and tenant not in cfg.tenants:
            return 404, say("upgrade.tenant_not_found")
        if tenant in cfg.disabled_tenants:
            return 403, say("upgrade.tenant_suspended")
        if token is None:
            return 401, say("upgrade.missing_api_key")
        if not cfg.accept_any_apikey:
            try:
                jwt.verify(token, cfg.jwt_secret)
            except jwt.JWTError as e:
                key = _UPGRADE_REFUSALS.get(e.kind, "upgrade.error")  # error_response/1's catch-all: 500
                return (401 if key != "upgrade.error" else 500), say(key)
        # TenantRateLimiters.check_tenant/1: users (sockets that joined a channel), then joins per second
        if cfg.max_concurrent_users is not None and self.hub.users(tenant) >= cfg.max_concurrent_users:
            return 429, say("upgrade.too_many_connections")
        if self.hub.rate(tenant, "joins").triggered:
            return 429, say("upgrade.too_many_joins")
        return None

    def _emit_http(self, query: dict[str, str]) -> Response:
        """GET /local/v1/emit?schema=&table=&type=&record=<JSON>[&old_record=<JSON>] -> {"delivered": N}."""
        try:
            record = json.loads(query["record"]) if "record" in query else None
            old = json.loads(query["old_record"]) if "old_record" in query else None
            if not all(v is None or isinstance(v, dict) for v in (record, old)):
                raise ValueError("record and old_record must be JSON objects")
            if not query.get("table"):
                raise ValueError("table is required")
            n = self.emit_postgres_change(
                schema=query.get("schema") or "public",
                table=query["table"],
                type=query.get("type") or "INSERT",
                record=record,
                old_record=old,
            )
        except ValueError as e:
            return _json(400, {"error": str(e)})
        return _json(200, {"delivered": n})

    # ------------------------------------------------------------------------------------ sockets

    async def _handler(self, ws: _Connection) -> None:
        assert ws.rt is not None
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        conn = Conn(next(self._ids), *ws.rt)
        if ws.seen is not None:
            ws.seen.answer = "101"
        self.hub.add(conn)
        cfg = self.config
        assert ws.request is not None
        log.info(
            "conn %d open: %s vsn=%s tenant=%s peer=%s",
            conn.id,
            urlsplit(ws.request.path).path,
            conn.vsn,
            conn.tenant,
            ws.remote_address,
        )
        loop = asyncio.get_running_loop()
        helpers = [loop.create_task(self._writer(conn, ws)), loop.create_task(self._idle_watch(conn, ws))]
        if cfg.close_after_s is not None:
            helpers.append(
                loop.create_task(self._close_after(conn, cfg.close_after_s, cfg.close_code, cfg.close_reason))
            )
        conn.abort = ws.transport.abort
        try:
            while True:
                data = await ws.recv(decode=False)  # bytes either way; the opcode is in text_messages
                await self._on_frame(conn, data, text=ws.text_messages.popleft())
        except ConnectionClosed:
            pass
        finally:
            self.hub.remove(conn)
            for t in helpers:
                t.cancel()
            self._handlers.discard(task)
            story = self._close_story(ws, conn)
            if ws.seen is not None:
                rcvd = ws.protocol.close_rcvd
                ws.seen.close = story
                ws.seen.client_close = rcvd.code if rcvd is not None else None
            log.info("conn %d closed: %s", conn.id, story)

    @staticmethod
    def _close_story(ws: _Connection, conn: Conn) -> str:
        proto = ws.protocol
        rcvd, sent, client_first = proto.close_rcvd, proto.close_sent, proto.close_rcvd_then_sent
        if client_first:
            return f"client sent {rcvd.code if rcvd else '?'}"
        if client_first is False and sent is not None:
            return f"server sent {sent.code}" + (f" ({conn.cause})" if conn.cause else "")
        return "no close handshake" + (f" ({conn.cause})" if conn.cause else "")

    async def _on_frame(self, conn: Conn, data: bytes, text: bool) -> None:
        try:
            msg = frames.decode(data, binary=not text, from_client=True)
        except frames.DecodeError as e:  # RealtimeWeb.Socket.handle_in/2: MalformedWebSocketMessage
            log.debug("conn %d: dropped undecodable frame: %s", conn.id, e)
            return
        if not Hub.accepts(conn, msg):
            log.debug(
                "conn %d: dropped %s frame (kind %s) on a %s socket", conn.id, msg.shape, msg.kind, conn.vsn
            )
            return
        log.debug("conn %d <- %s %s ref=%s join_ref=%s", conn.id, msg.event, msg.topic, msg.ref, msg.join_ref)
        try:
            await self.hub.handle(conn, msg, data)
        except Exception:  # a bug here must not kill the socket: Realtime would only lose the channel
            log.exception("conn %d: failed to handle %s on %s", conn.id, msg.event, msg.topic)

    async def _writer(self, conn: Conn, ws: _Connection) -> None:
        """Drains conn.outq in order; a Close item ends the socket after what was queued before it."""
        while True:
            item = await conn.outq.get()
            try:
                if isinstance(item, Close):
                    if item.code == closecodes.NO_CODE:
                        await ws.close(None, "")  # type: ignore[arg-type]  # close frame without a code
                    elif closecodes.websockets_can_send(item.code):
                        await ws.close(item.code, item.reason)
                    else:  # 1006 and other unsendable codes: drop the TCP connection, no close frame
                        ws.transport.abort()
                    return
                log.debug(
                    "conn %d -> %d %s", conn.id, len(item), "bytes" if isinstance(item, bytes) else "chars"
                )
                await ws.send(item)
            except ConnectionClosed:
                return

    async def _idle_watch(self, conn: Conn, ws: _Connection) -> None:
        loop = asyncio.get_running_loop()
        while True:
            idle = self.config.idle_timeout_s
            if idle is None or idle <= 0:
                await asyncio.sleep(1.0)  # disabled; look again in case the config changes
                continue
            remaining = ws.last_rx + idle - loop.time()
            if remaining <= 0:
                conn.cause = f"idle {idle:g}s"
                conn.close(closecodes.NORMAL)
                return
            await asyncio.sleep(remaining)

    async def _sweep_channelless(self) -> None:
        """RealtimeChannel.Tracker: every no_channel_timeout_s, sockets whose channel count is down to 0
        (a join was tried and every channel has ended since) are killed; the client sees no close frame.
        A socket that never tried a join is not tracked, so not swept (cowboy's idle timeout applies)."""
        while True:
            interval = self.config.no_channel_timeout_s
            await asyncio.sleep(interval if interval and interval > 0 else 1.0)
            if not interval or interval <= 0:
                continue
            for conn in list(self.hub.conns):
                if conn.tracked and conn.channel_processes <= 0 and conn.abort is not None:
                    conn.cause = f"no channel for a {interval:g} s sweep"
                    conn.closing = True
                    log.info("conn %d: killed by the channel tracker (no channels)", conn.id)
                    conn.abort()

    async def _close_after(self, conn: Conn, delay: float, code: int, reason: str) -> None:
        await asyncio.sleep(delay)
        conn.cause = f"close_after_s {delay:g}"
        conn.close(code, reason)
