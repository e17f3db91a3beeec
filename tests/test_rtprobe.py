"""rtprobe against relays whose behaviour is known: rtproxy's own modes (and faults) in front of
the local Realtime server, and a small relay with one chosen defect at a time, so each check is seen
catching its own defect and only its own, and naming its finding.

The probe runs as the command a user runs (subprocess, --json); each expectation is named. The URL forms
and the output's shape are also checked in-process, without sockets.
"""

from __future__ import annotations

import ast
import asyncio
import json
import socket
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from conftest import TIMEOUT, command
from rtproxy_core import closecodes, rules
from rtproxy_local.jwt import mint
from rtproxy_tools import probe
from test_urls import BAD
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.http11 import Response

PROBE = command("rtprobe")
# Each check and the finding its failure names (unless the evidence names another; see the tests).
CODES = {
    "a-query": "apikey-missing",
    "b-vsn": "vsn-missing",
    "c-upstream-status": "early-101",
    "d-early-frames": "join-dropped-by-proxy",
    "e-heartbeat": "heartbeat-timeout",
    "f-binary": "binary-as-text",
    "g-close": "close-not-forwarded",
    "h-subprotocol": "upgrade-rejected",
}
CHECKS = list(CODES)
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


async def probe_json(url: str, key: str | None, *more: str) -> tuple[int, dict, dict[str, str]]:
    code, out, err = await rtprobe(url, "--json", *(["--key", key] if key else []), *more)
    assert not key or key not in out + err
    report = json.loads(out)
    assert [c["name"] for c in report["checks"]] == CHECKS, report
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    for c in report["checks"]:
        assert c["ok"] == {"pass": True, "fail": False, "skip": None}[c["status"]]
        assert c["code"] in rules.RULES_BY_CODE, c
        # the fix is the finding's own, exactly for failures
        assert c["fix"] == (rules.RULES_BY_CODE[c["code"]].fix if c["status"] == "fail" else ""), c
        if c["status"] != "fail":
            assert c["code"] == CODES[c["name"]], c
        assert c["detail"]
    assert report["ok"] == (statuses == ALL_PASS) and code == (0 if report["ok"] else 1)
    return code, report, statuses


def details(report: dict) -> dict[str, str]:
    return {c["name"]: c["detail"] for c in report["checks"]}


def failed_codes(report: dict) -> dict[str, str]:
    return {c["name"]: c["code"] for c in report["checks"] if c["status"] == "fail"}


# -------------------------------------------------------------------------------- the URL a client uses

# Every form of the URL, and the socket each leads to, is tests/test_urls.py's table (rtproxy_core.urls,
# which rtclient and rtreplay --client follow too). Here: what rtprobe does with one it refuses.

BAD_URLS = BAD  # tests/test_urls.py checks the resolver on each; here, what rtprobe prints


