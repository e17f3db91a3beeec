"""rtproxy's mitmproxy layer: one class per concern (docs/design.md).

This module imports nothing from mitmproxy or websockets at import: `addon/rtproxy.py` (and
rtproxy_addon.py, installed) asks it first whether the mitmproxy that loads the addon can run it
(script_addons), so a user's own mitmproxy (pipx, Homebrew, the standalone
binaries) gets one line saying what is missing instead of an import traceback.
"""

from __future__ import annotations

import importlib
import re
import sys

# contentview.py uses the contentview API that mitmproxy 12.0.0 introduced (CHANGELOG 12.0.0, #7623:
# `mitmproxy.contentviews.Contentview`, `Metadata`, `prettify`); mitmproxy 11 has none of it.
MITMPROXY_NEEDED = (12, 0)
MITMPROXY_TESTED = 12  # the major version the suite runs; a newer one gets a warning, not a refusal
# The relay and the embedded local server are websockets 15 code (websockets.asyncio); pyproject.toml
# pins the same range for .venv.
WEBSOCKETS = "websockets>=15,<16"


def _major_minor(version: str) -> tuple[int, int] | None:
    m = re.match(r"(\d+)\.(\d+)", version)
    return (int(m[1]), int(m[2])) if m else None


def _python() -> str:
    return f"Python {sys.version.split()[0]} at {sys.executable}"


def mitmproxy_refused(version: str) -> str | None:
    """The line to log when this mitmproxy `version` cannot run rtproxy; None when it can."""
    found = _major_minor(version)
    if found is None or found >= MITMPROXY_NEEDED:  # a version we cannot read is given the benefit
        return None
    return (
        f"rtproxy needs mitmproxy {MITMPROXY_NEEDED[0]} ({MITMPROXY_NEEDED[0]}.{MITMPROXY_NEEDED[1]} or newer); this is mitmproxy {version} "
        f"({_python()}): upgrade it (pip install 'mitmproxy>={MITMPROXY_NEEDED[0]},<{MITMPROXY_TESTED + 1}', "
        "pipx upgrade mitmproxy, brew upgrade mitmproxy); rtproxy's addons are not loaded"
    )


def mitmproxy_untested(version: str) -> str | None:
    """The warning for a mitmproxy newer than the one rtproxy is tested with; None otherwise."""
    found = _major_minor(version)
    if found is None or found[0] <= MITMPROXY_TESTED:
        return None
    return f"rtproxy is tested with mitmproxy {MITMPROXY_TESTED}; this is mitmproxy {version}"


def websockets_missing(instead: str = "") -> str | None:
    """None when the websockets package imports (the relay and the embedded local server need it; the
    rest of rtproxy does not). Else the end of a sentence `X needs ...`: what is missing, then `instead`
    (another way out, if any), then how to add it to the mitmproxy that runs."""
    try:
        for module in ("websockets.asyncio.client", "websockets.asyncio.server"):
            importlib.import_module(module)
    except ImportError:
        pass
    else:
        return None
    if getattr(sys, "frozen", False):
        # mitmproxy's script loader says the same of any ImportError (addons/script.py, load_script).
        how = (
            "install mitmproxy from PyPI, as its standalone binaries carry their own Python and cannot "
            f"add packages (pipx install mitmproxy && pipx inject mitmproxy '{WEBSOCKETS}')"
        )
    else:
        how = (
            f"add it to the Python that runs mitmproxy: {sys.executable} -m pip install '{WEBSOCKETS}' "
            f"(pipx: pipx inject mitmproxy '{WEBSOCKETS}')"
        )
    return f"the Python package websockets ({WEBSOCKETS}), which this mitmproxy cannot import; " + (
        f"{instead}, or {how}" if instead else how
    )


def script_addons() -> list:
    """The `addons` of rtproxy as a mitmproxy script (addon/rtproxy.py in a checkout, rtproxy_addon.py
    installed): rtproxy's addons, or none when this mitmproxy cannot run them (one ERROR line: mitmdump
    exits 1 after startup, "Error logged during startup", no traceback); a newer major version than the
    one tested gets a warning. Called at each load of the script, so a reload gets new addons."""
    import logging

    from mitmproxy.version import VERSION

    logger = logging.getLogger("rtproxy")
    if refused := mitmproxy_refused(VERSION):
        logger.error(refused)
        return []
    if untested := mitmproxy_untested(VERSION):
        logger.warning(untested)
    from rtproxy_mitm.addons import rtproxy_addons

    return rtproxy_addons()
