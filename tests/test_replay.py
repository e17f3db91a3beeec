"""rtreplay: a capture re-run on real sockets (127.0.0.1).

For a capture of each class (join refused, token expired, heartbeat unanswered, channel shut down, upgrade
refused) the real `realtime` Python client runs through rtproxy (mitmdump, rt_supabase_url pointing at
`rtreplay --serve`) and must reach the status the original client reached, and rtproxy's top finding on the
replay (its rt_report file) must be the capture's own (`rtdiagnose --json`). The captures are the corpus's
cases (threads' verbatim strings, tests/corpus.py) where one fits, else recorded through rtproxy with a
fault, the way tests/test_e2e_faults.py runs them. `rtreplay --client` against the local server reproduces a
healthy capture with no finding. The supabase-js side of the same classes is tests/browser/test_replay_browser.py.

Timers are short on every side: the client's join timeout, rt_timers, and --speed on the replay.
"""

from __future__ import annotations

import asyncio
import copy
import gzip
import json
import signal
from pathlib import Path

import pytest
from conftest import TIMEOUT, Mitmdump, command, run_to_exit
from corpus import CASES, har, write_capture
from realtime import AsyncRealtimeClient
from rtproxy_core import frames, replay
from rtproxy_core.events import Closed, Frame, Handshake, Hop, Opened
from rtproxy_core.replay import Script, ServerPlayer
from rtproxy_tools import replay as rtreplay
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

CASE = {c["id"]: c for c in CASES}
JOIN_TIMEOUT_S = 2  # the Python client's (its timeout is whole seconds)
TIMERS = f"join={JOIN_TIMEOUT_S},heartbeat=1,idle=60"  # as the live clients here run them
SECRET = "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoiYW5vbiIsImV4cCI6MjAwMDAwMDAwMH0.c2VjcmV0LXNpZ25hdHVyZQ"


class Rtreplay(Mitmdump):
    """`rtreplay CAPTURE --serve ...` as a subprocess whose output lines can be awaited (Mitmdump's
    machinery: start() awaits the "listening at ws://127.0.0.1:PORT/..." line)."""

    def __init__(self, tmp: Path, *args: str) -> None:
        super().__init__(tmp)
        self.args = [command("rtreplay"), *args]


@pytest.fixture
async def rtreplay_serve(tmp_path):
    started: list[Rtreplay] = []

    async def start(capture: Path, *args: str) -> Rtreplay:
        r = await Rtreplay(tmp_path, str(capture), "--serve", *args).start()
        started.append(r)
        return r

    yield start
    for r in started:
        await r.stop()


def corpus_capture(case_id: str, tmp: Path) -> Path:
    """The corpus case as the capture its thread's user could have attached (HAR or flow file)."""
    return write_capture(CASE[case_id], tmp)


def first_refusal_capture(tmp: Path) -> Path:
    """rls-read-denied-topicless as a HAR saved right after the first refusal: one join and its error (the
    client goes on rejoining after its backoff; the capture holds fewer joins than it sends)."""
    case = copy.deepcopy(CASE["rls-read-denied-topicless"])
    case["connections"][0]["frames"] = case["connections"][0]["frames"][:2]
    path = tmp / "first-refusal.har"
    path.write_text(json.dumps(har(case)))
    return path


def joined_topic(case_id: str) -> str:
    """The topic the case's client joined (its first frame), which the live client joins too."""
    first = frames.decode(
        CASE[case_id]["connections"][0]["frames"][0]["text"], binary=False, from_client=True
    )
    return first.topic


def rt_client(port: int, key: str) -> AsyncRealtimeClient:
    return AsyncRealtimeClient(
        f"ws://127.0.0.1:{port}/realtime/v1",
        token=key,
        auto_reconnect=False,
        max_retries=1,
        timeout=JOIN_TIMEOUT_S,
    )


async def statuses_until(statuses: list[str], n: int) -> None:
    """Await the n-th status callback (the client reports later ones from its own tasks)."""

    async def wait():
        while len(statuses) < n:
            await asyncio.sleep(0)  # yield to the client's tasks; bounded by wait_for

    await asyncio.wait_for(wait(), TIMEOUT)


async def subscribe(port: int, key: str, topic: str, n: int = 1) -> tuple[AsyncRealtimeClient, list[str]]:
    """The Python client joins `topic` (realtime:<name>) and reports its first n statuses."""
    client = rt_client(port, key)
    statuses: list[str] = []
    await client.connect()
    channel = client.channel(topic.removeprefix("realtime:"), {"config": {"broadcast": {"self": True}}})
    await channel.subscribe(lambda status, err: statuses.append(status.value))
    await statuses_until(statuses, n)
    return client, statuses


async def capture_top(capture: Path, connection: int = 1, timers: str | None = None) -> str:
    """The capture's top finding on that connection, as `rtdiagnose --json` ranks it."""
    args = [command("rtdiagnose"), "--json", str(capture)] + (["--timers", timers] if timers else [])
    _, out = await run_to_exit(args)
    found = json.loads(out)["connections"][connection - 1]["findings"]
    return found[0]["code"] if found else "no finding"


