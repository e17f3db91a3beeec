"""mitmproxy flow files (`mitmdump -w`) -> events, one list per Realtime connection."""

from __future__ import annotations

from pathlib import Path

from mitmproxy import exceptions, http, io
from rtproxy_core.captures import CaptureError
from rtproxy_core.events import Event

from .flowevents import flow_events, is_realtime


def flowfile_connections(path: Path) -> list[tuple[str, list[Event]]]:
    out = []
    try:
        with open(path, "rb") as f:
            for flow in io.FlowReader(f).stream():
                if isinstance(flow, http.HTTPFlow) and is_realtime(flow):
                    events = flow_events(flow)
                    out.append((events[0].url, events))  # type: ignore[union-attr]
    except exceptions.FlowReadException as e:
        raise CaptureError(f"not a mitmproxy flow file: {e}") from None
    return out
