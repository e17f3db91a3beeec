"""The probe's side of a socket: opening one, the frames it sends, and a reader that collects what comes
back so a check can await the frame it expects."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rtproxy_core import frames
from rtproxy_core.rules import upgrade
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidMessage,
    InvalidStatus,
    InvalidURI,
)
from websockets.http11 import Response
from websockets.typing import Subprotocol


class Unreachable(Exception):
    """The relay could not be reached at all (exit 2)."""


async def open_socket(
    url: str, where: str, timeout: float, subprotocols: Sequence[Subprotocol] | None = None
) -> ClientConnection:
    """Open a socket to `url` (`where`: the same without its query, for messages); Unreachable if nothing
    answers HTTP there. InvalidStatus / InvalidHandshake pass. Unreachable on the first socket ends the
    probe (exit 2); on a later one it fails that check."""
    try:
        return await connect(
            url,
            subprotocols=subprotocols,
            open_timeout=max(timeout, 10),
            close_timeout=timeout,
            ping_interval=None,
            max_size=None,
            proxy=None,
        )
    except InvalidMessage as e:  # no HTTP response at all: not a web server
        raise Unreachable(f"{where}: no valid HTTP response ({e})") from None
    except (InvalidStatus, InvalidHandshake):
        raise
    except (OSError, TimeoutError, InvalidURI) as e:  # refused, DNS, TLS, nothing answering in time
        raise Unreachable(f"{where}: {type(e).__name__}: {e}") from None


def v2(join_ref: str | None, ref: str | None, topic: str, event: str, payload: Any) -> str:
    """A client's 2.0.0 text frame."""
    return frames.encode_text(
        frames.Message(topic, event, payload, ref, join_ref), frames.V2, from_client=True
    )


def heartbeat(ref: str, vsn: str = frames.V2) -> str:
    return frames.encode_text(
        frames.Message(frames.PHOENIX, frames.HEARTBEAT, {}, ref), vsn, from_client=True
    )


def describe_close(ws: ClientConnection) -> str:
    rcvd = ws.protocol.close_rcvd
    if rcvd is None:
        return "without a close frame (TCP connection dropped)"
    return f"{rcvd.code}" + (f" ({rcvd.reason})" if rcvd.reason else "")


NOT_REALTIME = "not a Realtime endpoint"


def not_realtime(r: Response) -> str | None:
    """Why an answer to the upgrade says no Realtime (and no relay to it) is there, or None: a success or a
    redirect instead of 101 (a web page, an SPA's index.html for every path), or an HTML body (a web
    server's error page). Realtime and a hop in front of it refuse an upgrade with an error status and
    their own words (Realtime's JSON {"error": ...}, a gateway's text)."""
    kind = r.headers.get("Content-Type")
    if not (200 <= r.status_code < 400 or kind is not None and "html" in kind.lower()):
        return None
    typed = f'Content-Type "{kind}"' if kind is not None else "no Content-Type"
    where = f', Location "{r.headers["Location"]}"' if "Location" in r.headers else ""
    return (
        f"{NOT_REALTIME}: the upgrade was answered {r.status_code} {r.reason_phrase} with {typed}{where}, "
        f"not 101 (is this the URL the client uses for Realtime?): {body_text(r.body)[:80]}"
    )


def worker_threw(r: Response) -> str | None:
    """How the answer says the Worker's own code threw (rtproxy_core.rules.upgrade.worker_threw, the
    predicate worker-exception uses: workerd's bare 500 "Internal Server Error", Cloudflare's error 1101
    page), or None. Checked before not_realtime: the 1101 page is HTML."""
    text = (r.body or b"").decode("utf-8", "replace")
    if r.status_code != 500 or not upgrade.worker_threw(text):
        return None
    return f"500 {upgrade.threw_text(text)}"


THREW = (
    "the Worker's fetch handler threw instead of answering (an uncaught exception: fetch() given a "
    "ws(s):// URL, a Response with status 101 and no webSocket, request.webSocket, a missing env "
    "var); `wrangler tail` or workerd's log names it"
)


def body_text(body: bytes | None) -> str:
    text = (body or b"").decode("utf-8", "replace").strip()
    return text[:200] if text else "(empty body)"


@dataclass
class Received:
    raw: str | bytes
    msg: frames.Message | None
    error: str | None = None


@dataclass
class ProbeSocket:
    """One probe socket: a reader task collects every frame; `expect` awaits one matching a predicate."""

    ws: ClientConnection
    timeout: float
    received: list[Received] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    refs: Any = field(default_factory=lambda: itertools.count(1))

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            async for data in self.ws:
                try:
                    msg = frames.decode(data, binary=isinstance(data, bytes), from_client=False)
                    self.received.append(Received(data, msg))
                except frames.DecodeError as e:
                    self.received.append(Received(data, None, str(e)))
                self.changed.set()
        except ConnectionClosed:
            pass
        finally:
            self.changed.set()

    @property
    def closed(self) -> bool:
        return self._task.done()

    async def wait_closed(self) -> None:
        """Until the reader has seen the socket close."""
        await self._task

    def ref(self) -> str:
        return str(next(self.refs))

    async def send(self, data: str | bytes) -> bool:
        try:
            await self.ws.send(data)
            return True
        except ConnectionClosed:
            return False

    async def expect(self, match: Callable[[Received], bool], start: int = 0) -> Received | None:
        """The first frame from index `start` on that matches, awaited up to the timeout; None if the
        socket closed or the time ran out first."""

        async def scan() -> Received | None:
            i = start
            while True:
                for r in self.received[i:]:
                    if match(r):
                        return r
                i = len(self.received)
                if self.closed:
                    return None
                self.changed.clear()
                await self.changed.wait()

        try:
            return await asyncio.wait_for(scan(), self.timeout)
        except TimeoutError:
            return None


def is_reply(ref: str, topic: str | None = None) -> Callable[[Received], bool]:
    def match(r: Received) -> bool:
        m = r.msg
        return (
            m is not None
            and m.event == frames.PHX_REPLY
            and m.ref == ref
            and (topic is None or m.topic == topic)
        )

    return match


def reply_status(r: Received) -> str:
    p = r.msg.payload if r.msg else None
    return p.get("status", "?") if isinstance(p, dict) else "?"


def reply_reason(r: Received) -> str:
    p = r.msg.payload if r.msg else None
    resp = p.get("response") if isinstance(p, dict) else None
    if isinstance(resp, dict) and "reason" in resp:
        return str(resp["reason"])
    return json.dumps(frames.jsonable(resp))[:200]
