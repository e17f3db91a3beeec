"""rtdiagnose on captures as real producers write them (tests/producers.py builds each in its producer's
shape; mitmproxy's are written by mitmproxy's own SaveHar): a BOM, a .zhar, WebSockets that are not
Realtime, producers that keep no messages, Chrome's error frames, HTTP Toolkit's close, frames that cannot
be read, and the per-connection frame counts."""

from __future__ import annotations

import codecs
import json
import subprocess
import zlib

import pytest
from conftest import command
from hypothesis import example, given, settings
from hypothesis import strategies as st
from mitmproxy import flow as mflow
from mitmproxy import http
from mitmproxy import io as mio
from mitmproxy.addons.savehar import SaveHar
from mitmproxy.test import tflow
from producers import (
    NO_MESSAGES,
    REALTIME_URL,
    REQUEST_HEADERS,
    T0,
    VITE_URL,
    Conn,
    chrome,
    flows,
    httptoolkit,
    joined,
    mitmproxy_har,
    without_messages,
)
from rtproxy_core.captures import CaptureError, har_capture, har_connections, is_realtime
from rtproxy_core.diagnosis import diagnose_captures
from rtproxy_core.events import Closed, FrameError
from rtproxy_core.redact import Redactor
from rtproxy_core.report import report_json, report_text
from rtproxy_mitm import flowevents
from rtproxy_tools.captures import read, read_capture
from rtproxy_tools.diagnose import main


def diagnose(capsys, *paths, json_out: bool = True):
    """rtdiagnose in-process: (exit status, stdout parsed when --json, stderr)."""
    rc = main([*map(str, paths), *(["--json"] if json_out else [])])
    out, err = capsys.readouterr()
    return rc, (json.loads(out) if json_out and rc != 2 else out), err


def write_json(path, doc, encoding: str = "utf-8"):
    path.write_bytes(json.dumps(doc, indent=2).encode(encoding))
    return path


def write_flows(path, fl):
    with open(path, "wb") as f:
        w = mio.FlowWriter(f)
        for x in fl:
            w.add(x)
    return path


