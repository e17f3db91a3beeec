"""rtprobe against relays whose behaviour is known: rtproxy's own modes (and faults) in front of
the local Realtime server, and a small relay with one chosen defect at a time, so each check is seen
catching its own defect and only its own.

The probe runs as the command a user runs (subprocess, --json); each expectation is named.
"""

from __future__ import annotations

import asyncio
import json
import socket
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from conftest import TIMEOUT, command
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.http11 import Response

PROBE = command("rtprobe")
CHECKS = [
    "a-query",
    "b-vsn",
    "c-upstream-status",
    "d-early-frames",
    "e-heartbeat",
    "f-binary",
    "g-close",
    "h-subprotocol",
]
ALL_PASS = {c: "pass" for c in CHECKS}


async def rtprobe(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        PROBE, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 4 * TIMEOUT)  # safety net only
    except TimeoutError:
        proc.kill()
        raise
    return proc.returncode, out.decode(), err.decode()


async def probe_json(url: str, key: str) -> tuple[int, dict, dict[str, str]]:
    code, out, err = await rtprobe(url, "--json", "--key", key)
    assert key not in out + err
    report = json.loads(out)
    assert [c["name"] for c in report["checks"]] == CHECKS, report
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    for c in report["checks"]:
        assert c["ok"] == {"pass": True, "fail": False, "skip": None}[c["status"]]
        assert bool(c["fix"]) == (c["status"] == "fail"), c  # a fix line exactly for failures
        assert c["detail"]
    assert report["ok"] == (statuses == ALL_PASS) and code == (0 if report["ok"] else 1)
    return code, report, statuses


def details(report: dict) -> dict[str, str]:
    return {c["name"]: c["detail"] for c in report["checks"]}


# -------------------------------------------------------------------------------- rtproxy's own modes


async def test_fixed_mode_passes_every_check(local_server, mitmdump, anon_key):
    proxy = await mitmdump(f"rt_supabase_url={local_server.url}")
    code, report, statuses = await probe_json(proxy.url, anon_key)
    assert statuses == ALL_PASS, report
    assert code == 0
    d = details(report)
    assert "binary kind 4 back" in d["f-binary"]
    assert '401 {"error": "The token provided is not a valid JWT"}' in d["c-upstream-status"]


async def test_relay_mode_fails_what_the_design_predicts(local_server, mitmdump, anon_key):
    """The design's relay drops the query, so its upstream leg never opens against a server that needs the
    apikey: everything that needs the server answering on that socket cannot be checked behind it. The
    defects that stay hidden behind (a) are each shown on their own with DefectRelay below."""
    proxy = await mitmdump(f"rt_supabase_url={local_server.url}", "rt_mode=relay")
    code, report, statuses = await probe_json(proxy.url, anon_key)
    assert code == 1
    assert statuses == {
        "a-query": "fail",  # query dropped: 101 from the relay, then 1011 when Realtime answers 401
        "b-vsn": "skip",  # vsn is dropped with the query, but no socket reaches the server to show it
        "c-upstream-status": "fail",  # early 101: an invalid key gets 101 instead of Realtime's 401
        "d-early-frames": "skip",  # early frames are dropped too, hidden behind (a)
        "e-heartbeat": "skip",  # no server on this socket to answer heartbeats
        "f-binary": "skip",  # binary-as-"[object Blob]", hidden behind (a)
        "g-close": "skip",  # the relay closed the socket (1011) before the probe could
        "h-subprotocol": "pass",  # the relay's 101 selects no subprotocol
    }, report
    d = details(report)
    assert d["a-query"].startswith(
        "101, then the socket was closed 1011 (Proxy server error) before the server answered anything"
    )
    assert "got 101, then closed 1011 (Proxy server error)" in d["c-upstream-status"]
    await proxy.wait_for(r"hop: frame-dropped|upstream rejected the hop.s upgrade: 401 API key is missing")


async def test_as_written_mode_426(local_server, mitmdump, anon_key):
    proxy = await mitmdump(f"rt_supabase_url={local_server.url}", "rt_mode=as-written")
    code, report, statuses = await probe_json(proxy.url, anon_key)
    assert statuses["a-query"] == "fail" and "426 Expected WebSocket" in details(report)["a-query"]
    assert statuses["c-upstream-status"] == "fail"  # 426 for every key: not Realtime's JSON refusal
    assert statuses["h-subprotocol"] == "skip"  # the same 426, already reported by (a)
    assert code == 1


