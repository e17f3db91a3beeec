"""The probe's checks: each one's name, what it verifies and the finding its failure is evidence of, and
what a run found for it (`ProbeResult`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rtproxy_core import catalog, rules

INVALID_KEY = "not-a-jwt"
# A private-use code every hop can pass on (closecodes: sendable through mitmproxy, accepted by a Worker's
# close() and by websockets), so an answer with another code is the relay's doing.
CLOSE_CODE, CLOSE_REASON = 4000, "probe"
PASS, FAIL, SKIP = "pass", "fail", "skip"


@dataclass(frozen=True, slots=True)
class ProbeCheck:
    """One check of the probe: its name, what it verifies, and the finding (a code of rules.RULES_BY_CODE) its
    failure is evidence of. The fix printed for a failure is that finding's fix, so rtprobe, rtdiagnose
    and the addon share one list of causes and fixes. A failure whose evidence names another finding
    carries that one instead (ProbeResult.code)."""

    name: str
    code: str
    verifies: str


CHECKS = (
    ProbeCheck(
        "a-query",
        "apikey-missing",
        "the query string reaches the server: with the apikey the upgrade gets 101 and the socket's first "
        "frame is answered",
    ),
    ProbeCheck(
        "b-vsn",
        "vsn-missing",
        "vsn reaches the server: a 2.0.0 array `phx_join` gets a 2.0.0 `phx_reply`",
    ),
    ProbeCheck(
        "c-upstream-status",
        "early-101",
        "the relay does not answer 101 before the server: an invalid apikey gets the server's 401 JSON "
        "body, not a 101",
    ),
    ProbeCheck(
        "d-early-frames",
        "join-dropped-by-proxy",
        "a `phx_join` sent right after open is answered (no frames dropped while the relay connects)",
    ),
    ProbeCheck("e-heartbeat", "heartbeat-timeout", "heartbeats are answered"),
    ProbeCheck(
        "f-binary",
        "binary-as-text",
        "binary frames stay binary: a kind-3 broadcast on a `broadcast.self` channel comes back as a "
        'binary kind-4 frame (not text, not "[object Blob]")',
    ),
    # close-not-forwarded: a relay that does not pass the close on (no close listener). reserved-close-code
    # (a Worker's close() throwing on 1005/1006) cannot come from the probe's 4000, which every hop accepts.
    ProbeCheck(
        "g-close",
        "close-not-forwarded",
        f"a client close completes with its code and reaches the server: close {CLOSE_CODE} {CLOSE_REASON!r} "
        f"is answered with {CLOSE_CODE}, and a second socket on the channel sees the first one's presence "
        "leave (a relay that never forwards the close keeps the server's socket open)",
    ),
    # upgrade-rejected: a browser fails the handshake of a 101 that selects a subprotocol it did not offer,
    # and offering one must not turn the upgrade into a refusal.
    ProbeCheck(
        "h-subprotocol",
        "upgrade-rejected",
        "offering `Sec-WebSocket-Protocol: phoenix` still upgrades, and the 101 selects none (as Realtime)",
    ),
)
BY_NAME = {c.name: c for c in CHECKS}


@dataclass(slots=True)
class ProbeResult:
    """What one check found."""

    check: ProbeCheck
    status: str = SKIP
    detail: str = ""
    code: str = ""  # the finding: check.code, or the one a failure's evidence names instead

    def __post_init__(self) -> None:
        self.code = self.code or self.check.code

    @property
    def name(self) -> str:
        return self.check.name

    @property
    def ok(self) -> bool | None:
        return None if self.status == SKIP else self.status == PASS

    @property
    def fix(self) -> str:
        return rules.RULES_BY_CODE[self.code].fix if self.status == FAIL else ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "code": self.code,
            "ok": self.ok,
            "status": self.status,
            "detail": self.detail,
            "fix": self.fix,
        }


def refusal_code(error: str | None) -> str:
    """The finding for a refused upgrade: the one catalog.py names for Realtime's {"error": …}, else
    upgrade-rejected (the answer was not an upgrade)."""
    said = catalog.lookup(error, catalog.UPGRADE) if error else None
    return said.finding if said is not None and said.finding else "upgrade-rejected"
