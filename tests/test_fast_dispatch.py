"""internals.FastAddonManager (the rtproxy command's hook dispatch) against mitmproxy's own AddonManager:
the same scenarios through both, the same calls in the same order, the same errors logged. In process,
with mitmproxy's test master (mitmproxy.test.taddons)."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest
from mitmproxy import addonmanager, exceptions, hooks
from mitmproxy.log import AddLogHook
from mitmproxy.proxy.layers.http import HttpRequestHook
from mitmproxy.test import taddons, tflow
from rtproxy_mitm.internals import FastAddonManager


class Recorder:
    def __init__(self, name: str, calls: list, *, children=(), raises=None, halts=False, is_async=False):
        self.name, self.calls, self.raises, self.halts = name, calls, raises, halts
        if children:
            self.addons = list(children)
        if is_async:
            self.request = self._async_request

    def request(self, flow) -> None:
        self.calls.append(self.name)
        if self.raises:
            raise self.raises
        if self.halts:
            raise exceptions.AddonHalt()

    async def _async_request(self, flow) -> None:
        await asyncio.sleep(0)
        self.calls.append(self.name)


class NotCallable:
    request = "not a function"


def scenario(kind: str, calls: list) -> list:
    if kind == "order":  # children after their parent, chain order
        return [Recorder("a", calls, children=[Recorder("a1", calls)]), Recorder("b", calls)]
    if kind == "error":  # an exception ends its top-level addon's handlers; the next top-level one runs
        return [
            Recorder("a", calls, raises=RuntimeError("boom"), children=[Recorder("a1", calls)]),
            Recorder("b", calls),
        ]
    if kind == "halt":
        return [Recorder("a", calls, halts=True), Recorder("b", calls)]
    if kind == "async":
        return [Recorder("a", calls, is_async=True), Recorder("b", calls)]
    if kind == "not-callable":  # the handlers before it run; the error is logged; the next addon runs
        return [Recorder("a", calls, children=[NotCallable()]), Recorder("b", calls)]
    raise AssertionError(kind)


async def run(manager_cls, kind: str, caplog) -> tuple[list, list[str]]:
    calls: list = []
    with taddons.context(loadcore=False) as tctx:
        master = tctx.master
        if manager_cls is not addonmanager.AddonManager:
            master.addons = manager_cls(master)
        for addon in scenario(kind, calls):
            master.addons.add(addon)
        caplog.clear()
        flow = tflow.tflow()
        for _ in range(2):  # twice: the second from FastAddonManager's cache
            await master.addons.trigger_event(HttpRequestHook(flow))
        errors = [
            re.sub(r" at 0x[0-9a-f]+", "", r.getMessage())
            for r in caplog.records
            if r.levelno >= logging.ERROR
        ]
    return calls, errors


@pytest.mark.parametrize("kind", ["order", "error", "halt", "async", "not-callable"])
async def test_same_calls_and_errors_as_mitmproxy(kind, caplog):
    theirs = await run(addonmanager.AddonManager, kind, caplog)
    ours = await run(FastAddonManager, kind, caplog)
    assert ours == theirs
    assert theirs[0], theirs  # something ran


async def test_handlers_follow_register_and_remove_but_not_log_records():
    calls: list = []
    with taddons.context(loadcore=False) as tctx:
        master = tctx.master
        master.addons = FastAddonManager(master)
        a = Recorder("a", calls)
        master.addons.add(a)
        flow = tflow.tflow()
        await master.addons.trigger_event(HttpRequestHook(flow))
        b = master.addons.register(Recorder("b", calls))  # as a script loader adds a script's addons
        master.addons.chain.append(b)
        await master.addons.trigger_event(HttpRequestHook(flow))
        master.addons.invoke_addon_sync(a, AddLogHook(logging.makeLogRecord({"msg": "x"})))
        assert master.addons._handlers, "a log record must not drop the looked-up handlers"
        master.addons.remove(a)
        await master.addons.trigger_event(HttpRequestHook(flow))
        assert calls == ["a", "a", "b", "b"]
        master.addons.invoke_addon_sync(b, hooks.ConfigureHook(set()))
        assert not master.addons._handlers  # a script's configure (its load may have changed things)


# ------------------------------------------------------------------------------------------ addons.Rtproxy
# rtproxy's parts as the one addon mitmdump sees: they must run as if each were a top-level addon.


def parts_scenario(kind: str, calls: list) -> tuple[list, list]:
    """(parts, addons after them)."""
    after = [Recorder("after", calls)]
    if kind == "order":
        return [Recorder("a", calls), Recorder("b", calls), Recorder("c", calls)], after
    if kind == "error":  # each part isolated: b still runs, and so does the addon after rtproxy
        return [Recorder("a", calls, raises=RuntimeError("boom")), Recorder("b", calls)], after
    if kind == "halt":  # AddonHalt ends the event for everyone
        return [Recorder("a", calls, halts=True), Recorder("b", calls)], after
    raise AssertionError(kind)


async def run_parts(as_one: bool, kind: str, caplog) -> tuple[list, list[str]]:
    from rtproxy_mitm.addons import Rtproxy

    calls: list = []
    with taddons.context(loadcore=False) as tctx:
        master = tctx.master
        parts, after = parts_scenario(kind, calls)
        for addon in ([Rtproxy(parts)] if as_one else parts) + after:
            master.addons.add(addon)
        caplog.clear()
        await master.addons.trigger_event(HttpRequestHook(tflow.tflow()))
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    return calls, errors


@pytest.mark.parametrize("kind", ["order", "error", "halt"])
async def test_rtproxy_parts_run_as_top_level_addons_would(kind, caplog):
    assert await run_parts(True, kind, caplog) == await run_parts(False, kind, caplog)


class Configured:
    def __init__(self, name: str, calls: list, raises=None) -> None:
        self.name, self.calls, self.raises = name, calls, raises

    def configure(self, updated) -> None:
        self.calls.append(self.name)
        if self.raises:
            raise self.raises


async def test_rtproxy_parts_are_isolated_on_the_sync_path_too(caplog):
    # Options changing come through AddonManager.trigger (sync), not trigger_event.
    from rtproxy_mitm.addons import Rtproxy

    def run(as_one: bool) -> tuple[list, list[str]]:
        calls: list = []
        parts = [Configured("a", calls, raises=RuntimeError("boom")), Configured("b", calls)]
        with taddons.context(loadcore=False) as tctx:
            for addon in [Rtproxy(parts)] if as_one else parts:
                tctx.master.addons.add(addon)
            caplog.clear()
            tctx.master.addons.trigger(hooks.ConfigureHook({"x"}))
            return calls, [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]

    ours, theirs = run(True), run(False)
    assert ours == theirs
    assert ours == (["a", "b"], ["Addon error: boom"])


async def test_rtproxy_says_so_when_a_sync_hook_returns_an_awaitable(caplog):
    from rtproxy_mitm.addons import Rtproxy

    calls: list = []

    class Sneaky:
        def request(self, flow):
            return asyncio.sleep(0)  # mitmproxy would await this; one dispatcher for sync hooks cannot

    with taddons.context(loadcore=False) as tctx:
        tctx.master.addons.add(Rtproxy([Sneaky(), Recorder("b", calls)]))
        await tctx.master.addons.trigger_event(HttpRequestHook(tflow.tflow()))
    assert calls == ["b"]
    assert any("returned an awaitable" in r.getMessage() for r in caplog.records)


def test_rtproxy_loads_its_parts_options_and_commands_and_lets_option_errors_through():
    from mitmproxy import command
    from rtproxy_mitm.addons import Rtproxy

    class Part:
        def load(self, loader) -> None:
            loader.add_option("part_level", int, 1, "a part's option")

        def configure(self, updated) -> None:
            if "part_level" in updated and ctx.options.part_level < 0:
                raise exceptions.OptionsError("part_level: must not be negative")

        @command.command("part.hello")
        def hello(self) -> str:
            return "hello"

    from mitmproxy import ctx

    with taddons.context(loadcore=False) as tctx:
        one = Rtproxy([Part()])
        tctx.master.addons.add(one)
        assert tctx.master.addons.get("rtproxy") is one
        assert tctx.master.addons.get("part") is None  # mitmproxy walks one addon, not its parts
        assert one.get("part") is one.parts[0]
        assert tctx.master.commands.call("part.hello") == "hello"
        tctx.configure(one, part_level=3)
        assert tctx.options.part_level == 3
        with pytest.raises(exceptions.OptionsError):
            tctx.configure(one, part_level=-1)
        assert tctx.options.part_level == 3  # rolled back, as for any addon's OptionsError


def test_rtproxy_refuses_a_part_with_addons_of_its_own_or_a_hook_it_cannot_call():
    from rtproxy_mitm.addons import Rtproxy

    with pytest.raises(TypeError, match="addons of its own"):
        Rtproxy([Recorder("a", [], children=[Recorder("a1", [])])])
    with pytest.raises(TypeError, match="NotCallable.request is a hook name but not callable"):
        Rtproxy([NotCallable()])
    # mitmproxy's script loader gives a script's module load, configure and running synchronously
    # (invoke_addon_sync), so one dispatcher per hook for all parts is a plain function too.
    with pytest.raises(TypeError, match="Recorder.request is async"):
        Rtproxy([Recorder("a", [], is_async=True)])

    class ImportsLog:
        from mitmproxy import log  # a module named like a hook is no handler (addonmanager._iter_hooks)

    assert not hasattr(Rtproxy([ImportsLog()]), "log")


def test_rtproxy_has_a_handler_for_every_hook_of_every_part():
    """In a fresh interpreter, importing only what addon/rtproxy.py imports: the hook names the bundle
    knows are every hook mitmproxy has (mitmdump and mitmweb import them all), and every hook method of
    every part has its handler."""
    import subprocess
    import sys
    from pathlib import Path

    code = """
import json, sys
sys.path.insert(0, sys.argv[1])
from mitmproxy import hooks
from rtproxy_mitm.addons import Rtproxy, rtproxy_parts
known = set(hooks.all_hooks)
parts = rtproxy_parts()
one = Rtproxy(parts)
import mitmproxy.addons, mitmproxy.tools.dump, mitmproxy.tools.web.master  # everything mitmproxy has
missing = [f"{type(p).__name__}.{h}" for p in parts for h in hooks.all_hooks
           if callable(getattr(p, h, None)) and not callable(getattr(one, h, None))]
print(json.dumps({"unknown": sorted(set(hooks.all_hooks) - known), "missing": missing,
                  "handlers": sorted(h for h in hooks.all_hooks if callable(getattr(one, h, None)))}))
"""
    addon = str(Path(__file__).resolve().parents[1] / "addon")
    out = subprocess.run([sys.executable, "-c", code, addon], capture_output=True, text=True, check=True)
    import json

    got = json.loads(out.stdout)
    assert got["unknown"] == [] and got["missing"] == []
    assert {"load", "configure", "running", "done", "request", "websocket_message"} <= set(got["handlers"])
    assert "tcp_message" not in got["handlers"]  # no part has it: mitmproxy finds nothing to call
