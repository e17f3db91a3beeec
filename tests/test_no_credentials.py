"""Nothing usable as a credential in anything rtproxy stores or shows (issue 26), end to end.

One session per mode through the real programs, every secret a distinct value planted where a Supabase app
carries one:

- Realtime (tests/test_secrets.py's plants, reused): the apikey and an sb_secret_ key in the upgrade URL,
  Authorization, the join's and the `access_token` event's tokens, a token in a topic and in a refused
  join's reason, a broadcast's keys; here also a request Cookie, a nested payload `password`, presence
  meta, a binary kind-3 payload (2.0.0), a `system` message's reason, a rejected apikey (401);
- what this issue found: a close frame's reason quoting a token, a refused upgrade's body quoting its key,
  Set-Cookie on the 101;
- the app's other traffic to the project: the GoTrue login (password; access_token, refresh_token and a
  Set-Cookie in the answer), apikey and Authorization on /rest/v1, a Storage signed URL's token.

Runs: fixed (mitmweb, its REST API read too), relay (the `rtproxy` command), inspect (mitmdump as a
regular proxy, with the user's own dumper_filter and --flow-detail 3, so mitmproxy prints every flow with
headers and bodies); each one's output (stdout and stderr at the default level), -w file and hardump HAR
hold no secret. A request to another host is stored as it went. The control (rt_show_secrets=true) finds
every secret.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct
import urllib.request

import pytest
import webapi
from conftest import MITMDUMP, RTPROXY, TIMEOUT
from rtproxy_core import frames
from rtproxy_local.jwt import mint
from test_secrets import APIKEY as KEY
from test_secrets import (
    BAD_APIKEY,
    BROADCAST,
    DENIED_REASON,
    DENIED_SUB,
    HEARTBEAT,
    JOIN,
    NOW,
    PUSH,
    SB_SECRET,
    SECRET_TOPIC,
    SECRETS,
    TOPIC,
)
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus


def _jwt(sub: str, **claims) -> str:
    return mint({"role": "authenticated", "sub": sub, "exp": NOW + 3600, **claims})


CLOSE_TOKEN = mint({"role": "anon"}, secret="close-reason-secret-long-enough-0123456789")  # fits 123 bytes
REFUSED_KEY = mint({"role": "anon", "exp": NOW + 60}, secret="refused-key-secret-long-enough-0123456789")
PRESENCE_TOKEN = _jwt("presence")
KIND3_TOKEN = _jwt("kind3")
SYSTEM_TOKEN = _jwt("system")
ACCESS = _jwt("login")
NEW = {
    "request Cookie": "cookie-" + "Q7wZ1kx9Hc2mV4",
    "nested password": "nested-" + "pw-Lr8Tq2Xs5Nb",
    "presence meta token": PRESENCE_TOKEN,
    "kind-3 payload token": KIND3_TOKEN,
    "system reason token": SYSTEM_TOKEN,
    "close reason token": CLOSE_TOKEN,
    "refused upgrade body key": REFUSED_KEY,
    "Set-Cookie on the 101": "rtcookie-" + "Vb3Yu6Pe0Wd1",
    "login password": "hunter2-" + "Jm4Fk7Rs9Tz",
    "login access_token": ACCESS,
    "login refresh_token": "refresh-" + "Gh5Dn8Kc3Lq",
    "login Set-Cookie": "authcookie-" + "Za2Xc4Vb6Nm",
    "rest apikey header": "restkey-" + "Pq9Wo8Ie7Ur",
    "rest Authorization": _jwt("rest"),
    "storage signed token": _jwt("storage", url="bucket/file.png"),
    "unanswered upgrade's apikey": _jwt("unanswered"),  # planted where mitmdump runs (mitmweb lists it)
}
for _name, _v in list(NEW.items()):
    if _v.count(".") == 2:
        NEW[f"{_name} (signature)"] = _v.rsplit(".", 1)[1]
ALL = {**SECRETS, **NEW}
OTHER_HOST_KEY = "otherhost-" + "Ty6Re5Wq4"  # to another host: stored as it went
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SYSTEM_SUB = "shutdown-room"


# ---------------------------------------------------------------------------------------------- the project


class Project:
    """The app's Supabase project on loopback: GoTrue, PostgREST and Storage answers, a Realtime endpoint
    that refuses REFUSED_KEY with a 401 quoting it, answers `?close_me` itself (101 with a Set-Cookie, then a
    close frame whose reason quotes a token) and pipes every other upgrade to the local Realtime server."""

    def __init__(self, realtime_port: int) -> None:
        self.realtime_port = realtime_port
        self.got: list[bytes] = []  # request heads and bodies as they arrived (the wire keeps the secrets)
        self.hanging = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            line, *lines = head.decode("latin-1").split("\r\n")
            target = line.split(" ")[1]
            headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines if h)}
            if headers.get("upgrade", "").lower() == "websocket":
                await self.upgrade(head, target, headers, reader, writer)
                return
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.got.append(head + body)
            extra = ""
            if target.startswith("/auth/v1/token"):
                answer = {
                    "access_token": NEW["login access_token"],
                    "token_type": "bearer",
                    "refresh_token": NEW["login refresh_token"],
                    "user": {"id": "u1", "role": "authenticated"},
                }
                extra = f"Set-Cookie: sb-auth={NEW['login Set-Cookie']}; Path=/; HttpOnly\r\n"
            else:
                answer = {"ok": True, "rows": [{"id": 1}]}
            data = json.dumps(answer).encode()
            writer.write(
                f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n{extra}"
                "Connection: close\r\n\r\n".encode()
                + data
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, IndexError):
            pass
        finally:
            writer.close()

    async def upgrade(self, head, target, headers, reader, writer) -> None:
        if f"apikey={REFUSED_KEY}" in target:
            data = json.dumps({"message": f"Invalid API key: {REFUSED_KEY}", "apikey": REFUSED_KEY}).encode()
            writer.write(
                "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
                + data
            )
            await writer.drain()
            return
        if "hang_me" in target:  # never answered: still waiting when the proxy stops
            self.hanging.set()
            await reader.read()
            return
        if "close_me" in target:
            accept = base64.b64encode(hashlib.sha1(headers["sec-websocket-key"].encode() + GUID).digest())
            writer.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: "
                + accept
                + b"\r\n"
                + f"Set-Cookie: sb-rt={NEW['Set-Cookie on the 101']}; Path=/; HttpOnly\r\n\r\n".encode()
            )
            reason = f"Invalid token: {CLOSE_TOKEN}".encode()
            assert len(reason) <= 123
            writer.write(bytes([0x88, 2 + len(reason)]) + struct.pack(">H", 4001) + reason)
            await writer.drain()
            await asyncio.wait_for(reader.read(1024), TIMEOUT)  # the client's close frame; then the end
            return
        if "?" not in target:  # rt_mode=relay drops the query, as the design's Worker does: put it back
            head = head.replace(f" {target} ".encode(), f" {target}?apikey={KEY}&vsn=1.0.0 ".encode(), 1)
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.realtime_port)
        up_w.write(head)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while chunk := await src.read(65536):
                    dst.write(chunk)
                    await dst.drain()
            except ConnectionError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(reader, up_w), pump(up_r, writer))


@pytest.fixture
async def project(local_server):
    local_server.config.join_errors = {DENIED_SUB: DENIED_REASON}
    local_server.config.shutdown_channels = {SYSTEM_SUB: f"Channel shut down: token {SYSTEM_TOKEN}"}
    local_server.config.presence_enabled = True
    p = Project(int(local_server.url.rsplit(":", 1)[1]))
    server = await asyncio.start_server(p.handle, "127.0.0.1", 0)
    async with server:
        p.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"  # type: ignore[attr-defined]
        yield p


# ---------------------------------------------------------------------------------------------- the app


async def http_request(proxy_port: int, method: str, target: str, headers: dict, body: bytes = b"") -> bytes:
    """One request through rtproxy (`target` a path in reverse mode, a URL through the regular proxy)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
    host = target.split("/")[2] if "://" in target else "project"
    lines = [
        f"{method} {target} HTTP/1.1",
        f"Host: {host}",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), TIMEOUT)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer
    return answer


