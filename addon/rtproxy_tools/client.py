"""Join a Realtime channel with the real Supabase Python client and print what a client sees.

    rtclient http://127.0.0.1:8080 --channel room1 --broadcast cursor '{"x": 1}'

URL is a project URL, as supabase-js's createClient takes it (http://host:port, https://<ref>.supabase.co,
with any path prefix: /realtime/v1 goes under it), or a Realtime URL ([/prefix]/realtime/v1 or a
self-hosted [/prefix]/socket, with or without /websocket); rtprobe and rtreplay --client resolve it to the
same socket (rtproxy_core.urls). So https://app.example.com/prefix connects to
wss://app.example.com/prefix/realtime/v1/websocket, not …/prefix/websocket.

Prints one line per thing that happens (`LINES`, in --help). Exit 0 if the channel reached SUBSCRIBED, else 1.
Secrets in what arrives are redacted unless --show-secrets.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from typing import cast

from realtime import AsyncRealtimeClient
from realtime.types import RealtimeChannelOptions, RealtimePostgresChangesListenEvent
from rtproxy_core import urls
from rtproxy_core.redact import Redactor
from rtproxy_local.jwt import dev_anon_key
from websockets.exceptions import InvalidHandshake, InvalidMessage, InvalidStatus
from websockets.http11 import Response

from rtproxy_tools import version_text

from . import key_from_env

LINES = """\
output, one line per thing that happens (--json: {"kind": ..., "detail": ...} per line):
  status SUBSCRIBED | CHANNEL_ERROR | TIMED_OUT | CLOSED[: error]
      what the channel's subscribe callback reports
  refused STATUS [(CONTENT-TYPE)]: BODY
      the upgrade was answered without a 101 (realtime-py's connect() raises, no channel is told)
  unreachable WHY
      no HTTP answer at all (refused, DNS, TLS, a timeout, not HTTP)
  broadcast | presence | postgres_changes | system JSON
      what arrives on the channel"""


def endpoint(url: str) -> str:
    """What AsyncRealtimeClient is given for `url` (it appends /websocket itself): the socket rtprobe and
    rtreplay --client resolve `url` to (rtproxy_core.urls). ValueError quoting the URL for one it refuses."""
    return urls.resolve(url).endpoint


def refusal(r: Response) -> str:
    """`STATUS (CONTENT-TYPE): BODY` of an upgrade answered without a 101."""
    kind = r.headers.get("Content-Type", "")
    body = " ".join((r.body or b"").decode("utf-8", "replace").split())[:200]
    return f"{r.status_code}" + (f" ({kind})" if kind else "") + (f": {body}" if body else " (empty body)")


class Printer:
    """Prints what happens; counts what arrives so --count can stop early."""

    def __init__(self, as_json: bool, redactor: Redactor, count: int | None = None) -> None:
        self.as_json, self.redactor = as_json, redactor
        self.count, self.arrived = count, 0
        self.enough = asyncio.Event()

    def __call__(self, kind: str, detail: object = None) -> None:
        if kind != "status":
            self.arrived += 1
            if self.count is not None and self.arrived >= self.count:
                self.enough.set()
        if hasattr(detail, "model_dump"):  # the client hands some messages over as pydantic models
            detail = detail.model_dump(mode="json")
        detail = self.redactor.output(detail)
        if self.as_json:
            line = json.dumps({"kind": kind, "detail": detail}, default=str)
        else:
            text = detail if isinstance(detail, str) else json.dumps(detail, default=str)
            line = f"{kind} {text}" if detail is not None else kind
        print(self.redactor.output(line), flush=True)  # default=str may have rendered objects as text


async def run(args: argparse.Namespace, out: Printer) -> int:
    client = AsyncRealtimeClient(
        endpoint(args.url),
        token=args.key,
        auto_reconnect=False,
        max_retries=1,
        timeout=args.timeout,
        hb_interval=args.hb_interval,
    )
    try:
        await client.connect()
    except InvalidStatus as e:  # an answer that is not a 101: the upgrade was refused
        out("refused", refusal(e.response))
        return 1
    except InvalidHandshake as e:  # a 101 the client cannot take, or no HTTP at all
        why = "no valid HTTP response" if isinstance(e, InvalidMessage) else "broken handshake"
        out("refused" if why == "broken handshake" else "unreachable", f"{why}: {e}")
        return 1
    except Exception as e:  # noqa: BLE001 - OSError, TimeoutError, DNS, TLS: nothing answered HTTP
        out("unreachable", f"{type(e).__name__}: {e}")
        return 1
    config: dict = {"broadcast": {"self": True, "ack": False}, "private": args.private}
    if args.presence:
        config["presence"] = {"key": args.presence, "enabled": True}
    channel = client.channel(args.channel, cast(RealtimeChannelOptions, {"config": config}))
    channel.on_broadcast("*", lambda m: out("broadcast", m.get("payload", m)))
    channel.on_system(lambda m: out("system", m))
    if args.presence:
        channel.on_presence_sync(lambda: out("presence", sorted(channel.presence_state())))
    for spec in args.postgres:
        schema, _, table = spec.rpartition(".")
        channel.on_postgres_changes(
            RealtimePostgresChangesListenEvent.All,
            lambda m: out("postgres_changes", m),
            schema=schema or "public",
            table=table,
        )
    statuses: list[str] = []

    def on_status(status, err) -> None:
        value = getattr(status, "value", str(status))
        statuses.append(value)
        out("status", f"{value}: {err}" if err else value)

    await channel.subscribe(on_status)
    if "SUBSCRIBED" in statuses:
        if args.presence:
            await channel.track({"online_at": "now"})
        if args.broadcast:
            event, raw = args.broadcast
            await channel.send_broadcast(event, json.loads(raw))
    try:
        await asyncio.wait_for(out.enough.wait(), args.listen)
    except TimeoutError:
        pass  # listened as long as asked
    await client.close()
    return 0 if "SUBSCRIBED" in statuses else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=LINES + "\n\nExit 0 if the channel reached SUBSCRIBED, else 1.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--version", action="version", version=version_text("rtclient"))
    ap.add_argument(
        "url",
        help="a project URL (http(s)://host[:port][/prefix]) or [/prefix]/realtime/v1[/websocket] "
        "(self-hosted: /socket[/websocket]), as rtprobe takes it",
    )
    ap.add_argument("--channel", required=True, help="channel name (topic realtime:<name>)")
    ap.add_argument(
        "--broadcast", nargs=2, metavar=("EVENT", "JSON"), help="send one broadcast after joining"
    )
    ap.add_argument("--presence", metavar="KEY", help="track presence under KEY")
    ap.add_argument(
        "--postgres",
        action="append",
        default=[],
        metavar="[SCHEMA.]TABLE",
        help="listen to postgres_changes on a table (repeatable)",
    )
    ap.add_argument("--private", action="store_true", help="join as a private channel")
    ap.add_argument(
        "--key",
        default=key_from_env(),
        help="apikey (default: $SUPABASE_ANON_KEY, else the local server's dev anon key)",
    )
    ap.add_argument("--listen", type=float, default=3.0, help="seconds to keep listening after joining")
    ap.add_argument(
        "--count", type=int, metavar="N", help="stop once N messages have arrived (or --listen ends)"
    )
    ap.add_argument("--timeout", type=int, default=10, help="join timeout in seconds (Realtime clients: 10)")
    ap.add_argument("--hb-interval", type=int, default=25, help="heartbeat interval in seconds (floor 15)")
    ap.add_argument("--json", action="store_true", help="print JSON lines")
    ap.add_argument("--show-secrets", action="store_true", help="do not redact secrets in what arrives")
    args = ap.parse_args(argv)
    if args.broadcast:
        try:
            json.loads(args.broadcast[1])
        except ValueError as e:
            ap.error(f"--broadcast JSON is not valid JSON: {e}")
    try:
        endpoint(args.url)
    except ValueError as e:
        ap.error(Redactor(args.show_secrets).output(str(e)))  # the message quotes the URL and its apikey
    args.key = args.key or dev_anon_key()
    logging.basicConfig(level=logging.CRITICAL)  # the client logs tracebacks at ERROR; we print outcomes

    async def main_async() -> int:
        return await run(args, Printer(args.json, Redactor(args.show_secrets), args.count))

    return asyncio.run(main_async())


if __name__ == "__main__":
    sys.exit(main())
