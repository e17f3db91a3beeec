"""Diagnose Supabase Realtime connections in a capture: why channels failed, with evidence and fix.

    rtdiagnose CAPTURE... [--json] [--timers join=10,heartbeat=25,idle=60]

CAPTURE is a HAR file (exported by Chrome/Edge DevTools, Firefox, or mitmproxy's savehar / hardump) or a
mitmproxy flow file (mitmdump -w). Exit status: 0 no error finding, 1 at least one error finding,
2 a capture could not be read (one line on stderr says why). URLs, keys and tokens are redacted unless
--show-secrets.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rtproxy_core.captures import CaptureError
from rtproxy_core.diagnosis import Connection, diagnose_captures
from rtproxy_core.redact import Redactor
from rtproxy_core.report import has_error, report_json, report_text
from rtproxy_core.rules import Timers

from .captures import read


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("captures", nargs="+", type=Path, metavar="CAPTURE")
    ap.add_argument(
        "--json",
        action="store_true",
        help="print JSON: {connections: [{url, status, vsn, channels, findings: [{code, severity, "
        "topic, explains, evidence, fix, confidence, candidates, follows}]}]}",
    )
    ap.add_argument(
        "--timers",
        default=str(Timers()),
        help="Realtime timers the rules expect, seconds (default %(default)s)",
    )
    ap.add_argument("--show-secrets", action="store_true", help="do not redact apikeys, JWTs, access tokens")
    args = ap.parse_args(argv)
    try:
        timers = Timers.parse(args.timers)
    except ValueError as e:
        print(f"rtdiagnose: --timers: {e}", file=sys.stderr)
        return 2
    captures: list[list[Connection]] = []
    for path in args.captures:
        try:
            captures.append(read(path))
        except CaptureError as e:
            print(f"rtdiagnose: {path}: {e}", file=sys.stderr)
            return 2
    sessions = diagnose_captures(captures, Redactor(args.show_secrets), timers)
    if args.json:
        print(json.dumps(report_json(sessions), indent=2, ensure_ascii=False))
    else:
        sys.stdout.write(report_text(sessions))
    return 1 if has_error(sessions) else 0


if __name__ == "__main__":
    sys.exit(main())
