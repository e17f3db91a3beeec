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
from rtproxy_mitm.optionerror import check_deferred, mark_running

logger = logging.getLogger("rtproxy")


class _Running:
    """Last in the list. At load, every rt_ option is declared: check the command-line values mitmproxy
    could not parse. At running, startup is over: option errors are logged before it, raised (and rolled
    back) after."""

    def load(self, loader) -> None:
        check_deferred()

    def running(self) -> None:
        mark_running()


def _addons() -> list:
    # Imported only once the version is known to be right: contentview.py needs mitmproxy 12's API.
    from rtproxy_mitm.commands import LiveCommands
    from rtproxy_mitm.contentview import RealtimeView
    from rtproxy_mitm.faults import Faults
    from rtproxy_mitm.legs import Legs
    from rtproxy_mitm.lost import LostConnections
    from rtproxy_mitm.marks import Marks
    from rtproxy_mitm.quiet import Quiet
    from rtproxy_mitm.sanitize import Sanitize
    from rtproxy_mitm.tracker import Tracker
    from rtproxy_mitm.trim import Trim
    from rtproxy_mitm.worker import Worker

    tracker = Tracker()
    # Order matters: the Worker reroutes and faults act before the tracker records what happened.
    return [
        Worker(report=tracker.report_event),
        Faults(report=tracker.report_event),
        Legs(tracker),  # rt_legs: after faults, before the tracker (its sessions, its done)
        tracker,
        Trim(),  # after the tracker, which reads the newest message
        Sanitize(),  # after the tracker and faults: stores a copy of what they saw and forwarded
        Quiet(),
        RealtimeView(),
        LiveCommands(tracker),
        Marks(),
        LostConnections(),
        _Running(),
    ]


if refused := mitmproxy_refused(VERSION):
    # One ERROR line: mitmdump exits 1 after startup ("Error logged during startup"), no traceback.
    logger.error(refused)
    addons: list = []
else:
    if untested := mitmproxy_untested(VERSION):
        logger.warning(untested)
    addons = _addons()
