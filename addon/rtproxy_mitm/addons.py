"""rtproxy's parts, in the order they must run, as the one addon `mitmdump -s addon/rtproxy.py`, mitmweb and
the `rtproxy` command (rtproxy_tools/launcher.py) load. Imported only once the mitmproxy version is known to be
right: contentview.py needs mitmproxy 12's API."""

from __future__ import annotations

import gc
import inspect
import types
from collections.abc import Callable

from mitmproxy import addonmanager, exceptions, hooks, log  # noqa: F401 (log: its hook)
from mitmproxy.proxy import layers, server_hooks  # noqa: F401 (their hooks: every name in hooks.all_hooks)

from . import internals
from .commands import LiveCommands
from .contentview import RealtimeView
from .faults import Faults
from .framenotes import FrameNotes
from .legs import Legs
from .lost import LostConnections
from .marks import Marks
from .optionerror import check_deferred, check_unknown, mark_running
from .page import PageProbe
from .quiet import Quiet
from .sanitize import Sanitize
from .stalled import HeaderLimits
from .tracker import Tracker
from .trim import Trim
from .worker import Worker


class Running:
    """Last in the list. At load, every rt_ option is declared: check the command-line values mitmproxy
    could not parse, and refuse an rt_ name no part declares. At running (every script has loaded; in the
    rtproxy command, the first time --set values are there), names no addon declares: an rt_ one refused, any
    other warned about. Then startup is over: option errors are logged before it, raised (and rolled back)
    after; and what startup built (mitmproxy's and rtproxy's modules, classes, tables: ~90,000 objects) is
    moved out of the cyclic garbage collector's reach (gc.freeze), so a full collection during traffic walks
    only what traffic made: without it, one full collection under issue #27's attack paused the proxy for
    ~90 ms (rtbench --hostile), every connection waiting behind it."""

    def load(self, loader) -> None:
        check_deferred()
        check_unknown(warn=False)

    def running(self) -> None:
        check_unknown(warn=True)
        mark_running()
        gc.freeze()


def _dispatcher(funcs: tuple[Callable, ...]) -> Callable:
    """One handler that calls `funcs` in order, each isolated as mitmproxy isolates a top-level addon
    (addonmanager.py `safecall`): an exception is logged as "Addon error: ..." and the next one runs;
    AddonHalt (end the event) and OptionsError (roll the option back) go up to mitmproxy."""

    def call_all(*args) -> None:
        for func in funcs:
            try:
                res = func(*args)
                if res is not None and inspect.isawaitable(res):  # mitmproxy would await it; say so
                    if inspect.iscoroutine(res):
                        res.close()  # this line says it, not "never awaited" at exit
                    raise TypeError(f"{func.__qualname__} returned an awaitable: parts hook in synchronously")
            except (exceptions.AddonHalt, exceptions.OptionsError):
                raise
            except Exception:  # noqa: BLE001 (logged, as safecall logs it)
                internals.log_addon_error()

    return call_all


def _hook(part, name: str) -> Callable | None:
    """The part's handler for hook `name`, as addonmanager.py `_iter_hooks` finds one: a module of that
    name is no handler; any other value that is not callable is an error (here, once)."""
    func = getattr(part, name, None)
    if not func or isinstance(func, types.ModuleType):
        return None
    if not callable(func):
        raise TypeError(f"{type(part).__name__}.{name} is a hook name but not callable")
    if inspect.iscoroutinefunction(func):  # every part's hooks are plain functions; the dispatch is too
        raise TypeError(f"{type(part).__name__}.{name} is async: rtproxy's parts hook in synchronously")
    return func


class Rtproxy:
    """rtproxy's addons as the one addon mitmproxy sees. mitmproxy's AddonManager walks every addon and
    its children with a getattr for each hook of each event (addonmanager.py `traverse`, `_iter_hooks`)
    and builds the hook's arguments once per handler (`invoke_addon`, `Hook.args`): rtproxy's 13 parts,
    as children, cost mitmdump 18 µs per message more than this (docs/performance.md). As one addon with one
    handler per hook that some part has, found once here, they cost it one getattr and one call.

    The parts are not `addons` (mitmproxy would walk them): `load` gives each its load and hands their
    commands to mitmproxy's CommandManager, as AddonManager.register does for children. Each part's
    handler is isolated from the others' exceptions, as top-level addons are."""

    name = "rtproxy"

    def __init__(self, parts: list) -> None:
        self.parts = tuple(parts)
        if nested := [p for p in self.parts if hasattr(p, "addons")]:
            raise TypeError(f"a part with addons of its own would lose them here: {nested}")
        for hook in hooks.all_hooks:
            if hook == "load":
                continue
            funcs = tuple(f for p in self.parts if (f := _hook(p, hook)) is not None)
            if funcs:
                setattr(self, hook, _dispatcher(funcs))

    def load(self, loader: addonmanager.Loader) -> None:
        # Not isolated: a part that cannot load fails the script's load, as a child's would.
        for part in self.parts:
            if callable(load := getattr(part, "load", None)):
                load(loader)
        for part in self.parts:
            loader.master.commands.collect_commands(part)

    def get(self, name: str):
        """The part called `name` (mitmproxy's naming: its .name, else its lower-case class name)."""
        return next((p for p in self.parts if getattr(p, "name", type(p).__name__.lower()) == name), None)


def rtproxy_addons() -> list:
    """rtproxy for mitmproxy: the one addon of `addon/rtproxy.py` and of the rtproxy command."""
    return [Rtproxy(rtproxy_parts())]


def rtproxy_parts() -> list:
    tracker = Tracker()
    notes = FrameNotes()
    # Order matters: the Worker reroutes and faults act before the tracker records what happened.
    return [
        HeaderLimits(),  # rt_header_timeout: per client connection, before any request
        PageProbe(tracker),  # answers the page probe's reports before anything would forward them
        Worker(report=tracker.report_event),
        Faults(report=tracker.report_event, notes=notes),
        notes,  # notes the faults' injected frames as they arrive: before Sanitize stores a copy
        Legs(tracker),  # rt_legs: after faults, before the tracker (its sessions, its done)
        tracker,
        Trim(),  # after the tracker, which reads the newest message
        Sanitize(),  # after the tracker and faults: stores a copy of what they saw and forwarded
        Quiet(),
        RealtimeView(),
        LiveCommands(tracker, notes),
        Marks(),
        LostConnections(),
        Running(),
    ]
