"""Rules for one channel: its join refused or unanswered, its bindings, a server that stopped it, and a
client that joined twice or left at once.
"""

from __future__ import annotations

from typing import Any

from .. import catalog
from ..session import CLOSED, ERRORED, JOINING, LEAVING, Channel, Session
from .model import HOP_LOST_FRAMES, Check, Confidence, Ev, Evidence, Severity, rule
from .said import reasons_of, system_errors


@rule(
    "join-unauthorized",
    Severity.ERROR,
    "CHANNEL_ERROR",
    "Private channel or RLS denied the join: add a SELECT policy on realtime.messages for the role, call "
    "setAuth with the user's JWT before subscribe, and set config.private to match the project.",
)
def _join_unauthorized(s: Session, c: Check) -> Evidence:
    yield from reasons_of(s, "join-unauthorized")


@rule(
    "join-error",
    Severity.ERROR,
    "CHANNEL_ERROR",
    "The server refused the join with the quoted reason; fix what it names (the topic, replay "
    'parameters, a push to a channel that is not joined: "unmatched topic").',
    follows=("token-expired",),
)
def _join_error(s: Session, c: Check) -> Evidence:
    yield from reasons_of(s, "join-error")


_BINDING_KEYS = {
    "event",
    "schema",
    "table",
    "filter",
    "select",
}  # payloads/postgres_change.ex, subscriptions.ex


@rule(
    "binding-mismatch",
    Severity.ERROR,
    "CHANNEL_ERROR (mismatch between server and client bindings); realtime-py: CHANNEL_ERROR, or TIMED_OUT "
    "when its reply model cannot read the server's bindings (the `events` key of Realtime before 2022)",
    "Realtime echoes the join's postgres_changes list in its reply, so the lists differ when the client's "
    "bindings changed between join and reply (an .on('postgres_changes') registered after subscribe()) "
    "or a hop rewrote the join payload: register every listener before subscribe(). A binding with keys "
    "Realtime does not read (`events`) or null values is a client bug: upgrade the client.",
)
def _binding_mismatch(s: Session, c: Check) -> Evidence:
    keys = ("event", "schema", "table", "filter")
    for ch in s.channels.values():
        for i, b in enumerate(ch.bindings):
            unknown = sorted(k for k in b if k not in _BINDING_KEYS)
            nulls = sorted(k for k in ("schema", "table", "filter") if k in b and not isinstance(b[k], str))
            if unknown or nulls:
                what = "; ".join(
                    filter(
                        None,
                        [
                            f"keys Realtime does not read: {', '.join(unknown)}" if unknown else "",
                            f"{', '.join(nulls)} not a string" if nulls else "",
                        ],
                    )
                )
                hint = (
                    " (realtime-py before supabase-py PR #1339 sent `events`; its reply model then rejects "
                    "the echoed binding, so the join looks unanswered to it)"
                    if "events" in unknown
                    else ""
                )
                yield ch.topic, f"binding {i} of {ch.label} is {_pick(b, tuple(b))}: {what}{hint}"
                break
        else:
            continue
        break
    for ch in s.channels.values():
        if ch.joined_at is None or not ch.bindings:
            continue
        server = ch.server_bindings
        for i, want in enumerate(ch.bindings):
            got = server[i] if i < len(server) else None
            if got is None or any((want.get(k) or None) != (got.get(k) or None) for k in keys):
                yield (
                    ch.topic,
                    (
                        f"binding {i} requested {_pick(want, keys)}, server answered "
                        f"{_pick(got, keys) if got else 'nothing'}"
                    ),
                )
                break


def _pick(d: dict[str, Any], keys: tuple[str, ...]) -> str:
    return "{" + ", ".join(f"{k}: {d[k]}" for k in keys if d.get(k)) + "}"


@rule(
    "postgres-changes-error",
    Severity.ERROR,
    "SUBSCRIBED, but database changes do not arrive; realtime-py: CHANNEL_ERROR when the error comes in a "
    "`system` message (its channel's on_error), else SUBSCRIBED",
    "A parameter error is final: fix the schema/table/filter names, add the table to the supabase_realtime "
    "publication, and resubscribe. A database error is retried by the server every 5-10 s: check the "
    "database's health and connections.",
)
def _postgres_changes_error(s: Session, c: Check) -> Evidence:
    for ch in s.channels.values():
        if ch.change_errors:
            kind, errors = ch.change_errors[-1]
            some = (
                f"{ch.change_error_count} database changes"
                if ch.change_error_count > 1
                else "a database change"
            )
            yield (
                ch.topic,
                f"{some} arrived without their record, with errors: a {kind} with "
                + ", ".join(f'"{e}"' for e in errors)
                + _change_error_meaning(errors),
            )
        last_error = None
        for m in ch.system:
            if m.extension != "postgres_changes":
                continue
            if m.status == "error":
                last_error = m
            elif m.status == "ok":
                last_error = None  # the server's retry succeeded later: recovered
        if last_error is None:
            continue
        entry = catalog.lookup(last_error.message, catalog.POSTGRES)
        final = entry is not None and entry.cls == catalog.REQUEST
        how = "not retried: the parameters are wrong" if final else "the server retries it every 5-10 s"
        yield ch.topic, f'system postgres_changes error: "{last_error.message[:300]}" ({how})'


