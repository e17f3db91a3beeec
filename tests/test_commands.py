"""Realtime-level commands on a live connection, and rt_mode/rt_fault changed at runtime, through
mitmproxy's command and option APIs as mitmweb's UI calls them (tests/webapi.py), with the real
`realtime` client through mitmweb + rtproxy to the local server. Flow marks and comments too.
"""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from conftest import TIMEOUT, command, read_flows, run_to_exit
from realtime import AsyncRealtimeClient
from webapi import start_mitmweb
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

TIMERS = "rt_timers=join=1,heartbeat=1,idle=60"
WS = "~websocket"  # the flow spec: each test has one WebSocket flow when it runs a command
# Realtime's own words (realtime_web/channels/auth/channels_authorization.ex, authorize_conn/3):
# msg = "Token has expired #{validation_timer - claim_val} seconds ago"
EXPIRED = r"Token has expired \d+ seconds ago"


async def until(predicate, what: str) -> None:
    async def loop():
        while not predicate():
            await asyncio.sleep(0.01)  # polls the client's state; bounded by wait_for

    try:
        await asyncio.wait_for(loop(), TIMEOUT)
    except TimeoutError:
        raise AssertionError(f"never: {what}") from None


@pytest.fixture
async def web(local_server, mitmdump, tmp_path):
    """mitmweb + rtproxy in front of the local server, its flows also written to flows.mitm."""
    proc, api = await start_mitmweb(
        mitmdump, f"rt_supabase_url={local_server.url}", TIMERS, extra=("-w", str(tmp_path / "flows.mitm"))
    )
    return proc, api


async def joined(proc, anon_key, name="room1") -> tuple[AsyncRealtimeClient, object, list]:
    rt = AsyncRealtimeClient(
        f"ws://127.0.0.1:{proc.port}/realtime/v1",
        token=anon_key,
        auto_reconnect=False,
        timeout=3,
    )
    await rt.connect()
    got: list = []
    ch = rt.channel(name, {"config": {"broadcast": {"self": True}}})
    ch.on_broadcast("*", lambda m: got.append(m))
    statuses: list[str] = []
    await ch.subscribe(lambda status, err: statuses.append(status.value))
    await until(lambda: statuses, "a join outcome")
    assert statuses == ["SUBSCRIBED"]
    return rt, ch, got


async def test_expire_plays_the_servers_token_expiry_and_marks_the_flow(web, anon_key, tmp_path):
    proc, api = web
    rt, ch, _ = await joined(proc, anon_key)
    assert (await api.command("rt.expire", WS, "realtime:room1")) == {"value": None}
    await until(lambda: ch.is_closed, "the channel closed")  # realtime-py: system error, then phx_close
    await proc.wait_for(r"hop: command: rt\.expire: expired the token of realtime:room1")
    await proc.wait_for(rf"finding token-expired realtime:room1 .*{EXPIRED}")
    await proc.wait_for(r"finding rtproxy-command .*rt\.expire: expired the token of realtime:room1")
    flow = next(f for f in await api.flows() if f.get("websocket"))
    # The channel, what the client saw (realtime-js's claim until the frames say it is realtime-py), why.
    assert flow["marked"] == "✖" and re.fullmatch(
        r"room1 CHANNEL_ERROR(/CLOSED)? · token expired after rt\.expire · rtproxy: token-expired \[rt \w{6}\]",
        flow["comment"],
    ), flow["comment"]
    # The channel has ended: the real server sends nothing more for it.
    answer = await api.command("rt.inject.server", WS, "realtime:room1", "phx_close", "{}")
    assert "realtime:room1 has ended (closed)" in answer.get("error", ""), answer
    await rt.close()
    # -w keeps both; savehar writes the comment into the entry, which mitmproxy itself leaves out.
    har = tmp_path / "out.har"
    assert (await api.command("save.har", "@all", str(har))) == {"value": None}
    entry = next(e for e in json.loads(har.read_text())["log"]["entries"] if "_webSocketMessages" in e)
    assert entry["comment"] == flow["comment"] and entry["_marked"] == ":heavy_multiplication_x:"
    await proc.stop()
    saved = [f for f in read_flows(tmp_path / "flows.mitm") if getattr(f, "websocket", None)]
    assert saved[0].marked == ":heavy_multiplication_x:" and saved[0].comment == flow["comment"]
    # Offline, the flow file says what rtproxy did, as the live log did.
    _, out = await run_to_exit([command("rtdiagnose"), "--json", str(tmp_path / "flows.mitm")])
    found = {f["code"]: f for c in json.loads(out)["connections"] for f in c["findings"]}
    assert "rt.expire" in found["rtproxy-command"]["evidence"]
    assert found["token-expired"]["evidence"].endswith("(after rtproxy's rt.expire on this connection)")