async def app_session(
    proxy_port: int, base: str, proxy: str | None, other_host: str | None, relay: bool
) -> None:
    """Everything the app does, through rtproxy. `base`: what the app calls its Supabase URL."""
    ws_base = base.replace("http://", "ws://")
    http_base = base if proxy else ""
    kw = {"proxy": proxy} if proxy else {"proxy": None}
    # The app's login, queries and a Storage URL.
    login = json.dumps({"email": "a@example.com", "password": NEW["login password"]}).encode()
    api = {"apikey": NEW["rest apikey header"], "Content-Type": "application/json"}
    answer = await http_request(
        proxy_port, "POST", f"{http_base}/auth/v1/token?grant_type=password", api, login
    )
    assert NEW["login refresh_token"].encode() in answer  # the wire keeps what came
    bearer = {**api, "Authorization": f"Bearer {NEW['rest Authorization']}"}
    await http_request(proxy_port, "GET", f"{http_base}/rest/v1/todos?select=*", bearer)
    token = NEW["storage signed token"]
    await http_request(
        proxy_port, "GET", f"{http_base}/storage/v1/object/sign/bucket/file.png?token={token}", {}
    )
    if other_host:
        await http_request(proxy_port, "GET", f"{other_host}/rest/v1/other", {"apikey": OTHER_HOST_KEY})

    # Realtime 1.0.0: test_secrets' session, plus a Cookie, presence, a nested password, a system reason.
    url = f"{ws_base}/realtime/v1/websocket?apikey={KEY}&vsn=1.0.0&hint={SB_SECRET}"
    headers = {"Authorization": f"Bearer {SB_SECRET}", "Cookie": f"sb-app={NEW['request Cookie']}"}
    async with connect(url, additional_headers=headers, open_timeout=TIMEOUT, **kw) as ws:
        if relay:
            await asyncio.sleep(0.5)  # the relay drops what comes before its upstream is open

        async def reply_to(ref: str, event: str = "phx_reply") -> dict:
            while True:
                m = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
                if m["event"] == event and (m["ref"] == ref or event != "phx_reply"):
                    return m

        join = {**JOIN, "payload": {**JOIN["payload"], "config": {**JOIN["payload"]["config"]}}}
        join["payload"]["config"]["presence"] = {"key": "u1", "enabled": True}
        await ws.send(json.dumps(join))
        assert (await reply_to("1"))["payload"]["status"] == "ok"
        await ws.send(json.dumps(PUSH))
        await ws.send(json.dumps(BROADCAST))
        nested = {
            "type": "broadcast",
            "event": "n",
            "payload": {"a": {"b": {"password": NEW["nested password"]}}},
        }
        await ws.send(json.dumps({**BROADCAST, "ref": "7", "payload": nested}))
        track = {"type": "presence", "event": "track", "payload": {"user": "u1", "token": PRESENCE_TOKEN}}
        await ws.send(
            json.dumps({"topic": TOPIC, "event": "presence", "ref": "8", "join_ref": "1", "payload": track})
        )
        await reply_to("8")
        for ref, topic in (
            ("5", SECRET_TOPIC),
            ("6", f"realtime:{DENIED_SUB}"),
            ("9", f"realtime:{SYSTEM_SUB}"),
        ):
            await ws.send(json.dumps({**JOIN, "topic": topic, "ref": ref, "join_ref": ref}))
            await reply_to(ref)
        await reply_to("", event="system")
        await ws.send(json.dumps(HEARTBEAT))
        await reply_to("4")

    if relay:  # it drops the query (vsn, apikey) and answers every upgrade 101 itself: nothing more to see
        return

    # Realtime 2.0.0: a binary kind-3 push.
    async with connect(
        f"{ws_base}/realtime/v1/websocket?apikey={KEY}&vsn=2.0.0", open_timeout=TIMEOUT, **kw
    ) as ws:
        await ws.send(json.dumps(["1", "1", "realtime:bin", "phx_join", {"config": {}}]))
        await asyncio.wait_for(ws.recv(), TIMEOUT)
        payload = {"access_token": KIND3_TOKEN, "n": 1}
        await ws.send(frames.encode_user_push("realtime:bin", "note", payload, join_ref="1", ref="2"))
        await ws.send(json.dumps([None, "3", "phoenix", "heartbeat", {}]))
        await asyncio.wait_for(ws.recv(), TIMEOUT)

    # Refused upgrades (rejected by Realtime; refused by the project with its key quoted), and a close
    # frame whose reason quotes a token after a 101 that sets a cookie. What the client gets is what the
    # project sent.
    for key in (BAD_APIKEY, REFUSED_KEY):
        try:
            async with connect(f"{ws_base}/realtime/v1/websocket?apikey={key}&vsn=1.0.0", **kw) as ws:
                await asyncio.wait_for(ws.recv(), TIMEOUT)
        except InvalidStatus as e:
            assert e.response.status_code == 401
            assert key != REFUSED_KEY or REFUSED_KEY.encode() in e.response.body
        else:
            raise AssertionError("the upgrade was not refused")
    async with connect(f"{ws_base}/realtime/v1/websocket?apikey={KEY}&vsn=1.0.0&close_me=1", **kw) as ws:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert ws.response.headers["set-cookie"].startswith(f"sb-rt={NEW['Set-Cookie on the 101']};")
        assert ws.close_reason == f"Invalid token: {CLOSE_TOKEN}"


