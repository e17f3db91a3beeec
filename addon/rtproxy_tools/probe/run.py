"""One probe run: the socket, the key, how long to wait for an answer, and what the checks found so far.
The checks themselves are functions of it, one module per socket they use: session.py (a, b, d, then
socket_checks.py's e, f, g on the same socket) and handshake.py (c and h, a socket each)."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from urllib.parse import quote

from rtproxy_core import frames, rules, urls
from websockets.asyncio.client import ClientConnection
from websockets.typing import Subprotocol

from . import handshake, session
from .checks import CHECKS, SKIP, ProbeResult
from .output import Scrubber
from .wire import open_socket, v2


class Probe:
    """Runs the checks against one target."""

    def __init__(self, target: urls.RealtimeUrl, key: str, timeout: float, scrub: Scrubber) -> None:
        self.ws_base = target.socket
        self.key = key
        self.timeout = timeout
        self.scrub = scrub
        self.results = {c.name: ProbeResult(c) for c in CHECKS}
        self.topic = f"realtime:rtprobe-{secrets.token_hex(3)}"

    async def run(self) -> list[ProbeResult]:
        await session.check_session(self)
        await handshake.check_upstream_status(self)
        await handshake.check_subprotocol(self)
        return [self.results[c.name] for c in CHECKS]

    def url(self, key: str) -> str:
        return f"{self.ws_base}?apikey={quote(key, safe='')}&vsn=2.0.0"

    def set(self, name: str, status: str, detail: str, code: str | None = None) -> None:
        """Record a check's outcome; `code`: the finding a failure's evidence names, when it is not the
        check's own."""
        r = self.results[name]
        r.status, r.detail = status, self.scrub.text(detail)
        r.code = rules.RULES_BY_CODE[code or r.check.code].code  # KeyError: a code no rule has

    def skip(self, names: list[str], why: str) -> None:
        for n in names:
            if self.unset(n):
                self.set(n, SKIP, f"not checked: {why}")

    def unset(self, name: str) -> bool:
        """Whether no outcome was recorded for `name` yet."""
        return self.results[name].status == SKIP and not self.results[name].detail

    async def open(self, key: str, subprotocols: Sequence[Subprotocol] | None = None) -> ClientConnection:
        """A socket to the target with `key`, waiting for the answers the checks wait for (wire.open_socket:
        Unreachable ends the probe on the first socket and fails the check on a later one)."""
        return await open_socket(self.url(key), self.ws_base, self.timeout, subprotocols)

    def join_frame(self, ref: str, presence_key: str | None = None) -> str:
        """The probe's phx_join; with `presence_key`, presence enabled under that key."""
        payload = {
            "config": {
                "broadcast": {"self": True, "ack": False},
                "presence": {"key": presence_key or "", "enabled": presence_key is not None},
                "postgres_changes": [],
                "private": False,
            }
        }
        return v2(ref, ref, self.topic, frames.PHX_JOIN, payload)
