"""The Tracker addon's hooks, options and commands in-process, as mitmproxy tests its own addons
(mitmproxy.test.taddons): a WebSocket flow driven through request → response → websocket_message →
websocket_end gives a session, log lines and findings; rt.report and rt_report fail cleanly; one
connection's internal error stays with that connection. (End to end, with real clients through mitmdump:
test_e2e_worker.py, test_e2e_faults.py, test_secrets.py.)"""

from __future__ import annotations

import json
import logging
import time

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons, tflow
from mitmproxy.websocket import WebSocketMessage
from rtproxy_local.jwt import mint
from rtproxy_mitm.tracker import Tracker
from wsproto.frame_protocol import Opcode

TOKEN = mint({"role": "authenticated", "sub": "in-a-topic", "exp": int(time.time()) + 3600})
TOPIC = f"realtime:room-{TOKEN}"


def realtime_flow(flow_id: str | None = None):
    f = tflow.twebsocketflow(messages=False)
    f.request.path = "/realtime/v1/websocket?apikey=k&vsn=2.0.0"
    if flow_id:
        f.id = flow_id
    return f


def message(f, data: list, from_client: bool) -> None:
    t = (f.websocket.messages[-1].timestamp if f.websocket.messages else f.request.timestamp_start) + 0.01
    f.websocket.messages.append(WebSocketMessage(Opcode.TEXT, from_client, json.dumps(data).encode(), t))


def drive(tracker: Tracker, f, frames: list[tuple[list, bool]], close: bool = True) -> None:
    tracker.request(f)
    tracker.response(f)
    for data, from_client in frames:
        message(f, data, from_client)
        tracker.websocket_message(f)
    if close:
        f.websocket.close_code, f.websocket.closed_by_client = 1000, True
        f.websocket.timestamp_end = f.websocket.messages[-1].timestamp + 0.01
        tracker.websocket_end(f)


JOIN = ["1", "1", TOPIC, "phx_join", {"config": {}}]
OK = ["1", "1", TOPIC, "phx_reply", {"status": "ok", "response": {"postgres_changes": []}}]
REFUSED = [
    "1",
    "1",
    TOPIC,
    "phx_reply",
    {"status": "error", "response": {"reason": f"Unauthorized: topic {TOKEN}"}},
]


async def test_a_flow_through_the_hooks_is_tracked_logged_and_redacted(caplog):
    tracker = Tracker()
    with taddons.context(tracker), caplog.at_level(logging.INFO, logger="rtproxy"):
        f = realtime_flow()
        drive(tracker, f, [(JOIN, True), (REFUSED, False)])
        [session] = tracker.sessions()
        assert session.closed is not None and session.closed.code == 1000
        assert [f.code for f in session.findings] == ["join-unauthorized"]
        log = caplog.text
        assert "finding join-unauthorized" in log and "realtime:room-<jwt role=authenticated" in log
        assert TOKEN not in log and TOKEN not in "\n".join(tracker.channel_lines())
        assert TOKEN not in tracker.channels("json")


async def test_rt_report_writes_redacted_files_and_a_bad_path_is_a_command_error(tmp_path):
    tracker = Tracker()
    with taddons.context(tracker):
        drive(tracker, realtime_flow(), [(JOIN, True), (OK, False)])
        tracker.report(str(tmp_path / "r.md"))
        for name in ("r.md", "r.json"):
            text = (tmp_path / name).read_text()
            assert "realtime:room-<jwt" in text and TOKEN not in text
        bad = [(tmp_path / "missing" / "r.md", "does not exist"), (tmp_path, "is a folder"), ("", "no path")]
        for path, why in bad:
            with pytest.raises(exceptions.CommandError, match=f"rt.report: .*{why}"):
                tracker.report(str(path))
        assert not tmp_path.with_suffix(".md").exists()  # nothing written next to the folder


@pytest.mark.parametrize(
    "value,why",
    [("/nonexistent/dir/r.md", "the folder /nonexistent/dir does not exist"), (".", "is a folder")],
)
async def test_rt_report_is_checked_when_set(value, why, caplog, tmp_path):
    tracker = Tracker()
    with taddons.context(tracker) as tctx, caplog.at_level(logging.ERROR, logger="rtproxy"):
        tctx.configure(tracker, rt_report=str(tmp_path / "ok.md"))
        assert not caplog.records
        tctx.configure(tracker, rt_report=value)
        [record] = caplog.records
        assert record.getMessage().startswith("rt_report: ") and why in record.getMessage()


async def test_an_internal_error_stays_with_its_connection(caplog):
    """Two live connections whose flow ids share the first six characters (the log's connection id)."""
    tracker = Tracker()
    with taddons.context(tracker), caplog.at_level(logging.INFO, logger="rtproxy"):
        a, b = realtime_flow("abcdef-0000-a"), realtime_flow("abcdef-0000-b")
        tracker.request(a)
        tracker.request(b)
        broken = tracker.live[a.id]

        def fail(_event):
            raise RuntimeError("boom")

        broken.feed = fail
        tracker.response(a)  # the internal error: a's tracking stops, a's flow goes on
        assert broken.broken and "rtproxy internal error" in caplog.text
        drive(tracker, b, [(JOIN, True), (OK, False)])
        ok = next(s for s in tracker.sessions() if s is not broken)
        assert not ok.broken and ok.current[TOPIC].joined_at is not None
