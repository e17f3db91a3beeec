"""Checks a, b and d on the socket a client opens: the apikey and vsn reach the server, and a join sent
right after open is answered. When the first join goes unanswered, what else is answered tells which.
The same socket then goes on to e, f and g (socket_checks.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rtproxy_core import frames
from rtproxy_core.session import realtime_error
from websockets.exceptions import InvalidHandshake, InvalidStatus

from .checks import FAIL, PASS, SKIP, refusal_code
from .socket_checks import check_binary, check_close, check_heartbeat
from .wire import (
    THREW,
    ProbeSocket,
    Received,
    body_text,
    describe_close,
    heartbeat,
    is_reply,
    not_realtime,
    reply_reason,
    reply_status,
    worker_threw,
)

if TYPE_CHECKING:
    from .run import Probe


async def check_session(probe: Probe) -> None:
    """a, b, d, e, f, g on one socket, in the order a client uses it."""
    later = ["b-vsn", "d-early-frames", "e-heartbeat", "f-binary", "g-close"]
    try:
        ws = await probe.open(probe.key)
    except InvalidStatus as e:
        r = e.response
        err = realtime_error(r.body)
        code = refusal_code(err)
        if code == "apikey-missing":
            probe.set(
                "a-query",
                FAIL,
                f"{r.status_code} {err}: the apikey in the query string never reached "
                "the server (the relay drops the query)",
            )
        elif err is None and (threw := worker_threw(r)):  # before not_realtime: the 1101 page is HTML
            probe.set("a-query", FAIL, f"upgrade refused: {threw}: {THREW}", code="worker-exception")
        elif err is None and (page := not_realtime(r)):  # a web page, not Realtime or a relay to it
            probe.set("a-query", FAIL, page, code=code)
        else:  # what refused it names the finding: Realtime's words (catalog.py), else upgrade-rejected
            probe.set(
                "a-query",
                FAIL,
                f"upgrade refused: {r.status_code} {err or body_text(r.body)}",
                code=code,
            )
        probe.skip(later, "no socket (see a-query)")
        return
    except InvalidHandshake as e:
        probe.set("a-query", FAIL, f"broken handshake: {e}", code="upgrade-rejected")
        probe.skip(later, "no socket (see a-query)")
        return
    s = ProbeSocket(ws, probe.timeout)
    s.start()
    try:
        await _session(probe, s)
    finally:
        if not s.closed:
            await ws.close()
        await s.wait_closed()


async def _session(probe: Probe, s: ProbeSocket) -> None:
    later = ["b-vsn", "d-early-frames", "e-heartbeat", "f-binary", "g-close"]
    join_ref = s.ref()
    await s.send(probe.join_frame(join_ref))  # right after open: d
    reply = await s.expect(is_reply(join_ref, probe.topic))
    if reply is None and s.closed:
        _closed_before_answer(probe, s, later)
        return
    if reply is not None:
        probe.set("a-query", PASS, "101, and the server answered the socket's first frame")
        if reply.msg is not None and reply.msg.shape == frames.OBJECT:
            probe.set(
                "b-vsn",
                FAIL,
                "the 2.0.0 phx_join was answered with a 1.0.0 object: the server did not get vsn=2.0.0",
            )
        else:
            probe.set("b-vsn", PASS, f"the 2.0.0 phx_join got a 2.0.0 phx_reply ({reply_status(reply)})")
        probe.set("d-early-frames", PASS, "the phx_join sent right after open was answered")
    else:
        reply = await _diagnose_silence(probe, s, later)
        if reply is None:
            return
        assert reply.msg is not None and reply.msg.ref is not None
        join_ref = reply.msg.ref  # the rejoin was answered: the reply carries its ref
    if reply_status(reply) != "ok":
        why = f"the server refused the join: {reply_reason(reply)}"
        probe.skip(["f-binary"], why)
        joined = False
    else:
        joined = True
    if probe.unset("e-heartbeat"):
        await check_heartbeat(probe, s)
    if joined:
        await check_binary(probe, s, join_ref)  # the join that was answered
    await check_close(probe, s, join_ref if joined else None)


def _closed_before_answer(probe: Probe, s: ProbeSocket, later: list[str]) -> None:
    how = describe_close(s.ws)
    if any(r.msg is not None for r in s.received):
        probe.set("a-query", PASS, "101, and the server answered")
        probe.skip(later, f"the socket was closed ({how}) before the join was answered")
        return
    # apikey-missing, the likely cause: the early 101 that hides the upstream's answer is c's finding.
    probe.set(
        "a-query",
        FAIL,
        f"101, then the socket was closed {how} before the server answered anything: a relay that "
        "answers 101 itself and whose own upstream upgrade failed - typically Realtime's 401 "
        "'API key is missing' because the query string was dropped",
    )
    probe.skip(later, f"the socket was closed ({how}) before anything was answered (see a-query)")


async def _diagnose_silence(probe: Probe, s: ProbeSocket, later: list[str]) -> Received | None:
    """The first join went unanswered for a whole timeout: early frame dropped (d), vsn lost (b), or
    nothing reaches the server at all? Ask three ways at once: a 2.0.0 heartbeat, the same join again,
    and a 1.0.0 heartbeat (a 2.0.0 socket drops the 1.0.0 object without a reply, and vice versa). The
    rejoin's reply when it was answered; None when the checks on this socket are done."""
    hb_ref, rejoin_ref, v1_ref = s.ref(), s.ref(), s.ref()
    mark = len(s.received)
    await s.send(heartbeat(hb_ref))
    await s.send(probe.join_frame(rejoin_ref))
    await s.send(heartbeat(v1_ref, frames.V1))
    v2_hb = is_reply(hb_ref, frames.PHOENIX)

    def v1_hb(r: Received) -> bool:
        return r.msg is not None and r.msg.shape == frames.OBJECT and r.msg.ref == v1_ref

    first = await s.expect(lambda r: v2_hb(r) or v1_hb(r), mark)
    if first is not None and v2_hb(first):
        probe.set("a-query", PASS, "101, and the server answered (a heartbeat)")
        probe.set("b-vsn", PASS, "2.0.0 frames are answered in 2.0.0 (a heartbeat)")
        probe.set("e-heartbeat", PASS, f"heartbeat answered ({reply_status(first)})")
        rejoin = await s.expect(is_reply(rejoin_ref, probe.topic), mark)
        if rejoin is not None:
            probe.set(
                "d-early-frames",
                FAIL,
                f"the phx_join sent right after open got no reply within {probe.timeout:g} s; the same join "
                "sent later was answered: the relay drops frames that arrive before its upstream leg is "
                "open (clients see TIMED_OUT, then rejoin)",
            )
            return rejoin
        probe.set(  # not only early frames: any join goes unanswered
            "d-early-frames",
            FAIL,
            "phx_join is never answered although heartbeats are: the relay drops or mangles joins",
            code="join-timeout",
        )
        probe.skip(["f-binary"], "no channel could be joined (see d-early-frames)")
        await check_close(probe, s)
        return None
    if first is not None:
        probe.set("a-query", PASS, "101, and the server answered a 1.0.0 heartbeat")
        probe.set(
            "b-vsn",
            FAIL,
            "2.0.0 arrays get no answer but a 1.0.0 object heartbeat does: the server speaks "
            "1.0.0, so vsn=2.0.0 never reached it",
        )
        probe.skip(
            ["d-early-frames", "e-heartbeat", "f-binary"], "the socket does not speak 2.0.0 (see b-vsn)"
        )
        await check_close(probe, s)
        return None
    if s.closed:
        _closed_before_answer(probe, s, later)
        return None
    probe.set("a-query", SKIP, "101, but nothing was ever answered: cannot tell whether the apikey arrived")
    probe.set(
        "b-vsn",
        FAIL,
        f"no 2.0.0 (or 1.0.0) frame was answered within {probe.timeout:g} s: the relay "
        "forwards nothing, or the vsn was lost and the server ignores 2.0.0 arrays",
    )
    probe.skip(
        ["d-early-frames", "e-heartbeat", "f-binary"], "nothing is answered on this socket (see b-vsn)"
    )
    await check_close(probe, s)
    return None