# ------------------------------------------------------------------------------------------ 1: a BOM


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_a_byte_order_mark_changes_nothing(capsys, tmp_path, encoding):
    """Fiddler writes a UTF-8 BOM; a Windows tool may write UTF-16. Either must read as the same HAR, not fall
    through to mitmproxy's importer (which drops `_webSocketMessages`) or to the flow-file reader."""
    doc = chrome([Conn()])
    plain = write_json(tmp_path / "plain.har", doc)
    marked = write_json(tmp_path / "bom.har", doc, encoding)
    assert marked.read_bytes()[:2] in (codecs.BOM_UTF8[:2], codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
    rc_plain, want, _ = diagnose(capsys, plain)
    rc, got, err = diagnose(capsys, marked)
    assert (rc, err) == (rc_plain, "")
    assert got["connections"] == want["connections"]
    assert got["connections"][0]["frames"]["out"]["text"] == 2  # the join and the heartbeat


# ------------------------------------------------------------------------ 2: the same connections


def test_har_flow_file_and_zhar_pick_the_same_connections(capsys, tmp_path):
    """One run, saved as a flow file, as mitmproxy's HAR and .zhar, and as Chrome's HAR: the WebSocket that is
    not Realtime's (a dev server's hot reload) is left out of all four alike, and the note says so."""
    conns = [Conn(), Conn(url=VITE_URL, frames=[(1.0, "receive", '{"type":"connected"}')])]
    fl = flows(conns)
    paths = [
        write_flows(tmp_path / "run.flows", fl),
        write_json(tmp_path / "run.har", mitmproxy_har(fl)),
        tmp_path / "run.zhar",
        write_json(tmp_path / "chrome.har", chrome(conns)),
    ]
    SaveHar().export_har(fl, str(paths[2]))
    assert zlib.decompress(paths[2].read_bytes())  # mitmproxy's .zhar is a zlib stream
    seen = []
    for path in paths:
        capture = read_capture(path)
        seen.append(
            [(u.split("://")[1], [type(e).__name__ for e in events]) for u, events in capture.connections]
        )
        assert capture.notes == [
            "1 WebSocket(s) that are not Realtime's (no Realtime path, query or first frame) skipped"
        ]
    assert seen[0] == seen[1] == seen[2] == seen[3]
    assert len(seen[0]) == 1 and seen[0][0][0].startswith(
        "abcdefghijklmnopqrst.supabase.co/realtime/v1/websocket"
    )
    reports = [diagnose(capsys, p)[1]["connections"] for p in paths[:3]]
    assert reports[1] == reports[2]  # .har and .zhar: the same document
    assert [c["frames"] for c in reports[0]] == [c["frames"] for c in reports[1]]


def test_one_predicate_for_live_flows_and_hars():
    """flowevents.is_realtime (the live tracker's and the flow-file reader's) is the core's predicate."""
    f = tflow.tflow()
    f.request = http.Request.make("GET", "http://worker.localhost/ws", headers=dict(REQUEST_HEADERS))
    assert not flowevents.is_realtime(f) and not is_realtime(f.request.path, websocket=True)
    f.metadata[flowevents.REALTIME] = True  # the Worker rerouted it
    assert flowevents.is_realtime(f) and is_realtime(f.request.path, websocket=True, marked=True)
    f.request.path, f.metadata = "/realtime/v1/websocket?apikey=k", {}
    assert flowevents.is_realtime(f) and is_realtime(REALTIME_URL, websocket=True)
    del f.request.headers["Upgrade"]
    assert not flowevents.is_realtime(f) and not is_realtime(f.request.path, websocket=False)


def test_a_realtime_socket_is_known_by_what_its_client_sends():
    """A client pointed at the wrong path still says it is a Realtime client: by its query (realtime-js
    always sends Phoenix's `vsn`; an `apikey` on a …/websocket path) or by its first frame (a phx_join or a
    heartbeat), so path-wrong can be said of it. A dev server's hot-reload socket says neither."""
    join = b'{"topic":"realtime:room","event":"phx_join","payload":{},"ref":"1","join_ref":"1"}'
    assert is_realtime("wss://abc.supabase.co/websocket?apikey=k&vsn=1.0.0", websocket=True)
    assert is_realtime("wss://abc.supabase.co/auth/v1/websocket?apikey=k", websocket=True)
    assert is_realtime("ws://localhost:3000/ws", websocket=True, first_frame=join)
    assert is_realtime(
        "ws://localhost:3000/ws", websocket=True, first_frame=b'[null,"7","phoenix","heartbeat",{}]'
    )
    assert not is_realtime("ws://localhost:3000/ws", websocket=True)
    assert not is_realtime(VITE_URL, websocket=True, first_frame=b'{"type":"connected"}')
    assert not is_realtime("ws://localhost:3000/ws?vsn=3", websocket=True)


def test_a_socket_at_the_servers_root_is_read_and_its_path_named(capsys, tmp_path):
    """realtime-js pointed at a self-hosted server's root (`/websocket`, no `/socket`): the 404s are read,
    not skipped, and the first finding is path-wrong."""
    root = "wss://realtime.example.com/websocket?apikey=k&vsn=1.0.0"
    conns = [
        Conn(url=root, status=404, body="", frames=[]),
        Conn(url=root, status=404, body="", frames=[], start=T0 + 1),
    ]
    path = write_json(tmp_path / "root.har", chrome(conns))
    capture = read_capture(path)
    assert len(capture.connections) == 2 and not capture.notes
    report = diagnose(capsys, path)[1]
    assert report["connections"][0]["findings"][0]["code"] == "path-wrong"


def test_mitmproxy_har_keeps_the_error_of_an_upgrade_that_got_no_answer(capsys, tmp_path):
    """savehar writes `response._error = flow.error.msg` for a flow without a response; the flow file keeps
    the flow's error: both say the upstream was unreachable."""
    f = tflow.tflow()
    f.request = http.Request.make(
        "GET", REALTIME_URL.replace("wss://", "https://"), headers=dict(REQUEST_HEADERS)
    )
    f.request.timestamp_start = f.request.timestamp_end = T0
    f.response, f.error = None, mflow.Error("Connection refused", T0 + 0.5)
    for path in (
        write_flows(tmp_path / "err.flows", [f]),
        write_json(tmp_path / "err.har", mitmproxy_har([f])),
    ):
        rc, out, _ = diagnose(capsys, path)
        finding = out["connections"][0]["findings"][0]
        assert (rc, finding["code"], finding["evidence"]) == (
            1,
            "upstream-unreachable",
            "connecting upstream failed: Connection refused",
        ), path.name


def test_headers_as_name_value_pairs():
    """mitmproxy's HAR import reads [name, value] header pairs too (`fix_headers`: Slack writes them). An entry
    with no `_resourceType` is a WebSocket by its Upgrade header, in either notation."""
    doc = without_messages("Firefox", [Conn(status=401, body='{"error":"Unauthorized"}')])
    request = doc["log"]["entries"][0]["request"]
    request["headers"] = [[h["name"], h["value"]] for h in request["headers"]]
    ((url, events),) = har_connections(doc)
    assert url == REALTIME_URL and events[1].status == 401


# ---------------------------------------------------------------------- 3: producers with no messages


@pytest.mark.parametrize("producer", sorted(NO_MESSAGES))
def test_a_har_without_messages_says_so_and_exits_2(tmp_path, producer):
    path = write_json(tmp_path / "capture.har", without_messages(producer, [Conn()]))
    r = subprocess.run(
        [command("rtdiagnose"), str(path)], capture_output=True, text=True, check=False, timeout=60
    )
    creator = NO_MESSAGES[producer]
    assert r.returncode == 2 and r.stdout == "", r.stdout
    assert r.stderr.count("\n") == 1, r.stderr
    assert "capture holds no WebSocket messages" in r.stderr
    assert f"written by {creator['name']} {creator['version']}, which does not export them" in r.stderr


def test_chrome_har_whose_sockets_list_no_messages_exits_2(capsys, tmp_path):
    """DevTools lists a socket's messages only while it is open: an empty list is no evidence either. It
    may also be what a client that never saw `open` leaves (nothing sent), so client-silent is named as a
    candidate, not as a finding (issue 21)."""
    rc, _, err = diagnose(capsys, write_json(tmp_path / "c.har", chrome([Conn(frames=[])])))
    assert rc == 2
    assert "capture holds no WebSocket messages (written by WebInspector 537.36; its WebSocket entries" in err
    assert "it may not have been recording them, or the client sent none (candidate: client-silent" in err


def test_a_frameless_socket_beside_sockets_with_frames_is_client_silent(capsys, tmp_path):
    """The same empty list, where the HAR's other socket carries frames: the producer was recording, so the
    client sent nothing on it."""
    path = write_json(tmp_path / "c.har", chrome([Conn(frames=joined()), Conn(frames=[], start=T0 + 40)]))
    rc, out, _ = diagnose(capsys, path)
    assert rc == 1
    assert [c["findings"][0]["code"] for c in out["connections"] if c["findings"]] == ["client-silent"]


def test_a_refused_upgrade_is_diagnosed_without_messages(capsys, tmp_path):
    """A refusal's status and body are in every HAR: that connection is diagnosed, the upgraded one (of which
    the file says nothing) is left out, and the note says both."""
    refused = Conn(status=404, body='{"error":"Tenant not found"}', start=T0 + 40)
    path = write_json(tmp_path / "ff.har", without_messages("Firefox", [Conn(), refused]))
    rc, out, err = diagnose(capsys, path)
    assert rc == 1 and err == ""
    assert [(c["status"], c["findings"][0]["code"]) for c in out["connections"]] == [
        (404, "tenant-not-found")
    ]
    (note,) = out["captures"][0]["notes"]
    assert note.startswith("capture holds no WebSocket messages (written by Firefox 128.0")
    assert "1 upgraded connection(s) left out, 1 diagnosed from the upgrade alone" in note
    rc, text, _ = diagnose(capsys, path, json_out=False)
    assert text.startswith(f"{path}: capture holds no WebSocket messages") and "tenant-not-found" in text


# ------------------------------------------------------------------------ 4: Chrome's error frames


def test_chrome_error_frames_are_kept_and_shown(capsys, tmp_path):
    frames = [*joined(), (26.0, "error", "Invalid frame header")]
    path = write_json(tmp_path / "c.har", chrome([Conn(frames=frames)]))
    events = read(path)[0][1]
    assert FrameError("Invalid frame header", T0 + 26.0) in events
    rc, out, _ = diagnose(capsys, path)
    (conn,) = out["connections"]
    assert rc == 0
    assert conn["error_frames"] == [{"time": T0 + 26.0, "text": "Invalid frame header"}]
    assert conn["frames"]["errors"] == 1 and conn["frames"]["dropped"] == {}
    _, text, _ = diagnose(capsys, path, json_out=False)
    assert "  browser error frame at 26.0 s: Invalid frame header\n" in text


# ------------------------------------------------------------------------ 5: HTTP Toolkit's close


@pytest.mark.parametrize(
    "close,code,by_client,findings",
    [
        ({"code": 1012, "reason": ""}, 1012, False, ["server-close"]),  # only a server sends 1012
        ({"code": 1000, "reason": "heartbeat timeout"}, 1000, True, ["heartbeat-timeout"]),  # realtime-js
        ({"code": 1000, "reason": ""}, 1000, None, []),  # a normal close, side not recorded
        ({"reason": ""}, 1005, None, []),  # mockttp writes no code for 1005
        ("aborted", None, None, None),  # mockttp's 1006: no close frame
    ],
)
def test_http_toolkit_close_is_read(capsys, tmp_path, close, code, by_client, findings):
    doc = httptoolkit([Conn(close=close, end=30.0)])
    closed = har_connections(doc)[0][1][-1]
    # The close time is the entry's end (startedDateTime + time), not `timestamp` (mockttp's relative clock).
    assert closed == Closed(code, "heartbeat timeout" if by_client else "", by_client, T0 + 30.0)
    _, out, _ = diagnose(capsys, write_json(tmp_path / "htk.har", doc))
    (conn,) = out["connections"]
    assert conn["close"]["code"] == code
    if findings is not None:
        assert [f["code"] for f in conn["findings"] if f["severity"] != "info"] == findings


def test_http_toolkit_still_open_is_not_a_recorded_close():
    ((_, events),) = har_connections(httptoolkit([Conn(close=None)]))
    assert events[-1] == Closed(None, "", None, T0 + 30.0, recorded=False)


# ------------------------------------------------------------------------------------ 6: .zhar


def test_a_truncated_zhar_says_so(capsys, tmp_path):
    fl = flows([Conn()])
    path = tmp_path / "run.zhar"
    SaveHar().export_har(fl, str(path))
    rc, out, err = diagnose(capsys, path)
    assert rc == 0 and out["connections"][0]["frames"]["in"]["text"] == 2
    path.write_bytes(path.read_bytes()[:-40])
    rc, _, err = diagnose(capsys, path)
    assert rc == 2 and "compressed HAR (.zhar) is truncated" in err and "flow file" not in err, err


# ----------------------------------------------------------------------- 7: a time that is no number


@pytest.mark.parametrize(
    "bad", ["soon", None, True, 10**400, "NaN"], ids=["text", "null", "bool", "huge", "nan"]
)
def test_a_frame_time_that_is_not_a_number_is_left_out_and_counted(capsys, tmp_path, bad):
    """Not fed at time 0 (a heartbeat sent at 1970 would make a gap of decades): left out, and counted."""
    doc = chrome([Conn()])
    heartbeat = doc["log"]["entries"][0]["_webSocketMessages"][2]
    assert '"heartbeat"' in heartbeat["data"]
    heartbeat["time"] = float("nan") if bad == "NaN" else bad
    path = tmp_path / "c.har"
    path.write_text(json.dumps(doc))  # NaN as JSON's NaN token, which Python's json reads
    rc, out, _ = diagnose(capsys, path)
    (conn,) = out["connections"]
    assert rc == 0 and conn["frames"]["dropped"] == {"time is not a number": 1}
    assert conn["frames"]["out"] == {"text": 1, "binary": 0} and conn["heartbeats"]["sent"] == 0
    _, text, _ = diagnose(capsys, path, json_out=False)
    assert "  1 frame(s) left out by the reader (1 time is not a number)\n" in text


# ------------------------------------------------------------------------------- 8: frame counts


def test_frame_counts_are_the_same_from_every_capture_of_a_run(capsys, tmp_path):
    frames = [
        *joined(),
        (26.0, "send", b"\x03\x00garbage"),
        (26.5, "receive", b"\xff"),
        (27.0, "receive", "{"),
    ]
    conns = [Conn(frames=frames)]
    fl = flows(conns)
    paths = [
        write_flows(tmp_path / "run.flows", fl),
        write_json(tmp_path / "run.har", mitmproxy_har(fl)),
        write_json(tmp_path / "chrome.har", chrome(conns)),
        write_json(tmp_path / "htk.har", httptoolkit(conns)),
    ]
    want = {
        "out": {"text": 2, "binary": 1},
        "in": {"text": 3, "binary": 1},
        "undecodable": 3,
        "errors": 0,
        "dropped": {},
    }
    for path in paths:
        assert diagnose(capsys, path)[1]["connections"][0]["frames"] == want, path.name


def test_the_reader_counts_what_it_leaves_out(capsys, tmp_path):
    doc = chrome([Conn()])
    messages = doc["log"]["entries"][0]["_webSocketMessages"]
    messages += [
        "not an object",
        {"type": "ping", "time": T0 + 27, "opcode": 9, "data": ""},
        {"type": "receive", "time": T0 + 28, "opcode": 1, "data": {"topic": "x"}},
        {"type": "receive", "time": T0 + 29, "opcode": 2, "data": "a"},
    ]
    _, out, _ = diagnose(capsys, write_json(tmp_path / "c.har", doc))
    assert out["connections"][0]["frames"]["dropped"] == {
        "not an object": 1,
        "type is not send, receive or error": 1,
        "data is not a string": 1,
        "binary data is not base64": 1,
    }


# ------------------------------------------------------------------------------------ robustness

json_leaf = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8) | st.just("\ud800\n")
)
json_any = st.recursive(
    json_leaf, lambda x: st.lists(x, max_size=3) | st.dictionaries(st.text(max_size=6), x)
)