async def report_findings(proxy: Mitmdump, report: Path) -> list[str]:
    """rtproxy's findings on the first connection of the run, ranked, from its rt_report file (written on
    exit)."""
    await proxy.stop()
    found = json.loads(report.with_suffix(".json").read_text())["connections"][0]["findings"]
    return [f["code"] for f in found]


async def report_top(proxy: Mitmdump, report: Path) -> str:
    """rtproxy's top finding on the first connection of the run."""
    found = await report_findings(proxy, report)
    return found[0] if found else "no finding"


async def through_rtproxy(mitmdump, port: int, report: Path, *sets: str) -> Mitmdump:
    """rtproxy as the Worker, its upstream the replay server (or any server on `port`)."""
    return await mitmdump(
        f"rt_supabase_url=http://127.0.0.1:{port}", f"rt_timers={TIMERS}", f"rt_report={report}", *sets
    )


async def record(
    tmp: Path, local_server, anon_key: str, fault: str, until: str, n: int
) -> tuple[Path, list[str]]:
    """A capture recorded through rtproxy (mitmdump -w) with `fault`, the Python client joining room1: the
    flow file and the statuses the client reached (n of them, then `until` in rtproxy's log)."""
    path = tmp / f"recorded-{fault.split('=')[0]}.flows"
    proxy = await Mitmdump(
        tmp,
        f"rt_supabase_url={local_server.url}",
        f"rt_fault={fault}",
        f"rt_timers={TIMERS}",
        extra=("-w", str(path)),
    ).start()
    try:
        client, statuses = await subscribe(proxy.port, anon_key, "realtime:room1", n)
        await proxy.wait_for(until)
        await client.close()
        await proxy.wait_for(r"closed by client")
    finally:
        await proxy.stop()
    return path, statuses


# ------------------------------------------------------------------------------------------ the classes


@pytest.mark.parametrize(
    ("case_id", "status", "speed"),
    [
        # join refused: "You do not have permissions to read from this Topic" (realtime #1111), CHANNEL_ERROR
        ("rls-read-denied-topicless", "CHANNEL_ERROR", 1),
        # token expired: a vsn 2.0.0 capture (realtime-js 2.111) replayed to a 1.0.0 client; the reply came
        # 5 s after the join (Realtime's join error backoff), 0.5 s at --speed 10
        ("v2-rejoin-stale-jwt-after-wake", "CHANNEL_ERROR", 10),
    ],
    ids=["join-refused", "token-expired"],
)
async def test_refused_join_replayed(case_id, status, speed, tmp_path, rtreplay_serve, mitmdump, anon_key):
    capture = corpus_capture(case_id, tmp_path)
    expected = await capture_top(capture)
    assert expected == CASE[case_id]["expect"]
    server = await rtreplay_serve(capture, "--speed", str(speed))
    report = tmp_path / "replay-report"
    proxy = await through_rtproxy(mitmdump, server.port, report)
    client, statuses = await subscribe(proxy.port, anon_key, joined_topic(case_id))
    assert statuses == [status]
    await server.wait_for(r"\[1\] .* -> realtime:\S+ phx_reply ref=\d+ \(server frame 2 of the capture")
    await client.close()
    await proxy.wait_for(r"closed by client")
    assert await report_top(proxy, report) == expected
    assert anon_key not in server.output + proxy.output
    assert "eyJ" not in server.output  # the capture's apikey and access tokens are redacted too


async def test_a_rejoin_beyond_the_capture_is_refused_as_the_capture_refused(
    tmp_path, rtreplay_serve, mitmdump, anon_key
):
    """The capture was saved after the first refusal: one join and its error. realtime-py rejoins 1 s
    after a refused join (channel.py, REJOIN_DELAYS_SECONDS); the rejoin, beyond the capture's joins, is
    refused with the capture's reason again, so the client reports CHANNEL_ERROR twice, not TIMED_OUT, and
    rtproxy finds no join timeout."""
    capture = first_refusal_capture(tmp_path)
    expected = await capture_top(capture)
    assert expected == "join-unauthorized"
    server = await rtreplay_serve(capture)
    report = tmp_path / "replay-report"
    proxy = await through_rtproxy(mitmdump, server.port, report)
    client, statuses = await subscribe(proxy.port, anon_key, joined_topic("rls-read-denied-topicless"), 2)
    assert statuses == ["CHANNEL_ERROR", "CHANNEL_ERROR"]
    await server.wait_for(
        r"\[1\] .* <- realtime:\S+ phx_join ref=2: beyond the capture's 1 join\(s\) on realtime:\S+; "
        r"answered as the capture answered its last \(client frame 1\): error after 0\.094 s"
    )
    await server.wait_for(r"\[1\] .* -> realtime:\S+ phx_reply ref=2 \(server frame 2 of the capture again")
    await client.close()
    await proxy.wait_for(r"closed by client")
    found = await report_findings(proxy, report)
    assert found[0] == expected and "join-timeout" not in found, found


