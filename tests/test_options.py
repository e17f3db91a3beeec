"""Bad option values: one clear line naming the option and what it accepts, no traceback.

In process (mitmproxy.test.taddons, as mitmproxy's own addon tests): rtproxy's option-checking parts
started as `mitmdump -s addon/rtproxy.py --set rt_x=<bad>` starts them (`started`). At startup a bad
value is one ERROR line (mitmdump then exits 1); after startup (a `set` command, mitmweb's option
editor) the same line is the error and the old value stays.

As real programs, once each: mitmdump exits 1 on bad values with one line each, and starts and stops
cleanly with good ones. mitmweb's option editor refusing a value at runtime: test_commands.py
(test_fault_switched_at_runtime_reaches_live_and_new_connections); its reason written under the field:
here (the message mitmweb's UI gets) and tests/browser/test_mitmweb_options.py (in Chromium).

Names no addon declares (mitmproxy keeps them without a word): an rt_ one stops rtproxy, mitmdump and
mitmweb with the closest name; any other is a warning with the closest name.

Wording pinned elsewhere is not repeated here: rt_fault's messages (parse_faults) in test_faults.py,
rt_report's in test_tracker_addon.py (test_rt_report_is_checked_when_set); rt_fault has one case here,
that parse_faults' message becomes the option's line.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ADDON, MITMDUMP, MITMWEB, RTPROXY, TIMEOUT, Mitmdump, run_to_exit
from mitmproxy import exceptions, hooks, optmanager
from mitmproxy.options import Options
from mitmproxy.test import taddons
from rtproxy_mitm import internals, optionerror
from rtproxy_mitm.addons import Rtproxy, Running
from rtproxy_mitm.faults import Faults
from rtproxy_mitm.stalled import HeaderLimits
from rtproxy_mitm.tracker import Tracker
from rtproxy_mitm.trim import Trim
from rtproxy_mitm.worker import Worker
from webapi import PASSWORD, free_port, start_mitmweb
from websockets.asyncio.client import connect

# (--set value, what the line must say is accepted / wrong): values of the right type that `configure`
# refuses, at startup and after it.
CASES: list[tuple[str, str]] = [
    ("rt_mode=bogus", r"fixed, relay, as-written, inspect"),
    ("rt_supabase_url=not a url", r"https://<ref>\.supabase\.co"),
    ("rt_supabase_url=ftp://x.supabase.co", r"scheme must be https://"),
    ("rt_supabase_url=https://x.supabase.co/realtime/v1", r"without a path"),
    ("rt_supabase_url=https://user:pw@x.supabase.co", r"credentials"),
    ("rt_supabase_url=https://x.supabase.co?apikey=k", r"without a query"),
    ("rt_supabase_url=https://x.supabase.co:99999", r"https://<ref>\.supabase\.co"),
    ("rt_supabase_url=http://[::1", r"not a URL"),
    ("rt_supabase_url=https://", r"no host"),
    ("rt_worker_host=https://worker.example.com/", r"without scheme, port or path"),
    ("rt_worker_host=worker.example.com:8080", r"without scheme, port or path"),
    ("rt_worker_host=a.example.com,b.example.com/x", r"without scheme, port or path"),
    ("rt_fault=nope", r"^rt_fault: unknown fault 'nope'; known: swallow-heartbeats, .*strip-query$"),
    ("rt_keep_messages=-5", r"0 \(keep all\) or a positive count"),
    ("rt_header_timeout=-1", r"0 \(off\) or a whole number of seconds, got -1"),
    ("rt_header_bytes=-1", r"0 \(off\) or a number of bytes, got -1"),
    ("rt_keep_bytes=-1", r"0 \(no byte cap\) or a positive number of bytes"),
    ("rt_timers=join=0", r"must be positive"),
    ("rt_timers=join=-3", r"must be positive"),
    ("rt_timers=join=abc", r"number of seconds"),
    ("rt_timers=bogus=1", r"join=S,heartbeat=S,idle=S"),
    ("rt_log_rate=lots", r"expected LINES/SECONDS such as 40/10s, or off"),
    ("rt_log_rate=0/10s", r"must be positive \(off: no cap\)"),
]
# Values mitmproxy itself cannot parse for the option's type. From the command line it defers them until
# the script declares the option, then would drop the whole script without a word
# (optionerror.check_deferred); at runtime mitmproxy refuses them itself.
DEFERRED: list[tuple[str, str]] = [
    ("rt_mode", r"expected a value, got no value \(--set rt_mode=VALUE\)"),
    ("rt_keep_messages=abc", r"expected a whole number, got 'abc'"),
    ("rt_show_secrets=maybe", r"expected true or false, got 'maybe'"),
    ("rt_header_timeout=1.5", r"expected a whole number, got '1\.5'"),
]


def option_parts() -> Rtproxy:
    """The parts that declare and check the options above, in rtproxy_parts' order, as the one addon."""
    tracker = Tracker()
    return Rtproxy(
        [
            HeaderLimits(),
            Worker(tracker.report_event),
            Faults(tracker.report_event),
            tracker,
            Trim(),
            Running(),
        ]
    )


