"""The user-facing commands: scripts/run.sh (the README's main command), rtclient, rtdecode, and rtproxy in
regular (browser-proxy) mode."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys

import pytest
from conftest import ROOT, TIMEOUT, WEB_PAGE, command
from rtproxy_core import frames
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

PY = sys.executable


async def run_script(*args: str, env: dict | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


def line_reader(proc: asyncio.subprocess.Process, lines: list[str]):
    """`await until(text)`: read proc's output into `lines` up to the first line containing text."""

    async def until(pattern: str) -> str:
        assert proc.stdout is not None
        while True:
            raw = await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)
            assert raw, "run.sh exited:\n" + "".join(lines)
            lines.append(raw.decode())
            if pattern in lines[-1]:
                return lines[-1]

    return until


async def test_run_sh_works_with_no_configuration(tmp_path):
    """scripts/run.sh: embedded local server, reverse mode, prints how to connect; rtclient subscribes."""
    env = dict(os.environ, RT_PORT="0", HOME=str(tmp_path))  # HOME: mitmproxy's CA goes to a temp confdir
    env.pop("SUPABASE_URL", None)
    proc = await asyncio.create_subprocess_exec(
        "bash",
        str(ROOT / "scripts" / "run.sh"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    lines: list[str] = []
    until = line_reader(proc, lines)
    try:
        assert "embedded local Realtime server at http://127.0.0.1:" in await until("embedded local Realtime")
        line = await until("Realtime clients connect to")
        origin = line.split("connect to ")[1].split()[0]
        code, out, err = await run_script(
            command("rtclient"),
            origin,
            "--channel",
            "room1",
            "--broadcast",
            "cursor",
            '{"x": 1}',
            "--count",
            "1",
            "--listen",
            "30",
        )
        assert code == 0, err
        assert out.splitlines()[0] == "status SUBSCRIBED" and 'broadcast {"x": 1}' in out
        await until("realtime:room1 joined in")
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), TIMEOUT)


async def test_the_readmes_first_session_makes_a_channel_fail_and_names_why(tmp_path):
    """The README's first session, second half: `scripts/run.sh --set rt_fault=drop-join`, then rtclient:
    the client reports TIMED_OUT and rtproxy's log names join-dropped-by-proxy with the evidence."""
    env = dict(os.environ, RT_PORT="0", HOME=str(tmp_path))
    env.pop("SUPABASE_URL", None)
    proc = await asyncio.create_subprocess_exec(
        "bash", str(ROOT / "scripts" / "run.sh"), "--set", "rt_fault=drop-join",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    lines: list[str] = []
    until = line_reader(proc, lines)
    try:
        origin = (await until("Realtime clients connect to")).split("connect to ")[1].split()[0]
        code, out, _ = await run_script(
            command("rtclient"), origin, "--channel", "room1", "--timeout", "2", "--listen", "0"
        )
        assert code == 1 and out.splitlines()[0] == "status TIMED_OUT", out
        assert "dropped phx_join for realtime:room1 (drop-join)" in await until("dropped phx_join")
        assert "finding join-dropped-by-proxy realtime:room1" in await until("finding join-dropped-by-proxy")
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), TIMEOUT)


async def test_rtclient_reports_what_the_client_sees(local_server, mitmdump):
    relay = await mitmdump(f"rt_supabase_url={local_server.url}", "rt_mode=relay")
    code, out, _ = await run_script(
        command("rtclient"), relay.url, "--channel", "r", "--listen", "0", "--timeout", "2"
    )
    assert code == 1 and out.startswith("status CHANNEL_ERROR") and "Proxy server error" in out


async def test_rtclient_connect_failure(mitmdump, local_server):
    proxy = await mitmdump(f"rt_supabase_url={local_server.url}")
    code, out, _ = await run_script(
        command("rtclient"),
        proxy.url,
        "--channel",
        "r",
        "--key",
        "not-a-jwt",
        "--listen",
        "0",
    )
    # realtime-py's connect() raises: no channel is told, so no `status` line; the refusal as it came
    assert code == 1 and out.startswith('refused 401 (application/json; charset=utf-8): {"error":'), out
    assert "not-a-jwt" not in out


async def test_rtclient_names_what_answered_instead_of_realtime(web_page):
    """A plain web page answering the upgrade (200 text/html), and nothing listening: the lines its --help
    lists, never a finding's code (connect-failed)."""
    code, out, _ = await run_script(command("rtclient"), web_page, "--channel", "r", "--listen", "0")
    assert code == 1 and out == f"refused 200 (text/html; charset=utf-8): {WEB_PAGE.decode()}\n", out
    code, out, _ = await run_script(
        command("rtclient"), web_page, "--channel", "r", "--listen", "0", "--json"
    )
    assert json.loads(out) == {
        "kind": "refused",
        "detail": f"200 (text/html; charset=utf-8): {WEB_PAGE.decode()}",
    }
    with socket.socket() as s:  # a port nothing listens on (bound, not listening)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        code, out, _ = await run_script(command("rtclient"), f"http://127.0.0.1:{port}", "--channel", "r")
    assert code == 1 and out.startswith("unreachable ConnectionRefusedError"), out
    _, help_text, _ = await run_script(command("rtclient"), "--help")
    for line in (
        "status SUBSCRIBED | CHANNEL_ERROR | TIMED_OUT | CLOSED",
        "refused STATUS",
        "unreachable WHY",
    ):
        assert line in help_text, help_text


