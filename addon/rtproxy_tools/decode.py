"""Decode Realtime frames: JSON lines in, one JSON line out per input.

Input line:  {"vsn": "1.0.0"|"2.0.0", "direction": "client->server"|"server->client",
              "encoding": "text"|"binary", "raw": <the text, or hex for binary>}
Output line: {"join_ref", "ref", "topic", "event", "payload"}; binary payload bytes as {"hex": "..."}.
An undecodable line gives {"error": "..."}. Secrets (apikey, JWTs, access_token) are redacted unless
--show-secrets.

    echo '{"vsn":"2.0.0","direction":"server->client","encoding":"binary","raw":"0405..."}' | rtdecode
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace

from rtproxy_core import frames
from rtproxy_core.redact import Redactor

from rtproxy_tools import version_text

DIRECTIONS = {"client->server": True, "server->client": False}


def decode_line(line: str, redactor: Redactor) -> dict:
    """One output object; everything in it (topic, refs, payload keys and values, bytes, an error quoting
    the input) redacted, before bytes become hex."""
    msg = _decode_line(line)
    if isinstance(msg, dict):
        return redactor.output(msg)
    return redactor.output(replace(msg, payload=redactor.payload(msg.payload)).as_dict())


def _decode_line(line: str) -> frames.Message | dict:
    """The decoded message, or {"error": ...}."""
    try:
        item = json.loads(line)
    except (ValueError, RecursionError) as e:
        return {"error": f"input is not JSON: {e}"}
    if not isinstance(item, dict):
        return {"error": "input line must be a JSON object"}
    if "log" in item:
        return {
            "error": "a HAR, not a frame: rtdecode reads one frame per line; rtdiagnose FILE reads a capture"
        }
    vsn, direction, encoding, raw = (item.get(k) for k in ("vsn", "direction", "encoding", "raw"))
    if vsn not in (frames.V1, frames.V2):
        return {"error": f"vsn must be 1.0.0 or 2.0.0, got {vsn!r}"}
    if direction not in DIRECTIONS:
        return {"error": f"direction must be client->server or server->client, got {direction!r}"}
    if encoding not in ("text", "binary") or not isinstance(raw, str):
        return {"error": "encoding must be text or binary, and raw a string"}
    if encoding == "binary":
        if vsn == frames.V1:
            return {"error": "binary frames do not exist in vsn 1.0.0"}
        try:
            data = bytes.fromhex(raw)
        except ValueError:
            return {"error": "raw is not hex"}
    else:
        data = raw.encode("utf-8", "surrogatepass")
    try:
        msg = frames.decode(data, binary=encoding == "binary", from_client=DIRECTIONS[direction])
    except frames.DecodeError as e:
        return {"error": str(e)}
    if encoding == "text" and msg.shape != frames.shape_for(vsn):
        return {
            "error": f"a {msg.shape} frame on a vsn {vsn} connection: the server drops it (serializer mismatch)"
        }
    return msg


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--version", action="version", version=version_text("rtdecode"))
    ap.add_argument("--show-secrets", action="store_true", help="print apikey/JWT/access_token values")
    args = ap.parse_args(argv)
    redactor = Redactor(show_secrets=args.show_secrets)
    for line in sys.stdin:
        if line.strip():
            print(json.dumps(decode_line(line, redactor), ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
