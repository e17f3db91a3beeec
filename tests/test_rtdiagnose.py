"""rtdiagnose on the three capture kinds, each written by the tests from real runs through the addon:
a mitmproxy flow file (-w), a HAR from mitmproxy's savehar (hardump), and a HAR in Chrome DevTools' shape."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest
from chrome_har import write_chrome_har
from conftest import command
from realtime import AsyncRealtimeClient
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

RTDIAGNOSE = [command("rtdiagnose")]
UNAUTHORIZED = "Unauthorized: You do not have permissions to read from this Channel topic: private-room"


def rtdiagnose(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*RTDIAGNOSE, *map(str, args)], capture_output=True, text=True, check=False, timeout=60
    )


async def join(port: int, key: str, name: str, until: str | None = None) -> list[str]:
    """Join `name`; with `until`, stay connected until the client reports that status."""
    rt = AsyncRealtimeClient(
        f"ws://127.0.0.1:{port}/realtime/v1", token=key, auto_reconnect=False, max_retries=1
    )
    statuses: list[str] = []
    reached = asyncio.Event()

    def on_status(status, err):
        statuses.append(status.value)
        if status.value == until:
            reached.set()

    await rt.connect()
    ch = rt.channel(name, {"config": {"broadcast": {"self": True}}})
    await ch.subscribe(on_status)
    if until:
        await asyncio.wait_for(reached.wait(), 10)
    if statuses == ["SUBSCRIBED"] and name == "room1":
        got = asyncio.Event()
        ch.on_broadcast("hi", lambda _: got.set())
        await ch.send_broadcast("hi", {"n": 1})
        await asyncio.wait_for(got.wait(), 10)
    await rt.close()
    return statuses


async def capture(mitmdump, local_server, tmp_path, key, names: list[str], keyless: bool):
    flows, har = tmp_path / "run.flows", tmp_path / "run.har"
    proxy = await mitmdump(
        f"rt_supabase_url={local_server.url}",
        f"hardump={har}",
        f"rt_report={tmp_path}/live.md",
        extra=("-w", str(flows)),
    )
    for name in names:
        await join(proxy.port, key, name, until="CLOSED" if name == "doomed" else None)
    if keyless:
        with pytest.raises(InvalidStatus):
            async with connect(f"ws://127.0.0.1:{proxy.port}/realtime/v1/websocket?vsn=1.0.0"):
                pass
    await proxy.stop()  # hardump is written on exit
    chrome = tmp_path / "chrome.har"
    write_chrome_har(flows, chrome)
    return {"flow file": flows, "mitmproxy HAR": har, "Chrome HAR": chrome}


@pytest.fixture
async def failing_run(mitmdump, local_server, tmp_path, anon_key):
    local_server.config.join_errors = {"private-room": UNAUTHORIZED}
    local_server.config.shutdown_channels = {"doomed": "Too many messages per second"}
    return await capture(
        mitmdump, local_server, tmp_path, anon_key, ["room1", "private-room", "doomed"], True
    )


async def test_all_capture_kinds_give_the_same_diagnosis(failing_run, anon_key):
    for kind, path in failing_run.items():
        assert path.exists(), kind
        r = rtdiagnose(path, "--json")
        assert r.returncode == 1, (kind, r.stderr)
        report = json.loads(r.stdout)
        conns = report["connections"]
        assert len(conns) == 4, kind
        codes = {f["code"] for c in conns for f in c["findings"]}
        # "doomed" is stopped with Realtime's "Too many messages per second": named as the quota it is
        assert {"join-unauthorized", "rate-limited", "apikey-missing"} <= codes, (kind, codes)
        shutdown = [f for c in conns for f in c["findings"] if f["code"] == "channel-shutdown"]
        assert [f["follows"] for f in shutdown] == ["rate-limited"], (kind, shutdown)  # the stop, a symptom
        unauthorized = next(f for c in conns for f in c["findings"] if f["code"] == "join-unauthorized")
        assert unauthorized["topic"] == "realtime:private-room" and UNAUTHORIZED in unauthorized["evidence"]
        assert set(unauthorized) == {
            "code",
            "severity",
            "topic",
            "explains",
            "evidence",
            "fix",
            "confidence",
            "candidates",
            "follows",
            "began",
            "chain",
        }
        assert unauthorized["confidence"] == "certain" and unauthorized["follows"] is None
        assert unauthorized["chain"] == [] and isinstance(unauthorized["began"], float)
        healthy = next(c for c in conns if any(ch["topic"] == "realtime:room1" for ch in c["channels"]))
        assert [f for f in healthy["findings"] if f["severity"] != "info"] == [], kind
        assert healthy["channels"][0]["broadcasts_received"] == 1
        assert anon_key not in r.stdout and "apikey=[redacted]" in r.stdout, kind


async def test_live_report_matches_offline(failing_run, anon_key):
    """rt_report (the rt.report command, run on exit) writes the same findings the offline run gives."""
    folder = failing_run["flow file"].parent
    live = json.loads((folder / "live.json").read_text())
    offline = json.loads(rtdiagnose(failing_run["flow file"], "--json").stdout)
    codes = lambda r: sorted(f["code"] for c in r["connections"] for f in c["findings"])
    assert codes(live) == codes(offline)
    md = (folder / "live.md").read_text()
    assert "| `join-unauthorized` | 1 |" in md and "| realtime:private-room | errored |" in md
    assert anon_key not in md


async def test_text_output_for_people(failing_run):
    r = rtdiagnose(failing_run["Chrome HAR"])
    assert r.returncode == 1
    assert "[error] join-unauthorized realtime:private-room → CHANNEL_ERROR" in r.stdout
    assert "evidence: phx_join answered status error" in r.stdout and "fix: " in r.stdout


async def test_healthy_capture_exits_zero(mitmdump, local_server, tmp_path, anon_key):
    paths = await capture(mitmdump, local_server, tmp_path, anon_key, ["room1"], False)
    for kind, path in paths.items():
        r = rtdiagnose(path)
        assert r.returncode == 0, (kind, r.stdout)


NOT_A_CAPTURE = "not a HAR or a mitmproxy flow file: "
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01"


@pytest.mark.parametrize(
    "content,why",
    [
        (b"\x00\x01garbage", NOT_A_CAPTURE + "binary data starting 00 01 67 61 72 62 61 67"),
        (
            b"hello, this is my bug report\nsecond line\n",
            NOT_A_CAPTURE + "text starting 'hello, this is my bug report'",
        ),
        (PNG, NOT_A_CAPTURE + "a PNG image"),
        (b'{"not": "a har"}', NOT_A_CAPTURE + "JSON without a HAR's 'log' object (its keys: 'not')"),
        (
            b'[{"log": {}}]',
            NOT_A_CAPTURE + "JSON whose top level is an array (a HAR is an object holding 'log')",
        ),
        (
            b"<!DOCTYPE html><html><head>",
            NOT_A_CAPTURE + "an HTML page (a browser's 'Save page as', not a HAR)",
        ),
        (b"", "the file is empty"),
        (b"{broken json", "not valid JSON (a HAR file is JSON)"),
        (b"12:not a flow!", "not a mitmproxy flow file: "),  # looks like one (a tnetstring), is not
    ],
)
def test_unreadable_input_exits_2_with_one_line_saying_what_it_is(tmp_path, content, why):
    """rtdiagnose, rtreplay and rtsanitize read a file the same way (rtproxy_tools.captures.format_of): a
    file that is no capture is named for what it looks like, in one line, exit 2."""
    p = tmp_path / "capture"
    p.write_bytes(content)
    for args in (
        [command("rtdiagnose"), p],
        [command("rtreplay"), p],
        [command("rtsanitize"), p, tmp_path / "out"],
    ):
        r = subprocess.run(list(map(str, args)), capture_output=True, text=True, check=False, timeout=60)
        name = Path(args[0]).name
        assert r.returncode == 2 and r.stdout == "", (name, r.stdout)
        assert r.stderr.count("\n") == 1 and r.stderr.startswith(f"{name}: {p}: {why}"), (name, r.stderr)


def test_missing_file_exits_2(tmp_path):
    r = rtdiagnose(tmp_path / "nope.har")
    assert r.returncode == 2 and "cannot read" in r.stderr


def _har_connection(start: float, frames: list[tuple[float, str, list]]) -> dict:
    return {
        "url": "wss://abcdefghijklmnopqrst.supabase.co/realtime/v1/websocket?apikey=k&vsn=1.0.0",
        "start": start,
        "status": 101,
        "end": 30.0,
        "frames": [{"t": t, "dir": d, "text": json.dumps(m)} for t, d, m in frames],
    }


def test_a_reconnect_is_looked_for_in_the_same_file_only(tmp_path):
    """A HAR keeps no close frames: the next connection of the same client (same place, same channels) says
    the other side ended the first. Another file may be another user of the project: it says nothing."""
    from corpus import har

    joined = [
        (0.1, "send", {"topic": "realtime:room", "event": "phx_join", "payload": {"config": {}}, "ref": "1"}),
        (
            0.2,
            "receive",
            {
                "topic": "realtime:room",
                "event": "phx_reply",
                "ref": "1",
                "payload": {"status": "ok", "response": {"postgres_changes": []}},
            },
        ),
        (25.1, "send", {"topic": "phoenix", "event": "heartbeat", "payload": {}, "ref": "2"}),
        (
            25.2,
            "receive",
            {
                "topic": "phoenix",
                "event": "phx_reply",
                "ref": "2",
                "payload": {"status": "ok", "response": {}},
            },
        ),
    ]
    first, second = _har_connection(1.8e9, joined), _har_connection(1.8e9 + 31.0, joined[:2])
    both, a, b = tmp_path / "both.har", tmp_path / "a.har", tmp_path / "b.har"
    both.write_text(json.dumps(har({"connections": [first, second]})))
    a.write_text(json.dumps(har({"connections": [first]})))
    b.write_text(json.dumps(har({"connections": [second]})))

    def codes(*paths):
        out = json.loads(rtdiagnose(*paths, "--json").stdout)["connections"]
        return [[f["code"] for f in c["findings"]] for c in out]

    assert codes(both) == [["server-close"], []]
    assert codes(a, b) == [[], []]


async def test_a_relay_mode_har_names_the_clients_url_its_close_and_its_comment(
    mitmdump, local_server, tmp_path, anon_key
):
    """mitmproxy's savehar of an rt_mode=relay session (hardump, written on exit): the flow went to
    rtproxy's internal relay (the stored flow gets the client's URL back), and savehar keeps no close,
    comment or marker. With rtproxy loaded the entry
    carries the client's URL and the close (`_rtproxy`), and the comment and marker (savehar writes hardump
    after rtproxy's `done`), and rtdiagnose reads them as it reads the run's flow file. The same HAR as mitmproxy alone writes it (no
    `_rtproxy`, no comment): the join that was never answered is `join-unanswered`, not "no findings"."""
    har, flows = tmp_path / "relay.har", tmp_path / "relay.flows"
    proxy = await mitmdump(
        f"rt_supabase_url={local_server.url}", "rt_mode=relay", f"hardump={har}", extra=("-w", str(flows))
    )
    client_url = f"http://127.0.0.1:{proxy.port}/realtime/v1/websocket"
    async with connect(
        f"ws://127.0.0.1:{proxy.port}/realtime/v1/websocket?apikey={anon_key}&vsn=1.0.0"
    ) as ws:
        join = {
            "topic": "realtime:room1",
            "event": "phx_join",
            "payload": {"config": {}},
            "ref": "1",
            "join_ref": "1",
        }
        await ws.send(json.dumps(join))  # at once: the relay drops it while its upstream leg connects
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011  # the relay: "Proxy server error"
    await proxy.wait_for(r"closed by server: 1011")
    await proxy.stop()  # hardump is written on exit

    doc = json.loads(har.read_text())
    entry = next(e for e in doc["log"]["entries"] if "_webSocketMessages" in e)
    # The stored flow shows the client's URL again once the upgrade went upstream (marks/sanitize): the
    # entry's URL is the client's, not rtproxy's internal relay.
    assert entry["request"]["url"].startswith(client_url)
    assert entry["_rtproxy"]["clientUrl"].startswith(client_url + "?apikey=")
    assert anon_key not in har.read_text()  # stored sanitized, _rtproxy too
    assert entry["_rtproxy"]["close"]["code"] == 1011 and entry["_rtproxy"]["close"]["byClient"] is False
    assert entry["comment"] and entry["_marked"]  # rtproxy's top finding, as mitmweb shows it
    r = rtdiagnose(har)
    assert f"connection 1: {client_url}?apikey=[redacted]&vsn=1.0.0" in r.stdout, r.stdout
    assert "closed 1011 Proxy server error" in r.stdout
    note = f"Realtime connection 1 of this capture has the comment {entry['comment']!r} and the marker "
    assert f"relay.har: {note}" in r.stdout, r.stdout
    in_flows = rtdiagnose(flows)  # the flow file of the same run says the same
    assert f"relay.flows: {note}" in in_flows.stdout and "closed 1011 Proxy server error" in in_flows.stdout
    assert f"connection 1: {client_url}?apikey=[redacted]&vsn=1.0.0" in in_flows.stdout

    for e in doc["log"]["entries"]:  # what mitmproxy alone writes
        for key in ("_rtproxy", "comment", "_marked"):
            e.pop(key, None)
    bare = tmp_path / "bare.har"
    bare.write_text(json.dumps(doc))
    r = rtdiagnose(bare, "--json")
    assert r.returncode == 0, r.stderr  # a warning: what became of the join is not in the capture
    found = json.loads(r.stdout)["connections"][0]["findings"]
    assert [f["code"] for f in found] == ["join-unanswered"], found
    assert found[0]["evidence"].startswith(
        "no phx_reply to phx_join for realtime:room1 when the capture ended, 0.0 s after it was sent, before "
        "the client's 10 s join timeout"
    )
