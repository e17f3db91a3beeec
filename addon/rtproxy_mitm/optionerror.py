"""One clear line for a bad option value.

mitmproxy prints a traceback for an OptionsError raised from a script's `configure` at startup, then
exits 1. A logged ERROR during startup also exits 1 (ErrorCheck), with just the line. So before the
proxy runs we log; afterwards (mitmweb's option editor, `set` commands) we raise, which rolls the value
back as mitmproxy expects.

Startup is over for a master once mitmproxy sent it the `running` hook (addons.Running calls
`mark_running`). The state belongs to that master, not to the process: in-process tests get a new
master with each `mitmproxy.test.taddons.context`, which starts in startup (a bad value is logged); call
`mark_running()` inside it to act as after startup (a bad value raises OptionsError and is rolled back).
Nothing carries over to the next context.
"""

from __future__ import annotations

import difflib
import logging
import weakref

from mitmproxy import ctx, exceptions

logger = logging.getLogger("rtproxy")
_running_masters: weakref.WeakSet = weakref.WeakSet()  # the masters whose startup is over


# What a deferred --set value of each option type must look like, in the one ERROR line.
_EXPECTED: dict[object, str] = {int: "a whole number", bool: "true or false", str: "a value"}


def mark_running() -> None:
    """Startup of the current master (`mitmproxy.ctx.master`) is over: from now on a bad value raises."""
    _running_masters.add(ctx.master)


def running() -> bool:
    """Startup is over: an option that changes now was changed by the user at runtime."""
    master = getattr(ctx, "master", None)  # none before mitmproxy made its first master
    return master is not None and master in _running_masters


def reject(option: str, message: str) -> None:
    """Report a bad value of `option`. Callers return right after: the old value stays in effect."""
    line = f"{option}: {message}"
    if running():
        from . import internals

        internals.show_option_error(option, message)  # mitmweb's editor shows a red border, not the text
        raise exceptions.OptionsError(line)
    logger.error(line)


def check_deferred() -> None:
    """`--set rt_x=value` on the command line is deferred until the script declares rt_x; mitmproxy then
    parses it inside its script loader, and a value that does not parse (rt_keep_messages=abc,
    rt_show_secrets=maybe, a bare rt_mode) makes it drop the whole script without a word: rtproxy would
    run unconfigured, its hooks never called. Call this from `load` after declaring options: each such
    value gets one clear line (through `reject`) and is dropped, so the default stays."""
    from . import internals

    options = ctx.options
    for name, option, raw in internals.deferred_values(options):
        try:
            internals.parse_value(options, option, raw)
        except exceptions.OptionsError as e:
            internals.drop_deferred(options, name)
            got = f"got {raw[0]!r}" if raw else f"got no value (--set {name}=VALUE)"
            expected = _EXPECTED.get(option.typespec)
            reject(name, f"expected {expected}, {got}" if expected else str(e))


def closest(name: str, names: list[str]) -> str:
    """ ", did you mean X?" for the declared option nearest `name` (difflib), or "" when none is near."""
    near = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    return f"; did you mean {near[0]}?" if near else ""


def check_unknown(warn: bool) -> None:
    """Options given that no addon declares: mitmproxy keeps them for an addon that may declare them later
    and never says. `rt_` is rtproxy's: once its parts have loaded, an `rt_` name none declares is a typo
    (`--set rt_faults=drop-join`), refused like a bad value (one line; at startup the proxy exits 1), with the
    closest name. Any other name may belong to a script loaded later, or to another mitmproxy tool that
    shares config.yaml (mitmweb's web_*): `warn` (once every script has loaded: the `running` hook) gives
    each one given with --set a WARNING line, with the closest name, and leaves it for mitmproxy."""
    from . import internals

    options = ctx.options
    names = sorted(options.keys())
    for name, given in internals.undeclared(options):
        if name.startswith("rt_"):
            internals.drop_deferred(options, name)
            ours = [n for n in names if n.startswith("rt_")]
            reject(
                name,
                f"no such rtproxy option{closest(name, ours) or closest(name, names)} (--options lists them)",
            )
        elif warn and given:
            logger.warning(
                f"{name}: no addon declares this option, so --set {name} does nothing"
                f"{closest(name, names)} (--options lists them)"
            )
