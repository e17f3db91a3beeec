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
    if kind == "async":
        return [Recorder("a", calls, is_async=True), Recorder("b", calls)], after
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


@pytest.mark.parametrize("kind", ["order", "error", "halt", "async"])
async def test_rtproxy_parts_run_as_top_level_addons_would(kind, caplog):
    assert await run_parts(True, kind, caplog) == await run_parts(False, kind, caplog)


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


def test_rtproxy_refuses_a_part_with_addons_of_its_own():
    from rtproxy_mitm.addons import Rtproxy

    with pytest.raises(TypeError, match="addons of its own"):
        Rtproxy([Recorder("a", [], children=[Recorder("a1", [])])])


def test_rtproxy_has_one_handler_per_hook_its_parts_have():
    from rtproxy_mitm.addons import Rtproxy, rtproxy_parts

    one = Rtproxy(rtproxy_parts())
    assert callable(one.websocket_message) and callable(one.request)
    assert not hasattr(one, "tcp_message")  # no part has it: mitmproxy finds nothing to call
