"""Bad option values: `mitmdump -s addon/rtproxy.py --set rt_x=<bad>` prints ONE clear line naming the
option and what it accepts, no traceback, and exits non-zero (mitmproxy's "Error logged during startup").

Each case is a real mitmdump subprocess on 127.0.0.1 with a throwaway confdir; they run a few at a time.
"""

from __future__ import annotations

import asyncio
import os
import re

from conftest import ADDON, MITMDUMP, TIMEOUT, run_to_exit

# (--set values, option named in the line, what the line must say is accepted / wrong)
CASES: list[tuple[tuple[str, ...], str, str]] = [
    (("rt_mode=bogus",), "rt_mode", r"fixed, relay, as-written, inspect"),
    (("rt_mode",), "rt_mode", r"value"),
    (("rt_supabase_url=not a url",), "rt_supabase_url", r"https://<ref>\.supabase\.co"),
    (("rt_supabase_url=ftp://x.supabase.co",), "rt_supabase_url", r"scheme must be https://"),
    (("rt_supabase_url=https://x.supabase.co/realtime/v1",), "rt_supabase_url", r"without a path"),
    (("rt_supabase_url=https://user:pw@x.supabase.co",), "rt_supabase_url", r"credentials"),
    (("rt_supabase_url=https://x.supabase.co?apikey=k",), "rt_supabase_url", r"without a query"),
    (("rt_supabase_url=https://x.supabase.co:99999",), "rt_supabase_url", r"https://<ref>\.supabase\.co"),
    (("rt_supabase_url=http://[::1",), "rt_supabase_url", r"not a URL"),
    (("rt_supabase_url=https://",), "rt_supabase_url", r"no host"),
    (("rt_worker_host=https://worker.example.com/",), "rt_worker_host", r"without scheme, port or path"),
    (("rt_worker_host=worker.example.com:8080",), "rt_worker_host", r"without scheme, port or path"),
    (("rt_worker_host=a.example.com,b.example.com/x",), "rt_worker_host", r"without scheme, port or path"),
    (("rt_fault=nope",), "rt_fault", r"known: swallow-heartbeats, .*strip-query"),
    (("rt_fault=close=abc",), "rt_fault", r"CODE:SECONDS"),
    (("rt_fault=close=1006:1",), "rt_fault", r"close code 1006 cannot be sent .*local-only"),
    *(  # codes wsproto refuses in a close frame (rtproxy_core.closecodes.sendable)
        (
            (f"rt_fault=close={c}:1",),
            "rt_fault",
            rf"close code {c} cannot be sent .*: use 1000-1003, 1007-1013 or 3000-4999$",
        )
        for c in (2000, 1004, 1014, 1016, 2999)
    ),
    (("rt_fault=close=4000:1:" + "r" * 130,), "rt_fault", r"at most 123 bytes"),
    (("rt_fault=idle-timeout=-1",), "rt_fault", r"must not be negative"),
    (("rt_fault=idle-timeout=nan",), "rt_fault", r"finite number"),
    (("rt_fault=delay-replies=1.5",), "rt_fault", r"whole number"),
    (("rt_fault=drop-join=1",), "rt_fault", r"takes no argument"),
    (("rt_fault=max-frame",), "rt_fault", r"needs an argument: max-frame=BYTES"),
    (("rt_keep_messages=-5",), "rt_keep_messages", r"0 \(keep all\) or a positive count"),
    (("rt_keep_messages=abc",), "rt_keep_messages", r"whole number"),
    (("rt_show_secrets=maybe",), "rt_show_secrets", r"true or false"),
    (("rt_timers=join=0",), "rt_timers", r"must be positive"),
    (("rt_timers=join=-3",), "rt_timers", r"must be positive"),
    (("rt_timers=join=abc",), "rt_timers", r"number of seconds"),
    (("rt_timers=bogus=1",), "rt_timers", r"join=S,heartbeat=S,idle=S"),
    (("rt_report=/nonexistent/dir/r.md",), "rt_report", r"the folder /nonexistent/dir does not exist"),
    (("rt_report=/",), "rt_report", r"is a folder: name a file in it"),
]
PARALLEL = 2