@example(
    close="aborted",
    message={"type": "error", "time": T0 + 1, "opcode": -1, "data": "bad\nframe \ud800"},
    creator={"name": "x\ny"},
    failed=None,
)
@settings(max_examples=150, deadline=None)
@given(
    close=json_any
    | st.sampled_from(["aborted"])
    | st.fixed_dictionaries({"code": json_any, "reason": json_any}),
    message=st.fixed_dictionaries(
        {
            "type": st.sampled_from(["send", "receive", "error"]) | json_leaf,
            "time": st.floats(T0, T0 + 60) | json_leaf,
            "opcode": st.sampled_from([1, 2, -1]) | json_leaf,
            "data": st.sampled_from(["{", "aGk=", "Invalid frame header"]) | json_any,
        }
    ),
    creator=json_any,
    failed=st.none() | json_any,
)
def test_new_fields_only_ever_raise_capture_error(close, message, creator, failed):
    """HTTP Toolkit's close, Chrome's error messages, log.creator and an upgrade's `_error`, of any shape:
    the reader raises nothing but CaptureError, the report prints, and every message is counted once."""
    doc = httptoolkit([Conn(close={"code": 1000})])
    entry = doc["log"]["entries"][0]
    entry["_webSocketClose"], doc["log"]["creator"] = close, creator
    entry["_webSocketMessages"].append(message)
    if failed is not None:
        entry["response"] = {"status": 0, "_error": failed}
    try:
        capture = har_capture(doc)
    except CaptureError:
        return
    sessions = diagnose_captures([capture.connections], Redactor())
    out = report_text(sessions) + json.dumps(report_json(sessions), ensure_ascii=False)
    out.encode("utf-8")  # printed to a UTF-8 terminal: no lone surrogate from the file gets through
    errors = [e["text"] for c in report_json(sessions)["connections"] for e in c["error_frames"]]
    assert all(text.isprintable() for text in errors)  # one line each in the text report
    if failed is None:
        fr = report_json(sessions)["connections"][0]["frames"]
        counted = (
            sum(fr["out"].values()) + sum(fr["in"].values()) + fr["errors"] + sum(fr["dropped"].values())
        )
        assert counted == len(entry["_webSocketMessages"])


