"""One clear line for a bad option value.

mitmproxy prints a traceback for an OptionsError raised from a script's `configure` at startup, then
exits 1. A logged ERROR during startup also exits 1 (ErrorCheck), with just the line. So before the
proxy runs we log; afterwards (mitmweb's option editor, `set` commands) we raise, which rolls the value
back as mitmproxy expects.
"""

from __future__ import annotations

import logging

from mitmproxy import exceptions

logger = logging.getLogger("rtproxy")
_started = False


# What a deferred --set value of each option type must look like, in the one ERROR line.
_EXPECTED: dict[object, str] = {int: "a whole number", bool: "true or false", str: "a value"}


def mark_running() -> None:
    global _started
    _started = True


def running() -> bool:
    """Startup is over: an option that changes now was changed by the user at runtime."""
    return _started


def reject(option: str, message: str) -> None:
    """Report a bad value of `option`. Callers return right after: the old value stays in effect."""
    line = f"{option}: {message}"
    if _started:
        raise exceptions.OptionsError(line)
    logger.error(line)


def check_deferred() -> None:
    """`--set rt_x=value` on the command line is deferred until the script declares rt_x; mitmproxy then
    parses it inside its script loader, and a value that does not parse (rt_keep_messages=abc,
    rt_show_secrets=maybe, a bare rt_mode) makes it drop the whole script without a word: rtproxy would
    run unconfigured, its hooks never called. Call this from `load` after declaring options: each such
    value gets one clear line (through `reject`) and is dropped, so the default stays."""
    from mitmproxy import ctx

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
