#!/usr/bin/env python3
"""Writes examples/: small captures of three Realtime failures for a new user to try rtproxy's offline
commands on, each sanitized by rtsanitize.

    .venv/bin/python scripts/examples.py     # rewrite examples/*.har and *.flows, print rtdiagnose on each

Each example is written as the corpus writes a case (tests/corpus.py: the connections as that client
sends them, then `har()` for a Chrome "Save all as HAR with content", `flows()` for a mitmproxy flow
file), modelled on the corpus case it names, in today's wire form (realtime-js 2.111: vsn 2.0.0 arrays,
a 25 s heartbeat, rejoins after 1, 2, 5, 10 s; Realtime's join errors after its 5 s backoff, as
`Code: message`; its refused upgrades as a JSON body). The raw capture is written to a temporary folder
and only rtsanitize's output lands in examples/: the apikey becomes `sb_publishable_rtproxy-sanitized`,
each JWT keeps its header and claims (role, exp: what the diagnosis reads) and gets rtsanitize's marker
as its signature. tests/test_examples.py checks the files: their first finding, that rtsanitize finds
nothing more in them, that no JWT in them is signed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
# This checkout's code, whichever checkout .venv's editable install points at; the corpus's builders.
sys.path[:0] = [str(ROOT / "addon"), str(ROOT / "tests")]

START = 1795167000.0  # 2026-11-20 09:30:00 UTC
PROJECT = "abcdefghijklmnop"  # the corpus's fake project ref
APIKEY = "sb_publishable_" + "ExampleOnly4Tz8Qm3k"  # made up, split as tests write keys
USER = "6c7f5b8e-1f2a-4c3d-9e8f-0a1b2c3d4e5f"
VERSION = "realtime-js/2.111.0"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def user_jwt(issued: float, expires: float) -> str:
    """A GoTrue access token for USER, signed with a throwaway secret (rtsanitize replaces the signature)."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    claims = {
        "aud": "authenticated",
        "exp": int(expires),
        "iat": int(issued),
        "iss": f"https://{PROJECT}.supabase.co/auth/v1",
        "sub": USER,
        "role": "authenticated",
    }
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signature = hmac.new(b"example-only-not-a-secret", f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64(signature)}"


def frame(t: float, direction: str, message: list[Any]) -> dict[str, Any]:
    return {"t": t, "dir": direction, "text": json.dumps(message, separators=(",", ":"))}


def join(t: float, ref: str, topic: str, token: str, private: bool) -> dict[str, Any]:
    config = {
        "broadcast": {"ack": False, "self": False},
        "presence": {"key": "", "enabled": False},
        "postgres_changes": [],
        "private": private,
    }
    payload = {"config": config, "access_token": token, "version": VERSION}
    return frame(t, "send", [ref, ref, topic, "phx_join", payload])


def refused(t: float, ref: str, topic: str, reason: str) -> dict[str, Any]:
    return frame(
        t, "recv", [ref, ref, topic, "phx_reply", {"status": "error", "response": {"reason": reason}}]
    )


def heartbeat(t: float, ref: str) -> list[dict[str, Any]]:
    return [
        frame(t, "send", [None, ref, "phoenix", "heartbeat", {}]),
        frame(t + 0.052, "recv", [None, ref, "phoenix", "phx_reply", {"status": "ok", "response": {}}]),
    ]


def socket_url(host: str) -> str:
    return f"wss://{host}/realtime/v1/websocket?apikey={APIKEY}&vsn=2.0.0"


def one_socket_har(case_id: str, frames: list[dict[str, Any]], end: float) -> dict[str, Any]:
    """A HAR case of one upgraded socket to the project, its frames as given."""
    conn = {
        "url": socket_url(f"{PROJECT}.supabase.co"),
        "start": START,
        "status": 101,
        "response_body": "",
        "frames": frames,
        "end": end,
    }
    return {"id": case_id, "capture": "har", "connections": [conn]}


def refused_private_join() -> dict[str, Any]:
    """corpus: js-custom-jwt-lost-on-resubscribe, rls-read-denied-topicless. A signed-in user joins the
    private channel `orders`; realtime.messages has no SELECT policy for them, so Realtime refuses the join
    (after its 5 s backoff) and refuses realtime-js's rejoin 1 s later the same way."""
    token = user_jwt(START - 600, START + 3000)
    topic, why = (
        "realtime:orders",
        "Unauthorized: You do not have permissions to read from this Channel topic: orders",
    )
    frames = [
        join(0.021, "1", topic, token, True),
        refused(5.094, "1", topic, why),
        join(6.097, "2", topic, token, True),
        refused(11.163, "2", topic, why),
        *heartbeat(25.021, "3"),
    ]
    return one_socket_har("refused-private-join", frames, 26.0)