async def test_heartbeat_unanswered_replayed(tmp_path, local_server, rtreplay_serve, mitmdump, anon_key):
    """Recorded through swallow-heartbeats: the heartbeat the client sent got no answer. realtime-py never
    times a heartbeat out itself (it stays SUBSCRIBED); rtproxy names it once the interval passed."""
    capture, original = await record(
        tmp_path, local_server, anon_key, "swallow-heartbeats", r"finding heartbeat-timeout", 1
    )
    assert original == ["SUBSCRIBED"]
    expected = await capture_top(capture, timers=TIMERS)
    assert expected == "heartbeat-timeout"
    server = await rtreplay_serve(capture)
    report = tmp_path / "replay-report"
    proxy = await through_rtproxy(mitmdump, server.port, report)
    client, statuses = await subscribe(proxy.port, anon_key, "realtime:room1")
    assert statuses == original
    await server.wait_for(r"<- phoenix heartbeat: client frame \d+ of the capture .*the hop dropped 1 answer")
    await proxy.wait_for(r"finding heartbeat-timeout .*still unanswered")
    await client.close()
    await proxy.wait_for(r"closed by client")
    assert await report_top(proxy, report) == expected


async def test_channel_shutdown_replayed(tmp_path, local_server, rtreplay_serve, mitmdump, anon_key):
    """Recorded through the shutdown fault: after the join, a `system` error in words Realtime never sends,
    then phx_close. realtime-py reports CHANNEL_ERROR for the system error, then CLOSED."""
    capture, original = await record(
        tmp_path,
        local_server,
        anon_key,
        "shutdown=Channel shut down for maintenance",
        r"finding channel-shutdown",
        3,
    )
    assert original == ["SUBSCRIBED", "CHANNEL_ERROR", "CLOSED"]
    expected = await capture_top(capture, timers=TIMERS)
    assert expected == "channel-shutdown"
    server = await rtreplay_serve(capture)
    report = tmp_path / "replay-report"
    proxy = await through_rtproxy(mitmdump, server.port, report)
    client, statuses = await subscribe(proxy.port, anon_key, "realtime:room1", 3)
    assert statuses == original
    await proxy.wait_for(r"finding channel-shutdown realtime:room1")
    await client.close()
    await proxy.wait_for(r"closed by client")
    assert await report_top(proxy, report) == expected


async def test_upgrade_refused_replayed(tmp_path, rtreplay_serve, mitmdump, anon_key):
    """Kong's 431 for chunked auth cookies (supabase/supabase #22018's headers): the refusal as captured,
    status and the gateway's headers, on every connection the client makes."""
    capture = corpus_capture("kong-431-chunked-auth-cookies", tmp_path)
    expected = await capture_top(capture)
    assert expected == "upgrade-rejected"
    server = await rtreplay_serve(capture, "--connection", "1")
    report = tmp_path / "replay-report"
    proxy = await through_rtproxy(mitmdump, server.port, report)
    for _ in range(2):  # the client retries: the refusal is replayed again
        with pytest.raises(InvalidStatus) as e:
            await rt_client(proxy.port, anon_key).connect()
        assert e.value.response.status_code == 431
        assert e.value.response.headers["Via"] == "kong/2.8.1"
    await server.wait_for(r"\[2\] upgrade .*: replaying the capture's connection again")
    assert await report_top(proxy, report) == expected


async def test_refusal_body_and_content_type_replayed(tmp_path, local_server, rtreplay_serve, anon_key):
    """Realtime's JSON refusal (recorded through strip-query: 401 "API key is missing"), straight to the
    client: its status, content-type and body, as captured."""
    path = tmp_path / "refused.flows"
    proxy = await Mitmdump(
        tmp_path, f"rt_supabase_url={local_server.url}", "rt_fault=strip-query", extra=("-w", str(path))
    ).start()
    try:
        with pytest.raises(InvalidStatus) as original:
            await rt_client(proxy.port, anon_key).connect()
        await proxy.wait_for(r"upgrade rejected: 401")
    finally:
        await proxy.stop()
    server = await rtreplay_serve(path)
    with pytest.raises(InvalidStatus) as replayed:
        await rt_client(server.port, anon_key).connect()
    a, b = original.value.response, replayed.value.response
    assert (b.status_code, b.body, b.headers["Content-Type"]) == (
        a.status_code,
        a.body,
        a.headers["Content-Type"],
    )
    assert json.loads(b.body) == {"error": "API key is missing"}


# ------------------------------------------------------------------------------------------ --client


async def test_client_reproduces_healthy_capture(tmp_path, local_server, mitmdump, anon_key):
    """A healthy session recorded through rtproxy (join, a broadcast to self, heartbeats) played by
    `rtreplay --client` against the local server, through rtproxy: the same answers, no finding."""
    capture = tmp_path / "healthy.flows"
    proxy = await Mitmdump(
        tmp_path, f"rt_supabase_url={local_server.url}", extra=("-w", str(capture))
    ).start()
    try:
        client, statuses = await subscribe(proxy.port, anon_key, "realtime:room1")
        assert statuses == ["SUBSCRIBED"]
        channel = client.channel("room1")
        echoed = asyncio.Event()
        channel.on_broadcast("cursor", lambda m: echoed.set())
        await channel.send_broadcast("cursor", {"x": 1})
        await asyncio.wait_for(echoed.wait(), TIMEOUT)
        await client.close()
        await proxy.wait_for(r"closed by client")
    finally:
        await proxy.stop()
    assert await capture_top(capture) == "no finding"

    report = tmp_path / "client-report"
    proxy = await mitmdump(f"rt_supabase_url={local_server.url}", f"rt_report={report}")
    code, out = await run_to_exit(
        [command("rtreplay"), str(capture), "--client", proxy.url, "--key", anon_key, "--speed", "4"]
    )
    assert code == 0, out
    assert "not the capture's" in out
    assert '<- realtime:room1 phx_reply ref=1 {"status":"ok"' in out  # the join's answer, to its own ref
    assert "<- realtime:room1 broadcast" in out  # the echo of its broadcast (self)
    assert "  no findings" in out
    assert anon_key not in out
    await proxy.wait_for(r"closed by client")
    assert await report_top(proxy, report) == "no finding"