async def run_mitmdump(tmp_path, sets: tuple[str, ...]) -> tuple[int, str]:
    conf = tmp_path / f"conf{abs(hash(sets))}"
    conf.mkdir()
    args = [MITMDUMP, "--listen-host", "127.0.0.1", "-p", "0", "-s", ADDON, "--set", f"confdir={conf}"]
    for s in sets:
        args += ["--set", s]
    rc, out = await run_to_exit(args)
    if rc is None:
        return -1, out + "\n(still running: the bad value was accepted)"
    return rc, out


def problems(sets: tuple[str, ...], option: str, accepted: str, rc: int, out: str) -> list[str]:
    found = []
    lines = [line for line in out.splitlines() if re.search(rf"(^|\] ){re.escape(option)}: ", line)]
    if rc in (0, -1):
        found.append(f"exit status {rc} (expected non-zero)")
    if len(lines) != 1:
        found.append(f"{len(lines)} lines name {option} (expected one)")
    elif not re.search(accepted, lines[0]):
        found.append(f"the line does not say /{accepted}/: {lines[0]!r}")
    if "Traceback" in out or "Addon error" in out or "error in script" in out:
        found.append("a traceback / script error was printed")
    return [f"--set {' '.join(sets)}: {p}\n{out}" for p in found]


def rounds() -> list[list[tuple[tuple[str, ...], str, str]]]:
    """The cases in as few mitmdump runs as possible, each run holding at most one bad value per option:
    every bad value must still get its own line (one bad value must not hide another)."""
    by_option: dict[str, list] = {}
    for case in CASES:
        by_option.setdefault(case[1], []).append(case)
    return [
        [cases[i] for cases in by_option.values() if i < len(cases)]
        for i in range(max(map(len, by_option.values())))
    ]


async def test_each_bad_value_one_line_no_traceback_exit_nonzero(tmp_path):
    gate = asyncio.Semaphore(PARALLEL)

    async def run(cases):
        sets = tuple(s for c in cases for s in c[0])
        async with gate:
            rc, out = await run_mitmdump(tmp_path, sets)
        return [p for c in cases for p in problems(sets, c[1], c[2], rc, out)]

    results = await asyncio.gather(*(run(r) for r in rounds()))
    failures = [p for r in results for p in r]
    assert not failures, f"{len(failures)} problem(s):\n\n" + "\n\n".join(failures)


async def test_one_bad_value_alone(tmp_path):
    """A single bad value on its own also stops mitmdump (not only a run with several)."""
    rc, out = await run_mitmdump(tmp_path, ("rt_keep_messages=abc",))
    assert not problems(("rt_keep_messages=abc",), "rt_keep_messages", "whole number", rc, out)


async def test_good_values_start_and_stop_cleanly(tmp_path):
    """The same command with valid values runs (the cases above fail for their value, not the command)."""
    conf = tmp_path / "ok"
    conf.mkdir()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("SUPABASE_URL", None)
    proc = await asyncio.create_subprocess_exec(
        MITMDUMP,
        "--listen-host",
        "127.0.0.1",
        "-p",
        "0",
        "-s",
        ADDON,
        "--set",
        f"confdir={conf}",
        "--set",
        "rt_mode=fixed",
        "--set",
        "rt_supabase_url=http://127.0.0.1:9",
        "--set",
        "rt_keep_messages=5",
        "--set",
        "rt_show_secrets=false",
        "--set",
        "rt_timers=join=1,heartbeat=2,idle=3",
        "--set",
        "rt_fault=close=4000:1:bye,max-frame=100",
        "--set",
        "rt_worker_host=a.example.com,b.example.com",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    assert proc.stdout
    seen = []

    async def until_listening():
        async for raw in proc.stdout:
            seen.append(raw.decode())
            if "listening at" in seen[-1]:
                return

    await asyncio.wait_for(until_listening(), TIMEOUT)
    proc.terminate()
    out, _ = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    text = "".join(seen) + out.decode()
    assert proc.returncode == 0, text
    assert "Error" not in text and "Traceback" not in text, text
