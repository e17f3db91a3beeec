"""The rtproxy command (rtproxy_tools/launcher.py): mitmproxy with only what a Realtime session needs and
rtproxy's addons, a cheaper hook dispatch (internals.FastAddonManager), the mitmdump flags rtproxy's
users use, one line for every other; -w and hardump save what mitmdump's do. (A mistyped rt_ option:
tests/test_options.py, for all three programs.) Real processes and sockets; realtime-py as the client."""

from __future__ import annotations

import asyncio
import json
import os
import textwrap

import pytest
from conftest import ADDON, MITMDUMP, RTPROXY, TIMEOUT, Mitmdump, run_to_exit
from realtime import AsyncRealtimeClient
from rtproxy_tools import launcher
from websockets.asyncio.client import connect


async def subscribe(url: str, key: str) -> list[str]:
    client = AsyncRealtimeClient(f"{url}/realtime/v1", token=key, auto_reconnect=False, max_retries=1)
    await client.connect()
    seen: list[str] = []
    done = asyncio.Event()
    ch = client.channel("room1")

    def on_status(status, err):
        seen.append(status.value)
        done.set()

    await ch.subscribe(on_status)
    await asyncio.wait_for(done.wait(), TIMEOUT)
    await client.close()
    return seen


async def test_rtproxy_command_is_the_worker(tmp_path, local_server, anon_key):
    proxy = await Mitmdump(tmp_path, f"rt_supabase_url={local_server.url}", program=RTPROXY).start()
    try:
        assert await subscribe(proxy.url, anon_key) == ["SUBSCRIBED"]
        await proxy.wait_for(r"\] realtime:room1 joined in \d+ ms")
        await proxy.wait_for(r"\] closed by client: 1000")
        assert anon_key not in proxy.output
    finally:
        await proxy.stop()
    assert proxy.returncode == 0


async def test_rtproxys_addons_are_configured_from_the_start(tmp_path, local_server, anon_key):
    """Built-in addons only hear of options changed after they load; rtproxy's get a configure with every
    option, as a script's do: $SUPABASE_URL (the default of rt_supabase_url) is the upstream. (The log
    filter that keeps secrets out of mitmproxy's own lines: tests/test_secrets.py, both programs.)"""
    env = dict(os.environ, PYTHONUNBUFFERED="1", SUPABASE_URL=local_server.url)
    args = [RTPROXY, "--listen-host", "127.0.0.1", "-p", "0", "--mode", "reverse:http://worker.invalid"]
    proc = await asyncio.create_subprocess_exec(
        *args,
        "--set",
        f"confdir={tmp_path}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    lines: list[str] = []
    try:
        while not any("upgrades go to" in line for line in lines):
            raw = await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)
            assert raw, "\n".join(lines)
            lines.append(raw.decode())
        out = "".join(lines)
        assert f"upgrades go to {local_server.url}" in out, out
        assert "embedded local Realtime server" not in out, out
    finally:
        proc.terminate()
        await proc.wait()


@pytest.mark.parametrize(
    "flag", ["-k", "--ssl-insecure", "-v", "--web-port=8081", "-n", "--anticache", "-r", "--flow-detail"]
)
async def test_unsupported_flags_get_one_line(flag):
    code, out = await run_to_exit([RTPROXY, flag])
    name = flag.split("=", 1)[0]
    assert code == 2 and out.strip().count("\n") == 0, out
    assert out.startswith(f"rtproxy: {name} is not supported by the rtproxy command"), out
    assert 'mitmdump -s "$(rtproxy --addon-path)"' in out


async def test_options_lists_rtproxys_and_mitmproxys():
    code, out = await run_to_exit([RTPROXY, "--options"])
    assert code == 0, out
    for option in ("rt_mode:", "rt_supabase_url:", "rt_fault:", "mode:", "listen_port:", "save_stream_file:"):
        assert f"\n{option}" in f"\n{out}", option
    assert "\nflow_detail:" not in out  # no dumper: nothing prints a line per flow


async def test_bad_rt_option_is_one_line_and_exit_1(tmp_path):
    code, out = await run_to_exit(
        [
            RTPROXY,
            "-p",
            "0",
            "--listen-host",
            "127.0.0.1",
            "--set",
            f"confdir={tmp_path}",
            "--set",
            "rt_mode=nope",
        ]
    )
    assert code == 1 and "unknown mode 'nope'" in out, out