async def test_fault_swallow_heartbeats_fails_only_e(local_server, mitmdump, anon_key):
    proxy = await mitmdump(f"rt_supabase_url={local_server.url}", "rt_fault=swallow-heartbeats")
    _, report, statuses = await probe_json(proxy.url, anon_key)
    assert statuses == {**ALL_PASS, "e-heartbeat": "fail"}, report
    assert "no reply to a heartbeat" in details(report)["e-heartbeat"]


async def test_fault_strip_query_fails_a_with_the_servers_401(local_server, mitmdump, anon_key):
    """A hop that drops the query but passes the server's answer through: (a) sees Realtime's own 401."""
    proxy = await mitmdump(f"rt_supabase_url={local_server.url}", "rt_fault=strip-query")
    _, report, statuses = await probe_json(proxy.url, anon_key)
    assert statuses == {
        "a-query": "fail",  # 401 API key is missing
        "b-vsn": "skip",
        "d-early-frames": "skip",
        "e-heartbeat": "skip",
        "f-binary": "skip",
        "g-close": "skip",
        "c-upstream-status": "pass",  # the server's 401 JSON does reach the client
        "h-subprotocol": "skip",  # refused with the same 401
    }, report
    assert details(report)["a-query"].startswith(
        "401 API key is missing: the apikey in the query string never reached the server"
    )


# -------------------------------------------------------------------------------- one defect at a time


class DefectRelay:
    """A relay in the style of a JS Worker with chosen defects, on 127.0.0.1:
    drop_query  - the upstream URL has no query string;
    drop_vsn    - the query minus vsn (the server then speaks 1.0.0);
    early_101   - accept the client before the upstream answered; close 1011 if the upstream then fails
                  (without it, the upstream's refusal is passed through: status and body);
    drop_early  - with early_101: client frames that arrive before the upstream is open are dropped. The
                  upstream is opened only once the first client frame has arrived, so that frame is always
                  dropped (deterministic, and what a slow upstream does to a client's first join);
    blob        - binary frames become the text "[object Blob]", both ways.
    Otherwise frames and close codes are forwarded as they are."""

    def __init__(
        self,
        upstream: str,
        *,
        drop_query=False,
        drop_vsn=False,
        early_101=False,
        drop_early=False,
        blob=False,
    ) -> None:
        self.upstream = upstream.replace("http://", "ws://", 1)
        self.drop_query, self.drop_vsn, self.blob = drop_query, drop_vsn, blob
        self.early_101, self.drop_early = early_101, drop_early
        self.ready: dict[ServerConnection, object] = {}

    def target(self, path: str) -> str:
        parts = urlsplit(path)
        query = [] if self.drop_query else parse_qsl(parts.query, keep_blank_values=True)
        if self.drop_vsn:
            query = [(k, v) for k, v in query if k != "vsn"]
        return self.upstream + parts.path + (f"?{urlencode(query)}" if query else "")

    async def _connect(self, path: str):
        return await connect(
            self.target(path), compression=None, max_size=None, ping_interval=None, proxy=None
        )

    async def process_request(self, conn: ServerConnection, request):
        if self.early_101:
            return None
        try:
            self.ready[conn] = await self._connect(request.path)
        except InvalidStatus as e:
            r = e.response
            headers = Headers([("Content-Length", str(len(r.body or b""))), ("Connection", "close")])
            if "Content-Type" in r.headers:
                headers["Content-Type"] = r.headers["Content-Type"]
            return Response(r.status_code, r.reason_phrase, headers, r.body or b"")
        return None

    def convert(self, message: str | bytes) -> str | bytes:
        return "[object Blob]" if self.blob and isinstance(message, bytes) else message

    async def handler(self, client: ServerConnection) -> None:
        up = self.ready.pop(client, None)
        if up is None:
            try:
                if self.drop_early:
                    await client.recv()  # dropped: "Server not ready"
                up = await self._connect(client.request.path)
            except ConnectionClosed:
                return
            except Exception:  # noqa: BLE001 - the Worker's error handler
                await client.close(1011, "Proxy server error")
                return

        async def pump(src, dst) -> None:
            try:
                async for m in src:
                    await dst.send(self.convert(m))
            except ConnectionClosed:
                pass
            code = src.close_code if src.close_code not in (None, 1005, 1006) else 1000
            await dst.close(code, src.close_reason or "")

        tasks = [asyncio.create_task(pump(client, up)), asyncio.create_task(pump(up, client))]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> str:
        self._server = await serve(
            self.handler,
            "127.0.0.1",
            0,
            process_request=self.process_request,
            compression=None,
            max_size=None,
            ping_interval=None,
        )
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc) -> None:
        self._server.close()
        await self._server.wait_closed()


