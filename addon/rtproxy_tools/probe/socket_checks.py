"""Checks e, f and g on an open socket whose server answers: heartbeats, binary frames, the close."""

from __future__ import annotations

import json
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


async def check_close(probe: Probe, s: ProbeSocket, join_ref: str | None = None) -> None:
    """g: the probe's close CLOSE_CODE is answered with the same code (the socket ends here), and, when the
    session socket has a channel (`join_ref`), the server lets the socket go: a second socket on the same
    channel sees the first one's presence leave. From workerd's compatibility date 2026-04-07
    (web_socket_auto_reply_to_close) the runtime itself answers a close the Worker never listens for, so
    the answer alone cannot show that the close reached the server."""
    if s.closed:
        probe.skip(["g-close"], f"the socket was already closed ({describe_close(s.ws)})")
        return
    watch = await _PresenceWatch.start(probe, s, join_ref) if join_ref is not None else None
    try:
        await s.ws.close(CLOSE_CODE, CLOSE_REASON)  # waits up to close_timeout for the answer
        await s.wait_closed()
        _close_outcome(probe, s, await watch.left() if watch is not None else None)
    finally:
        if watch is not None:
            await watch.close()


def _close_outcome(probe: Probe, s: ProbeSocket, left: bool | None) -> None:
    rcvd = s.ws.protocol.close_rcvd
    if rcvd is None:
        probe.set(
            "g-close",
            FAIL,
            f"close {CLOSE_CODE} got no close frame back within {probe.timeout:g} s: the relay neither "
            "answers nor forwards the client's close (a Worker with no close listener, at a compatibility "
            "date before 2026-04-07; the server's socket stays open)"
            + (": a second socket saw no presence leave for it" if left is False else ""),
        )
    elif rcvd.code == CLOSE_CODE and left is False:
        probe.set(
            "g-close",
            FAIL,
            f"close {CLOSE_CODE} was answered with {CLOSE_CODE}, but the server kept the socket: a second "
            f"socket on the same channel saw no presence leave for it within {probe.timeout:g} s. The "
            "relay answered the close itself and did not forward it (a Worker with no close listener: from "
            "compatibility date 2026-04-07 the runtime answers the close for it)",
        )
    elif rcvd.code == CLOSE_CODE:
        seen = (
            "; the server let the socket go (a second socket saw its presence leave)"
            if left
            else "; what the server received is not visible from a client"
        )
        probe.set("g-close", PASS, f"close {CLOSE_CODE} ({CLOSE_REASON}) answered with {CLOSE_CODE}{seen}")
    else:
        probe.set(
            "g-close",
            FAIL,
            f"close {CLOSE_CODE} answered with {describe_close(s.ws)}"
            + (" (a close frame without a code)" if rcvd.code == closecodes.NO_CODE else "")
            + ": the relay does not forward the client's close code",
        )


class _PresenceWatch:
    """A second socket on the session socket's channel, watching the first one's presence: the server
    sends presence_diff leaves for it once that socket is gone (Phoenix.Presence, when its channel
    process ends), and keeps it while the relay holds the upstream socket open."""

    def __init__(self, probe: Probe, watcher: ProbeSocket, marker: str) -> None:
        self.probe, self.watcher, self.marker = probe, watcher, marker
        self.mark = len(watcher.received)

    @classmethod
    async def start(cls, probe: Probe, s: ProbeSocket, join_ref: str) -> _PresenceWatch | None:
        """None when the watch cannot be set up (a relay that drops a join sent right after open, a
        presence the server refuses): g-close then judges by the answer alone."""
        if probe.results["d-early-frames"].status != PASS:
            return None
        try:
            ws = await probe.open(probe.key)
        except Exception:  # noqa: BLE001 - any failure: no watch, the check goes on without it
            return None
        watcher = ProbeSocket(ws, probe.timeout)
        watcher.start()
        marker = secrets.token_hex(4)
        ref = watcher.ref()
        await watcher.send(probe.join_frame(ref, presence_key=f"rtprobe-watch-{marker}"))
        joined = await watcher.expect(is_reply(ref, probe.topic))
        track = s.ref()
        mark = len(s.received)
        payload = {"type": "presence", "event": "track", "payload": {"rtprobe": marker}}
        if (
            joined is None
            or reply_status(joined) != "ok"
            or not await s.send(v2(join_ref, track, probe.topic, frames.EV_PRESENCE, payload))
        ):
            await cls._close(watcher)
            return None
        tracked = await s.expect(is_reply(track, probe.topic), mark)
        seen = await watcher.expect(lambda r: _names(r, marker, ("joins", None)))
        if tracked is None or reply_status(tracked) != "ok" or seen is None:
            await cls._close(watcher)
            return None
        return cls(probe, watcher, marker)

    async def left(self) -> bool:
        return await self.watcher.expect(lambda r: _names(r, self.marker, ("leaves",)), self.mark) is not None

    async def close(self) -> None:
        await self._close(self.watcher)

    @staticmethod
    async def _close(watcher: ProbeSocket) -> None:
        if not watcher.closed:
            await watcher.ws.close()
        await watcher.wait_closed()


def _names(r: Received, marker: str, parts: tuple[str | None, ...]) -> bool:
    """Is `r` a presence_state (part None) or a presence_diff whose `parts` carry the probe's marker?"""
    m = r.msg
    if m is None or not isinstance(m.payload, dict):
        return False
    if m.event == frames.EV_PRESENCE_STATE and None in parts:
        return marker in json.dumps(m.payload)
    if m.event == frames.EV_PRESENCE_DIFF:
        return any(marker in json.dumps(m.payload.get(p) or {}) for p in parts if p is not None)
    return False
