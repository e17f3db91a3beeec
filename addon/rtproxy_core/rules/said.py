"""What the server said in words, and which finding each string belongs to.

Every string the server sends (an upgrade refusal's body, a join's error reason, a `system` error, a push's
error reply) is classified by one table, catalog.py (the real server's words, current and older), so a
string lands in exactly one finding. A gateway in front of Realtime (Kong) says some things in its own
words: `gateway_named`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

from .. import catalog
from ..redact import jwt_claims
from ..session import ERRORED, Channel, Session
from .model import Evidence


class Rejection(NamedTuple):
    """A failed upgrade: the client's answer, else the upstream's answer to the hop (relay)."""

    status: int
    text: str  # the body's {"error": ...}, else its start as text; "" for an empty body
    request: str  # which upgrade was answered so: "the upgrade" or "the hop's upstream upgrade"


def rejection(s: Session) -> Rejection | None:
    """The failed upgrade of this connection, if its upgrade (or the hop's upstream one) failed."""
    if s.status is not None and s.status != 101:
        return Rejection(s.status, s.rejection or "", "the upgrade")
    if s.upstream_status is not None and s.upstream_status != 101:
        return Rejection(s.upstream_status, s.upstream_rejection or "", "the hop's upstream upgrade")
    return None


def join_reasons(s: Session) -> Iterator[tuple[Channel, str]]:
    """The channels whose join the server refused in words, with its reason (not those that failed with
    their socket)."""
    for ch in s.channels.values():
        if ch.reason and ch.joined_at is None and ch.state == ERRORED and not ch.reason.startswith("socket"):
            yield ch, ch.reason


def system_errors(ch: Channel, extension: str) -> list[str]:
    """The error messages the server pushed on this channel for `extension` ("system", "postgres_changes")."""
    return [m.message for m in ch.system if m.status == "error" and m.extension == extension]


def named(text: str, where: catalog.Where | None = None) -> bool:
    """Does the catalog (or the string's "<Code>: " prefix) say what this string is?"""
    return catalog.lookup(text, where) is not None or catalog.by_error_code(text) is not None


def classify_reason(reason: str, where: catalog.Where | None = None) -> str:
    """Which finding a string the server sent belongs to (catalog.classify). A `system` error the
    catalog does not know is a channel-shutdown: the server stopped the channel and said why."""
    code = catalog.classify(reason, where).finding
    if where == catalog.SYSTEM and code == "join-error":
        return "channel-shutdown"
    return code


def said(s: Session) -> Iterator[tuple[str | None, catalog.Where, str, str]]:
    """Every error the server put into words on this connection, as (topic, where, text, evidence)."""
    rej = rejection(s)
    if rej and rej.text and named(rej.text, catalog.UPGRADE):
        yield (
            None,
            catalog.UPGRADE,
            rej.text,
            f'{rej.request} was answered {rej.status} {{"error": "{rej.text}"}}',
        )
    for ch, reason in join_reasons(s):
        yield ch.topic, catalog.JOIN, reason, f'phx_join answered status error: "{reason}"'
    for ch in s.channels.values():
        for msg in system_errors(ch, "system"):
            yield (
                ch.topic,
                catalog.SYSTEM,
                msg,
                f'server pushed system error "{msg}"'
                + (" then phx_close" if ch.closed_by == "server" else ""),
            )
        for event, reason in ch.push_errors:
            yield ch.topic, catalog.REPLY, reason, f'{event} answered status error: "{reason}"'


# During one rule pass (engine.evaluate: `one_pass`), what the connection's server said, each with its
# finding, is read once: ten rules ask reasons_of, and said() reads every channel (a join flood's 500).
_Said = list[tuple[str | None, catalog.Where, str, str, str]]
_pass: list[tuple[Session, _Said | None]] = []


@contextmanager
def one_pass(s: Session) -> Iterator[None]:
    """Within it, reasons_of(s, …) reads said(s) once; the session does not change meanwhile."""
    _pass.append((s, None))
    try:
        yield
    finally:
        _pass.pop()


def _said_classified(s: Session) -> _Said:
    if _pass and _pass[-1][0] is s:
        cached = _pass[-1][1]
        if cached is None:
            cached = [(t, w, text, ev, classify_reason(text, w)) for t, w, text, ev in said(s)]
            _pass[-1] = (s, cached)
        return cached
    return [(t, w, text, ev, classify_reason(text, w)) for t, w, text, ev in said(s)]


def reasons_of(s: Session, code: str) -> Evidence:
    """Evidence for a finding, wherever the server said it: handshake body, join reply, system, reply."""
    for topic, where, text, evidence, finding in _said_classified(s):
        if finding == code:
            yield topic, evidence + _detail(s, where, text)


def _detail(s: Session, where: catalog.Where, text: str) -> str:
    """What the wire adds to a string that does not say everything."""
    entry = catalog.lookup(text, where)
    if entry is not None and entry.key == "upgrade.error" and s.apikey:
        claims = jwt_claims(s.apikey) or {}
        odd = [
            k
            for k in ("exp", "iat")
            if k in claims
            and (
                not isinstance(claims[k], (int, float))
                or isinstance(claims[k], bool)
                or k == "exp"
                and isinstance(claims[k], float)
                and (s.opened_at or 0) >= claims[k]
            )
        ]
        if odd:
            return f": the apikey's {' and '.join(odd)} is not a whole number, which Realtime cannot validate"
        return (
            ": Realtime had no message for what went wrong (a token whose exp or iat is not a number, "
            "claims that are not a JSON object, or an internal error: its log says which)"
        )
    if entry is not None and entry.until:
        return f" (the form Realtime sent until {entry.until})"
    return ""


# What gateways in front of Realtime answer in their own words (Kong's key-auth plugin).
_GATEWAY_BODIES = {
    "no api key found in request": "apikey-missing",
    "invalid authentication credentials": "token-invalid",
}


def gateway_named(text: str) -> str | None:
    """The finding a gateway's own words in a refusal's body name, if they name one."""
    t = text.lower()
    return next((code for k, code in _GATEWAY_BODIES.items() if k in t), None)