def test_rtdecode_lines():
    lines = [
        {
            "vsn": "2.0.0",
            "direction": "client->server",
            "encoding": "binary",
            "raw": frames.encode_user_push("realtime:r", "cursor", {"x": 1}, join_ref="1", ref="2").hex(),
        },
        {
            "vsn": "1.0.0",
            "direction": "server->client",
            "encoding": "text",
            "raw": '{"event":"phx_reply","payload":{"status":"ok","response":{}},"ref":"1","topic":"realtime:r"}',
        },
        {
            "vsn": "2.0.0",
            "direction": "client->server",
            "encoding": "text",
            "raw": '["1","1","realtime:r","phx_join",{"access_token":"sb_secret_abcdefgh12345"}]',
        },
        {"vsn": "1.0.0", "direction": "client->server", "encoding": "text", "raw": '["1","1","t","e",{}]'},
        {"vsn": "2.0.0", "direction": "server->client", "encoding": "binary", "raw": "0409"},
        {"vsn": "9", "direction": "x", "encoding": "text", "raw": "{}"},
    ]
    lines.append({"log": {"version": "1.2", "entries": []}})  # a HAR on one line
    stdin = "\n".join(json.dumps(x) for x in lines) + "\nnot json\n"
    r = subprocess.run(
        [command("rtdecode")],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    out = [json.loads(x) for x in r.stdout.splitlines()]
    assert r.returncode == 0 and len(out) == 8
    assert out[0] == {
        "join_ref": "1",
        "ref": "2",
        "topic": "realtime:r",
        "event": "broadcast",
        "payload": {"type": "broadcast", "event": "cursor", "payload": {"x": 1}},
    }
    assert out[1]["payload"] == {"status": "ok", "response": {}} and out[1]["join_ref"] is None
    assert out[2]["payload"] == {"access_token": "[redacted]"}
    assert "serializer mismatch" in out[3]["error"]
    assert "truncated" in out[4]["error"]
    assert "vsn must be" in out[5]["error"] and "not JSON" in out[7]["error"]
    assert out[6] == {
        "error": "a HAR, not a frame: rtdecode reads one frame per line; rtdiagnose FILE reads a capture"
    }


async def test_regular_mode_reroutes_only_the_worker_host(local_server, mitmdump, anon_key):
    """Browser-proxy mode: upgrades to rt_worker_host go to the Supabase URL; the worker host need not exist."""
    proxy = await mitmdump(
        f"rt_supabase_url={local_server.url}", "rt_worker_host=worker.invalid", mode="regular"
    )
    url = f"ws://worker.invalid/realtime/v1/websocket?apikey={anon_key}&vsn=2.0.0"
    async with connect(url, proxy=f"http://127.0.0.1:{proxy.port}") as ws:
        await ws.send(json.dumps(["1", "1", "realtime:r", "phx_join", {}]))
        reply = frames.decode(await asyncio.wait_for(ws.recv(), TIMEOUT), binary=False, from_client=False)
        assert reply.payload["status"] == "ok"
    await proxy.wait_for(
        r"upstream http://127\.0\.0\.1:\d+/realtime/v1/websocket\?apikey=\[redacted\]&vsn=2\.0\.0"
    )
    await proxy.wait_for(r"realtime:r joined in")
    # Any other host is not rerouted: mitmproxy tries the (unresolvable) host itself and answers 502.
    with pytest.raises(InvalidStatus) as e:
        async with connect(
            "ws://other.invalid/realtime/v1/websocket", proxy=f"http://127.0.0.1:{proxy.port}"
        ):
            pass
    assert e.value.response.status_code == 502


@pytest.mark.parametrize(
    "name,old_path",
    [
        ("rtdiagnose", "rtdiagnose.py"),
        ("rtdecode", "rtdecode.py"),
        ("rtprobe", "rtprobe.py"),
        ("rtclient", "rtclient.py"),
        ("rtlocal", "local_realtime.py"),
        ("rtbench", "bench.py"),
        ("rtscale", "scale.py"),
    ],
)
def test_commands_are_on_path_and_old_script_paths_still_work(name, old_path):
    for argv in ([command(name), "--help"], [PY, str(ROOT / "scripts" / old_path), "--help"]):
        r = subprocess.run(
            argv, capture_output=True, text=True, check=False, timeout=60, stdin=subprocess.DEVNULL
        )
        assert r.returncode == 0 and r.stdout.startswith("usage: "), (argv, r.stderr)


def test_every_project_script_answers_help():
    """Every [project.scripts] entry is installed and answers --help (the newer ones have no old path)."""
    import tomllib

    names = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert {"rtreplay", "rtsanitize"} <= set(names)
    for name in names:
        r = subprocess.run(
            [command(name), "--help"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        assert r.returncode == 0 and r.stdout.startswith("usage: "), (name, r.stderr)