async def test_inject_either_way_with_the_channels_refs(web, anon_key):
    proc, api = web
    rt, _, got = await joined(proc, anon_key)
    # To the client: a broadcast as the server sends it (realtime-py takes it by topic and event).
    payload = json.dumps({"type": "broadcast", "event": "note", "payload": {"from": "server"}})
    assert (await api.command("rt.inject.server", WS, "realtime:room1", "broadcast", payload)) == {
        "value": None
    }
    await until(lambda: got, "the injected broadcast reached the client")
    assert got[0]["payload"] == {"from": "server"}
    # To the server: a broadcast as the client sends it; broadcast.self echoes it to the client.
    payload = json.dumps({"type": "broadcast", "event": "note", "payload": {"from": "client"}})
    assert (await api.command("rt.inject.client", WS, "realtime:room1", "broadcast", payload)) == {
        "value": None
    }
    await until(lambda: len(got) == 2, "the server accepted the injected push and echoed it")
    assert got[1]["payload"] == {"from": "client"}
    await proc.wait_for(
        r"hop: command: rt\.inject\.client: sent the server broadcast on realtime:room1 "
        r"\(join_ref \d+, ref rtproxy-\d+, text\)"
    )
    # Refused with a reason: a topic the connection has not joined, no push awaiting a reply, bad JSON.
    for args, why in (
        (("realtime:nope", "broadcast", "{}"), "no channel 'realtime:nope' on this connection"),
        (("realtime:room1", "phx_reply", '{"status":"error","response":{}}'), "no push on"),
        (("realtime:room1", "broadcast", "[1]"), "must be a JSON object"),
        (("realtime:room1", "broadcast", "{"), "no JSON"),
    ):
        answer = await api.command("rt.inject.server", WS, *args)
        assert why in answer.get("error", ""), answer
    await rt.close()


@pytest.mark.parametrize(("code", "seen"), [("4000", 4000), ("1006", 1006)])
async def test_close_with_a_code_or_dropped(web, anon_key, code, seen):
    """Both are what a hop can do; the findings are the real failure's, and say rtproxy did it."""
    proc, api = web
    async with connect(f"ws://127.0.0.1:{proc.port}/realtime/v1/websocket?apikey={anon_key}&vsn=2.0.0") as ws:
        await ws.send(json.dumps(["1", "1", "realtime:room1", "phx_join", {"config": {}}]))
        await asyncio.wait_for(ws.recv(), TIMEOUT)
        answer = await api.command("rt.close", WS, code, "bye")
        assert answer == {"value": None}, answer
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert (ws.close_code or 1006) == seen
        if seen == 4000:
            assert ws.close_reason == "bye"
    after = r"\(after rtproxy's rt\.close on this connection\)"
    if seen == 4000:  # a warning: the comment, no marker
        await proc.wait_for(rf"finding server-close .*4000.*{after}")
        flow = next(f for f in await api.flows() if f.get("websocket"))
        assert flow["comment"] == (
            f"CHANNEL_ERROR · server close after rt.close · rtproxy: server-close [rt {flow['id'][:6]}]"
        )
        assert not flow["marked"]
    await proc.wait_for(r"finding rtproxy-command .*rt\.close")
    assert "has ended" in (await api.command("rt.close", WS, "4000")).get("error", "")


