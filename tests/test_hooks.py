"""The Worker's and the Faults' hooks in-process, as mitmproxy tests its own addons (mitmproxy.test.taddons):
what `request` does to an upgrade in each mode, which upgrades it leaves alone, and what the fault plan does
to the frames of a live flow. (With real clients through mitmdump: test_e2e_worker.py, test_e2e_faults.py,
test_open_relay.py; the Tracker's hooks: test_tracker_addon.py.)"""

from __future__ import annotations

import asyncio
import json

import pytest
from mitmproxy import flow as mflow
from mitmproxy.proxy import mode_specs
from mitmproxy.test import taddons, tflow
from mitmproxy.websocket import WebSocketMessage
from rtproxy_core.events import Event, Hop
from rtproxy_core.hop import MODES
from rtproxy_mitm.faults import Faults
from rtproxy_mitm.flowevents import ORIGINAL_URL, REALTIME, UPSTREAM_URL
from rtproxy_mitm.worker import Worker
from wsproto.frame_protocol import Opcode

QUERY = "/realtime/v1/websocket?apikey=k&vsn=2.0.0"


def upgrade(host: str = "worker.example.com", path: str = QUERY, reverse: bool = False):
    f = tflow.tflow()
    f.request.host, f.request.port, f.request.scheme, f.request.path = host, 443, "https", path
    f.request.headers["Host"] = host
    f.request.headers["Upgrade"] = "websocket"
    f.request.headers["Connection"] = "Upgrade"
    if reverse:
        f.client_conn.proxy_mode = mode_specs.ProxyMode.parse("reverse:http://worker.localhost")
    return f


def worker_with(tctx, worker: Worker, **options) -> None:
    tctx.configure(worker, rt_supabase_url="https://abcdefghijklmnopqrst.supabase.co", **options)


def test_rt_mode_is_declared_with_its_choices():
    w = Worker(report=lambda *_: None)
    with taddons.context(w) as tctx:
        assert tuple(tctx.options._options["rt_mode"].choices) == MODES


def test_fixed_mode_reroutes_the_worker_host_only_keeping_path_and_query():
    w = Worker(report=lambda *_: None)
    with taddons.context(w) as tctx:
        worker_with(tctx, w, rt_worker_host="worker.example.com", rt_mode="fixed")
        f = upgrade()
        w.request(f)
        assert (f.request.scheme, f.request.host, f.request.port) == (
            "https",
            "abcdefghijklmnopqrst.supabase.co",
            443,
        )
        assert f.request.path == QUERY and f.request.headers["Host"] == "abcdefghijklmnopqrst.supabase.co"
        assert f.metadata[REALTIME] and f.metadata[UPSTREAM_URL] == f.request.url
        assert f.metadata[ORIGINAL_URL] == f"https://worker.example.com{QUERY}"
        elsewhere, plain = upgrade(host="elsewhere.example.com"), upgrade()
        del plain.request.headers["Upgrade"]  # the Worker's host, but no WebSocket upgrade
        for other in (elsewhere, plain):
            before = (other.request.host, other.request.path)
            w.request(other)
            assert (other.request.host, other.request.path) == before and REALTIME not in other.metadata


def test_without_a_worker_host_only_reverse_mode_listeners_are_the_worker():
    w = Worker(report=lambda *_: None)
    with taddons.context(w) as tctx:
        worker_with(tctx, w)
        regular, reverse = upgrade(), upgrade(reverse=True)
        w.request(regular)
        w.request(reverse)
        assert regular.request.host == "worker.example.com" and REALTIME not in regular.metadata
        assert reverse.request.host == "abcdefghijklmnopqrst.supabase.co"


@pytest.mark.parametrize("mode", ["inspect", "as-written"])
def test_inspect_passes_and_as_written_answers_426(mode):
    w = Worker(report=lambda *_: None)
    with taddons.context(w) as tctx:
        worker_with(tctx, w, rt_worker_host="worker.example.com", rt_mode=mode)
        f = upgrade()
        w.request(f)
        assert f.request.host == "worker.example.com"
        if mode == "inspect":
            assert f.response is None
        else:
            assert f.response.status_code == 426 and f.response.content == b"Expected WebSocket"


