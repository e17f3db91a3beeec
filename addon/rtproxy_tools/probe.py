"""Check a relay in front of Supabase Realtime (a deployed Worker, nginx, rtproxy) against what Realtime
needs, from the client side.

    rtprobe https://myapp.example.com                   # the base URL supabase-js is given
    rtprobe wss://myapp.example.com/realtime/v1/websocket?apikey=...&vsn=2.0.0   # the socket's own URL
    rtprobe http://127.0.0.1:8080 --json --key "$SUPABASE_ANON_KEY"

The URL is the one a client uses: ws://, wss://, http:// or https://, the project URL (the host, with
any path prefix: /realtime/v1 goes under it, as supabase-js puts it) or the host with the path
[/prefix]/realtime/v1[/websocket] (a self-hosted Realtime: /socket[/websocket]), trailing slash or not.
All of them probe the same socket, <host>[/prefix]/realtime/v1/websocket (or …/socket/websocket), the one
rtclient and rtreplay --client connect to for that URL (rtproxy_core.urls). An apikey in the URL's query
is the key unless --key is given; the probe sends its own vsn=2.0.0.

Each check is PASS, FAIL, or SKIP when an earlier failure left nothing to check it on. A failure names
the finding it is evidence of (the codes rtdiagnose and the addon report, rtproxy_core.rules) and prints
that finding's fix.

Exit 0 when every check passes, 1 otherwise, 2 when the relay is unreachable or the arguments are bad.
The key (default: the URL's apikey, $SUPABASE_ANON_KEY, else the local dev anon key) and every other
secret (JWTs, apikey= in URLs and reasons) are redacted in all output unless --show-secrets.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from rtproxy_core import catalog, closecodes, frames, rules, urls
from rtproxy_core.hop import BLOB_TEXT
from rtproxy_core.redact import REDACTED, Redactor
from rtproxy_core.session import realtime_error
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidMessage,
    InvalidStatus,
    InvalidURI,
)

INVALID_KEY = "not-a-jwt"
# A private-use code every hop can pass on (closecodes: sendable through mitmproxy, accepted by a Worker's
# close() and by websockets), so an answer with another code is the relay's doing.
CLOSE_CODE, CLOSE_REASON = 4000, "probe"
PASS, FAIL, SKIP = "pass", "fail", "skip"


@dataclass(frozen=True, slots=True)
class Scrubber:
    """Everything rtprobe prints passes through here: the key wherever it appears (it need not look like
    a secret), then the Redactor (JWTs, apikey=, sb_ keys). --show-secrets turns both off."""

    redactor: Redactor
    key: str = ""

    def _key(self, s: str) -> str:
        if not self.key or self.redactor.show_secrets:
            return s
        return s.replace(self.key, REDACTED).replace(quote(self.key, safe=""), REDACTED)

    def text(self, s: str) -> str:
        return self.redactor.text(self._key(s))

    def url(self, s: str) -> str:
        return self.redactor.url(self._key(s))

    def output(self, value: Any) -> Any:
        """The last pass over what is printed, whole (Redactor.output), the key replaced in every string
        of it first: pieces are scrubbed where they are built, this catches what a piece missed."""

        def keyed(v: Any) -> Any:
            if isinstance(v, str):
                return self._key(v)
            if isinstance(v, dict):
                return {k: keyed(x) for k, x in v.items()}
            if isinstance(v, list):
                return [keyed(x) for x in v]
            return v

        return self.redactor.output(keyed(value))


# ---------------------------------------------------------------------------------------------- checks


@dataclass(frozen=True, slots=True)
class ProbeCheck:
    """One check of the probe: its name, what it verifies, and the finding (a code of rules.CODES) its
    failure is evidence of. The fix printed for a failure is that finding's fix, so rtprobe, rtdiagnose
    and the addon share one list of causes and fixes. A failure whose evidence names another finding
    carries that one instead (ProbeResult.code)."""

    name: str
    code: str
    verifies: str


CHECKS = (
    ProbeCheck(
        "a-query",
        "apikey-missing",
        "the query string reaches the server: with the apikey the upgrade gets 101 and the socket's first "
        "frame is answered",
    ),
    ProbeCheck(
        "b-vsn",
        "vsn-missing",
        "vsn reaches the server: a 2.0.0 array `phx_join` gets a 2.0.0 `phx_reply`",
    ),
    ProbeCheck(
        "c-upstream-status",
        "early-101",
        "the relay does not answer 101 before the server: an invalid apikey gets the server's 401 JSON "
        "body, not a 101",
    ),
    ProbeCheck(
        "d-early-frames",
        "join-dropped-by-proxy",
        "a `phx_join` sent right after open is answered (no frames dropped while the relay connects)",
    ),
    ProbeCheck("e-heartbeat", "heartbeat-timeout", "heartbeats are answered"),
    ProbeCheck(
        "f-binary",
        "binary-as-text",
        "binary frames stay binary: a kind-3 broadcast on a `broadcast.self` channel comes back as a "
        'binary kind-4 frame (not text, not "[object Blob]")',
    ),
    # No rule says "the hop does not forward the client's close": reserved-close-code is the closest (the
    # rule about how a hop calls close(), and its symptom, a client leg left open, is what a missing close
    # answer shows). Proposed rule `close-not-forwarded`, whose fix would be: forward the client's close
    # code and reason upstream (close(event.code, event.reason)) and complete the closing handshake; map a
    # code a Worker's close() refuses (closecodes.worker_close_error, closecodes.WORKER_THROWS) to 1000.
    ProbeCheck(
        "g-close",
        "reserved-close-code",
        f"a client close completes with its code: close {CLOSE_CODE} {CLOSE_REASON!r} is answered with "
        f"{CLOSE_CODE} (what the server received is not visible from a client)",
    ),
    # No rule covers a subprotocol the server did not select: upgrade-rejected is the closest (a browser
    # fails the handshake of a 101 that selects a subprotocol it did not offer, and offering one must not
    # turn the upgrade into a refusal). Proposed rule `subprotocol-mismatch`.
    ProbeCheck(
        "h-subprotocol",
        "upgrade-rejected",
        "offering `Sec-WebSocket-Protocol: phoenix` still upgrades, and the 101 selects none (as Realtime)",
    ),
)
BY_NAME = {c.name: c for c in CHECKS}


@dataclass(slots=True)
class ProbeResult:
    """What one check found."""

    check: ProbeCheck
    status: str = SKIP
    detail: str = ""
    code: str = ""  # the finding: check.code, or the one a failure's evidence names instead

    def __post_init__(self) -> None:
        self.code = self.code or self.check.code

    @property
    def name(self) -> str:
        return self.check.name

    @property
    def ok(self) -> bool | None:
        return None if self.status == SKIP else self.status == PASS

    @property
    def fix(self) -> str:
        return rules.CODES[self.code].fix if self.status == FAIL else ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "code": self.code,
            "ok": self.ok,
            "status": self.status,
            "detail": self.detail,
            "fix": self.fix,
        }


def refusal_code(error: str | None) -> str:
    """The finding for a refused upgrade: the one catalog.py names for Realtime's {"error": …}, else
    upgrade-rejected (the answer was not an upgrade)."""
    said = catalog.lookup(error, catalog.UPGRADE) if error else None
    return said.finding if said is not None and said.finding else "upgrade-rejected"


class Unreachable(Exception):
    """The relay could not be reached at all (exit 2)."""


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


class Probe:
    """Runs the checks against one target."""

    def __init__(self, target: urls.RealtimeUrl, key: str, timeout: float, scrub: Scrubber) -> None:
        self.ws_base = target.socket
        self.key = key
        self.timeout = timeout
        self.scrub = scrub
        self.results = {c.name: ProbeResult(c) for c in CHECKS}
        self.topic = f"realtime:rtprobe-{secrets.token_hex(3)}"
        self.join_ref = ""  # ref of the phx_join the server answered

    # ------------------------------------------------------------------------------------ helpers

    def url(self, key: str) -> str:
        return f"{self.ws_base}?apikey={quote(key, safe='')}&vsn=2.0.0"

    def set(self, name: str, status: str, detail: str, code: str | None = None) -> None:
        """Record a check's outcome; `code`: the finding a failure's evidence names, when it is not the
        check's own."""
        r = self.results[name]
        r.status, r.detail = status, self.scrub.text(detail)
        r.code = rules.CODES[code or r.check.code].code  # KeyError: a code no rule has

    def skip(self, names: list[str], why: str) -> None:
        for n in names:
            if self.results[n].status == SKIP and not self.results[n].detail:
                self.set(n, SKIP, f"not checked: {why}")

    async def open(self, key: str, subprotocols: list[str] | None = None) -> ClientConnection:
        """Open a socket; Unreachable if nothing answers HTTP there. InvalidStatus / InvalidHandshake pass.
        Unreachable on the first socket ends the probe (exit 2); on a later one it fails that check."""
        try:
            return await connect(
                self.url(key),
                subprotocols=subprotocols,
                open_timeout=max(self.timeout, 10),
                close_timeout=self.timeout,
                ping_interval=None,
                max_size=None,
                proxy=None,
            )
        except InvalidMessage as e:  # no HTTP response at all: not a web server
            raise Unreachable(f"{self.ws_base}: no valid HTTP response ({e})") from None
        except (InvalidStatus, InvalidHandshake):
            raise
        except (OSError, TimeoutError, InvalidURI) as e:  # refused, DNS, TLS, nothing answering in time
            raise Unreachable(f"{self.ws_base}: {type(e).__name__}: {e}") from None

    # ------------------------------------------------------------------------------------ checks

    async def run(self) -> list[ProbeResult]:
        await self.session_checks()
        await self.check_upstream_status()
        await self.check_subprotocol()
        return [self.results[c.name] for c in CHECKS]

    def join_frame(self, ref: str) -> str:
        payload = {
            "config": {
                "broadcast": {"self": True, "ack": False},
                "presence": {"key": "", "enabled": False},
                "postgres_changes": [],
                "private": False,
            }
        }
        return v2(ref, ref, self.topic, frames.PHX_JOIN, payload)

    async def session_checks(self) -> None:
        """a, b, d, e, f, g on one socket, in the order a client uses it."""
        later = ["b-vsn", "d-early-frames", "e-heartbeat", "f-binary", "g-close"]
        try:
            ws = await self.open(self.key)
        except InvalidStatus as e:
            r = e.response
            err = realtime_error(r.body)
            code = refusal_code(err)
            if code == "apikey-missing":
                self.set(
                    "a-query",
                    FAIL,
                    f"{r.status_code} {err}: the apikey in the query string never reached "
                    "the server (the relay drops the query)",
                )
            else:  # what refused it names the finding: Realtime's words (catalog.py), else upgrade-rejected
                self.set(
                    "a-query",
                    FAIL,
                    f"upgrade refused: {r.status_code} {err or body_text(r.body)}",
                    code=code,
                )
            self.skip(later, "no socket (see a-query)")
            return
        except InvalidHandshake as e:
            self.set("a-query", FAIL, f"broken handshake: {e}", code="upgrade-rejected")
            self.skip(later, "no socket (see a-query)")
            return
        s = ProbeSocket(ws, self.timeout)
        s.start()
        try:
            await self._session(s)
        finally:
            if not s.closed:
                await ws.close()
            await s._task

    async def _session(self, s: ProbeSocket) -> None:
        later = ["b-vsn", "d-early-frames", "e-heartbeat", "f-binary", "g-close"]
        join_ref = self.join_ref = s.ref()
        await s.send(self.join_frame(join_ref))  # right after open: d
        reply = await s.expect(is_reply(join_ref, self.topic))
        if reply is None and s.closed:
            self._closed_before_answer(s, later)
            return
        if reply is not None:
            self.set("a-query", PASS, "101, and the server answered the socket's first frame")
            if reply.msg is not None and reply.msg.shape == frames.OBJECT:
                self.set(
                    "b-vsn",
                    FAIL,
                    "the 2.0.0 phx_join was answered with a 1.0.0 object: the server did not get vsn=2.0.0",
                )
            else:
                self.set("b-vsn", PASS, f"the 2.0.0 phx_join got a 2.0.0 phx_reply ({reply_status(reply)})")
            self.set("d-early-frames", PASS, "the phx_join sent right after open was answered")
        else:
            reply = await self._diagnose_silence(s, later)
            if reply is None:
                return
        if reply_status(reply) != "ok":
            why = f"the server refused the join: {reply_reason(reply)}"
            self.skip(["f-binary"], why)
            joined = False
        else:
            joined = True
        if self.results["e-heartbeat"].status == SKIP and not self.results["e-heartbeat"].detail:
            await self._heartbeat(s)
        if joined:
            await self._binary(s, self.join_ref)  # the join that was answered
        await self._close(s)

    def _closed_before_answer(self, s: ProbeSocket, later: list[str]) -> None:
        how = describe_close(s.ws)
        if any(r.msg is not None for r in s.received):
            self.set("a-query", PASS, "101, and the server answered")
            self.skip(later, f"the socket was closed ({how}) before the join was answered")
            return
        # apikey-missing, the likely cause: the early 101 that hides the upstream's answer is c's finding.
        self.set(
            "a-query",
            FAIL,
            f"101, then the socket was closed {how} before the server answered anything: a relay that "
            "answers 101 itself and whose own upstream upgrade failed - typically Realtime's 401 "
            "'API key is missing' because the query string was dropped",
        )
        self.skip(later, f"the socket was closed ({how}) before anything was answered (see a-query)")

    async def _diagnose_silence(self, s: ProbeSocket, later: list[str]) -> Received | None:
        """The first join went unanswered for a whole timeout: early frame dropped (d), vsn lost (b), or
        nothing reaches the server at all? Ask three ways at once: a 2.0.0 heartbeat, the same join again,
        and a 1.0.0 heartbeat (a 2.0.0 socket drops the 1.0.0 object without a reply, and vice versa)."""
        hb_ref, rejoin_ref, v1_ref = s.ref(), s.ref(), s.ref()
        self.join_ref = rejoin_ref
        mark = len(s.received)
        await s.send(heartbeat(hb_ref))
        await s.send(self.join_frame(rejoin_ref))
        await s.send(heartbeat(v1_ref, frames.V1))
        v2_hb = is_reply(hb_ref, frames.PHOENIX)

        def v1_hb(r: Received) -> bool:
            return r.msg is not None and r.msg.shape == frames.OBJECT and r.msg.ref == v1_ref

        first = await s.expect(lambda r: v2_hb(r) or v1_hb(r), mark)
        if first is not None and v2_hb(first):
            self.set("a-query", PASS, "101, and the server answered (a heartbeat)")
            self.set("b-vsn", PASS, "2.0.0 frames are answered in 2.0.0 (a heartbeat)")
            self.set("e-heartbeat", PASS, f"heartbeat answered ({reply_status(first)})")
            rejoin = await s.expect(is_reply(rejoin_ref, self.topic), mark)
            if rejoin is not None:
                self.set(
                    "d-early-frames",
                    FAIL,
                    f"the phx_join sent right after open got no reply within {self.timeout:g} s; the same join "
                    "sent later was answered: the relay drops frames that arrive before its upstream leg is "
                    "open (clients see TIMED_OUT, then rejoin)",
                )
                return rejoin
            self.set(  # not only early frames: any join goes unanswered
                "d-early-frames",
                FAIL,
                "phx_join is never answered although heartbeats are: the relay drops or mangles joins",
                code="join-timeout",
            )
            self.skip(["f-binary"], "no channel could be joined (see d-early-frames)")
            await self._close(s)
            return None
        if first is not None:
            self.set("a-query", PASS, "101, and the server answered a 1.0.0 heartbeat")
            self.set(
                "b-vsn",
                FAIL,
                "2.0.0 arrays get no answer but a 1.0.0 object heartbeat does: the server speaks "
                "1.0.0, so vsn=2.0.0 never reached it",
            )
            self.skip(
                ["d-early-frames", "e-heartbeat", "f-binary"], "the socket does not speak 2.0.0 (see b-vsn)"
            )
            await self._close(s)
            return None
        if s.closed:
            self._closed_before_answer(s, later)
            return None
        self.set(
            "a-query", SKIP, "101, but nothing was ever answered: cannot tell whether the apikey arrived"
        )
        self.set(
            "b-vsn",
            FAIL,
            f"no 2.0.0 (or 1.0.0) frame was answered within {self.timeout:g} s: the relay "
            "forwards nothing, or the vsn was lost and the server ignores 2.0.0 arrays",
        )
        self.skip(
            ["d-early-frames", "e-heartbeat", "f-binary"], "nothing is answered on this socket (see b-vsn)"
        )
        await self._close(s)
        return None

    async def _heartbeat(self, s: ProbeSocket) -> None:
        ref = s.ref()
        mark = len(s.received)
        await s.send(heartbeat(ref))
        hb = await s.expect(is_reply(ref, frames.PHOENIX), mark)
        if hb is not None:
            self.set("e-heartbeat", PASS, f"heartbeat answered ({reply_status(hb)})")
        elif s.closed:
            self.set(
                "e-heartbeat",
                FAIL,
                f"the socket was closed ({describe_close(s.ws)}) instead of answering a heartbeat",
                code="server-close",
            )
        else:
            self.set(
                "e-heartbeat",
                FAIL,
                f"no reply to a heartbeat within {self.timeout:g} s: the relay swallows "
                "heartbeats or their replies (clients time out and reconnect)",
            )

    async def _binary(self, s: ProbeSocket, join_ref: str) -> None:
        """Kind 3 out, then a text broadcast as a fence: the server answers in order, so the fence's echo
        arriving first means the binary frame never made it as binary."""
        marker = secrets.token_hex(4)
        mark = len(s.received)
        await s.send(
            frames.encode_user_push(self.topic, "rtprobe", {"probe": marker}, join_ref=join_ref, ref=s.ref())
        )
        fence = {"type": "broadcast", "event": "rtprobe-fence", "payload": {"probe": marker}}
        await s.send(v2(join_ref, s.ref(), self.topic, "broadcast", fence))

        def match(r: Received) -> bool:
            if r.msg is None:
                return isinstance(r.raw, str) and r.raw.strip() == BLOB_TEXT or isinstance(r.raw, bytes)
            p = r.msg.payload
            return (
                r.msg.topic == self.topic
                and r.msg.event == "broadcast"
                and isinstance(p, dict)
                and p.get("event") in ("rtprobe", "rtprobe-fence")
            )

        r = await s.expect(match, mark)
        if r is None:
            how = (
                f"the socket was closed ({describe_close(s.ws)})"
                if s.closed
                else f"nothing within {self.timeout:g} s"
            )
            # Neither broadcast came back: no rule names a relay that drops broadcasts whatever their
            # type, so a closed socket is server-close and silence unexplained-failure.
            self.set(
                "f-binary",
                FAIL,
                f"no echo of a kind-3 broadcast nor of a text one: {how}",
                code="server-close" if s.closed else "unexplained-failure",
            )
        elif r.msg is None:
            what = (
                f"the text {BLOB_TEXT!r}"
                if isinstance(r.raw, str)
                else f"an undecodable binary frame ({r.error})"
            )
            self.set(
                "f-binary",
                FAIL,
                f"the broadcast came back as {what}: the relay turned a binary frame into "
                "text (a JS relay sending event.data as a Blob)",
            )
        elif r.msg.payload.get("event") == "rtprobe-fence":
            self.set(
                "f-binary",
                FAIL,
                "the text broadcast sent after a kind-3 binary one came back, the binary one "
                "did not: binary frames do not reach the server as binary (a JS relay sends "
                f"a Blob on as the text {BLOB_TEXT!r}, which Realtime ignores)",
            )
        elif r.msg.kind == frames.USER_BROADCAST and r.msg.payload.get("payload") == {"probe": marker}:
            self.set("f-binary", PASS, "kind 3 out, binary kind 4 back with the same payload")
        else:
            shape = f"binary kind {r.msg.kind}" if r.msg.kind is not None else f"a text {r.msg.shape}"
            self.set("f-binary", FAIL, f"the kind-3 broadcast came back as {shape}, expected binary kind 4")

    async def _close(self, s: ProbeSocket) -> None:
        if s.closed:
            self.skip(["g-close"], f"the socket was already closed ({describe_close(s.ws)})")
            return
        await s.ws.close(CLOSE_CODE, CLOSE_REASON)  # waits up to close_timeout for the answer
        await s._task
        rcvd = s.ws.protocol.close_rcvd
        if rcvd is None:
            self.set(
                "g-close",
                FAIL,
                f"close {CLOSE_CODE} got no close frame back within {self.timeout:g} s: the "
                "relay does not complete the closing handshake",
            )
        elif rcvd.code == CLOSE_CODE:
            self.set(
                "g-close",
                PASS,
                f"close {CLOSE_CODE} ({CLOSE_REASON}) answered with {CLOSE_CODE}; what the "
                "server received is not visible from a client",
            )
        else:
            self.set(
                "g-close",
                FAIL,
                f"close {CLOSE_CODE} answered with {describe_close(s.ws)}"
                + (" (a close frame without a code)" if rcvd.code == closecodes.NO_CODE else "")
                + ": the relay does not forward the client's close code",
            )

    async def check_upstream_status(self) -> None:
        name = "c-upstream-status"
        try:
            ws = await self.open(INVALID_KEY)
        except InvalidStatus as e:
            r = e.response
            err = realtime_error(r.body)
            if err is not None:
                self.set(
                    name,
                    PASS,
                    f"an invalid apikey got the server's {r.status_code} {json.dumps({'error': err})}",
                )
            else:  # the relay answered in its own words: early-101's fix (answer with the upstream's answer)
                self.set(
                    name,
                    FAIL,
                    f"an invalid apikey got {r.status_code} {body_text(r.body)}, not Realtime's JSON "
                    '{"error": ...}: the relay replaced the server\'s answer',
                )
            return
        except InvalidHandshake as e:
            self.set(name, FAIL, f"broken handshake with an invalid apikey: {e}", code="upgrade-rejected")
            return
        except Unreachable as e:  # the first socket reached it: no rule names a relay that then stops
            self.set(
                name, FAIL, f"the connection with an invalid apikey failed: {e}", code="unexplained-failure"
            )
            return
        s = ProbeSocket(ws, self.timeout)
        s.start()
        await s.send(heartbeat(s.ref()))  # what a client does next
        r = await s.expect(lambda r: True)
        then = (
            f"then closed {describe_close(ws)}"
            if s.closed
            else "then a frame came back"
            if r is not None
            else f"then nothing for {self.timeout:g} s"
        )
        self.set(
            name,
            FAIL,
            f"an invalid apikey ({INVALID_KEY!r}) got 101, {then}: the relay answered before the "
            "server did, so Realtime's 401 and its reason never reach the client (unless this server "
            "accepts any apikey)",
        )
        if not s.closed:
            await ws.close()
        await s._task

    async def check_subprotocol(self) -> None:
        name = "h-subprotocol"
        try:
            ws = await self.open(self.key, subprotocols=["phoenix"])
        except InvalidStatus as e:
            r = e.response
            a = self.results["a-query"]
            if a.status == FAIL and str(r.status_code) in a.detail:
                self.set(
                    name, SKIP, f"not checked: refused with {r.status_code} like every upgrade (see a-query)"
                )
            else:
                err = realtime_error(r.body)
                self.set(
                    name,
                    FAIL,
                    f"offering subprotocol 'phoenix' got {r.status_code} {err or body_text(r.body)}",
                    code=refusal_code(err),
                )
            return
        except InvalidHandshake as e:
            self.set(name, FAIL, f"offering subprotocol 'phoenix' broke the handshake: {e}")
            return
        except Unreachable as e:  # as in check_upstream_status
            self.set(
                name,
                FAIL,
                f"offering subprotocol 'phoenix', the connection failed: {e}",
                code="unexplained-failure",
            )
            return
        try:
            if ws.subprotocol is None:
                self.set(name, PASS, "offered 'phoenix'; the 101 selected no subprotocol, as Realtime does")
            else:
                self.set(
                    name,
                    FAIL,
                    f"offered 'phoenix'; the 101 selected {ws.subprotocol!r}, which Realtime never "
                    "selects: the relay echoes the offer (browsers then talk a protocol nobody chose)",
                )
        finally:
            await ws.close()