async def test_extra_scripts_run_before_rtproxy_and_addon_errors_are_contained(
    tmp_path, local_server, anon_key
):
    """A user's -s script runs before rtproxy's addons (as `mitmdump -s it -s addon/rtproxy.py`), and one
    that raises in a hook is logged as mitmdump logs it. rtproxy's addons still run: in the rtproxy command
    they are top-level addons, while in mitmdump both scripts are children of its script loader, and
    mitmproxy's safecall ends a top-level addon's handlers at the first exception, rtproxy's with them."""
    script = tmp_path / "extra.py"
    script.write_text(
        textwrap.dedent(
            """
            import logging

            class Extra:
                def websocket_message(self, flow):
                    msg = flow.websocket.messages[-1]
                    logging.info(f"extra saw {'client' if msg.from_client else 'server'} message")
                    raise RuntimeError("boom in extra")

            addons = [Extra()]
            """
        )
    )
    outputs = {}
    for program, extra in ((RTPROXY, ("-s", str(script))), (MITMDUMP, ("-s", str(script), "-s", ADDON))):
        m = Mitmdump(
            tmp_path, f"rt_supabase_url={local_server.url}", "connection_strategy=lazy", program=program
        )
        if program == MITMDUMP:  # the script before rtproxy: drop Mitmdump's own -s ADDON, put both in order
            i = m.args.index(ADDON)
            del m.args[i - 1 : i + 1]
        m.args += list(extra)
        await m.start()
        try:
            url = f"ws://127.0.0.1:{m.port}/realtime/v1/websocket?vsn=2.0.0&apikey={anon_key}"
            async with connect(url, proxy=None) as ws:
                await ws.send(json.dumps([None, "1", "phoenix", "heartbeat", {}]))
                await asyncio.wait_for(ws.recv(), TIMEOUT)
            await m.wait_for(r"extra saw client message")
            await m.wait_for(r"Addon error: boom in extra")
            if program == RTPROXY:
                await m.wait_for(r"heartbeats: 1 sent, 1 answered")  # rtproxy's tracker ran after it
            else:
                await m.wait_for(r"\] closed by client")
            outputs[program] = m.output
        finally:
            await m.stop()
    for out in outputs.values():
        assert out.index("extra saw client message") < out.index("Addon error: boom in extra")


async def one_subscribe(
    tmp_path, local_server, anon_key: str, *sets: str, extra: tuple[str, ...] = ()
) -> Mitmdump:
    """The rtproxy command with `sets` and `extra`, one client subscribing and closing; stopped (what it
    writes on exit is written)."""
    proxy = await Mitmdump(
        tmp_path, f"rt_supabase_url={local_server.url}", *sets, program=RTPROXY, extra=extra
    ).start()
    try:
        assert await subscribe(proxy.url, anon_key) == ["SUBSCRIBED"]
        await proxy.wait_for(r"\] closed by client: 1000")
    finally:
        await proxy.stop()
    return proxy


async def test_w_saves_flows_rtdiagnose_reads(tmp_path, local_server, anon_key):
    flows = tmp_path / "flows.mitm"
    await one_subscribe(tmp_path, local_server, anon_key, extra=("-w", str(flows)))
    code, out = await run_to_exit([str(launcher_bin("rtdiagnose")), str(flows)])
    assert code == 0 and "realtime:room1" in out, out
    assert anon_key not in flows.read_bytes().decode("latin-1")  # stored sanitized, as with mitmdump


async def test_hardump_writes_a_har_rtdiagnose_reads(tmp_path, local_server, anon_key):
    """`--set hardump=FILE` as in mitmdump (mitmproxy's savehar, written on exit), with rtproxy's additions
    to a Realtime entry (the client's URL, the close)."""
    har = tmp_path / "run.har"
    proxy = await one_subscribe(tmp_path, local_server, anon_key, f"hardump={har}")
    assert "no addon declares" not in proxy.output, proxy.output
    doc = json.loads(har.read_text())
    assert doc["log"]["creator"]["name"] == "mitmproxy"
    (entry,) = [e for e in doc["log"]["entries"] if "_webSocketMessages" in e]
    assert entry["_rtproxy"]["clientUrl"].startswith(f"{proxy.url}/realtime/v1/websocket?apikey=")
    assert entry["_rtproxy"]["close"]["code"] == 1000
    assert anon_key not in har.read_text()  # stored sanitized, as with mitmdump
    code, out = await run_to_exit([str(launcher_bin("rtdiagnose")), str(har)])
    assert code == 0 and "realtime:room1: closed" in out and "closed 1000" in out, out


def launcher_bin(name: str):
    from conftest import BIN

    return BIN / name


def test_open_file_limit_line(monkeypatch):
    """Raised as far as allowed; when fewer connections fit than asked, the line says how many and why."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert launcher.raise_open_files(connections=10) is None  # a handful always fit
    huge = 10**9
    line = launcher.raise_open_files(connections=huge)
    assert (
        line is not None and line.startswith("rtproxy: the open-file limit is ") and f"not {huge:,}" in line
    )
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_an_unlimited_open_file_limit_is_left_alone(monkeypatch):
    # RLIM_INFINITY is -1 on Linux: "below what is needed" by value, and not to be lowered.
    import resource

    inf = resource.RLIM_INFINITY
    set_to = []
    monkeypatch.setattr(resource, "getrlimit", lambda which: (inf, inf))
    monkeypatch.setattr(resource, "setrlimit", lambda which, limits: set_to.append(limits))
    assert launcher.raise_open_files() is None
    assert launcher.raise_nofile(20_256) == (inf, inf, "")
    assert set_to == []


def test_unsupported_is_none_for_what_it_takes():
    argv = [
        "--mode",
        "reverse:http://x@8080",
        "-p",
        "1",
        "--listen-host",
        "127.0.0.1",
        "--set",
        "a=b",
        "-w",
        "f",
    ]
    assert launcher.unsupported([*argv, "-q", "-s", "x.py", "--options"]) is None