def har_text(raw: bytes) -> bytes:
    """The HAR, and every base64 body and binary message in it decoded (a secret in base64 is one too)."""
    out = [raw]
    doc = json.loads(raw)
    for e in doc["log"]["entries"]:
        content = e["response"].get("content", {})
        if content.get("encoding") == "base64":
            out.append(base64.b64decode(content["text"]))
        for m in e.get("_webSocketMessages", []):
            if m.get("opcode") == 2:
                out.append(base64.b64decode(m["data"]))
    return b"\n".join(out)


def web_get(api: webapi.WebApi, path: str) -> bytes:
    req = urllib.request.Request(f"{api.base}{path}", headers={"Authorization": f"Bearer {webapi.PASSWORD}"})
    with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
        return r.read()


async def mitmweb_shows(api: webapi.WebApi) -> dict[str, bytes]:
    """mitmweb's flow list, File -> Save, and every request and response body and message view."""
    flows = await api.flows()
    shown = {
        "flow list": json.dumps(flows).encode(),
        "saved flows": await asyncio.to_thread(web_get, api, "/flows/dump"),
    }
    for f in flows:
        for part in ("request", "response"):
            if f.get(part):
                path = f"/flows/{f['id']}/{part}/content.data"
                shown[f"{part} {f['id']}"] = await asyncio.to_thread(web_get, api, path)
        if f.get("websocket"):
            shown[f"messages {f['id']}"] = json.dumps(await api.messages(f["id"], "raw")).encode()
    return shown


