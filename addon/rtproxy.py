"""rtproxy: mitmproxy addon that stands in for the proxy between a web page and Supabase Realtime.

    mitmdump -s addon/rtproxy.py --mode reverse:http://worker.localhost@8080

Reroutes WebSocket upgrades aimed at the Worker host onto the Supabase Realtime URL (rt_mode), decodes
every Realtime frame and tracks every channel in the log. `mitmdump -s addon/rtproxy.py --options`
lists the rt_* options. The code lives in rtproxy_core (sans-I/O) and rtproxy_mitm (hooks).
"""

import logging
import os
import sys

# Import rtproxy's packages from this checkout, so any mitmproxy runs the addon without installing them
# (pipx, Homebrew, a venv of its own). mitmproxy's script loader puts this directory on sys.path only
# while the script loads (addons/script.py, load_script); the relay and the embedded server import later.
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from mitmproxy.version import VERSION
from rtproxy_mitm import mitmproxy_refused, mitmproxy_untested

logger = logging.getLogger("rtproxy")


def _addons() -> list:
    from rtproxy_mitm.addons import rtproxy_addons

    return rtproxy_addons()


if refused := mitmproxy_refused(VERSION):
    # One ERROR line: mitmdump exits 1 after startup ("Error logged during startup"), no traceback.
    logger.error(refused)
    addons: list = []
else:
    if untested := mitmproxy_untested(VERSION):
        logger.warning(untested)
    addons = _addons()
