"""rtprobe: check a relay in front of Supabase Realtime from the client side (the command's help: cli.py).

- checks.py: the checks (name, what each verifies, the finding its failure is evidence of), ProbeResult;
- run.py: `Probe`, one run against one socket: it records each check's outcome and opens sockets;
- session.py: a, b, d on the socket a client opens, then socket_checks.py's e, f, g on the same socket;
- handshake.py: c and h, on a socket each;
- wire.py: opening a socket, the frames the probe sends, the reader that collects what comes back;
- output.py: the checklist, its JSON, every printed line through `Scrubber`; cli.py: `main`.

The socket a URL leads to is rtproxy_core.urls.resolve's, as for rtclient and rtreplay --client.
"""

from .checks import (
    BY_NAME,
    CHECKS,
    CLOSE_CODE,
    CLOSE_REASON,
    FAIL,
    INVALID_KEY,
    PASS,
    SKIP,
    ProbeCheck,
    ProbeResult,
    refusal_code,
)
from .cli import default_key, main
from .output import Scrubber, checks_help, readme_table, render_json, render_text
from .run import Probe
from .wire import Unreachable

__all__ = [
    "BY_NAME",
    "CHECKS",
    "CLOSE_CODE",
    "CLOSE_REASON",
    "FAIL",
    "INVALID_KEY",
    "PASS",
    "SKIP",
    "Probe",
    "ProbeCheck",
    "ProbeResult",
    "Scrubber",
    "Unreachable",
    "checks_help",
    "default_key",
    "main",
    "readme_table",
    "refusal_code",
    "render_json",
    "render_text",
]