def leaked(outputs: dict[str, bytes]) -> dict[str, list[str]]:
    return {
        where: found
        for where, data in outputs.items()
        if (found := [name for name, value in ALL.items() if value.encode() in data])
    }


async def run(mode: str, project: Project, mitmdump, tmp_path, *sets: str) -> dict[str, bytes]:
    """One session in MODE; every output by where it came from."""
    saved, har = tmp_path / f"{mode}.flows", tmp_path / f"{mode}.har"
    common = (f"rt_supabase_url={project.url}", f"hardump={har}", *sets)
    regular = mode == "inspect"
    kw = {"mode": "regular" if regular else f"reverse:{project.url}", "extra": ("-w", str(saved))}
    api = None
    if mode == "fixed":
        proc, api = await webapi.start_mitmweb(mitmdump, *common, "rt_mode=fixed", **kw)
    elif mode == "relay":
        proc = await mitmdump(*common, "rt_mode=relay", program=RTPROXY, **kw)
    else:
        sets_ = (*common, f"rt_mode={mode}", "dumper_filter=~all", "flow_detail=3")
        proc = await mitmdump(*sets_, program=MITMDUMP, **kw)
    other = project.url.replace("127.0.0.1", "localhost") if regular else None
    # Through the regular proxy the app calls its project; in reverse mode rtproxy's listener is its URL.
    base, proxy = (project.url, proc.url) if regular else (proc.url, None)
    await app_session(proc.port, base, proxy, other, mode == "relay")
    if regular:  # an upgrade that never gets its answer, still waiting when mitmdump stops (-w has it)
        _, writer = await asyncio.open_connection("127.0.0.1", proc.port)
        key = NEW["unanswered upgrade's apikey"]
        writer.write(
            f"GET {project.url}/realtime/v1/websocket?apikey={key}&vsn=1.0.0&hang_me=1 HTTP/1.1\r\n"
            "Host: project\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode()
        )
        await asyncio.wait_for(project.hanging.wait(), TIMEOUT)
    outputs: dict[str, bytes] = {}
    if api is not None:
        await asyncio.sleep(0.5)  # the last close reaches the flow list
        outputs |= {f"mitmweb {k}": v for k, v in (await mitmweb_shows(api)).items()}
    await proc.stop()  # hardump is written on exit
    assert proc.returncode == 0, proc.output
    outputs |= {
        "output": proc.output.encode(),
        "-w file": saved.read_bytes(),
        "HAR": har_text(har.read_bytes()),
    }
    if regular:
        writer.close()
        # Another host's traffic is not rtproxy's to touch.
        assert OTHER_HOST_KEY.encode() in outputs["-w file"]
        # The user's own dumper_filter: the warning (none when the user asked for the secrets).
        assert ("cannot cover" in proc.output) == ("rt_show_secrets=true" not in sets), proc.output
    return outputs