@contextlib.contextmanager
def started(*specs: str) -> Iterator[taddons.context]:
    """The addon as mitmdump starts a script given `--set SPEC...` (mitmproxy's addons/script.py
    `loadscript`): the rt_ values deferred until the script declares them, its load (then mitmproxy
    applies the deferred values), then one configure with every option."""
    options = Options()
    options.set(*specs, defer=True)
    addon = option_parts()
    with taddons.context(addon, options=options) as tctx:
        tctx.master.addons.invoke_addon_sync(addon, hooks.ConfigureHook(set(tctx.options.keys())))
        yield tctx


def error_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every ERROR (or worse) logged, from any logger (an "Addon error" would be mitmproxy's), none with a
    traceback."""
    records = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not [r for r in records if r.exc_info], [r.getMessage() for r in records]
    return [r.getMessage() for r in records]


def one_line(lines: list[str], option: str, accepted: str) -> str:
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{option}: ") and re.search(accepted, lines[0]), lines[0]
    return lines[0]


@pytest.mark.parametrize("spec,accepted", CASES, ids=[c[0] for c in CASES])
def test_bad_value_one_line_at_startup_refused_after(spec, accepted, caplog):
    option, _, value = spec.partition("=")
    with caplog.at_level(logging.INFO), started(spec) as tctx:
        line = one_line(error_lines(caplog), option, accepted)
        default = tctx.options.default(option)
        tctx.options.update(**{option: default})
        optionerror.mark_running()  # startup is over, for this context's master
        with pytest.raises(exceptions.CommandError) as e:
            tctx.master.commands.call_strings("set", [option, value])
        assert str(e.value) == line
        assert getattr(tctx.options, option) == default  # rolled back
        assert error_lines(caplog) == [line]  # raised, not logged again


def test_each_bad_value_its_own_line(caplog):
    """Several bad values at startup: each gets its line (one bad value does not hide another)."""
    first = {spec.partition("=")[0]: (spec, accepted) for spec, accepted in reversed(CASES + DEFERRED)}
    with caplog.at_level(logging.INFO), started(*(spec for spec, _ in first.values())):
        lines = error_lines(caplog)
    assert len(lines) == len(first), lines
    for option, (_, accepted) in first.items():
        one_line([line for line in lines if line.startswith(f"{option}: ")], option, accepted)


def test_deferred_values_that_do_not_parse_are_one_line_each_and_dropped(caplog):
    """The script stays loaded and configured: the good deferred value is applied, the bad ones keep their
    defaults (mitmproxy's process_deferred would raise on them, dropping the script)."""
    with caplog.at_level(logging.INFO), started(*(s for s, _ in DEFERRED), "rt_timers=join=2") as tctx:
        lines = error_lines(caplog)
        assert not tctx.options.deferred
        assert tctx.options.rt_timers == "join=2"
        for spec, _ in DEFERRED:
            option = spec.partition("=")[0]
            assert getattr(tctx.options, option) == tctx.options.default(option), option
    assert len(lines) == len(DEFERRED), lines
    for spec, accepted in DEFERRED:
        option = spec.partition("=")[0]
        one_line([line for line in lines if line.startswith(f"{option}: ")], option, accepted)


def test_startup_is_over_for_one_master_only():
    """mark_running (rtproxy's `running` hook) ends startup for the master it runs in, not the process."""
    with taddons.context():
        assert not optionerror.running()
        optionerror.mark_running()
        assert optionerror.running()
    with taddons.context():
        assert not optionerror.running()


def test_running_moves_what_startup_built_out_of_the_collectors_reach():
    """Running.running ends startup with gc.freeze (issue #27: a full collection under hostile load paused
    the proxy ~90 ms, walking the ~90,000 objects startup made), so traffic's collections walk only what
    traffic made."""
    gc.unfreeze()
    try:
        with started() as tctx:
            assert gc.get_freeze_count() == 0
            tctx.master.addons.trigger(hooks.RunningHook())
            assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()  # the next tests' objects are collectable again


# ------------------------------------------------------------------------------- the real program


async def test_mitmdump_exits_1_with_one_line_per_bad_value(tmp_path):
    """A value mitmproxy defers (check_deferred) and one `configure` refuses: one line each, exit 1."""
    sets = ("rt_keep_messages=abc", "rt_mode=bogus")
    args = [MITMDUMP, "--listen-host", "127.0.0.1", "-p", "0", "-s", ADDON, "--set", f"confdir={tmp_path}"]
    rc, out = await run_to_exit([*args, *(a for s in sets for a in ("--set", s))])
    assert rc == 1, out
    assert "Traceback" not in out and "Addon error" not in out and "error in script" not in out, out
    for option, accepted in (("rt_keep_messages", "whole number"), ("rt_mode", "fixed, relay, as-written")):
        lines = [line for line in out.splitlines() if re.search(rf"(^|\] ){option}: ", line)]
        assert len(lines) == 1 and re.search(accepted, lines[0]), out


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
        "rt_header_timeout=30",
        "--set",
        "rt_header_bytes=16384",
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


# ------------------------------------------------------------------------------- options no addon declares


def test_undeclared_are_the_deferred_names_no_addon_declares():
    """internals.undeclared: what mitmproxy keeps in OptManager.deferred of --set values (and config.yaml
    keys) for options it does not know, and whether --set gave it."""
    options = Options()
    options.set("rt_faults=drop-join", "nosuchoption=1", "listen_port=0", defer=True)
    optmanager.load(options, "web_port: 8081\n")
    assert sorted(internals.undeclared(options)) == [
        ("nosuchoption", True),
        ("rt_faults", True),
        ("web_port", False),
    ]


def test_an_rt_name_no_part_declares_is_one_line_with_the_closest(caplog):
    with caplog.at_level(logging.INFO), started("rt_faults=drop-join", "rt_timer=join=2") as tctx:
        lines = error_lines(caplog)
        assert not tctx.options.deferred  # refused, not kept for later
    assert sorted(lines) == [
        "rt_faults: no such rtproxy option; did you mean rt_fault? (--options lists them)",
        "rt_timer: no such rtproxy option; did you mean rt_timers? (--options lists them)",
    ]


def web_args() -> list[str]:
    return [
        "--set",
        "web_open_browser=false",
        "--set",
        f"web_password={PASSWORD}",
        "--web-host",
        "127.0.0.1",
        "--web-port",
        str(free_port()),
    ]


PROGRAMS = ("rtproxy", "mitmdump", "mitmweb")


def program_args(program: str) -> list[str]:
    """The program with rtproxy loaded, as a user starts it."""
    if program == "rtproxy":
        return [RTPROXY]
    if program == "mitmdump":
        return [MITMDUMP, "-s", ADDON]
    return [MITMWEB, "-s", ADDON, *web_args()]


@pytest.mark.parametrize("program", PROGRAMS)
async def test_a_mistyped_rt_option_stops_each_program_with_the_closest_name(program, tmp_path):
    """`--set rt_faults=drop-join` would otherwise start the proxy with no fault and no word."""
    args = [
        *program_args(program),
        "--listen-host",
        "127.0.0.1",
        "-p",
        "0",
        "--set",
        f"confdir={tmp_path}",
    ]
    rc, out = await run_to_exit([*args, "--set", "rt_faults=drop-join"])
    assert rc == 1, out
    assert "Traceback" not in out, out
    lines = [line for line in out.splitlines() if "rt_faults" in line]
    assert len(lines) == 1 and lines[0].endswith(
        "rt_faults: no such rtproxy option; did you mean rt_fault? (--options lists them)"
    ), out


@pytest.mark.parametrize("program", ["rtproxy", "mitmdump"])
async def test_another_unknown_option_is_a_warning_naming_the_closest(program, tmp_path):
    """Not refused: a script loaded later, or mitmweb sharing config.yaml, may declare it."""
    proxy = await Mitmdump(
        tmp_path, "nosuchoption=1", "connection_stratgy=lazy", program=program_args(program)[0]
    ).start()
    try:
        await proxy.wait_for(
            r"nosuchoption: no addon declares this option, so --set nosuchoption does nothing "
            r"\(--options lists them\)$"
        )
        await proxy.wait_for(
            r"connection_stratgy: no addon declares this option, so --set connection_stratgy does "
            r"nothing; did you mean connection_strategy\? \(--options lists them\)$"
        )
    finally:
        await proxy.stop()
    assert proxy.returncode == 0, proxy.output


# ------------------------------------------------------------------------------- mitmweb's Options editor


def test_mitmwebs_ui_shows_an_options_error():
    """What internals.show_option_error relies on in mitmweb's bundled UI: its Options editor renders
    `options_meta[name].error` (the text under a field), and mitmweb's server sends `options/update`
    through ClientConnection.broadcast. A mitmweb that renders the error itself, or stops reading it, fails
    here."""
    from mitmproxy.tools.web import app

    static = Path(app.__file__).parent / "static"
    bundle = "".join(p.read_text(encoding="utf-8") for p in static.rglob("*.js"))
    assert re.search(r"options_meta\[\w+\]\?\.error", bundle)
    assert callable(app.ClientConnection.broadcast)


async def test_a_refused_value_reaches_mitmwebs_options_editor_as_text(mitmdump):
    """mitmweb's UI keeps a PUT /options error to itself (a red border): rtproxy sends the reason as the
    option's `error`, which the Options editor writes under the field (tests/browser/test_mitmweb_options.py
    sees it there in Chromium)."""
    web, api = await start_mitmweb(mitmdump)
    ws_url = api.base.replace("http://", "ws://") + f"/updates?token={PASSWORD}"
    async with connect(ws_url) as updates:
        answer = await api.set_options(rt_fault="drop-joinn")
        reason = "unknown fault 'drop-joinn' (did you mean drop-join?); known: swallow-heartbeats"
        assert answer["status"] == 400 and answer["error"].startswith(f"rt_fault: {reason}"), answer

        async def error_update() -> dict:
            async for raw in updates:
                msg = json.loads(raw)
                if msg.get("type") == "options/update" and "error" in msg["payload"].get("rt_fault", {}):
                    return msg["payload"]["rt_fault"]
            raise AssertionError("mitmweb closed its updates socket")

        entry = await asyncio.wait_for(error_update(), TIMEOUT)
        assert entry["error"].startswith(reason) and entry["value"] == ""  # the old value stays
        assert (await api.set_options(rt_fault="drop-join")) in (None, {})
        await web.wait_for(r"rt_fault is now drop-join")
