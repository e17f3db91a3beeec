"""What rtproxy itself did to a connection when a command asked it to (rt.inject.*, rt.close, rt.expire):
its own finding, and the note the other findings get after it.
"""

from __future__ import annotations

from ..events import HopKind
from ..session import Session
from .model import Check, Evidence, Severity, rule


@rule(
    "rtproxy-command",
    Severity.INFO,
    "what rtproxy did to the connection on request (rt.inject.server, rt.inject.client, rt.close, rt.expire)",
    "Nothing to fix: rtproxy did this because a command asked it to; the findings beside it are what the "
    "client made of it, as it would of the real failure.",
)
def _rtproxy_command(s: Session, c: Check) -> Evidence:
    done = [h for h in s.hops if h.what == HopKind.COMMAND]
    if done:
        first = ", ".join(dict.fromkeys(h.detail for h in done[:3]))
        more = f" and {len(done) - 3} more" if len(done) > 3 else ""
        yield None, f"{first}{more}"


def after_commands(s: Session, now: float) -> str:
    """The note a finding gets when rtproxy's own commands acted on the connection before it."""
    names = list(
        dict.fromkeys(
            h.detail.split(":", 1)[0] for h in s.hops if h.what == HopKind.COMMAND and h.time <= now
        )
    )
    return f" (after rtproxy's {', '.join(names)} on this connection)" if names else ""
