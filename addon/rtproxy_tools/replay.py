"""Re-run one connection of a captured Realtime session (HAR or mitmproxy flow file).

    rtreplay CAPTURE                                  list the capture's connections
    rtreplay CAPTURE [--connection N] --serve [--port P] [--speed X]
    rtreplay CAPTURE [--connection N] --client URL [--key KEY] [--speed X]

--serve plays the capture's server side on 127.0.0.1 and prints its URL: the handshake answer as captured
(a 101, or the refusal with its status, headers and body), then for each client frame that matches the
capture's (by topic and event, in order; heartbeats whenever they come) the server frames that followed
it, with the live client's refs, in its vsn, at the captured timing divided by --speed; a heartbeat, leave
or join (a rejoin after a refusal) beyond the capture's is answered as Realtime, Phoenix or the capture's
last join answered it; the capture's close ends it. A client that reconnects gets the same connection
again; Ctrl-C closes the open ones with 1001 (going away). --client plays the capture's client side
against URL (rtlocal, or a project through rtproxy), with the capture's query, and prints each frame that
comes back, then what rtproxy's rules read from the run. URL is a project URL (http(s)://host[:port], any
path prefix: /realtime/v1 goes under it, as supabase-js puts it) or [/prefix]/realtime/v1[/websocket]
(self-hosted: [/prefix]/socket[/websocket]): the socket rtclient and rtprobe connect to for it. Tokens
sent upstream come from --key or SUPABASE_ANON_KEY, never from the capture; any other credential in the
capture's frames is replayed as rtsanitize's marker. Output is redacted unless --show-secrets. Exit
status: 0 done (--client: no error finding), 1 --client met an error finding or the upstream refused it, 2
an unreadable capture or a bad choice (one line says why).
"""

from __future__ import annotations

import argparse
import asyncio
import http
import json
import logging
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from rtproxy_core import closecodes, frames
from rtproxy_core.captures import Capture, CaptureError
from rtproxy_core.diagnosis import Connection, Diagnoser, diagnose_captures, ranked
from rtproxy_core.events import Closed, Frame, Handshake, Opened
from rtproxy_core.redact import Redactor
from rtproxy_core.replay import (
    CLIENT,
    ClientPlayer,
    End,
    Note,
    Script,
    Send,
    ServerPlayer,
    captured_credentials,
    client_url,
    describe,
    refusal,
)
from rtproxy_core.report import report_text
from rtproxy_core.rules import Timers
from rtproxy_core.session import Session
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.http11 import Request, Response

from rtproxy_tools import version_text

from . import key_from_env
from .captures import read_capture

HOST = "127.0.0.1"  # the replay server binds loopback only: it has no auth
PAYLOAD_CHARS = 300  # a printed payload is cut here
_quiet = logging.getLogger("rtproxy.replay.websockets")  # websockets' own lines repeat ours
_quiet.setLevel(logging.CRITICAL)


async def receive_until(
    ws: ServerConnection | ClientConnection, due: float | None, loop: asyncio.AbstractEventLoop
) -> str | bytes | None:
    """The peer's next message, or None when the player's next action (at loop time `due`) comes first."""
    timeout = None if due is None else max(0.0, due - loop.time())
    try:
        return await asyncio.wait_for(ws.recv(), timeout)
    except TimeoutError:
        return None


class Out:
    """Every line goes through Redactor.output, whole, last."""

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor

    def __call__(self, line: str, err: bool = False) -> None:
        print(self.redactor.output(line), file=sys.stderr if err else sys.stdout, flush=True)


def body_text(body: bytes | bytearray | None) -> str:
    """A handshake body as one printable line, cut at 200 characters."""
    text = " ".join(bytes(body or b"")[:400].decode("utf-8", "replace").split())
    return text if len(text) <= 200 else text[:199] + "…"