def _change_error_meaning(errors: tuple[str, ...]) -> str:
    """What the catalog says the first error it knows means (realtime.apply_rls's reasons)."""
    for e in errors:
        entry = catalog.lookup(e, catalog.CHANGE)
        if entry is not None:
            return f" ({entry.means})"
    return ""


@rule(
    "channel-shutdown",
    Severity.ERROR,
    "CLOSED (the channel is not rejoined)",
    "The server stopped the channel for the reason in its system message; fix that cause, then "
    "resubscribe (realtime-js does not rejoin after phx_close).",
    follows=("token-expired", "token-invalid", "database-unavailable", "rate-limited", "message-too-large"),
)
def _channel_shutdown(s: Session, c: Check) -> Evidence:
    # The stop is the server's phx_close after a system error, whatever the error's words: a reason the
    # catalog names (an expired token, a rate limit) is the cause this follows, and the channel is still
    # closed for good: the phx_close ends it and the clients do not rejoin after one.
    for ch in s.channels.values():
        errors = system_errors(ch, "system")
        if ch.state == CLOSED and ch.closed_by == "server" and errors:
            yield ch.topic, f'system error "{errors[-1]}", then phx_close'


JOIN_FOLLOWS = (
    "join-dropped-by-proxy",
    "vsn-missing",
    "serializer-mismatch",
    "early-101",
    "upstream-unreachable",
    "proxy-idle-timeout",
    "binary-as-text",
    "binding-mismatch",
    "server-idle-close",
    *HOP_LOST_FRAMES,
)


@rule(
    "join-timeout",
    Severity.ERROR,
    "TIMED_OUT",
    "No reply to phx_join in time: check that the hop forwards early frames, that vsn matches, and slow "
    "RLS policies; the client leaves and rejoins after a backoff.",
    Confidence.LIKELY,
    follows=JOIN_FOLLOWS,  # server-idle-close: a join sent on a socket the server closed is answered by no one
)
def _join_timeout(s: Session, c: Check) -> Evidence:
    for ch in s.channels.values():
        if ch.join_sent_at is None:
            continue
        if ch.gave_up:
            # The client's own behaviour says it timed out: it left, or joined again, while this join was
            # unanswered. Near its timeout (or followed by a rejoin, the retry) that is certain or likely; a
            # leave a second or two into a slow join, never retried, is the app going elsewhere.
            did = "left" if ch.left_at is not None else "joined again"
            retried = _next_join(s, ch) is not None
            waited = (ch.left_at or _next_join(s, ch) or c.now) - ch.join_sent_at
            reply = f"; the reply came after {ch.join_latency_ms:.0f} ms" if ch.join_latency_ms else ""
            if waited >= 0.9 * c.timers.join:
                sure = Confidence.CERTAIN
            elif retried:
                sure = Confidence.LIKELY
            else:
                continue
            yield Ev(
                ch.topic,
                f"no phx_reply to phx_join for {ch.label}: the client {did} after {waited:.1f} s, "
                f"so it had given up on it{reply}",
                sure,
                began=ch.join_sent_at,
            )
            continue
        late = ch.join_latency_ms is not None and ch.join_latency_ms >= c.timers.join * 1000
        if late:
            yield (
                ch.topic,
                (
                    f"the phx_reply to phx_join for {ch.label} came after {ch.join_latency_ms:.0f} ms, "
                    f"past the {c.timers.join:g} s join timeout: the client had already given up"
                ),
            )
            continue
        if ch.joined_at is not None or ch.reason:
            continue
        if ch.state not in (JOINING, LEAVING, ERRORED):
            continue
        waited = c.now - ch.join_sent_at
        end = s.ended_at if s.ended_at is not None else c.now
        if ch.state == LEAVING and ch.left_at is not None:
            continue  # left right after joining (left-after-join); leaving later than that is gave_up
        if waited >= c.timers.join or (c.final and end - ch.join_sent_at >= c.timers.join):
            yield ch.topic, f"no phx_reply to phx_join for {ch.label} within {c.timers.join:g} s"