async def test_client_never_sends_the_captures_key(tmp_path, local_server):
    """No --key and no SUPABASE_ANON_KEY: the capture's apikey is not sent (it says so), so Realtime refuses."""
    capture = corpus_capture("rls-read-denied-topicless", tmp_path)
    code, out = await run_to_exit([command("rtreplay"), str(capture), "--client", local_server.url])
    assert code == 1, out
    assert "the capture's credentials (the URL's apikey, access tokens in its frames) are not sent" in out
    assert "the upstream refused the upgrade: 401" in out and "API key is missing" in out


# ------------------------------------------------------------------------------------------ the core, fed by hand

T0 = 1_700_000_000.0
URL = "wss://ref.supabase.co/realtime/v1/websocket?apikey=" + SECRET + "&vsn="


def connection(
    vsn: str, frames_: list[tuple[float, bool, str | bytes]], close: Closed | None = None, **hs
) -> Script:
    """A captured connection: (time since the upgrade, from the client, text or binary) per frame."""
    events = [
        Opened(URL + vsn, [], T0),
        Handshake(hs.get("status", 101), hs.get("headers", []), hs.get("body", b""), T0),
    ]
    events += [
        Frame(c, isinstance(data, bytes), data if isinstance(data, bytes) else data.encode(), T0 + t)
        for t, c, data in frames_
    ]
    if close is not None:
        close.time = T0 + close.time
        events.append(close)
    return Script.from_connection(URL + vsn, events)


def sent(actions) -> list:
    """What the actions send, decoded as the client reads it."""
    return [
        frames.decode(a.data, binary=isinstance(a.data, bytes), from_client=False)
        for a in actions
        if isinstance(a, replay.Send)
    ]


def v1(topic, event, payload, ref=None, join_ref=None) -> str:
    return json.dumps({"topic": topic, "event": event, "payload": payload, "ref": ref, "join_ref": join_ref})


def v2(topic, event, payload, ref=None, join_ref=None) -> str:
    return json.dumps([join_ref, ref, topic, event, payload])


ERROR = {"status": "error", "response": {"reason": "Token has expired 5 seconds ago"}}
OK = {"status": "ok", "response": {}}


def test_a_reply_answers_the_live_push_in_the_live_vsn():
    """The capture's refs (48) were its client's; the reply goes to the live push's (1), as a 1.0.0 object
    for a 1.0.0 client although the capture spoke 2.0.0."""
    script = connection(
        "2.0.0",
        [
            (0.0, True, v2("realtime:room", "phx_join", {}, "48", "48")),
            (0.5, False, v2("realtime:room", "phx_reply", ERROR, "48", "48")),
        ],
    )
    player = ServerPlayer(script, frames.V1, now=100.0)
    player.client_frame(v1("realtime:room", "phx_join", {}, "1", "1"), False, 100.1)
    assert player.next_due() == pytest.approx(100.6)
    assert player.due(100.5) == []
    actions = player.due(100.6)
    (reply,) = sent(actions)
    assert (reply.shape, reply.ref, reply.event, reply.payload) == (frames.OBJECT, "1", "phx_reply", ERROR)
    assert json.loads(actions[0].data)["ref"] == "1"


def test_a_null_ref_reply_answers_the_null_ref_join_before_it():
    """supabase-kt 3.0 joined with `"ref": null` and Realtime echoed it (corpus kt-resume-join-expired-59s,
    whose reply is verbatim): the reply answers that join, so a live client's join (ref 1) gets it at its
    own ref. Unpaired, it would be sent as captured, with no ref, and the live client would time out."""
    script = connection(
        "1.0.0",
        [
            (0.0, True, v1("realtime:db-changes", "phx_join", {})),
            (0.1, False, v1("realtime:db-changes", "phx_reply", ERROR)),
        ],
    )
    assert script.steps[1].cause == 0
    player = ServerPlayer(script, frames.V1, now=0.0)
    player.client_frame(v1("realtime:db-changes", "phx_join", {}, "1", "1"), False, 0.0)
    assert [(m.ref, m.payload) for m in sent(player.due(0.1))] == [("1", ERROR)]


