"""Checks e, f and g on an open socket whose server answers: heartbeats, binary frames, the close."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from rtproxy_core import closecodes, frames
from rtproxy_core.hop import BLOB_TEXT

from .checks import CLOSE_CODE, CLOSE_REASON, FAIL, PASS
from .wire import ProbeSocket, Received, describe_close, heartbeat, is_reply, reply_status, v2

if TYPE_CHECKING:
    from .run import Probe


async def check_heartbeat(probe: Probe, s: ProbeSocket) -> None:
    """e: a 2.0.0 heartbeat gets its phx_reply."""
    ref = s.ref()
    mark = len(s.received)
    await s.send(heartbeat(ref))
    hb = await s.expect(is_reply(ref, frames.PHOENIX), mark)
    if hb is not None:
        probe.set("e-heartbeat", PASS, f"heartbeat answered ({reply_status(hb)})")
    elif s.closed:
        probe.set(
            "e-heartbeat",
            FAIL,
            f"the socket was closed ({describe_close(s.ws)}) instead of answering a heartbeat",
            code="server-close",
        )
    else:
        probe.set(
            "e-heartbeat",
            FAIL,
            f"no reply to a heartbeat within {probe.timeout:g} s: the relay swallows "
            "heartbeats or their replies (clients time out and reconnect)",
        )


async def check_binary(probe: Probe, s: ProbeSocket, join_ref: str) -> None:
    """Kind 3 out, then a text broadcast as a fence: the server answers in order, so the fence's echo
    arriving first means the binary frame never made it as binary."""
    marker = secrets.token_hex(4)
    mark = len(s.received)
    await s.send(
        frames.encode_user_push(probe.topic, "rtprobe", {"probe": marker}, join_ref=join_ref, ref=s.ref())
    )
    fence = {"type": "broadcast", "event": "rtprobe-fence", "payload": {"probe": marker}}
    await s.send(v2(join_ref, s.ref(), probe.topic, "broadcast", fence))

    def match(r: Received) -> bool:
        if r.msg is None:
            return isinstance(r.raw, str) and r.raw.strip() == BLOB_TEXT or isinstance(r.raw, bytes)
        payload = r.msg.payload
        return (
            r.msg.topic == probe.topic
            and r.msg.event == "broadcast"
            and isinstance(payload, dict)
            and payload.get("event") in ("rtprobe", "rtprobe-fence")
        )

    r = await s.expect(match, mark)
    if r is None:
        how = (
            f"the socket was closed ({describe_close(s.ws)})"
            if s.closed
            else f"nothing within {probe.timeout:g} s"
        )
        # Neither broadcast came back: no rule names a relay that drops broadcasts whatever their
        # type, so a closed socket is server-close and silence unexplained-failure.
        probe.set(
            "f-binary",
            FAIL,
            f"no echo of a kind-3 broadcast nor of a text one: {how}",
            code="server-close" if s.closed else "unexplained-failure",
        )
    elif r.msg is None:
        what = (
            f"the text {BLOB_TEXT!r}"
            if isinstance(r.raw, str)
            else f"an undecodable binary frame ({r.error})"
        )
        probe.set(
            "f-binary",
            FAIL,
            f"the broadcast came back as {what}: the relay turned a binary frame into "
            "text (a JS relay sending event.data as a Blob)",
        )
    elif r.msg.payload.get("event") == "rtprobe-fence":
        probe.set(
            "f-binary",
            FAIL,
            "the text broadcast sent after a kind-3 binary one came back, the binary one "
            "did not: binary frames do not reach the server as binary (a JS relay sends "
            f"a Blob on as the text {BLOB_TEXT!r}, which Realtime ignores)",
        )
    elif r.msg.kind == frames.USER_BROADCAST and r.msg.payload.get("payload") == {"probe": marker}:
        probe.set("f-binary", PASS, "kind 3 out, binary kind 4 back with the same payload")
    else:
        shape = f"binary kind {r.msg.kind}" if r.msg.kind is not None else f"a text {r.msg.shape}"
        probe.set("f-binary", FAIL, f"the kind-3 broadcast came back as {shape}, expected binary kind 4")


async def check_close(probe: Probe, s: ProbeSocket) -> None:
    """g: the probe's close CLOSE_CODE is answered with the same code (the socket ends here)."""
    if s.closed:
        probe.skip(["g-close"], f"the socket was already closed ({describe_close(s.ws)})")
        return
    await s.ws.close(CLOSE_CODE, CLOSE_REASON)  # waits up to close_timeout for the answer
    await s.wait_closed()
    rcvd = s.ws.protocol.close_rcvd
    if rcvd is None:
        probe.set(
            "g-close",
            FAIL,
            f"close {CLOSE_CODE} got no close frame back within {probe.timeout:g} s: the "
            "relay does not complete the closing handshake",
        )
    elif rcvd.code == CLOSE_CODE:
        probe.set(
            "g-close",
            PASS,
            f"close {CLOSE_CODE} ({CLOSE_REASON}) answered with {CLOSE_CODE}; what the "
            "server received is not visible from a client",
        )
    else:
        probe.set(
            "g-close",
            FAIL,
            f"close {CLOSE_CODE} answered with {describe_close(s.ws)}"
            + (" (a close frame without a code)" if rcvd.code == closecodes.NO_CODE else "")
            + ": the relay does not forward the client's close code",
        )
