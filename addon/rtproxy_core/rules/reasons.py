"""Rules for the causes Realtime names in words (tenant, token, quota, restart, database), wherever it
said them: the upgrade's body, a join's reply, a `system` message, a push's reply (said.py). A token's
expiry is also read off the JWT itself, compared with the time of the frame that carried it.
"""

from __future__ import annotations

from .. import catalog
from ..session import CLOSED, ERRORED, JOINED, Session
from .model import Check, Confidence, Ev, Evidence, Severity, ago, rule
from .said import classify_reason, gateway_named, reasons_of, rejection, system_errors


@rule(
    "tenant-not-found",
    Severity.ERROR,
    'CHANNEL_ERROR ("channel error: transport failure": the upgrade was refused, the socket never opened); realtime-py: connect() raises InvalidStatus, no channel is told',
    "Realtime takes the tenant from the first label of the Host header: forward a Host of "
    "<ref>.supabase.co (or your tenant's name when self-hosting), not the Worker's or a service name.",
)
def _tenant_not_found(s: Session, c: Check) -> Evidence:
    yield from reasons_of(s, "tenant-not-found")


@rule(
    "token-expired",
    Severity.ERROR,
    "CHANNEL_ERROR, or CLOSED when a running channel's token expires; realtime-py: CHANNEL_ERROR, a running "
    "channel's too (the system message's error), or connect() raises when the upgrade is refused",
    "Refresh the session before (re)connecting and call setAuth with the fresh JWT; a stale token after "
    "sleep or offline is the usual cause.",
)
def _token_expired(s: Session, c: Check) -> Evidence:
    yield from reasons_of(s, "token-expired")
    # The JWT says when it expired: compared with the time of the frame that carried it.
    rej = rejection(s)
    if (
        rej
        and s.apikey_expired_s is not None
        and not (rej.text and catalog.classify(rej.text).finding == "token-expired")
    ):
        yield (
            None,
            (
                f"the upgrade's apikey JWT had expired {ago(s.apikey_expired_s)} before it was sent "
                f"(the server answered {rej.status} {rej.text or '(empty body)'})"
            ),
        )
    for ch in s.channels.values():
        if ch.token_expired_s is not None and ch.joined_at is None:
            reason = f' (the server answered "{ch.reason}")' if ch.reason else ""
            if not (ch.reason and catalog.classify(ch.reason, catalog.JOIN).finding == "token-expired"):
                yield (
                    ch.topic,
                    (
                        f"{ch.label} was joined with a JWT that had expired {ago(ch.token_expired_s)} "
                        f"before{reason}"
                    ),
                )
        elif ch.token_exp is not None and ch.joined_at is not None and ch.joined_at < ch.token_exp:
            # The channel ended (stopped by the server, or still joined when its socket ended) after exp.
            if ch.state == CLOSED and ch.closed_by == "server" or ch.state == ERRORED:
                end = ch.closed_at or s.ended_at or c.now
            elif ch.state == JOINED and s.closed is not None:
                end = s.closed.time
            else:
                end = None  # left by the client, or still running
            expired_errors = [
                m
                for m in system_errors(ch, "system")
                if classify_reason(m, catalog.SYSTEM) == "token-expired"
            ]
            if end is not None and end > ch.token_exp and not expired_errors:
                yield Ev(
                    ch.topic,
                    f"the token {ch.label} runs with expired {ago(end - ch.token_exp)} before the "
                    "channel ended; Realtime re-checks it at exp (at most every 5 min) and stops the "
                    "channel then",
                    Confidence.LIKELY,
                )
        if ch.pushed_expired_s is not None:
            yield (
                ch.topic,
                (
                    f"an access_token pushed on {ch.label} had expired {ago(ch.pushed_expired_s)} before: "
                    "the server stops the channel when it checks it"
                ),
            )


@rule(
    "token-invalid",
    Severity.ERROR,
    "CHANNEL_ERROR; realtime-py: CHANNEL_ERROR, or connect() raises when the upgrade is refused",
    "Send a JWT signed with the project's JWT secret/JWKS that carries `role` and `exp` (whole numbers for "
    "`exp` and `iat`); third-party auth needs its JWKS reachable by Realtime. After setAuth with a bad "
    "token the server stops the channel with the error in a system message.",
    follows=("token-expired",),
)
def _token_invalid(s: Session, c: Check) -> Evidence:
    yield from reasons_of(s, "token-invalid")
    rej = rejection(s)
    if rej and gateway_named(rej.text) == "token-invalid":
        yield (
            None,
            (
                f"{rej.request} was answered {rej.status} {rej.text[:100]!r} by the gateway in front of "
                "Realtime (Kong's key-auth): the apikey is not one of the project's keys"
            ),
        )


@rule(
    "rate-limited",
    Severity.ERROR,
    "CHANNEL_ERROR or CLOSED, reconnect storms; realtime-py: CHANNEL_ERROR or CLOSED, or connect() raises "
    "when the upgrade is refused (429)",
    "Stay under the project's Realtime quotas (connections, joins/s, channels per connection, messages/s); "
    "look for subscribe loops (useEffect without cleanup) and remove unused channels.",
)
def _rate_limited(s: Session, c: Check) -> Evidence:
    yield from reasons_of(s, "rate-limited")


@rule(
    "realtime-disabled",
    Severity.ERROR,
    'CHANNEL_ERROR ("channel error: transport failure": the upgrade was refused, the socket never opened); realtime-py: connect() raises InvalidStatus, no channel is told',
    "Realtime is disabled or the project is suspended: enable Realtime / resolve the suspension in the "
    "Supabase dashboard.",
)
def _realtime_disabled(s: Session, c: Check) -> Evidence:
    yield from reasons_of(s, "realtime-disabled")


@rule(
    "server-restarting",
    Severity.WARNING,
    "CHANNEL_ERROR, then the client rejoins",
    "Transient: Realtime is restarting or still connecting to the project; nothing to fix in the client. "
    "Let it retry with backoff (realtime-js and realtime-py rejoin on their own) and do not recreate "
    "channels in a loop.",
)
def _server_restarting(s: Session, c: Check) -> Evidence:
    yield from reasons_of(s, "server-restarting")


@rule(
    "database-unavailable",
    Severity.ERROR,
    "CHANNEL_ERROR at join, or CLOSED on a running channel",
    "The project's database side failed Realtime: check the database's health and connection count in the "
    "dashboard, raise the Realtime connection pool (database settings) or free connections, and for a "
    "private channel check the realtime.messages partitions and RLS policy speed. Retry with backoff.",
)
def _database_unavailable(s: Session, c: Check) -> Evidence:
    yield from reasons_of(s, "database-unavailable")