@pytest.mark.parametrize("url", list(BAD_URLS))
def test_bad_urls_get_one_line_and_exit_2(url, capsys):
    assert probe.main([url]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("rtprobe: ") and BAD_URLS[url] in err, err


def test_a_bad_url_is_printed_redacted(capsys):
    secret = mint({"role": "service_role", "exp": int(time.time()) + 3600})
    for url in (
        f"https://relay.example.com/api/websocket?apikey={secret}",
        f"ftp://h/?x={secret}&apikey=plain-key",
    ):
        assert probe.main([url]) == 2
        out, err = capsys.readouterr()
        assert err.count("\n") == 1, err
        for part in secret.split(".")[1:] + ["plain-key"]:
            assert part not in out + err, err
    assert probe.main([f"https://relay.example.com/api/websocket?apikey={secret}", "--show-secrets"]) == 2
    assert secret in capsys.readouterr().err  # the opt-in shows it


# -------------------------------------------------------------------------------- the findings

PROBE_SOURCE = "\n".join(p.read_text() for p in sorted(Path(probe.__file__).parent.glob("*.py")))


def test_every_check_names_a_finding_and_prints_its_fix():
    """Every code the probe can report is a rule's, and the text shows `→ code` and that rule's fix."""
    assert {c.name: c.code for c in probe.CHECKS} == CODES
    # every code a failure can carry instead: the literals passed as `code=` to Probe.set, in every module
    overrides = [
        kw.value
        for node in ast.walk(ast.parse(PROBE_SOURCE))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "set"
        for kw in node.keywords
        if kw.arg == "code"
    ]
    literals = {
        v.value
        for k in overrides
        for v in ast.walk(k)
        if isinstance(v, ast.Constant) and isinstance(v.value, str)
    }
    assert len(overrides) >= 8 and len(literals) >= 4, overrides
    assert literals | set(CODES.values()) <= set(rules.RULES_BY_CODE), literals - set(rules.RULES_BY_CODE)
    for code in ("token-invalid", "tenant-not-found", "upgrade-rejected"):  # refusal_code names these
        assert code in rules.RULES_BY_CODE
    assert probe.refusal_code("API key is missing") == "apikey-missing"
    assert probe.refusal_code("Tenant not found") == "tenant-not-found"
    assert probe.refusal_code(None) == probe.refusal_code("Bad gateway") == "upgrade-rejected"

    results = [probe.ProbeResult(c, probe.FAIL, f"detail of {c.name}") for c in probe.CHECKS]
    results.append(probe.ProbeResult(probe.BY_NAME["a-query"], probe.FAIL, "refused", "token-invalid"))
    text = probe.render_text(
        "https://relay.example.com", "wss://relay.example.com/realtime/v1/websocket", results
    )
    lines = text.splitlines()
    for r in results:
        i = lines.index(f"FAIL {r.name} — {r.detail}")
        assert lines[i + 1] == f"     → {r.code}"
        assert lines[i + 2] == f"     fix: {rules.RULES_BY_CODE[r.code].fix}"
    as_json = probe.render_json("u", "s", results)["checks"]
    assert [(c["code"], c["fix"]) for c in as_json] == [
        (r.code, rules.RULES_BY_CODE[r.code].fix) for r in results
    ]
    # a check that did not fail prints no finding
    passed = probe.render_text("u", "s", [probe.ProbeResult(probe.CHECKS[0], probe.PASS, "fine")])
    assert passed.splitlines()[1:] == ["PASS a-query — fine", "1 checks: 1 passed, 0 failed, 0 not checked"]


# -------------------------------------------------------------------------------- rtproxy's own modes


async def test_fixed_mode_passes_every_check(local_server, mitmdump, anon_key):
    proxy = await mitmdump(f"rt_supabase_url={local_server.url}")
    code, report, statuses = await probe_json(proxy.url, anon_key)
    assert statuses == ALL_PASS, report
    assert code == 0
    d = details(report)
    assert "binary kind 4 back" in d["f-binary"]
    assert '401 {"error": "The token provided is not a valid JWT"}' in d["c-upstream-status"]


def assert_relay_probe(code: int, report: dict, statuses: dict) -> None:
    """What rtprobe reports of the design's relay, emulated (rt_mode=relay, below) or in workerd
    (tests/test_workerd.py): the same statuses, failure codes and details."""
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
    assert failed_codes(report) == {"a-query": "apikey-missing", "c-upstream-status": "early-101"}
    d = details(report)
    assert d["a-query"].startswith(
        "101, then the socket was closed 1011 (Proxy server error) before the server answered anything"
    )
    assert "got 101, then closed 1011 (Proxy server error)" in d["c-upstream-status"]


async def test_relay_mode_fails_what_the_design_predicts(local_server, mitmdump, anon_key):
    """The design's relay drops the query, so its upstream leg never opens against a server that needs the
    apikey: everything that needs the server answering on that socket cannot be checked behind it. The
    defects that stay hidden behind (a) are each shown on their own with DefectRelay below."""
    proxy = await mitmdump(f"rt_supabase_url={local_server.url}", "rt_mode=relay")
    code, report, statuses = await probe_json(proxy.url, anon_key)
    assert_relay_probe(code, report, statuses)
    await proxy.wait_for(r"hop: frame-dropped|upstream rejected the hop.s upgrade: 401 API key is missing")


async def test_as_written_mode_426(local_server, mitmdump, anon_key):
    proxy = await mitmdump(f"rt_supabase_url={local_server.url}", "rt_mode=as-written")
    code, report, statuses = await probe_json(proxy.url, anon_key)
    assert statuses["a-query"] == "fail" and "426 Expected WebSocket" in details(report)["a-query"]
    # 426 for every key and every offer: the same refusal (a) reports, no 101 came (not early-101)
    assert statuses["c-upstream-status"] == statuses["h-subprotocol"] == "skip"
    assert (
        details(report)["c-upstream-status"]
        == "not checked: refused with 426 like every upgrade (see a-query)"
    )
    assert code == 1
    # a 426 without Realtime's words says nothing about the query: the answer was not an upgrade
    assert failed_codes(report) == {"a-query": "upgrade-rejected"}


async def test_a_plain_web_page_is_not_a_realtime_endpoint(web_page, anon_key):
    """A web server answering the upgrade with its page (200 text/html; a dev server, an SPA host): no 101
    ever came, so no early-101 ("open the upstream first"); a-query says what answered, the rest is not
    checked."""
    code, report, statuses = await probe_json(web_page, anon_key)
    assert code == 1
    assert statuses == {**{c: "skip" for c in CHECKS}, "a-query": "fail"}, report
    assert failed_codes(report) == {"a-query": "upgrade-rejected"}
    d = details(report)
    assert d["a-query"].startswith(
        'not a Realtime endpoint: the upgrade was answered 200 OK with Content-Type "text/html; '
        'charset=utf-8", not 101 (is this the URL the client uses for Realtime?): <!doctype html>'
    ), d["a-query"]
    assert (
        d["c-upstream-status"] == d["h-subprotocol"] == "not checked: not a Realtime endpoint (see a-query)"
    )
    _, out, _ = await rtprobe(web_page, "--key", anon_key)
    assert "early-101" not in out and "FAIL a-query — not a Realtime endpoint: " in out, out


async def test_fault_swallow_heartbeats_fails_only_e(local_server, mitmdump, anon_key):
    proxy = await mitmdump(f"rt_supabase_url={local_server.url}", "rt_fault=swallow-heartbeats")
    _, report, statuses = await probe_json(proxy.url, anon_key)
    assert statuses == {**ALL_PASS, "e-heartbeat": "fail"}, report
    assert "no reply to a heartbeat" in details(report)["e-heartbeat"]
    assert failed_codes(report) == {"e-heartbeat": "heartbeat-timeout"}


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
    assert failed_codes(report) == {"a-query": "apikey-missing"}


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
            code = src.close_code
            if code is None or not closecodes.websockets_can_send(code):  # 1005/1006: no code to pass on
                code = closecodes.NORMAL
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
    assert failed_codes(report) == {n: CODES[n] for n, s in want.items() if s == "fail"}
    d = details(report)
    if name == "drop-query":
        assert d["a-query"].startswith("401 API key is missing")
    if name == "drop-vsn":
        assert "the server speaks 1.0.0" in d["b-vsn"]
    if name == "early-101+drop-early":
        assert "the same join sent later was answered" in d["d-early-frames"]
    if name == "blob":
        assert "binary frames do not reach the server as binary" in d["f-binary"]


def test_the_probes_close_code_passes_every_hop():
    """g-close blames the relay for another answer only because every hop can carry the probe's code."""
    code = probe.CLOSE_CODE
    assert closecodes.sendable(code) and closecodes.websockets_can_send(code)
    assert closecodes.worker_close_error(code) is None


# -------------------------------------------------------------------------------- the command itself


async def test_checklist_text_exit_codes_and_key_redaction(local_server, mitmdump, anon_key):
    proxy = await mitmdump(f"rt_supabase_url={local_server.url}", "rt_mode=relay")
    code, out, err = await rtprobe(proxy.url, "--key", anon_key)
    assert code == 1 and anon_key not in out + err
    lines = out.splitlines()
    socket_url = proxy.url.replace("http://", "ws://", 1) + "/realtime/v1/websocket"
    assert lines[0] == f"rtprobe {proxy.url} ({socket_url})"
    assert any(line.startswith("FAIL a-query — 101, then the socket was closed 1011") for line in lines)
    failed = [i for i, line in enumerate(lines) if line.startswith("FAIL ")]
    assert [lines[i].split()[1] for i in failed] == ["a-query", "c-upstream-status"]
    for i, code in zip(failed, ["apikey-missing", "early-101"], strict=True):
        assert lines[i + 1] == f"     → {code}"
        assert lines[i + 2] == f"     fix: {rules.RULES_BY_CODE[code].fix}"  # the rule's fix, verbatim
    assert any(line.startswith("PASS h-subprotocol — ") for line in lines)
    assert lines[-1] == "8 checks: 1 passed, 2 failed, 5 not checked"


async def test_client_url_forms_connect(local_server, mitmdump, anon_key):
    """The forms a client uses really reach the socket: the ws:// socket URL (the path a wss:// one
    takes), an http:// base with /realtime/v1/ (an https:// one's), the key in the URL's own query, and a
    self-hosted /socket. The tests have no TLS server, so ws and http stand for wss and https."""
    proxy = await mitmdump(f"rt_supabase_url={local_server.url}")
    host = urlsplit(proxy.url).netloc
    for url in (f"ws://{host}/realtime/v1/websocket", f"http://{host}/realtime/v1/"):
        code, report, statuses = await probe_json(url, anon_key)
        assert statuses == ALL_PASS and code == 0, (url, report)
        assert report["socket"] == f"ws://{host}/realtime/v1/websocket"
    # the URL's apikey is the key (no --key): a valid one passes, an invalid one is what refuses a
    code, report, statuses = await probe_json(
        f"ws://{host}/realtime/v1/websocket?apikey={anon_key}&vsn=1.0.0", None
    )
    assert statuses == ALL_PASS, report
    assert anon_key.split(".")[1] not in json.dumps(report) and "apikey=[redacted]" in report["url"]
    _, report, statuses = await probe_json(f"http://{host}?apikey=not-the-key", None)
    assert (
        statuses["a-query"] == "fail"
        and "The token provided is not a valid JWT" in details(report)["a-query"]
    )
    assert failed_codes(report)["a-query"] == "token-invalid"  # named by Realtime's own words
    # self-hosted: Realtime's own mount, /socket/websocket, on the local server itself
    code, report, statuses = await probe_json(f"{local_server.url}/socket/", anon_key)
    assert statuses == ALL_PASS and code == 0, report
    assert report["socket"].endswith("/socket/websocket")


class Quoting:
    """A Realtime stand-in whose answers quote a JWT (REASON_JWT): the 401 body for any apikey but
    URL_JWT, and the reason it refuses every join with. Heartbeats are answered; closes echoed."""

    def __init__(self, accept: str, quote: str) -> None:
        self.accept, self.quote = accept, quote

    def process_request(self, conn: ServerConnection, request):
        query = dict(parse_qsl(urlsplit(request.path).query))
        if query.get("apikey") == self.accept:
            return None
        body = json.dumps({"error": f"expected a token like {self.quote}"}).encode()
        headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return Response(401, "Unauthorized", headers, body)

    async def handler(self, ws: ServerConnection) -> None:
        try:
            async for raw in ws:
                join_ref, ref, topic, event, _ = json.loads(raw)
                if event == "phx_join":
                    payload = {"status": "error", "response": {"reason": f"Unauthorized: {self.quote}"}}
                elif event == "heartbeat":
                    payload = {"status": "ok", "response": {}}
                else:
                    continue
                await ws.send(json.dumps([join_ref, ref, topic, "phx_reply", payload]))
        except ConnectionClosed:  # the probe's close 4000
            pass

    async def __aenter__(self) -> str:
        self._server = await serve(self.handler, "127.0.0.1", 0, process_request=self.process_request)
        return f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc) -> None:
        self._server.close()
        await self._server.wait_closed()


