"""Run the local Supabase-Realtime-compatible server on loopback until SIGINT/SIGTERM.

    rtlocal --port 54321
    # clients: ws://127.0.0.1:54321/realtime/v1/websocket?apikey=<anon key>&vsn=2.0.0
    # fake a database change:
    curl 'http://127.0.0.1:54321/local/v1/emit?table=todos&type=INSERT&record=%7B%22id%22%3A1%7D'

    rtlocal --port 54321 --tls --ca-out /tmp/rtlocal-ca.pem
    # https:// and wss:// with a throwaway CA made at start (EC P-256, valid 2 days; a certificate for
    # 127.0.0.1, ::1 and localhost); clients trust the CA's PEM written to --ca-out, e.g.
    curl --cacert /tmp/rtlocal-ca.pem 'https://127.0.0.1:54321/local/v1/emit?table=todos'

Timers and quotas default to the real server's (connect error backoff 2 s, join error backoff 5 s, idle
close 60 s; 200 concurrent users, 100 joins/s, 100 events/s, 100 channels per socket, 3000 KB payloads).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import signal
import socket
import sys
import tempfile
from pathlib import Path

from rtproxy_local.config import DATABASE_CONDITIONS, POLICY_CONDITIONS
from rtproxy_local.server import LocalRealtime, ServerConfig

from rtproxy_tools import version_text


def _is_loopback(host: str) -> bool:
    """Every address the name resolves to must be loopback: this server has no real auth."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(str(i[4][0]).split("%")[0]).is_loopback for i in infos)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--version", action="version", version=version_text("rtlocal"))
    p.add_argument("--port", type=int, required=True, help="TCP port (0: pick a free one)")
    p.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    p.add_argument("--jwt-secret", help="JWT secret for apikeys and access tokens (default: Supabase CLI's)")
    p.add_argument("--accept-any-apikey", action="store_true", help="require an apikey but do not verify it")
    p.add_argument(
        "--tenant",
        action="append",
        default=[],
        metavar="NAME",
        help="only accept this tenant (first Host label); repeatable; default any",
    )
    p.add_argument("--connect-error-backoff-ms", type=int, help="delay before upgrade rejections (2000)")
    p.add_argument("--join-error-backoff-ms", type=int, help="delay before join error replies (5000)")
    p.add_argument(
        "--idle-timeout", type=float, help="close 1000 after this many silent seconds (60; 0: never)"
    )
    p.add_argument("--private-only", action="store_true", help="refuse public channel joins")
    p.add_argument(
        "--no-quotas",
        action="store_true",
        help="lift the tenant's quotas (users, joins/s, events/s, presence events/s, channels per "
        "socket), as for load tests",
    )
    p.add_argument(
        "--no-channel-timeout",
        type=float,
        help="drop sockets left without channels at this interval, in seconds (600; 0: never)",
    )
    p.add_argument(
        "--database",
        choices=DATABASE_CONDITIONS,
        help="the project database's state: joins and token refreshes fail as Realtime's do",
    )
    p.add_argument("--policies", choices=POLICY_CONDITIONS, help="private channels' RLS query fails this way")
    p.add_argument(
        "--restarting",
        action="store_true",
        help="answer joins as a Realtime node shutting down does (RealtimeRestarting)",
    )
    p.add_argument(
        "--tls",
        action="store_true",
        help="serve https:// and wss:// with a throwaway local CA (a new one each run; its key never "
        "leaves the process) instead of http:// and ws://",
    )
    p.add_argument(
        "--ca-out",
        metavar="FILE",
        help="with --tls: write the CA certificate (PEM) here for clients to trust (default: ca.pem in a "
        "new temporary directory); the path is printed",
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="-v: connection log, -vv: frames")
    return p


def _config(args: argparse.Namespace) -> ServerConfig:
    cfg = ServerConfig(
        accept_any_apikey=args.accept_any_apikey, tenants=set(args.tenant), private_only=args.private_only
    )
    if args.jwt_secret:
        cfg.jwt_secret = args.jwt_secret
    if args.connect_error_backoff_ms is not None:
        cfg.connect_error_backoff_ms = args.connect_error_backoff_ms
    if args.join_error_backoff_ms is not None:
        cfg.join_error_backoff_ms = args.join_error_backoff_ms
    if args.idle_timeout is not None:
        cfg.idle_timeout_s = args.idle_timeout or None
    if args.no_channel_timeout is not None:
        cfg.no_channel_timeout_s = args.no_channel_timeout or None
    if args.no_quotas:
        cfg.max_concurrent_users = cfg.max_joins_per_second = None
        cfg.max_events_per_second = cfg.max_presence_events_per_second = None
        cfg.max_channels_per_client = 10**9
    cfg.database, cfg.policies, cfg.restarting = args.database, args.policies, args.restarting
    return cfg


async def _run(srv: LocalRealtime, ca_out: Path | None = None) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, srv.close)
    print(
        f"local Realtime server listening at {srv.url} (anon key: use rtclient's default)",
        flush=True,
    )
    if ca_out is not None:
        print(f"TLS: clients must trust the CA certificate in {ca_out}", flush=True)
    await srv.serve()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not _is_loopback(args.host):
        print(
            f"local_realtime: refusing to bind {args.host!r}: only loopback addresses are allowed",
            file=sys.stderr,
        )
        return 2
    if args.verbose:
        logging.basicConfig(
            level=logging.DEBUG if args.verbose > 1 else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    if args.ca_out and not args.tls:
        print("local_realtime: --ca-out needs --tls", file=sys.stderr)
        return 2
    srv = LocalRealtime(_config(args), tls=args.tls)
    ca_out = None
    if srv.ca_pem is not None:
        ca_out = Path(args.ca_out) if args.ca_out else Path(tempfile.mkdtemp(prefix="rtlocal-")) / "ca.pem"
        try:
            ca_out.write_text(srv.ca_pem)  # a certificate only: public, no key
        except OSError as e:
            print(f"local_realtime: cannot write {ca_out}: {e.strerror or e}", file=sys.stderr)
            return 1
    try:
        srv.bind(args.host, args.port)
    except OSError as e:
        print(f"local_realtime: cannot bind {args.host}:{args.port}: {e.strerror or e}", file=sys.stderr)
        return 1
    asyncio.run(_run(srv, ca_out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