async def test_close_refuses_codes_that_cannot_be_sent(web, anon_key):
    proc, api = web
    async with connect(f"ws://127.0.0.1:{proc.port}/realtime/v1/websocket?apikey={anon_key}&vsn=2.0.0") as ws:
        await ws.send(json.dumps(["1", "1", "realtime:room1", "phx_join", {"config": {}}]))
        await asyncio.wait_for(ws.recv(), TIMEOUT)
        for code in ("1004", "1005", "2000", "1015", "5000"):
            assert "rt.close: " in (await api.command("rt.close", WS, code)).get("error", ""), code
        await ws.send(json.dumps([None, "2", "phoenix", "heartbeat", {}]))
        assert json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))[3] == "phx_reply"  # still open


async def test_fault_switched_at_runtime_reaches_live_and_new_connections(web, anon_key):
    proc, api = web
    # A raw client, so the heartbeat comes when the test sends it (realtime-py sends one every
    # max(hb_interval, 15) s: realtime/_async/client.py, _heartbeat).
    async with connect(f"ws://127.0.0.1:{proc.port}/realtime/v1/websocket?apikey={anon_key}&vsn=2.0.0") as ws:
        await ws.send(json.dumps(["1", "1", "realtime:room1", "phx_join", {"config": {}}]))
        await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert (await api.set_options(rt_fault="swallow-heartbeats")) in (None, {})
        await proc.wait_for(
            r"rt_fault is now swallow-heartbeats: new connections get it; 1 open connection\(s\) too"
        )
        await ws.send(json.dumps([None, "2", "phoenix", "heartbeat", {}]))
        await proc.wait_for(r"hop: fault: swallowed a heartbeat reply")  # on the connection already open
        await proc.wait_for(r"finding heartbeat-timeout")
        answer = await api.set_options(rt_fault="nonsense")
        assert "unknown fault 'nonsense'" in json.dumps(answer), answer  # refused, the old value stays
        assert (await api.set_options(rt_fault="")) in (None, {})
        await proc.wait_for(r"rt_fault is now none: new connections get it")
        await ws.send(json.dumps([None, "3", "phoenix", "heartbeat", {}]))
        reply = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        assert reply[1] == "3" and reply[3] == "phx_reply"  # answered again: the fault left the live one


async def test_mode_switched_at_runtime_applies_to_new_connections(web, anon_key):
    proc, api = web
    assert (await api.set_options(rt_mode="as-written")) in (None, {})
    await proc.wait_for(r"rt_mode fixed -> as-written: new connections use it")
    with pytest.raises(InvalidStatus) as e:
        async with connect(f"ws://127.0.0.1:{proc.port}/realtime/v1/websocket?apikey={anon_key}&vsn=2.0.0"):
            pass
    assert e.value.response.status_code == 426  # the design's Worker as written


async def test_the_users_own_marker_and_comment_are_left_alone(web, anon_key):
    proc, api = web
    rt, _, _ = await joined(proc, anon_key)
    flow = next(f for f in await api.flows() if f.get("websocket"))
    await api.update_flow(flow["id"], marked=":star:", comment="mine: look at this one")
    assert (await api.command("rt.expire", WS)) == {"value": None}  # an error finding
    await proc.wait_for(r"finding token-expired")
    flow = next(f for f in await api.flows() if f.get("websocket"))
    assert (flow["marked"], flow["comment"]) == ("⭐", "mine: look at this one")  # mitmweb shows the emoji
    await rt.close()


# ------------------------------------------------------------------------- aiming a command, rt.channels