DEFECTS = {
    "none": ({}, {}),
    # query dropped, upstream refusal passed through: Realtime's 401 reaches the client.
    "drop-query": (
        {"drop_query": True},
        {
            "a-query": "fail",
            "b-vsn": "skip",
            "c-upstream-status": "pass",
            "d-early-frames": "skip",
            "e-heartbeat": "skip",
            "f-binary": "skip",
            "g-close": "skip",
            "h-subprotocol": "skip",
        },
    ),
    # only vsn lost: the server speaks 1.0.0 and ignores 2.0.0 arrays.
    "drop-vsn": (
        {"drop_vsn": True},
        {
            "a-query": "pass",
            "b-vsn": "fail",
            "c-upstream-status": "pass",
            "d-early-frames": "skip",
            "e-heartbeat": "skip",
            "f-binary": "skip",
            "g-close": "pass",
            "h-subprotocol": "pass",
        },
    ),
    # 101 before the upstream answered, frames buffered: only (c) can tell.
    "early-101": ({"early_101": True}, {"c-upstream-status": "fail"}),
    # ... and early frames dropped: (c) and (d).
    "early-101+drop-early": (
        {"early_101": True, "drop_early": True},
        {"c-upstream-status": "fail", "d-early-frames": "fail"},
    ),
    # binary frames relayed as "[object Blob]": only (f).
    "blob": ({"blob": True}, {"f-binary": "fail"}),
}


@pytest.mark.parametrize("name", list(DEFECTS))
async def test_each_defect_fails_its_own_check(name, local_server, anon_key):
    defects, expected = DEFECTS[name]
    want = expected if len(expected) == len(CHECKS) else {**ALL_PASS, **expected}
    async with DefectRelay(local_server.url, **defects) as url:
        _, report, statuses = await probe_json(url, anon_key)
    assert statuses == want, report
    d = details(report)
    if name == "drop-query":
        assert d["a-query"].startswith("401 API key is missing")
    if name == "drop-vsn":
        assert "the server speaks 1.0.0" in d["b-vsn"]
    if name == "early-101+drop-early":
        assert "the same join sent later was answered" in d["d-early-frames"]
    if name == "blob":
        assert "binary frames do not reach the server as binary" in d["f-binary"]


# -------------------------------------------------------------------------------- the command itself


async def test_checklist_text_exit_codes_and_key_redaction(local_server, mitmdump, anon_key):
    proxy = await mitmdump(f"rt_supabase_url={local_server.url}", "rt_mode=relay")
    code, out, err = await rtprobe(proxy.url, "--key", anon_key)
    assert code == 1 and anon_key not in out + err
    lines = out.splitlines()
    assert lines[0] == f"rtprobe {proxy.url} (/realtime/v1/websocket)"
    assert any(line.startswith("FAIL a-query — 101, then the socket was closed 1011") for line in lines)
    i = next(i for i, line in enumerate(lines) if line.startswith("FAIL c-upstream-status — "))
    assert lines[i + 1].startswith("     fix: open the upstream WebSocket first")
    assert any(line.startswith("PASS h-subprotocol — ") for line in lines)
    assert lines[-1] == "8 checks: 1 passed, 2 failed, 5 not checked"


async def test_key_from_environment_is_redacted_too(local_server, mitmdump, anon_key, monkeypatch):
    proxy = await mitmdump(f"rt_supabase_url={local_server.url}", "rt_fault=strip-query")
    monkeypatch.setenv("SUPABASE_ANON_KEY", anon_key)
    code, out, err = await rtprobe(proxy.url)
    assert code == 1 and "FAIL a-query — 401 API key is missing" in out
    assert anon_key not in out + err


async def test_unreachable_and_bad_arguments_exit_2():
    with socket.socket() as s:  # bound, not listening: connections are refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        code, out, err = await rtprobe(f"http://127.0.0.1:{port}")
        assert code == 2 and "unreachable" in err and out == ""
        code, out, _ = await rtprobe(f"http://127.0.0.1:{port}", "--json")
        assert code == 2 and json.loads(out)["ok"] is False
    for bad in (["ftp://127.0.0.1"], ["http://127.0.0.1:1/realtime/v1"], []):
        code, _, err = await rtprobe(*bad)
        assert code == 2, (bad, err)