def test_a_silent_socket_beside_sockets_with_frames_is_client_silent(capsys, tmp_path):
    """Chrome keeps every socket's frames: in a HAR where one socket carries frames, a 101 socket with none
    sent none, which is client-silent (a wrapper that never saw `open`); alone, it could be the producer's
    doing, and nothing is claimed."""
    both = write_json(tmp_path / "both.har", chrome([Conn(), Conn(frames=[], start=T0 + 40)]))
    report = diagnose(capsys, both)[1]["connections"]
    assert [f["code"] for f in report[1]["findings"]][:1] == ["client-silent"]
    assert "client-silent" not in [f["code"] for f in report[0]["findings"]]


# ---------------------------------------------------------------------- captures with no Realtime connection


def test_a_capture_with_no_realtime_connection_exits_2_saying_what_it_holds(tmp_path):
    """README: exit 2 for a capture with nothing to diagnose. rtdiagnose and rtreplay say what the capture
    holds instead; rtsanitize still sanitizes it (its other requests carry credentials too)."""
    vite = Conn(url=VITE_URL, frames=[(0.1, "send", '{"type":"connect"}')])
    page = tflow.tflow(resp=True)  # an ordinary request and response
    cases = {
        "vite.har": (
            chrome([vite]),
            "1 WebSocket(s), none of them Realtime's (no Realtime path, query or first frame)",
        ),
        "page.har": (mitmproxy_har([page]), "1 request(s), no WebSocket among them"),
        "empty.har": ({"log": {"version": "1.2", "entries": []}}, "no request at all"),
        "vite.flows": (flows([vite]), "1 WebSocket(s), none of them Realtime's"),
        "page.flows": ([page], "1 flow(s), no WebSocket among them"),
    }
    for name, (content, held) in cases.items():
        path = tmp_path / name
        if name.endswith(".flows"):
            write_flows(path, content)
        else:
            write_json(path, content)
        why = f"{path}: no Realtime connection in it: {held}"
        for tool in ("rtdiagnose", "rtreplay"):
            r = subprocess.run(
                [command(tool), str(path)], capture_output=True, text=True, check=False, timeout=60
            )
            assert r.returncode == 2 and r.stdout == "", (tool, name, r.stdout)
            assert r.stderr.startswith(f"{tool}: {why}") and r.stderr.count("\n") == 1, (tool, name, r.stderr)
        r = subprocess.run(
            [command("rtsanitize"), str(path), str(tmp_path / f"out-{name}")],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert r.returncode == 0, (name, r.stderr)