def _next_join(s: Session, ch: Channel) -> float | None:
    later = [o.join_sent_at for o in s.instances(ch.topic) if o.seq > ch.seq and o.join_sent_at is not None]
    return min(later) if later else None


@rule(
    "join-unanswered",
    Severity.WARNING,
    "TIMED_OUT, unless the reply came after the capture ended",
    "The capture ended while the join waited for its reply, before the client's join timeout (10 s by "
    "default): record until the channel's outcome (longer than that timeout). A join never answered times "
    "out: check that the hop forwards early frames, that vsn matches, and slow RLS policies (join-timeout).",
    Confidence.LIKELY,
    follows=JOIN_FOLLOWS,
)
def _join_unanswered(s: Session, c: Check) -> Evidence:
    # The end of a capture that records no close (a HAR), or of the run with the socket still open: a join
    # still waiting then is a fact, its outcome is not. Waiting as long as the client's timeout, or past
    # it, is join-timeout's.
    cl = s.closed
    if not c.final or cl is not None and cl.recorded:
        return
    end = cl.time if cl is not None else c.now
    what = "capture" if cl is not None else "run"
    for ch in s.channels.values():
        if ch.state != JOINING or ch.join_sent_at is None or ch.joined_at is not None or ch.reason:
            continue
        waited = end - ch.join_sent_at
        if ch.gave_up or waited >= c.timers.join:
            continue
        yield Ev(
            ch.topic,
            f"no phx_reply to phx_join for {ch.label} when the {what} ended, {waited:.1f} s after it was sent, "
            f"before the client's {c.timers.join:g} s join timeout: whether it was answered later is not "
            "recorded",
            began=ch.join_sent_at,
        )


@rule(
    "duplicate-join",
    Severity.WARNING,
    "CLOSED right after subscribing, or double events",
    "Subscribe once per topic: reuse the channel object, and remove it in the effect cleanup "
    "(React StrictMode runs effects twice).",
    follows=("binding-mismatch", "hop-frames-dropped"),  # a join sent again after a dropped one
)
def _duplicate_join(s: Session, c: Check) -> Evidence:
    for ch in s.channels.values():
        if ch.duplicate_joins:
            v1_no_ref = s.vsn == "1.0.0" and not ch.sent_join_ref
            closes = (
                " Its phx_close carries no ref for a client that sends no join_ref, so clients of that "
                "kind (realtime-js 1.x, Dart, kt) close the new channel with it."
                if v1_no_ref
                else ""
            )
            yield (
                ch.topic,
                (
                    f"{ch.duplicate_joins + 1} joins of {ch.topic} in quick succession (a second join, or "
                    f"a leave and a join again, while the first was still live); the server closes the "
                    f"older one.{closes}"
                ),
            )


LEFT_AFTER_JOIN_S = 2.0  # a leave this soon after the join reply is the client's code, not its user


@rule(
    "left-after-join",
    Severity.WARNING,
    'SUBSCRIBED, then CLOSED at once (or CHANNEL_ERROR "mismatch between server and client bindings")',
    "The client left the channel right after joining it: register every .on() listener before subscribe() "
    '(realtime-js leaves, reporting "mismatch between server and client bindings", when a postgres_changes '
    "listener came after it), and check effect cleanups that unsubscribe on re-render.",
    follows=("binding-mismatch", "duplicate-join"),
)
def _left_after_join(s: Session, c: Check) -> Evidence:
    for ch in s.channels.values():
        since = ch.joined_at if ch.joined_at is not None else ch.join_sent_at
        # Leaving for good right after joining; a leave followed by a join again is the app re-subscribing.
        # Said once a join again has had its chance to come: StrictMode re-subscribes in the same tick.
        if (
            since is not None
            and ch.left_at is not None
            and 0 <= ch.left_at - since <= LEFT_AFTER_JOIN_S
            and not ch.gave_up
            and _next_join(s, ch) is None
            and (c.final or c.now - ch.left_at >= LEFT_AFTER_JOIN_S)
        ):
            what = "it was joined" if ch.joined_at is not None else "joining it, before the reply"
            more = (
                " realtime-js does this when its postgres_changes bindings differ from the server's reply "
                "(a listener added after subscribe())"
                if ch.bindings or ch.server_bindings
                else ""
            )
            yield ch.topic, f"the client left {ch.label} {ch.left_at - since:.2f} s after {what}.{more}"