def test_the_phx_close_after_a_leave_answers_the_leave():
    """Phoenix answers phx_leave with its reply, then phx_close (corpus py-remove-channel-stuck-leaving):
    a live client that never leaves gets neither; one that leaves gets both."""
    script = connection(
        "1.0.0",
        [
            (0.0, True, v1("realtime:room", "phx_join", {}, "1", "1")),
            (0.1, False, v1("realtime:room", "phx_reply", OK, "1", "1")),
            (5.0, True, v1("realtime:room", "phx_leave", {}, "2", "1")),
            (5.1, False, v1("realtime:room", "phx_reply", OK, "2", "1")),
            (5.1, False, v1("realtime:room", "phx_close", {}, "1", "1")),
        ],
    )
    assert [s.cause for s in script.steps if not s.from_client] == [0, 2, 2]
    stays = ServerPlayer(script, frames.V1, now=0.0)
    stays.client_frame(v1("realtime:room", "phx_join", {}, "1", "1"), False, 0.0)
    assert [m.event for m in sent(stays.due(60.0))] == ["phx_reply"]
    leaves = ServerPlayer(script, frames.V1, now=0.0)
    leaves.client_frame(v1("realtime:room", "phx_join", {}, "1", "1"), False, 0.0)
    leaves.due(0.1)
    leaves.client_frame(v1("realtime:room", "phx_leave", {}, "2", "1"), False, 1.0)
    assert [m.event for m in sent(leaves.due(1.1))] == ["phx_reply", "phx_close"]


def test_a_join_beyond_the_captures_is_answered_as_its_last_join():
    """The capture holds one refused join; the live client's rejoin gets the same error, to its own refs,
    at the captured delay, and a push after it carries the rejoin's join_ref."""
    script = connection(
        "2.0.0",
        [
            (0.0, True, v2("realtime:room", "phx_join", {}, "48", "48")),
            (0.5, False, v2("realtime:room", "phx_reply", ERROR, "48", "48")),
        ],
    )
    player = ServerPlayer(script, frames.V2, now=0.0)
    player.client_frame(v2("realtime:room", "phx_join", {}, "1", "1"), False, 0.0)
    assert [(m.ref, m.payload) for m in sent(player.due(0.5))] == [("1", ERROR)]
    notes = player.client_frame(v2("realtime:room", "phx_join", {}, "3", "3"), False, 1.5)
    assert notes == [
        replay.Note(
            "<- realtime:room phx_join ref=3: beyond the capture's 1 join(s) on realtime:room; answered as "
            "the capture answered its last (client frame 1): error after 0.500 s"
        )
    ]
    assert player.next_due() == pytest.approx(2.0)
    assert player.due(1.9) == []
    assert [(m.join_ref, m.ref, m.event, m.payload) for m in sent(player.due(2.0))] == [
        ("3", "3", "phx_reply", ERROR)
    ]
    assert "1 live frame(s) not in the capture (1 answered)" in player.summary()


def test_a_join_beyond_an_unanswered_one_gets_no_answer():
    """The capture's join got no answer (a join timeout): a rejoin gets none either, and the log says why."""
    script = connection("1.0.0", [(0.0, True, v1("realtime:room", "phx_join", {}, "1", "1"))])
    player = ServerPlayer(script, frames.V1, now=0.0)
    player.client_frame(v1("realtime:room", "phx_join", {}, "1", "1"), False, 0.0)
    notes = player.client_frame(v1("realtime:room", "phx_join", {}, "2", "2"), False, 10.0)
    assert "the last one (client frame 1) got no answer: none" in notes[-1].text
    assert player.next_due() is None and player.due(20.0) == []


def test_pushes_carry_the_live_join_ref():
    """A 1.0.0 capture's system message and phx_close (no join_ref in 1.0.0 objects) go to a 2.0.0 client
    with its own join_ref, so realtime-js does not drop them as another join's."""
    system = {"channel": "room", "extension": "system", "message": "Channel shut down", "status": "error"}
    script = connection(
        "1.0.0",
        [
            (0.0, True, v1("realtime:room", "phx_join", {}, "1", "1")),
            (
                0.1,
                False,
                json.dumps({"ref": "1", "event": "phx_reply", "payload": OK, "topic": "realtime:room"}),
            ),
            (
                0.2,
                False,
                json.dumps({"ref": None, "event": "system", "payload": system, "topic": "realtime:room"}),
            ),
            (
                0.2,
                False,
                json.dumps({"ref": "1", "event": "phx_close", "payload": {}, "topic": "realtime:room"}),
            ),
        ],
    )
    player = ServerPlayer(script, frames.V2, now=0.0)
    player.client_frame(v2("realtime:room", "phx_join", {}, "7", "7"), False, 0.0)
    got = sent(player.due(1.0))
    assert [(m.join_ref, m.ref, m.event) for m in got] == [
        ("7", "7", "phx_reply"),
        ("7", None, "system"),
        ("7", "7", "phx_close"),
    ]
    assert all(m.shape == frames.ARRAY for m in got)