# ---------------------------------------------------------------------------------------------- output

LABEL = {PASS: "PASS", FAIL: "FAIL", SKIP: "SKIP"}


def render_text(url: str, socket: str, results: list[ProbeResult]) -> str:
    """The checklist: `STATUS name — detail`, and for a failure `→ code` and the finding's fix."""
    lines = [f"rtprobe {url} ({socket})"]
    for r in results:
        lines.append(f"{LABEL[r.status]} {r.name} — {r.detail}")
        if r.status == FAIL:
            lines.append(f"     → {r.code}")
            lines.append(f"     fix: {r.fix}")
    n = {k: sum(r.status == k for r in results) for k in (PASS, FAIL, SKIP)}
    lines.append(f"{len(results)} checks: {n[PASS]} passed, {n[FAIL]} failed, {n[SKIP]} not checked")
    return "\n".join(lines)


def render_json(url: str, socket: str, results: list[ProbeResult]) -> dict[str, Any]:
    return {
        "url": url,
        "socket": socket,
        "checks": [r.as_dict() for r in results],
        "ok": all(r.status == PASS for r in results),
    }


def readme_table() -> str:
    """The README's rtprobe table (tests/test_docs.py checks it row by row)."""
    rows = [f"| `{c.name}` | {c.verifies} | `{c.code}` |" for c in CHECKS]
    return "\n".join(["| check | what it verifies | finding |", "|---|---|---|", *rows])