@pytest.mark.parametrize("mode", ["fixed", "relay", "inspect"])
async def test_no_output_holds_a_credential(mode, project, mitmdump, tmp_path):
    outputs = await run(mode, project, mitmdump, tmp_path)
    assert not leaked(outputs), leaked(outputs)
    # What a diagnosis reads is still there: the claims of every JWT, the marker in place of the rest.
    stored = outputs["-w file"]
    assert b"rtproxy-sanitized" in stored and b"realtime:secrets" in stored
    for jwt in (NEW["login access_token"], NEW["storage signed token"], SYSTEM_TOKEN, PRESENCE_TOKEN):
        assert jwt.rsplit(".", 1)[0].encode() in stored
    if mode != "relay":
        assert f"Invalid token: {CLOSE_TOKEN.rsplit('.', 1)[0]}.rtproxy-sanitized".encode() in stored
        assert f"Invalid API key: {REFUSED_KEY.rsplit('.', 1)[0]}.rtproxy-sanitized".encode() in stored
    wire = b"\n".join(project.got)
    assert NEW["login password"].encode() in wire and NEW["rest apikey header"].encode() in wire


async def test_rt_show_secrets_shows_them_all(project, mitmdump, tmp_path):
    outputs = await run("inspect", project, mitmdump, tmp_path, "rt_show_secrets=true")
    found = {name for names in leaked(outputs).values() for name in names}
    assert found == set(ALL), sorted(set(ALL) - found)


async def test_an_intercepted_response_is_sent_as_it_came_then_stored_sanitized():
    """mitmweb's intercept holds the flow after the response hook: the response as it came stays on it (the
    user may edit it) until it has been resumed and sent; then the sanitized copy."""
    from mitmproxy.test import taddons, tflow
    from rtproxy_mitm.sanitize import Sanitize

    part = Sanitize()
    with taddons.context(part):
        flow = tflow.tflow(resp=True)
        flow.response.headers["set-cookie"] = f"sb={NEW['login Set-Cookie']}; Path=/"
        original = flow.response
        part.marked.add(flow.id)
        part.store_copy(flow)  # _Before
        assert flow.response is not original and "rtproxy-sanitized" in flow.response.headers["set-cookie"]
        flow.intercept()
        part.for_the_wire(flow)  # _Last, in the update hook
        assert flow.response is original
        for _ in range(5):
            await asyncio.sleep(0.12)
            assert flow.response is original  # still intercepted: nothing sent yet
        flow.resume()
        assert flow.response is original  # resumed, not yet sent (the hook task runs next)
        await asyncio.sleep(0.25)
        assert (
            flow.response is not original
            and NEW["login Set-Cookie"] not in flow.response.headers["set-cookie"]
        )
