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
import json
import sys

from rtproxy_core import urls
from rtproxy_core.redact import Redactor

from rtproxy_tools import version_text

from .. import key_from_env
from .checks import PASS
from .output import Scrubber, checks_help, render_json, render_text
from .run import Probe
from .wire import Unreachable


def default_key() -> str:
    key = key_from_env()
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
    ap.add_argument("--version", action="version", version=version_text("rtprobe"))
    ap.add_argument(
        "url",
        help="the URL a client uses: ws(s):// or http(s)://host[:port][/prefix], optionally with "
        "/realtime/v1[/websocket] or /socket[/websocket]",
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
