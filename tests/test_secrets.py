"""Secrets never reach rtproxy's output. One Realtime session through mitmdump + rtproxy (run as the README
does: `mitmdump -s addon/rtproxy.py`, reverse mode as the Worker, the local Realtime server upstream)
carries:

- an apikey (a JWT) in the upgrade URL, and an sb_secret_ key in the URL, a header and a broadcast;
- a user JWT as access_token in phx_join, another one in an `access_token` push;
- a rejected second connection whose apikey is a JWT with a bad signature.

None of them (nor any JWT's signature) may appear in: the live log (default and termlog_verbosity=debug),
the rt_report files written on exit, rtdecode's output for those frames, rtdiagnose (text and --json) on
the flow file (save_stream_file) and on the HAR (hardump), and rtclient's output.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from conftest import MITMDUMP, ROOT, RTPROXY, TIMEOUT, command
from rtproxy_core import frames
from rtproxy_local.jwt import mint
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

NOW = int(time.time())
APIKEY = mint({"iss": "supabase-demo", "role": "anon", "exp": NOW + 3600})
JOIN_TOKEN = mint({"role": "authenticated", "sub": "user-join", "exp": NOW + 3600})
PUSH_TOKEN = mint({"role": "authenticated", "sub": "user-push", "exp": NOW + 7200})
TOPIC_TOKEN = mint({"role": "authenticated", "sub": "user-topic", "exp": NOW + 3600})  # apps do name rooms so
BAD_APIKEY = mint({"role": "anon", "exp": NOW + 3600}, secret="not-the-project-secret-but-long-enough-1234")
SB_SECRET = "sb_secret_" + "Zk8qP2vLw9" + "Tn4xR7yB1c"
SECRETS = {
    "apikey": APIKEY,
    "join access_token": JOIN_TOKEN,
    "access_token push": PUSH_TOKEN,
    "rejected apikey": BAD_APIKEY,
    "sb_secret key": SB_SECRET,
    "JWT in a topic": TOPIC_TOKEN,
}
for _name, _jwt in list(SECRETS.items()):
    if _jwt.count(".") == 2:
        SECRETS[f"{_name} (signature)"] = _jwt.rsplit(".", 1)[1]

TOPIC = "realtime:secrets"
JOIN = {
    "topic": TOPIC,
    "event": "phx_join",
    "ref": "1",
    "join_ref": "1",
    "payload": {
        "config": {"broadcast": {"self": True}, "presence": {"key": ""}, "private": False},
        "access_token": JOIN_TOKEN,
    },
}
PUSH = {
    "topic": TOPIC,
    "event": "access_token",
    "ref": "2",
    "join_ref": "1",
    "payload": {"access_token": PUSH_TOKEN},
}
BROADCAST = {
    "topic": TOPIC,
    "event": "broadcast",
    "ref": "3",
    "join_ref": "1",
    "payload": {"type": "broadcast", "event": "note", "payload": {"key": SB_SECRET, "token": JOIN_TOKEN}},
}
SECRET_TOPIC = f"realtime:room-{TOPIC_TOKEN}"  # joined: its name is in notes, findings, reports
DENIED_SUB = f"denied-{TOPIC_TOKEN}"  # refused with a reason that quotes the topic, as Realtime's do
DENIED_REASON = f"Unauthorized: You do not have permissions to read from this Channel topic: {DENIED_SUB}"
HEARTBEAT = {"topic": "phoenix", "event": "heartbeat", "payload": {}, "ref": "4"}


def assert_clean(what: str, text: str) -> None:
    assert text.strip(), f"{what}: no output at all"
    leaked = [name for name, value in SECRETS.items() if value in text]
    assert not leaked, f"{what} leaks {', '.join(leaked)}:\n{text}"


async def run_session(port: int) -> None:
    url = f"ws://127.0.0.1:{port}/realtime/v1/websocket?apikey={APIKEY}&vsn=1.0.0&hint={SB_SECRET}"
    async with connect(url, additional_headers={"Authorization": f"Bearer {SB_SECRET}"}) as ws:

        async def reply_to(ref: str) -> dict:
            while True:
                m = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
                if m["event"] == "phx_reply" and m["ref"] == ref:
                    return m

        await ws.send(json.dumps(JOIN))
        assert (await reply_to("1"))["payload"]["status"] == "ok"
        await ws.send(json.dumps(PUSH))
        await ws.send(json.dumps(BROADCAST))
        for ref, topic in (("5", SECRET_TOPIC), ("6", f"realtime:{DENIED_SUB}")):
            await ws.send(json.dumps({**JOIN, "topic": topic, "ref": ref, "join_ref": ref}))
            await reply_to(ref)
        await ws.send(json.dumps(HEARTBEAT))
        await reply_to("4")
    with pytest.raises(InvalidStatus):  # a second connection, rejected: its apikey is signed wrong
        async with connect(f"ws://127.0.0.1:{port}/realtime/v1/websocket?apikey={BAD_APIKEY}&vsn=1.0.0"):
            pass


async def tool(*args: str, stdin: str | None = None) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=ROOT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin else None), TIMEOUT)
    return proc.returncode, out.decode("utf-8", "replace")


@pytest.mark.parametrize("verbosity", ["info", "debug"])
async def test_no_output_contains_a_secret(verbosity, local_server, mitmdump, tmp_path):
    local_server.config.join_errors = {DENIED_SUB: DENIED_REASON}
    report, flows, har = tmp_path / "r.md", tmp_path / "flows", tmp_path / "x.har"
    proxy = await mitmdump(
        f"rt_supabase_url={local_server.url}",
        f"rt_report={report}",
        f"save_stream_file={flows}",
        f"hardump={har}",
        f"termlog_verbosity={verbosity}",
    )
    await run_session(proxy.port)
    await proxy.wait_for(r"upgrade rejected: 401")
    await proxy.wait_for(r"closed by client: 1000")
    await proxy.stop()  # rt_report and hardump are written on exit
    assert proxy.returncode == 0, proxy.output

    assert_clean(f"the live log ({verbosity})", proxy.output)
    if verbosity == "debug":  # the frames really were logged, redacted
        assert "access_token" in proxy.output and "<jwt role=authenticated" in proxy.output, proxy.output
    for path in (report, report.with_suffix(".json")):
        assert_clean(f"rt_report {path.name}", path.read_text())
    for capture in (flows, har):
        assert capture.stat().st_size > 0
        for fmt in ((), ("--json",)):
            rc, out = await tool(command("rtdiagnose"), str(capture), *fmt)
            assert rc in (0, 1), out  # 0/1: diagnosed (2 would be an unreadable capture)
            assert_clean(f"rtdiagnose {' '.join(fmt)} on {capture.name}", out)
            assert "realtime:secrets" in out


async def test_rtdecode_output_has_no_secret():
    lines = [
        json.dumps({"vsn": "1.0.0", "direction": "client->server", "encoding": "text", "raw": json.dumps(m)})
        for m in (JOIN, PUSH, BROADCAST, {**JOIN, "topic": SECRET_TOPIC, "ref": TOPIC_TOKEN})
    ]
    kind3 = frames.encode_user_push(
        TOPIC, "note", {"key": SB_SECRET, "access_token": PUSH_TOKEN}, join_ref="1", ref="5"
    )
    lines.append(
        json.dumps({"vsn": "2.0.0", "direction": "client->server", "encoding": "binary", "raw": kind3.hex()})
    )
    lines.append(
        json.dumps(
            {
                "vsn": "2.0.0",
                "direction": "client->server",
                "encoding": "text",
                "raw": json.dumps(["1", "2", TOPIC, "access_token", {"access_token": PUSH_TOKEN}]),
            }
        )
    )
    rc, out = await tool(command("rtdecode"), stdin="\n".join(lines) + "\n")
    assert rc == 0, out
    assert_clean("rtdecode", out)
    assert out.count("\n") == len(lines) and '"error"' not in out, out  # every line decoded


@pytest.mark.parametrize("as_json", [False, True])
async def test_rtclient_output_has_no_secret(as_json, local_server, mitmdump):
    proxy = await mitmdump(f"rt_supabase_url={local_server.url}")
    payload = json.dumps({"key": SB_SECRET, "access_token": PUSH_TOKEN, "note": f"token {JOIN_TOKEN}"})
    rc, out = await tool(
        command("rtclient"),
        proxy.url,
        "--channel",
        "secrets",
        "--key",
        APIKEY,
        "--broadcast",
        "note",
        payload,
        "--listen",
        "0.5",
        *(["--json"] if as_json else []),
    )
    assert rc == 0, out
    assert "SUBSCRIBED" in out and "broadcast" in out, out  # the broadcast came back, and was printed
    assert_clean("rtclient", out)
    await proxy.wait_for(r"closed by client")
    assert_clean("the live log (rtclient)", proxy.output)


@pytest.mark.parametrize("program", [MITMDUMP, RTPROXY], ids=["mitmdump", "rtproxy"])
async def test_mitmproxy_own_lines_have_no_secret(local_server, mitmdump, monkeypatch, program):
    """mitmproxy itself prints the raw request head when a client breaks off, and a line per flow; a
    Realtime URL carries the apikey in both. The same in the rtproxy command (no flow lines there)."""
    monkeypatch.setenv("COLUMNS", "400")  # mitmdump cuts flow lines at the terminal's width
    proxy = await mitmdump(f"rt_supabase_url={local_server.url}", program=program)
    head = (
        f"GET /realtime/v1/websocket?apikey={APIKEY}&vsn=1.0.0&key={SB_SECRET} HTTP/1.1\r\nHost: x\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
    ).encode()
    # 1. The client vanishes before the end of its request head.
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(head)
    await writer.drain()
    writer.close()
    await proxy.wait_for(r"Client closed connection before completing request headers")
    # 2. A request mitmproxy cannot parse (a space in a header name).
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(head + b"Bad Header: x\r\n\r\n")
    await writer.drain()
    assert (await asyncio.wait_for(reader.read(), TIMEOUT)).startswith(b"HTTP/1.1 400")
    writer.close()
    # 3. A plain GET of the Realtime URL (a hop that strips `Upgrade` makes one): mitmproxy's own flow line.
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(head.replace(b"Upgrade: websocket\r\nConnection: Upgrade\r\n", b"") + b"\r\n")
    await writer.drain()
    assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)).startswith(b"HTTP/1.1 502")
    writer.close()
    await (
        proxy.stop()
    )  # (mitmproxy's error hook, where its flow line is printed, runs before the 502 is sent)
    assert_clean("mitmproxy's own log lines", proxy.output)