def test_heartbeats_match_whenever_they_come():
    """The capture's heartbeat came after the join and 25 s in; the live one comes first: it is matched (and
    answered with its own ref), and one beyond the capture's is answered ok at once."""
    script = connection(
        "1.0.0",
        [
            (0.0, True, v1("realtime:room", "phx_join", {}, "1", "1")),
            (
                0.1,
                False,
                json.dumps({"ref": "1", "event": "phx_reply", "payload": OK, "topic": "realtime:room"}),
            ),
            (25.0, True, v1("phoenix", "heartbeat", {}, "2")),
            (25.05, False, json.dumps({"ref": "2", "event": "phx_reply", "payload": OK, "topic": "phoenix"})),
        ],
    )
    player = ServerPlayer(script, frames.V1, now=0.0)
    notes = player.client_frame(v1("phoenix", "heartbeat", {}, "hb-1"), False, 1.0)
    assert "client frame 3 of the capture" in notes[0].text
    assert [(m.topic, m.ref) for m in sent(player.due(1.05))] == [("phoenix", "hb-1")]
    extra = player.client_frame(v1("phoenix", "heartbeat", {}, "hb-2"), False, 2.0)
    assert [(m.topic, m.ref, m.payload) for m in sent(extra)] == [("phoenix", "hb-2", OK)]
    assert "beyond the capture's heartbeats" in extra[0].text


def test_unsolicited_frames_keep_their_offset_from_the_last_matched_client_frame():
    """A system message 5 s after the join and the server's close 6 s after it, at --speed 2: 2.5 s and
    3 s after the live join; nothing on the channel before the live client joined it."""
    system = {"extension": "system", "message": "bye", "status": "error"}
    script = connection(
        "1.0.0",
        [
            (0.0, True, v1("realtime:room", "phx_join", {}, "1", "1")),
            (
                0.1,
                False,
                json.dumps({"ref": "1", "event": "phx_reply", "payload": OK, "topic": "realtime:room"}),
            ),
            (
                5.0,
                False,
                json.dumps({"ref": None, "event": "system", "payload": system, "topic": "realtime:room"}),
            ),
        ],
        Closed(4000, "bye", False, 6.0),
    )
    player = ServerPlayer(script, frames.V1, now=0.0, speed=2.0)
    assert player.next_due() == pytest.approx(3.0)  # the close, from the 101: the client has not joined
    player.client_frame(v1("realtime:room", "phx_join", {}, "1", "1"), False, 1.0)
    assert player.next_due() == pytest.approx(1.05)
    assert [m.event for m in sent(player.due(1.05))] == ["phx_reply"]
    assert player.next_due() == pytest.approx(3.5)
    assert [m.event for m in sent(player.due(3.5))] == ["system"]
    assert player.next_due() == pytest.approx(4.0)
    assert player.due(4.0) == [replay.End(4000, "bye")]


def test_how_the_capture_ended_is_how_the_replay_ends():
    """No close frame from the server's side: the TCP connection is dropped; the client's own close: the
    server waits for the live client; a HAR that records none: nothing."""
    join = [(0.0, True, v1("realtime:room", "phx_join", {}, "1", "1"))]
    dropped = ServerPlayer(
        connection("1.0.0", join, Closed(None, "", None, 2.0, ended_first="server")), frames.V1, 0.0
    )
    assert dropped.due(2.0) == [replay.End(None, "")]
    by_client = connection("1.0.0", join, Closed(1000, "heartbeat timeout", True, 2.0))
    assert by_client.closer == replay.CLIENT and ServerPlayer(by_client, frames.V1, 0.0).next_due() is None
    unrecorded = connection("1.0.0", join, Closed(None, "", None, 2.0, recorded=False))
    assert unrecorded.closer is None and ServerPlayer(unrecorded, frames.V1, 0.0).next_due() is None


def test_frames_the_hop_dropped_are_not_replayed():
    """swallow-heartbeats kept the reply in the flow, marked dropped: the client never got it."""
    url = URL + "1.0.0"
    reply = Frame(
        False,
        False,
        json.dumps({"ref": "2", "event": "phx_reply", "payload": OK, "topic": "phoenix"}).encode(),
        T0 + 0.1,
    )
    events = [
        Opened(url, [], T0),
        Handshake(101, [], b"", T0),
        Frame(True, False, v1("phoenix", "heartbeat", {}, "2").encode(), T0),
        Hop("frame-dropped", "dropped by the hop", T0 + 0.1, reply),
    ]
    player = ServerPlayer(Script.from_connection(url, events), frames.V1, 0.0)
    notes = player.client_frame(v1("phoenix", "heartbeat", {}, "9"), False, 0.0)
    assert "the hop dropped 1 answer(s) to it" in notes[0].text
    assert player.next_due() is None and player.due(10.0) == []


def test_a_frame_the_live_client_skips_takes_its_answers_with_it():
    """The capture's client tracked presence, then left; the live one only leaves: the leave is matched
    (past the track), answered with its ref; the track's answer is never sent."""
    script = connection(
        "2.0.0",
        [
            (0.0, True, v2("realtime:room", "phx_join", {}, "1", "1")),
            (0.1, False, v2("realtime:room", "phx_reply", OK, "1", "1")),
            (1.0, True, v2("realtime:room", "presence", {"event": "track"}, "2", "1")),
            (1.1, False, v2("realtime:room", "phx_reply", OK, "2", "1")),
            (2.0, True, v2("realtime:room", "phx_leave", {}, "3", "1")),
            (2.1, False, v2("realtime:room", "phx_reply", OK, "3", "1")),
        ],
    )
    player = ServerPlayer(script, frames.V2, 0.0)
    player.client_frame(v2("realtime:room", "phx_join", {}, "5", "5"), False, 0.0)
    notes = player.client_frame(v2("realtime:room", "phx_leave", {}, "6", "5"), False, 0.5)
    assert "went past client frame 3" in notes[1].text
    assert [(m.ref, m.join_ref) for m in sent(player.due(5.0))] == [("5", "5"), ("6", "5")]
    assert "1 client frame(s) the live client did not send" in player.summary()