def expired_token() -> dict[str, Any]:
    """corpus: v2-rejoin-stale-jwt-after-wake, js-expired-jwt-rejoin-flood. The tab slept past the user's
    token expiry; on wake the socket reconnects and rejoins with the expired JWT, and Realtime refuses
    each join with `InvalidJWTToken: Token has expired N seconds ago`."""
    token = user_jwt(START - 4354, START - 754)  # expired 754 s before the first join
    topic = "realtime:orders"
    frames = [
        join(0.020, "1", topic, token, False),
        refused(5.031, "1", topic, "InvalidJWTToken: Token has expired 754 seconds ago"),
        join(6.033, "2", topic, token, False),
        refused(11.041, "2", topic, "InvalidJWTToken: Token has expired 760 seconds ago"),
        *heartbeat(25.020, "3"),
    ]
    return one_socket_har("expired-token", frames, 26.0)


def worker_drops_query() -> dict[str, Any]:
    """The design's Worker builds the upstream URL from the path alone (worker/fixtures/relay.js's rule,
    rtproxy's `strip-query` fault): the apikey the client put in the query never reaches Realtime, which
    answers the upgrade 401 `API key is missing`; realtime-js reconnects after 1 and 2 s. Recorded as
    mitmproxy in front of the browser saves it (`mitmdump -w`): the Worker's URL with the client's query."""
    refusal = json.dumps({"error": "API key is missing"}, separators=(",", ":"))
    headers = [["content-type", "application/json; charset=utf-8"], ["content-length", str(len(refusal))]]
    return {
        "id": "worker-drops-query",
        "capture": "flows",
        "connections": [
            {
                "url": socket_url("realtime-relay.example.workers.dev"),
                "start": START + at,
                "status": 401,
                "response_headers": headers,
                "response_body": refusal,
                "frames": [],
                "end": 0.12,
            }
            for at in (0.0, 1.13, 3.26)
        ],
    }


CASES = (refused_private_join, expired_token, worker_drops_query)


def proxy_flows(case: dict[str, Any]) -> list:
    """The case's flows (tests/corpus.py's `flows()`) with the connections a proxy in front of the browser
    records for them: the client's and the server's, timed with the request (the corpus's flows keep
    mitmproxy's test placeholders there), the server at the Worker's host (a documentation address)."""
    from corpus import flows

    out = []
    for f in flows(case):
        start, end = f.request.timestamp_start, f.response.timestamp_end
        f.timestamp_created = start
        f.client_conn.peername, f.client_conn.sockname = ("127.0.0.1", 53214), ("127.0.0.1", 8080)
        f.client_conn.timestamp_start, f.client_conn.timestamp_end = start - 0.002, end
        f.client_conn.timestamp_tls_setup = None
        f.server_conn.address = (f.request.host, f.request.port)
        f.server_conn.sni = f.request.host
        f.server_conn.peername, f.server_conn.sockname = ("192.0.2.10", 443), ("10.0.0.2", 51822)
        f.server_conn.timestamp_start = f.server_conn.timestamp_tcp_setup = start
        f.server_conn.timestamp_tls_setup, f.server_conn.timestamp_end = start + 0.03, end
        out.append(f)
    return out


def main() -> int:
    from corpus import har  # tests/corpus.py
    from mitmproxy import io
    from rtproxy_tools import diagnose
    from rtproxy_tools import sanitize as rtsanitize

    EXAMPLES.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for make in CASES:
            case = make()
            if case["capture"] == "har":  # as Chrome writes it: indented
                raw = Path(tmp) / f"{case['id']}.har"
                raw.write_text(json.dumps(har(case), indent=2) + "\n")
            else:
                raw = Path(tmp) / f"{case['id']}.flows"
                with raw.open("wb") as fh:
                    writer = io.FlowWriter(fh)
                    for f in proxy_flows(case):
                        writer.add(f)
            out = EXAMPLES / raw.name
            if rtsanitize.main([str(raw), str(out)]) != 0:
                return 1
            print(f"$ rtdiagnose examples/{out.name}")
            diagnose.main([str(out)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
