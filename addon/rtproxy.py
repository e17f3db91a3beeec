"""rtproxy: mitmproxy addon that stands in for the proxy between a web page and Supabase Realtime.

    mitmdump -s addon/rtproxy.py --mode reverse:http://worker.localhost@8080

Reroutes WebSocket upgrades aimed at the Worker host onto the Supabase Realtime URL (rt_mode), decodes
every Realtime frame and tracks every channel in the log. `mitmdump -s addon/rtproxy.py --options`
lists the rt_* options. The code lives in rtproxy_core (sans-I/O) and rtproxy_mitm (hooks).
"""

from rtproxy_mitm.contentview import RealtimeView
from rtproxy_mitm.faults import Faults
from rtproxy_mitm.optionerror import check_deferred, mark_running
from rtproxy_mitm.quiet import Quiet
from rtproxy_mitm.tracker import Tracker
from rtproxy_mitm.trim import Trim
from rtproxy_mitm.worker import Worker


class _Running:
    """Last in the list. At load, every rt_ option is declared: check the command-line values mitmproxy
    could not parse. At running, startup is over: option errors are logged before it, raised (and rolled
    back) after."""

    def load(self, loader) -> None:
        check_deferred()

    def running(self) -> None:
        mark_running()


tracker = Tracker()
# Order matters: the Worker reroutes and faults act before the tracker records what happened.
addons = [
    Worker(report=tracker.report_event),
    Faults(report=tracker.report_event),
    tracker,
    Trim(),  # after the tracker, which reads the newest message
    Quiet(),
    RealtimeView(),
    _Running(),
]