# ------------------------------------------------------------------------------------------ faults


def live_flow():
    f = tflow.twebsocketflow(messages=False)
    f.request.path = "/realtime/v1/websocket?apikey=k&vsn=2.0.0"
    f.metadata[REALTIME] = True
    return f


def send(faults: Faults, f, data: list, from_client: bool) -> WebSocketMessage:
    m = WebSocketMessage(Opcode.TEXT, from_client, json.dumps(data).encode())
    f.websocket.messages.append(m)
    faults.websocket_message(f)
    return m


async def test_drop_join_drops_the_clients_join_and_reports_it():
    reported: list[tuple[str, Event]] = []
    faults = Faults(report=lambda flow_id, ev: reported.append((flow_id, ev)))
    with taddons.context(faults) as tctx:
        tctx.configure(faults, rt_fault="drop-join")
        f = live_flow()
        faults.websocket_start(f)
        join = send(faults, f, ["1", "1", "realtime:r", "phx_join", {}], True)
        heartbeat = send(faults, f, [None, "2", "phoenix", "heartbeat", {}], True)
        assert join.dropped and not heartbeat.dropped
        [(flow_id, hop)] = reported
        assert flow_id == f.id and isinstance(hop, Hop) and "dropped phx_join for realtime:r" in hop.detail
        faults.websocket_end(f)
        assert f.id not in faults.plans and f.id not in faults.tasks


async def test_a_delayed_frame_leaves_the_faults_tables_once_delivered():
    """delay-replies holds each reply in a task; a delivered one leaves `tasks`, so a long connection's
    table holds the frames still held back, not every frame ever delayed."""
    faults = Faults(report=lambda *_: None)
    injected: list[bytes] = []

    def inject(flow: mflow.Flow, to_client: bool, message: bytes, is_text: bool = True) -> None:
        injected.append(message)  # mitmproxy's inject.websocket, as the fault calls it

    with taddons.context(faults) as tctx:
        tctx.master.commands.add("inject.websocket", inject)
        tctx.configure(faults, rt_fault="delay-replies=1")
        f = live_flow()
        f.websocket.timestamp_end = None  # still open: the fault delivers
        faults.websocket_start(f)
        ok = {"status": "ok", "response": {}}
        replies = [send(faults, f, ["1", str(i), "realtime:r", "phx_reply", ok], False) for i in range(50)]
        assert all(m.dropped for m in replies) and len(faults.tasks[f.id]) == 50
        await asyncio.gather(*list(faults.tasks[f.id]))
        assert len(injected) == 50 and faults.tasks[f.id] == []


async def test_swallow_heartbeats_drops_only_heartbeat_replies():
    faults = Faults(report=lambda *_: None)
    with taddons.context(faults) as tctx:
        tctx.configure(faults, rt_fault="swallow-heartbeats")
        f = live_flow()
        faults.websocket_start(f)
        ok = {"status": "ok", "response": {}}
        hb_reply = send(faults, f, [None, "2", "phoenix", "phx_reply", ok], False)
        join_reply = send(faults, f, ["1", "1", "realtime:r", "phx_reply", ok], False)
        assert hb_reply.dropped and not join_reply.dropped


async def test_strip_query_rewrites_the_upgrade_and_what_the_tracker_is_told():
    faults = Faults(report=lambda *_: None)
    with taddons.context(faults) as tctx:
        tctx.configure(faults, rt_fault="strip-query")
        f = upgrade()
        f.metadata[REALTIME] = True
        f.metadata[UPSTREAM_URL] = f.request.url
        faults.request(f)
        assert f.request.path == "/realtime/v1/websocket" and f.metadata[UPSTREAM_URL] == f.request.url


async def test_no_fault_leaves_frames_and_keeps_no_state():
    faults = Faults(report=lambda *_: None)
    with taddons.context(faults):
        f = live_flow()
        faults.websocket_start(f)
        m = send(faults, f, ["1", "1", "realtime:r", "phx_join", {}], True)
        assert not m.dropped and not faults.plans and not faults.tasks