@pytest.mark.parametrize("vsn", [frames.V1, frames.V2])
def test_a_binary_broadcast_in_the_live_vsn(vsn):
    """supabase-js's broadcast to self (kind 3 out, kind 4 back): a 2.0.0 client gets the kind 4, a 1.0.0
    client the same broadcast as a JSON object."""
    script = connection(
        "2.0.0",
        [
            (0.0, True, v2("realtime:room", "phx_join", {}, "1", "1")),
            (0.1, False, v2("realtime:room", "phx_reply", OK, "1", "1")),
            (1.0, True, frames.encode_user_push("realtime:room", "cursor", {"x": 1}, join_ref="1", ref="2")),
            (1.05, False, frames.encode_user_broadcast("realtime:room", "cursor", {"x": 1})),
        ],
    )
    player = ServerPlayer(script, vsn, 0.0)
    enc = v1 if vsn == frames.V1 else v2
    player.client_frame(enc("realtime:room", "phx_join", {}, "1", "1"), False, 0.0)
    push = {"type": "broadcast", "event": "cursor", "payload": {"x": 1}}
    player.client_frame(enc("realtime:room", "broadcast", push, "2", "1"), False, 1.0)
    actions = [a for a in player.due(2.0) if isinstance(a, replay.Send)]
    echo = actions[-1].data
    assert isinstance(echo, bytes) == (vsn == frames.V2)
    got = sent(actions)[-1]
    assert (got.event, got.payload) == ("broadcast", push)


def test_tokens_the_capture_holds_are_not_replayed():
    """A JWT in a server frame goes out as the sanitizer's marker: header and claims, no signature."""
    script = connection(
        "1.0.0",
        [
            (0.0, True, v1("realtime:room", "phx_join", {"access_token": SECRET}, "1", "1")),
            (
                0.1,
                False,
                json.dumps({"ref": "1", "event": "phx_reply", "payload": OK, "topic": "realtime:room"}),
            ),
            (
                0.2,
                False,
                json.dumps(
                    {
                        "ref": None,
                        "event": "broadcast",
                        "topic": "realtime:room",
                        "payload": {
                            "type": "broadcast",
                            "event": "e",
                            "payload": {"token": SECRET, "note": f"jwt {SECRET}"},
                        },
                    }
                ),
            ),
            (0.3, False, f"not a Realtime frame: {SECRET}"),  # undecodable: sent as captured, sanitized
        ],
    )
    player = ServerPlayer(script, frames.V1, 0.0)
    player.client_frame(v1("realtime:room", "phx_join", {}, "1", "1"), False, 0.0)
    actions = [a for a in player.due(1.0) if isinstance(a, replay.Send)]
    assert len(actions) == 3 and "as captured" in actions[-1].text
    out = "".join(a.data for a in actions)
    signature = SECRET.rsplit(".", 1)[1]
    assert signature not in out
    assert SECRET.rsplit(".", 1)[0] + "." in out  # header and claims kept: role and exp still read


def test_a_refusal_keeps_what_says_something():
    body = gzip.compress(b'{"error":"Too many connections"}')
    script = connection(
        "1.0.0",
        [],
        status=429,
        body=body,
        headers=[
            ("Content-Type", "application/json; charset=utf-8"),
            ("Content-Encoding", "gzip"),
            ("Content-Length", str(len(body))),
            ("Set-Cookie", "sb-access-token=" + SECRET),
            ("Via", "kong/2.8.1"),
            ("Connection", "keep-alive"),
        ],
    )
    status, headers, got = replay.refusal(script)
    assert status == 429 and got == b'{"error":"Too many connections"}'
    assert headers == [("Content-Type", "application/json; charset=utf-8"), ("Via", "kong/2.8.1")]


def test_client_url_takes_the_users_key_never_the_captures():
    script = connection("2.0.0", [])
    assert replay.client_url("http://127.0.0.1:54321", script, "KEY") == (
        "ws://127.0.0.1:54321/realtime/v1/websocket?apikey=KEY&vsn=2.0.0"
    )
    assert replay.client_url("https://x.supabase.co/realtime/v1", script, None) == (
        "wss://x.supabase.co/realtime/v1/websocket?vsn=2.0.0"
    )


