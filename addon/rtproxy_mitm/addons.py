"""rtproxy's addons, in the order they must run: one list for `mitmdump -s addon/rtproxy.py`, mitmweb and the
`rtproxy` command (rtproxy_tools/launcher.py). Imported only once the mitmproxy version is known to be
right: contentview.py needs mitmproxy 12's API."""

from __future__ import annotations

from .commands import LiveCommands
from .contentview import RealtimeView
from .faults import Faults
from .legs import Legs
from .lost import LostConnections
from .marks import Marks
from .optionerror import check_deferred, mark_running
from .quiet import Quiet
from .sanitize import Sanitize
from .tracker import Tracker
from .trim import Trim
from .worker import Worker


class Running:
    """Last in the list. At load, every rt_ option is declared: check the command-line values mitmproxy
    could not parse. At running, startup is over: option errors are logged before it, raised (and rolled
    back) after."""

    def load(self, loader) -> None:
        check_deferred()

    def running(self) -> None:
        mark_running()


def rtproxy_addons() -> list:
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
        Running(),
    ]