def checks_help() -> str:
    """The checks, for --help: name → finding, and what it verifies."""
    return "checks (→ the finding a failure is evidence of):\n" + "\n".join(
        f"  {c.name} → {c.code}\n      {c.verifies}" for c in CHECKS
    )


def default_key() -> str:
    key = os.environ.get("SUPABASE_ANON_KEY")
    if key:
        return key
    from rtproxy_local.jwt import dev_anon_key

    return dev_anon_key()


def main(argv: list[str] | None = None) -> int:
    intro, rest = __doc__.split("\n\n", 1)
    ap = argparse.ArgumentParser(
        description=intro,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=rest + "\n" + checks_help(),
    )
    ap.add_argument(
        "url",
        help="the URL a client uses: ws(s):// or http(s)://host[:port], optionally with /realtime/v1"
        "[/websocket] or /socket[/websocket]",
    )
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the checklist")
    ap.add_argument(
        "--key", help="apikey (default: the URL's apikey, $SUPABASE_ANON_KEY, else the local dev anon key)"
    )
    ap.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        help="seconds to wait for each answer the checks expect (default 5)",
    )
    ap.add_argument("--show-secrets", action="store_true", help="do not redact the key, JWTs, apikey=")
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:
        return 2 if e.code else 0
    redactor = Redactor(args.show_secrets)
    try:
        tgt = urls.resolve(args.url)
    except ValueError as e:
        print(Scrubber(redactor, args.key or "").output(f"rtprobe: {e}"), file=sys.stderr)
        return 2
    if args.timeout <= 0:
        print("rtprobe: --timeout must be positive", file=sys.stderr)
        return 2
    key = args.key or tgt.apikey or default_key()
    scrub = Scrubber(redactor, key)
    probe = Probe(tgt, key, args.timeout, scrub)
    url, socket = scrub.url(args.url), scrub.url(tgt.socket)
    try:
        results = asyncio.run(probe.run())
    except Unreachable as e:
        msg = scrub.text(str(e))
        if args.json:
            out = {"url": url, "socket": socket, "error": f"unreachable: {msg}", "checks": [], "ok": False}
            print(json.dumps(scrub.output(out), ensure_ascii=False))
        else:
            print(scrub.output(f"rtprobe: unreachable: {msg}"), file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(scrub.output(render_json(url, socket, results)), ensure_ascii=False))
    else:
        print(scrub.output(render_text(url, socket, results)))
    return 0 if all(r.status == PASS for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
