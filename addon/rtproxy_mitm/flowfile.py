"""mitmproxy flow files (`mitmdump -w`) -> events, one list per Realtime connection."""

from __future__ import annotations

from pathlib import Path

from mitmproxy import exceptions, http, io
from rtproxy_core.captures import SKIPPED, Capture, CaptureError, comment_note, no_realtime
from rtproxy_core.diagnosis import Connection

from .flowevents import flow_events, is_realtime, is_upgrade


def flowfile_capture(path: Path) -> Capture:
    """The Realtime connections of a flow file (the same `is_realtime` as live), with the WebSockets it
    skipped. A flow file keeps every message, close frames and the hop's own actions: it lacks nothing."""
    out: list[Connection] = []
    notes: list[str] = []
    skipped = flows = 0
    try:
        with open(path, "rb") as f:
            for flow in io.FlowReader(f).stream():
                flows += 1
                if not isinstance(flow, http.HTTPFlow):
                    continue
                if is_realtime(flow, by_frames=True):
                    events = flow_events(flow)
                    out.append((events[0].url, events))  # type: ignore[union-attr]
                    if flow.comment.strip() or flow.marked.strip():  # what mitmweb showed on it
                        notes.append(comment_note(len(out), flow.comment, flow.marked))
                elif is_upgrade(flow.request):
                    skipped += 1
    except exceptions.FlowReadException as e:
        raise CaptureError(f"not a mitmproxy flow file: {e}") from None
    capture = Capture(out, "mitmproxy flow file", ([SKIPPED.format(skipped)] if skipped else []) + notes)
    if not out:
        capture.undiagnosable = no_realtime(flows, skipped, "flow")
    return capture
