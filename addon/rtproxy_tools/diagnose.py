"""Diagnose Supabase Realtime connections in a capture: why channels failed, with evidence and fix.

    rtdiagnose CAPTURE... [--json] [--timers join=10,heartbeat=25,idle=60]

CAPTURE is a HAR file (exported by Chrome/Edge DevTools, HTTP Toolkit, mitmproxy's savehar / hardump, or
Firefox, Safari, Charles and Playwright, which keep no WebSocket messages), mitmproxy's compressed .zhar,
or a mitmproxy flow file (mitmdump -w). Exit status: 0 no error finding, 1 at least one error finding,
2 a capture could not be read or holds nothing that can be diagnosed (one line on stderr says why). URLs,
keys and tokens are redacted unless --show-secrets.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rtproxy_core.captures import Capture, CaptureError
from rtproxy_core.diagnosis import diagnose_captures
from rtproxy_core.redact import Redactor
from rtproxy_core.report import has_error, report_json, report_text
from rtproxy_core.rules import Timers

from rtproxy_tools import version_text

from .captures import read_capture


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--version", action="version", version=version_text("rtdiagnose"))
    ap.add_argument("captures", nargs="+", type=Path, metavar="CAPTURE")
    ap.add_argument(
        "--json",
        action="store_true",
        help="print JSON: {connections: [{url, status, vsn, channels, frames: {out, in, undecodable, "
        "errors, dropped}, error_frames, findings: [{code, severity, topic, explains, evidence, fix, "
        "confidence, candidates, follows, began, chain}]}], captures: [{path, producer, notes}]}",
    )
    ap.add_argument(
        "--timers",
        default="",
        help="Realtime timers the rules expect, seconds (any subset; unset: the clients' and the server's "
        f"defaults, {Timers().in_force()}, and the cadence the client's own heartbeats show)",
    )
    ap.add_argument("--show-secrets", action="store_true", help="do not redact apikeys, JWTs, access tokens")
    args = ap.parse_args(argv)
    try:
        timers = Timers.parse(args.timers)
    except ValueError as e:
        print(Redactor(args.show_secrets).output(f"rtdiagnose: --timers: {e}"), file=sys.stderr)
        return 2
    redactor = Redactor(args.show_secrets)  # everything printed passes redactor.output last
    captures: list[Capture] = []
    for path in args.captures:
        try:
            capture = read_capture(path)
        except CaptureError as e:
            print(redactor.output(f"rtdiagnose: {path}: {e}"), file=sys.stderr)
            return 2
        if capture.undiagnosable:
            print(redactor.output(f"rtdiagnose: {path}: {capture.undiagnosable}"), file=sys.stderr)
            return 2
        captures.append(capture)
    sessions = diagnose_captures([c.connections for c in captures], redactor, timers)
    about = [
        {
            "path": str(path),
            "producer": redactor.text(c.producer),
            "notes": [redactor.text(n) for n in c.notes],
        }
        for path, c in zip(args.captures, captures)
    ]
    if args.json:
        out = redactor.output(report_json(sessions) | {"captures": about})  # the last pass, whole
        print(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        notes = [f"{a['path']}: {note}\n" for a in about for note in a["notes"]]
        sys.stdout.write(redactor.output("".join(notes) + report_text(sessions)))
    return 1 if has_error(sessions) else 0


if __name__ == "__main__":
    sys.exit(main())
