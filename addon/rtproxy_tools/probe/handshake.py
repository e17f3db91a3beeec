"""Checks c and h, each on a socket of its own: how the relay answers an upgrade with an invalid apikey,
and one that offers a subprotocol."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from rtproxy_core import frames
from rtproxy_core.session import realtime_error
from websockets.exceptions import InvalidHandshake, InvalidStatus
from websockets.http11 import Response
from websockets.typing import Subprotocol

from .checks import FAIL, INVALID_KEY, PASS, SKIP, refusal_code
from .wire import (
    NOT_REALTIME,
    THREW,
    ProbeSocket,
    Unreachable,
    body_text,
    describe_close,
    heartbeat,
    is_reply,
    not_realtime,
    reply_status,
    worker_threw,
)

if TYPE_CHECKING:
    from .run import Probe


async def check_upstream_status(probe: Probe) -> None:
    """c: an invalid apikey must get the server's own refusal (Realtime's 401 JSON), not the relay's 101.
    Only a 101 followed by a close or by silence is evidence of an early 101: a socket that works with an
    invalid key means the relay puts its own apikey in the upstream request."""
    name = "c-upstream-status"
    try:
        ws = await probe.open(INVALID_KEY)
    except InvalidStatus as e:
        r = e.response
        err = realtime_error(r.body)
        if err is not None:
            probe.set(
                name,
                PASS,
                f"an invalid apikey got the server's {r.status_code} {json.dumps({'error': err})}",
            )
        elif alike := refused_alike(probe, r):  # every upgrade gets this answer: a-query names it
            probe.set(name, SKIP, f"not checked: {alike}")
        elif threw := worker_threw(r):  # before not_realtime: the 1101 page is HTML
            probe.set(name, FAIL, f"an invalid apikey got {threw}: {THREW}", code="worker-exception")
        elif page := not_realtime(r):  # no refusal at all: nothing says a relay or a server answered
            probe.set(name, FAIL, f"an invalid apikey got no refusal: {page}", code="upgrade-rejected")
        else:  # the relay answered in its own words, after the server refused (no 101 came first)
            probe.set(
                name,
                FAIL,
                f"an invalid apikey got {r.status_code} {body_text(r.body)}, not Realtime's JSON "
                '{"error": ...}: the relay replaced the server\'s answer',
                code="refusal-replaced",
            )
        return
    except InvalidHandshake as e:
        probe.set(name, FAIL, f"broken handshake with an invalid apikey: {e}", code="upgrade-rejected")
        return
    except Unreachable as e:  # the first socket reached it: no rule names a relay that then stops
        probe.set(
            name, FAIL, f"the connection with an invalid apikey failed: {e}", code="unexplained-failure"
        )
        return
    s = ProbeSocket(ws, probe.timeout)
    s.start()
    ref = s.ref()
    await s.send(heartbeat(ref))  # what a client does next
    answer = await s.expect(is_reply(ref, frames.PHOENIX))
    dropped = ""
    if answer is None and not s.closed:  # dropped while the relay's upstream leg connected? Ask again
        ref = s.ref()
        await s.send(heartbeat(ref))
        answer = await s.expect(is_reply(ref, frames.PHOENIX))
        dropped = " (its first heartbeat, sent right after open, was not: see d-early-frames)"
    if answer is not None:  # the server answered: it accepted the upgrade, so the key it got was valid
        probe.set(
            name,
            SKIP,
            f"not checked: an invalid apikey ({INVALID_KEY!r}) got 101 and the server answered a heartbeat "
            f"({reply_status(answer)}){dropped}: the relay replaces the client's apikey with its own, so the "
            "server never sees the client's key (not an early 101; a client's own bad key cannot be refused)",
        )
    else:
        then = (
            f"then closed {describe_close(ws)}"
            if s.closed
            else f"then nothing for {2 * probe.timeout:g} s (two heartbeats)"
        )
        probe.set(
            name,
            FAIL,
            f"an invalid apikey ({INVALID_KEY!r}) got 101, {then}: the relay answered before the "
            "server did, so Realtime's 401 and its reason never reach the client (unless this server "
            "accepts any apikey)",
        )
    if not s.closed:
        await ws.close()
    await s.wait_closed()


def refused_alike(probe: Probe, r: Response) -> str | None:
    """Why this refusal says nothing new, when a-query failed with the same one (every upgrade is refused
    alike, whatever the key or subprotocol), else None."""
    a = probe.results["a-query"]
    if a.status != FAIL:
        return None
    if a.detail.startswith(NOT_REALTIME) and not_realtime(r):
        return f"{NOT_REALTIME} (see a-query)"
    if a.detail.startswith(f"upgrade refused: {r.status_code} ") or (
        a.code == "worker-exception" and worker_threw(r)
    ):
        return f"refused with {r.status_code} like every upgrade (see a-query)"
    return None


async def check_subprotocol(probe: Probe) -> None:
    """h: offering a subprotocol still upgrades, and the 101 selects none, as Realtime's does."""
    name = "h-subprotocol"
    try:
        ws = await probe.open(probe.key, subprotocols=[Subprotocol("phoenix")])
    except InvalidStatus as e:
        r = e.response
        a = probe.results["a-query"]
        if a.status == FAIL and a.detail.startswith(NOT_REALTIME):
            probe.set(name, SKIP, f"not checked: {NOT_REALTIME} (see a-query)")
        elif a.status == FAIL and str(r.status_code) in a.detail:
            probe.set(
                name, SKIP, f"not checked: refused with {r.status_code} like every upgrade (see a-query)"
            )
        elif threw := worker_threw(r):
            probe.set(
                name,
                FAIL,
                f"offering subprotocol 'phoenix' got {threw}: {THREW}",
                code="worker-exception",
            )
        else:
            err = realtime_error(r.body)
            probe.set(
                name,
                FAIL,
                f"offering subprotocol 'phoenix' got {r.status_code} {err or body_text(r.body)}",
                code=refusal_code(err),
            )
        return
    except InvalidHandshake as e:
        probe.set(name, FAIL, f"offering subprotocol 'phoenix' broke the handshake: {e}")
        return
    except Unreachable as e:  # as in check_upstream_status
        probe.set(
            name,
            FAIL,
            f"offering subprotocol 'phoenix', the connection failed: {e}",
            code="unexplained-failure",
        )
        return
    try:
        if ws.subprotocol is None:
            probe.set(name, PASS, "offered 'phoenix'; the 101 selected no subprotocol, as Realtime does")
        else:
            probe.set(
                name,
                FAIL,
                f"offered 'phoenix'; the 101 selected {ws.subprotocol!r}, which Realtime never "
                "selects: the relay echoes the offer (browsers then talk a protocol nobody chose)",
            )
    finally:
        await ws.close()