def test_client_player_waits_for_the_answer_it_waited_for():
    """The capture's client rejoined 1 s after its join's error: the replayed client rejoins 1 s (at
    --speed 1) after the live error, waiting for it WAIT_S longer than the capture did; its token is the
    user's key."""
    script = connection(
        "1.0.0",
        [
            (0.0, True, v1("realtime:room", "phx_join", {"access_token": SECRET}, "1", "1")),
            (
                0.1,
                False,
                json.dumps({"ref": "1", "event": "phx_reply", "payload": ERROR, "topic": "realtime:room"}),
            ),
            (1.1, True, v1("realtime:room", "phx_join", {"access_token": SECRET}, "2", "2")),
        ],
    )
    player = replay.ClientPlayer(script, "KEY", now=0.0)
    (first,) = player.due(0.0)
    assert json.loads(first.data)["payload"] == {"access_token": "KEY"}
    assert player.next_due() == pytest.approx(1.1 + player.WAIT_S)  # the error has not come yet
    reply = json.dumps({"ref": "1", "event": "phx_reply", "payload": ERROR, "topic": "realtime:room"})
    assert "server frame 2" in player.server_frame(reply, False, 3.0)[1]
    assert player.next_due() == pytest.approx(4.0)
    assert SECRET not in player.due(4.0)[0].data


# ------------------------------------------------------------------------------------------ the command


def test_listing_and_choosing(tmp_path, capsys):
    capture = corpus_capture("kong-431-chunked-auth-cookies", tmp_path)
    assert rtreplay.main([str(capture)]) == 0
    out = capsys.readouterr().out
    assert "6 Realtime connection(s)" in out and out.count("  431  0 frames") == 6
    assert "apikey=[redacted]" in out and "eyJ" not in out
    for argv, why in [
        ([str(capture), "--serve"], "holds 6 Realtime connections: choose one with --connection N"),
        ([str(capture), "--connection", "7", "--serve"], "--connection 7: the capture holds 6"),
        ([str(tmp_path / "missing.har"), "--serve"], "cannot read"),
    ]:
        assert rtreplay.main(argv) == 2
        err = capsys.readouterr().err
        assert why in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("port", ["99999", "-1"])
def test_a_port_out_of_range_is_one_line(port, tmp_path, capsys):
    capture = corpus_capture("rls-read-denied-topicless", tmp_path)
    assert rtreplay.main([str(capture), "--serve", "--port", port]) == 2
    err = capsys.readouterr().err
    assert err == f"rtreplay: --port must be 0-65535 (0: a free one), got {port}\n"


async def test_stopping_closes_live_clients_and_says_so(tmp_path, rtreplay_serve):
    """Ctrl-C: rtreplay closes each live connection with 1001 (going away), and its log says so rather than
    blaming the client."""
    capture = corpus_capture("rls-read-denied-topicless", tmp_path)
    server = await rtreplay_serve(capture)
    async with connect(f"ws://127.0.0.1:{server.port}/realtime/v1/websocket?vsn=1.0.0") as ws:
        await server.wait_for(r"\[1\] .* upgraded \(101\)")
        assert server.proc is not None
        server.proc.send_signal(signal.SIGINT)
        await ws.wait_closed()
        assert ws.close_code == 1001
    assert await server.wait_exit() == 0
    await server.wait_for(r"\[1\] .* -> close 1001 \(rtreplay is stopping\); the client answered")
    assert "without a close frame" not in server.output
    assert "rtreplay: stopped after 1 connection(s)" in server.output


async def test_a_bug_reports_har_sanitized_replayed_and_watched_in_mitmweb(
    tmp_path, rtreplay_serve, mitmdump, anon_key
):
    """The README's path, end to end: a HAR from a bug report is sanitized, replayed against the app
    (the real `realtime` client) through mitmweb + rtproxy, and mitmweb shows the flow marked and
    explained with the capture's own finding, and no credential: neither the capture's nor the app's."""
    from webapi import start_mitmweb

    original = corpus_capture("rls-read-denied-topicless", tmp_path)
    sanitized = tmp_path / "shared.har"
    code, out = await run_to_exit([command("rtsanitize"), str(original), str(sanitized)])
    assert code == 0, out
    capture_sig = CASE["rls-read-denied-topicless"]["connections"][0]["url"].split("apikey=")[1].split("&")[0]
    capture_sig = capture_sig.rsplit(".", 1)[1]
    assert f".{capture_sig}&" not in sanitized.read_text()
    expected = await capture_top(original)
    assert await capture_top(sanitized) == expected == "join-unauthorized"

    server = await rtreplay_serve(sanitized)
    web, api = await start_mitmweb(
        mitmdump, f"rt_supabase_url=http://127.0.0.1:{server.port}", f"rt_timers={TIMERS}"
    )
    client, statuses = await subscribe(web.port, anon_key, joined_topic("rls-read-denied-topicless"))
    assert statuses == ["CHANNEL_ERROR"]  # what the bug report's client saw
    await web.wait_for(rf"finding {expected} ")
    flows = await api.flows()
    ws = next(f for f in flows if f.get("websocket"))
    assert ws["marked"] and ws["comment"].endswith(
        f" CHANNEL_ERROR · {expected.replace('-', ' ')} · rtproxy: {expected} [rt {ws['id'][:6]}]"
    )
    shown = json.dumps(flows)
    assert anon_key.rsplit(".", 1)[1] not in shown  # the app's key: sanitized once forwarded
    assert "rtproxy-sanitized" in shown
    await client.close()