async def subscribed(proc, anon_key, *names: str) -> tuple[AsyncRealtimeClient, dict, str]:
    """The real client joined to each channel of `names` on one connection; (client, channels by name, the
    connection's id as the log prints it: `[rt 009be2] realtime:NAME joined in …`)."""
    start = len(proc.lines)
    rt = AsyncRealtimeClient(
        f"ws://127.0.0.1:{proc.port}/realtime/v1", token=anon_key, auto_reconnect=False, timeout=3
    )
    await rt.connect()
    channels = {}
    for name in names:
        ch = rt.channel(name)
        statuses: list[str] = []
        await ch.subscribe(lambda status, err, seen=statuses: seen.append(status.value))
        await until(lambda seen=statuses: seen, f"a join outcome for {name}")
        assert statuses == ["SUBSCRIBED"]
        channels[name] = ch
    conn = (await proc.wait_for(rf"\[rt (\w{{6}})\] realtime:{names[-1]} joined in", start=start)).group(1)
    return rt, channels, conn


def table_rows(lines: list[str], header_at: int) -> list[list[str]]:
    """rt.channels' rows as logged after the header line at `header_at`: cells split at runs of spaces
    (after the log's `[12:00:00.000] ` time)."""
    rows = []
    for line in lines[header_at + 1 :]:
        cells = re.split(r"\s{2,}", re.sub(r"^\[[\d:.]+\] ", "", line).strip())
        if len(cells) < 7:
            break
        rows.append(cells)
    return rows


async def test_commands_aimed_by_connection_id_topic_or_flow_spec(web, anon_key):
    """The short id the log prints and a channel's topic each name one live connection; a topic on two
    connections, a flow spec matching both, or nothing at all is refused with the candidates."""
    proc, api = web
    a, a_ch, conn_a = await subscribed(proc, anon_key, "room1", "shared")
    b, b_ch, conn_b = await subscribed(proc, anon_key, "room2", "shared")
    assert conn_a != conn_b

    answer = await api.command("rt.expire", "nosuch")
    error = answer.get("error", "")
    assert "rt.expire: nothing matches 'nosuch'" in error, answer
    assert f"{conn_a} (realtime:room1, realtime:shared)" in error and f"{conn_b} (" in error
    answer = await api.command("rt.expire", "room1")
    assert "a topic is written as the log shows it: realtime:room1" in answer.get("error", ""), answer

    payload = json.dumps({"type": "broadcast", "event": "note", "payload": {}})
    answer = await api.command("rt.inject.server", "realtime:shared", "realtime:shared", "broadcast", payload)
    assert answer.get("error", "").startswith(
        "rt.inject.server: realtime:shared is on 2 live connections: name one by its id: "
    ), answer
    assert f"{conn_a} (joined)" in answer["error"] and f"{conn_b} (joined)" in answer["error"]
    answer = await api.command("rt.close", WS, "4000")
    assert "~websocket matches 2 live Realtime connections: name one by its id" in answer.get("error", "")

    # By id: B's room2 expires; A's channels and B's other one stay joined.
    assert (await api.command("rt.expire", conn_b, "realtime:room2")) == {"value": None}
    await until(lambda: b_ch["room2"].is_closed, "B's room2 closed")
    await proc.wait_for(rf"\[rt {conn_b}\] hop: command: rt\.expire: expired the token of realtime:room2")
    # By topic, which names the channel too: A's room1.
    assert (await api.command("rt.expire", "realtime:room1")) == {"value": None}
    await until(lambda: a_ch["room1"].is_closed, "A's room1 closed")
    await proc.wait_for(rf"\[rt {conn_a}\] hop: command: rt\.expire: expired the token of realtime:room1")
    assert a_ch["shared"].is_joined and b_ch["shared"].is_joined
    # The topic has ended on A: the connection is still found, the channel refused as the server would.
    answer = await api.command("rt.expire", "realtime:room1")
    assert "realtime:room1 has ended (closed)" in answer.get("error", ""), answer

    await b.close()
    await proc.wait_for(rf"\[rt {conn_b}\] .*closed")
    answer = await api.command("rt.close", conn_b, "4000")
    assert answer.get("error") == f"rt.close: connection {conn_b} has ended", answer
    await a.close()


