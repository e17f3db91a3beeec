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


def mark_running() -> None:
    global _started
    _started = True


def reject(option: str, message: str) -> None:
    """Report a bad value of `option`. Callers return right after: the old value stays in effect."""
    line = f"{option}: {message}"
    if _started:
        raise exceptions.OptionsError(line)
    logger.error(line)