async def test_jwts_in_the_url_and_in_the_servers_words_are_redacted():
    url_jwt = mint({"role": "anon", "exp": int(time.time()) + 3600, "iss": "rtprobe-test"})
    reason_jwt = mint({"role": "service_role", "exp": int(time.time()) + 3600})
    leaks = [url_jwt, reason_jwt, *url_jwt.split(".")[1:], *reason_jwt.split(".")[1:]]
    async with Quoting(url_jwt, reason_jwt) as host:
        url = f"ws://{host}/realtime/v1/websocket?apikey={url_jwt}&vsn=2.0.0"
        _, report, statuses = await probe_json(url, None)
        assert statuses == {**ALL_PASS, "f-binary": "skip"}, report  # the key from the URL was accepted
        d = details(report)
        assert d["f-binary"].startswith(
            "not checked: the server refused the join: Unauthorized: <jwt role=service_role"
        )
        assert "expected a token like <jwt role=service_role" in d["c-upstream-status"]
        assert report["url"] == f"ws://{host}/realtime/v1/websocket?apikey=[redacted]&vsn=2.0.0"
        code, out, err = await rtprobe(url)
        assert code == 1 and out.startswith(
            f"rtprobe ws://{host}/realtime/v1/websocket?apikey=[redacted]&vsn=2.0.0 "
        )
        for text in (json.dumps(report), out + err):
            assert not [s for s in leaks if s in text], text
        # the opt-in shows what the server said, and the URL as given
        _, out, _ = await rtprobe(url, "--show-secrets")
        assert f"Unauthorized: {reason_jwt}" in out and url in out


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
        secret = mint({"role": "anon", "exp": int(time.time()) + 3600})
        url = f"http://127.0.0.1:{port}/realtime/v1?apikey={secret}"
        code, out, err = await rtprobe(url)
        assert code == 2 and "unreachable" in err and out == "" and secret.split(".")[1] not in err
        code, out, _ = await rtprobe(url, "--json")
        report = json.loads(out)
        assert code == 2 and report["ok"] is False and secret.split(".")[1] not in out
        assert report["url"] == f"http://127.0.0.1:{port}/realtime/v1?apikey=[redacted]"
        assert report["socket"] == f"ws://127.0.0.1:{port}/realtime/v1/websocket"
    for bad in (["ftp://127.0.0.1"], ["http://127.0.0.1", "--timeout", "0"], []):
        code, _, err = await rtprobe(*bad)
        assert code == 2, (bad, err)