async def test_rt_channels_table_and_json_name_the_finding_the_comment_names(web, anon_key):
    """One row per channel in the event log (JSON on request), and the finding each row names is the one
    the flow's comment names: both are the connection's ranked findings' first (a dropped join's
    join-timeout comes later, but follows from the drop)."""
    proc, api = web
    a, _, conn_a = await subscribed(proc, anon_key, "room1", "room2")
    assert (await api.command("rt.expire", conn_a, "realtime:room1")) == {"value": None}
    await proc.wait_for(rf"\[rt {conn_a}\] finding token-expired realtime:room1")
    assert (await api.set_options(rt_fault="drop-join")) in (None, {})
    async with connect(f"ws://127.0.0.1:{proc.port}/realtime/v1/websocket?apikey={anon_key}&vsn=2.0.0") as ws:
        await ws.send(json.dumps(["3", "3", "realtime:room3", "phx_join", {"config": {}}]))
        dropped = await proc.wait_for(r"\[rt (\w{6})\] finding join-dropped-by-proxy realtime:room3")
        conn_c = dropped.group(1)
        await proc.wait_for(rf"\[rt {conn_c}\] finding join-timeout realtime:room3")  # the later finding

        start = len(proc.lines)
        answer = await api.command("rt.channels")
        assert answer == {"value": "rt.channels: 3 row(s) on 2 connection(s), in the event log"}, answer
        header = await proc.wait_for(r"CONN +SOCKET +TOPIC +STATE +JOIN +OUTCOME +FINDING$", start=start)
        at = next(i for i in range(start, len(proc.lines)) if header.string == proc.lines[i])
        await proc.wait_until(lambda lines: len(table_rows(lines, at)) == 3, "three rows logged")
        # conn, socket, topic, state, join latency, outcome, finding
        rows = {(r[0], r[2]): r for r in table_rows(proc.lines, at)}
        assert rows.keys() == {
            (conn_a, "realtime:room1"),
            (conn_a, "realtime:room2"),
            (conn_c, "realtime:room3"),
        }
        room1, room2 = rows[(conn_a, "realtime:room1")], rows[(conn_a, "realtime:room2")]
        room3 = rows[(conn_c, "realtime:room3")]
        assert room1[1] == room2[1] == room3[1] == "open"
        assert re.fullmatch(r"\d+ ms", room1[4]) and re.fullmatch(r"\d+ ms", room2[4])
        assert [room1[3], *room1[5:]] == ["closed", "CLOSED", "token-expired"]
        assert [room2[3], *room2[5:]] == ["joined", "SUBSCRIBED", "-"]
        assert room3[3:] == [
            "joining",
            "-",
            "TIMED_OUT",
            "join-dropped-by-proxy",
        ]  # not the later join-timeout

        answer = await api.command("rt.channels", "json")
        table = {c["conn"]: c for c in json.loads(answer["value"])["connections"]}
        assert table[conn_c] == {
            "conn": conn_c,
            "socket": "open",
            "vsn": "2.0.0",
            "finding": "join-dropped-by-proxy",
            "channels": [
                {
                    "topic": "realtime:room3",
                    "join": 1,
                    "state": "joining",
                    "join_latency_ms": None,
                    "outcome": "TIMED_OUT",
                    "finding": "join-dropped-by-proxy",
                }
            ],
        }
        assert [ch["outcome"] for ch in table[conn_a]["channels"]] == ["CLOSED", "SUBSCRIBED"]
        assert table[conn_a]["finding"] == "token-expired"
        answer = await api.command("rt.channels", "csv")
        assert answer.get("error", "").startswith(
            "rt.channels: 'csv' is no form: table (the default) or json"
        )

        # The comment on each flow names the same finding.
        comments = {f["id"][:6]: f["comment"] for f in await api.flows() if f.get("websocket")}
        for conn, c in table.items():
            assert comments[conn].endswith(f" · rtproxy: {c['finding']} [rt {conn}]"), (
                conn,
                comments[conn],
                c,
            )
    await a.close()