def payload_text(payload: object) -> str:
    text = json.dumps(frames.jsonable(payload), ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= PAYLOAD_CHARS else text[: PAYLOAD_CHARS - 1] + "…"


# ------------------------------------------------------------------------------------------ choosing


def ordered(capture: Capture) -> list[Connection]:
    """The capture's connections in the order they opened: rtdiagnose's numbering."""
    return sorted(capture.connections, key=lambda c: c[1][0].time if c[1] else 0.0)


def listing(path: Path, capture: Capture, conns: list[Connection], out: Out) -> None:
    who = f", written by {capture.producer}" if capture.producer else ""
    out(f"{path}: {len(conns)} Realtime connection(s){who}")
    for note in capture.notes:
        out(f"  note: {note}")
    for n, (url, events) in enumerate(conns, 1):
        s = Script.from_connection(url, events)
        mine, theirs = len(s.client_steps), len(s.server_steps)
        status = s.status if s.status is not None else f"no answer ({s.error or 'failed'})"
        out(
            f"  {n:>3}  {status}  {mine + theirs} frames ({mine} client, {theirs} server)  "
            f"close: {s.describe_close()}  {out.redactor.url(s.url)}"
        )
    out(f"replay one: rtreplay {path} --connection N --serve  (or --client URL)")


def choose(conns: list[Connection], n: int | None) -> tuple[int, Connection] | str:
    """(number, connection), or why not."""
    if not conns:
        return "the capture holds no Realtime connection to replay"
    if n is None:
        if len(conns) == 1:
            return 1, conns[0]
        return (
            f"the capture holds {len(conns)} Realtime connections: choose one with --connection N "
            "(rtreplay CAPTURE lists them)"
        )
    if not 1 <= n <= len(conns):
        return f"--connection {n}: the capture holds {len(conns)} Realtime connection(s), numbered 1-{len(conns)}"
    return n, conns[n - 1]


def capture_finding(conns: list[Connection], n: int, redactor: Redactor, timers: Timers) -> str:
    """The capture's own top finding on connection n, as rtdiagnose reads it."""
    sessions = diagnose_captures([conns], redactor, timers)
    findings = ranked(sessions[n - 1].findings)
    if not findings:
        return "no finding"
    f = findings[0]
    return f"{f.code}{f' {f.topic}' if f.topic else ''} ({f.explains})"


def live_vsn(path: str) -> str:
    q = dict(parse_qsl(urlsplit(path).query, keep_blank_values=True))
    return frames.vsn_family(q.get("vsn")) or frames.V1


# ------------------------------------------------------------------------------------------ --serve


class Replayer:
    """The replay server: every connection gets the capture's server side again."""

    def __init__(self, script: Script, speed: float, out: Out) -> None:
        self.script = script
        self.speed = speed
        self.out = out
        self.count = 0
        self.numbers: dict[ServerConnection, int] = {}  # connection -> its number, for the log lines
        self.stopping = False  # Ctrl-C / SIGTERM: the server closes every connection (websockets: 1001)

    async def process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        self.count += 1
        n = self.numbers[ws] = self.count
        again = f": replaying the capture's connection again (connection {n} to this server)" if n > 1 else ""
        self.out(f"[{n}] upgrade {self.out.redactor.url(request.path)}{again}")
        s = self.script
        await asyncio.sleep(s.latency / self.speed)
        if s.status is None:
            # The capture's upgrade got no answer (the hop could not connect): no answer here either.
            self.out(
                f"[{n}] the capture's upgrade got no answer ({s.error or 'failed'}): dropping the connection"
            )
            del self.numbers[ws]
            ws.transport.abort()
            return Response(502, "Bad Gateway", Headers([("Content-Length", "0")]), b"")
        if s.status == 101:
            return None  # the handler takes it from here (and its number)
        del self.numbers[ws]
        status, headers, body = refusal(s)
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        headers += [("Content-Length", str(len(body))), ("Connection", "close")]
        self.out(
            f"[{n}] answered {status} {phrase}".rstrip()
            + (f": {body_text(body)}" if body else " (empty body)")
        )
        return Response(status, phrase, Headers(headers), body)

    async def handler(self, ws: ServerConnection) -> None:
        n = self.numbers.pop(ws, 0)
        loop = asyncio.get_running_loop()
        vsn = live_vsn(ws.request.path if ws.request is not None else "")  # a handler runs after the request
        player = ServerPlayer(self.script, vsn, loop.time(), self.speed)
        start = loop.time()
        say = lambda text: self.out(f"[{n}] {loop.time() - start:7.3f} s {text}")
        also = f" (the capture spoke {self.script.vsn}: frames re-encoded)" if vsn != self.script.vsn else ""
        say(f"upgraded (101), vsn {vsn}{also}")
        try:
            while True:
                data = await receive_until(ws, player.next_due(), loop)
                actions = (
                    [] if data is None else player.client_frame(data, isinstance(data, bytes), loop.time())
                )
                actions += player.due(loop.time())
                for a in actions:
                    if isinstance(a, Note):
                        say(a.text)
                    elif isinstance(a, Send):
                        await ws.send(a.data)
                        say(f"{a.text} {payload_text(a.payload)}" if a.payload is not None else a.text)
                    elif isinstance(a, End):
                        await self._end(ws, a, say)
                        return
        except ConnectionClosed:
            rcvd, sent = ws.protocol.close_rcvd, ws.protocol.close_sent
            if rcvd is not None and ws.protocol.close_rcvd_then_sent:
                reason = f" {rcvd.reason!r}" if rcvd.reason else ""
                say(f"the client closed: {rcvd.code}{reason}")
            elif sent is not None:
                # Only stopping closes a connection the capture has not ended (_end returns): websockets'
                # Server.close() sends each 1001 (going away).
                why = "rtreplay is stopping" if self.stopping else "rtreplay closed it"
                answer = "the client answered" if rcvd is not None else "no close frame back from the client"
                say(f"-> close {sent.code}{f' {sent.reason!r}' if sent.reason else ''} ({why}); {answer}")
            else:
                say("the connection ended without a close frame from the client")
        finally:
            say(f"done: {player.summary()}")
            if self.script.closer == CLIENT and self.script.close is not None:
                c = self.script.close
                say(f"(the capture's client closed it: {c.code if c.code is not None else 'no close frame'})")

    async def _end(self, ws: ServerConnection, end: End, say: Callable[[str], None]) -> None:
        if end.code == closecodes.NO_CODE:
            say("-> close frame without a code, as the capture's server sent")
            await ws.close(None, "")  # type: ignore[arg-type]  # websockets sends a close frame without a code
        elif end.code is not None and closecodes.websockets_can_send(end.code):
            reason = closecodes.clip_reason(end.reason).decode()
            say(f"-> close {end.code}{f' {reason!r}' if reason else ''}, as the capture's server closed")
            await ws.close(end.code, reason)
        else:
            what = "no close frame" if end.code is None else f"close code {end.code}, which cannot be sent"
            say(f"-> dropping the TCP connection ({what} in the capture)")
            ws.transport.abort()


async def serve(script: Script, args: argparse.Namespace, out: Out, header: list[str]) -> int:
    replayer = Replayer(script, args.speed, out)
    try:
        server = await ws_serve(
            replayer.handler,
            HOST,
            args.port,
            process_request=replayer.process_request,
            compression=None,  # byte-predictable frames; Realtime's endpoint does not compress either
            ping_interval=None,  # Realtime never pings
            max_size=5_000_000,  # Realtime's max_frame_size
            server_header=None,
            logger=_quiet,
        )
    except OSError as e:
        out(f"rtreplay: cannot listen on {HOST}:{args.port}: {e.strerror or e}", err=True)
        return 2
    port = next(iter(server.sockets)).getsockname()[1]
    for line in header:
        out(line)
    out(f"rtreplay: listening at ws://{HOST}:{port}{script.path}")
    out(
        f"  point the app at it: supabase-js createClient('http://{HOST}:{port}', key), realtime-py "
        f"AsyncRealtimeClient('ws://{HOST}:{port}/realtime/v1', key); through rtproxy: "
        f"--set rt_supabase_url=http://{HOST}:{port}"
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    replayer.stopping = True
    server.close()
    await server.wait_closed()
    out(f"rtreplay: stopped after {replayer.count} connection(s)")
    return 0


# ------------------------------------------------------------------------------------------ --client


async def play_client(
    script: Script, args: argparse.Namespace, out: Out, key: str | None, timers: Timers
) -> int:
    redactor = out.redactor
    try:
        url = client_url(args.client, script, key)
    except ValueError as e:
        out(f"rtreplay: --client: {e}", err=True)
        return 2
    session = Session(conn="replay", redactor=redactor, join_timeout_s=timers.join)
    diagnoser = Diagnoser(timers)
    feed = lambda event: diagnoser.feed(session, event)
    feed(Opened(url, [], time.time()))
    out(f"rtreplay: connecting to {redactor.url(url)}")
    loop = asyncio.get_running_loop()
    try:
        ws = await connect(url, compression=None, ping_interval=None, max_size=None, open_timeout=10)
    except InvalidStatus as e:
        r = e.response
        feed(Handshake(r.status_code, list(r.headers.raw_items()), r.body or b"", time.time()))
        feed(Closed(None, "", None, time.time()))
        body = f": {body_text(r.body)}" if r.body else " (empty body)"
        out(f"rtreplay: the upstream refused the upgrade: {r.status_code}{body}")
        return _report(session, diagnoser, out, failed=True)
    except (OSError, InvalidHandshake, TimeoutError) as e:
        out(f"rtreplay: cannot connect to {redactor.url(url)}: {e}", err=True)
        return 1
    feed(Handshake(101, list(ws.response.headers.raw_items()) if ws.response else [], b"", time.time()))
    start = loop.time()
    say = lambda text: out(f"{loop.time() - start:7.3f} s {text}")
    say("upgraded (101)")
    player = ClientPlayer(script, key, loop.time(), args.speed)
    try:
        while True:
            data = await receive_until(ws, player.next_due(), loop)
            if data is not None:
                binary = isinstance(data, bytes)
                raw = data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass")
                feed(Frame(False, binary, raw, time.time()))
                msg, which = player.server_frame(data, binary, loop.time())
                if msg is None:
                    say(f"<- {which}")
                else:
                    say(f"<- {describe(msg)} {payload_text(redactor.payload(msg.payload))} ({which})")
            for a in player.due(loop.time()):
                if isinstance(a, Send):
                    await ws.send(a.data)
                    raw = a.data if isinstance(a.data, bytes) else a.data.encode("utf-8", "surrogatepass")
                    feed(Frame(True, isinstance(a.data, bytes), raw, time.time()))
                    say(f"{a.text} {payload_text(redactor.payload(a.payload))}")
                elif isinstance(a, End):
                    if a.code is None:
                        say(
                            "-> dropping the connection (the capture's client ended it without a close frame)"
                        )
                        ws.transport.abort()
                        feed(Closed(None, "", True, time.time(), ended_first="client"))
                    else:
                        reason = closecodes.clip_reason(a.reason).decode()
                        say(f"-> close {a.code}{f' {reason!r}' if reason else ''}")
                        await ws.close(a.code, reason)
                        feed(Closed(a.code, reason, True, time.time()))
                    raise _Done
    except _Done:
        pass
    except ConnectionClosed:
        rcvd = ws.protocol.close_rcvd
        if rcvd is not None:
            say(f"the upstream closed: {rcvd.code}{f' {rcvd.reason!r}' if rcvd.reason else ''}")
            feed(Closed(rcvd.code, rcvd.reason, False, time.time()))
        else:
            say("the connection ended without a close frame")
            feed(Closed(None, "", None, time.time(), ended_first="server"))
    late = f"; {player.late} frame(s) sent without the answer the capture's client had" if player.late else ""
    say(f"received {player.received} frame(s), {player.recognized} of them the capture's{late}")
    return _report(session, diagnoser, out)


class _Done(Exception):
    pass


def _report(session: Session, diagnoser: Diagnoser, out: Out, failed: bool = False) -> int:
    diagnoser.end(session)
    out("rtreplay: this run, as rtproxy's rules read it:")
    for line in report_text([session]).splitlines()[1:]:  # the URL is printed already
        out(line)
    error = any(f.severity == "error" for f in session.findings)
    return 1 if failed or error else 0


# ------------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--version", action="version", version=version_text("rtreplay"))
    ap.add_argument("capture", type=Path, metavar="CAPTURE", help="HAR, .zhar or mitmproxy flow file")
    ap.add_argument(
        "--connection", type=int, metavar="N", help="which connection (rtreplay CAPTURE lists them)"
    )
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--serve", action="store_true", help="play the capture's server side on 127.0.0.1")
    mode.add_argument(
        "--client",
        metavar="URL",
        help="play the capture's client side against URL (a project URL or its /realtime/v1[/websocket])",
    )
    ap.add_argument("--port", type=int, default=0, help="--serve: the port (default: a free one)")
    ap.add_argument(
        "--speed", type=float, default=1.0, metavar="X", help="divide the capture's timing by X (default 1)"
    )
    ap.add_argument(
        "--key",
        default=key_from_env(),
        help="--client: the apikey and access token to send (default: $SUPABASE_ANON_KEY); never the capture's",
    )
    ap.add_argument(
        "--timers",
        default="",
        help="Realtime timers the rules expect, seconds, as rtdiagnose's (any subset; unset: the clients' "
        f"and the server's defaults, {Timers().in_force()}): for the capture's finding and, with --client, "
        "the run's",
    )
    ap.add_argument("--show-secrets", action="store_true", help="do not redact apikeys, JWTs, access tokens")
    args = ap.parse_args(argv)
    out = Out(Redactor(args.show_secrets))
    try:
        timers = Timers.parse(args.timers)
    except ValueError as e:
        out(f"rtreplay: --timers: {e}", err=True)
        return 2
    if not args.speed > 0 or args.speed != args.speed or args.speed == float("inf"):
        out(f"rtreplay: --speed must be a positive number, got {args.speed}", err=True)
        return 2
    if not 0 <= args.port <= 65535:
        out(f"rtreplay: --port must be 0-65535 (0: a free one), got {args.port}", err=True)
        return 2
    try:
        capture = read_capture(args.capture)
    except CaptureError as e:
        out(f"rtreplay: {args.capture}: {e}", err=True)
        return 2
    conns = ordered(capture)
    if capture.undiagnosable and not conns:
        out(f"rtreplay: {args.capture}: {capture.undiagnosable}", err=True)
        return 2
    if not args.serve and not args.client:
        if not conns:
            out(f"rtreplay: {args.capture}: the capture holds no Realtime connection", err=True)
            return 2
        listing(args.capture, capture, conns, out)
        return 0
    chosen = choose(conns, args.connection)
    if isinstance(chosen, str):
        out(f"rtreplay: {args.capture}: {chosen}", err=True)
        return 2
    n, (url, events) = chosen
    script = Script.from_connection(url, events)
    header = [
        f"rtreplay: connection {n} of {args.capture}: {out.redactor.url(script.url)}",
        (
            f"  handshake {script.status if script.status is not None else 'none'}, vsn {script.vsn}, "
            f"{len(script.client_steps)} client / {len(script.server_steps)} server frame(s), close: "
            f"{script.describe_close()}; speed {args.speed:g}×"
        ),
        f"  the capture's finding: {capture_finding(conns, n, out.redactor, timers)}",
    ]
    if script.undecodable:
        header.append(f"  {script.undecodable} frame(s) do not decode: the server's are sent as captured")
    logging.basicConfig(level=logging.CRITICAL)
    if args.serve:
        header.append("  tokens in the server's frames are replaced by rtsanitize's markers")
        return asyncio.run(serve(script, args, out, header))
    for line in header:
        out(line)
    key = args.key or None
    creds = captured_credentials(script)
    if creds and not key:
        out(
            f"rtreplay: the capture's credentials ({', '.join(creds)}) are not sent upstream and no key was "
            "given (--key or SUPABASE_ANON_KEY): connecting without one"
        )
    elif key:
        out(
            "rtreplay: the apikey and access tokens sent are --key's / SUPABASE_ANON_KEY's, not the capture's"
        )
    return asyncio.run(play_client(script, args, out, key, timers))


if __name__ == "__main__":
    sys.exit(main())
