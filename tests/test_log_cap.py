"""The log's bounds (rtproxy_mitm/connlog.py, rtproxy_core/clip.py): at most rt_log_rate lines per
connection per interval, the rest counted in one line; findings, errors and the connection's own lines
never suppressed; long fields clipped with their length, no line past clip.LINE_MAX. The cap with a fake
clock; then the rtproxy command in front of the local server, a client joining 500 channels and one
joining a topic of 5,000 characters."""

from __future__ import annotations

import asyncio
import json
import logging
import re

import pytest
from conftest import RTPROXY, TIMEOUT, Mitmdump
from rtproxy_core.clip import FIELD_MAX, LINE_MAX, clip, clip_line
from rtproxy_core.session.limits import key
from rtproxy_local.server import LocalRealtime, ServerConfig
from rtproxy_mitm import connlog
from rtproxy_mitm.connlog import ConnectionLog, Rate, parse_rate
from websockets.asyncio.client import connect


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def lines(self) -> list[str]:
        return [r.getMessage() for r in self.records]


@pytest.fixture
def rate(monkeypatch):
    """Sets the cap of every connection log for the test (rt_log_rate as the Tracker sets it)."""

    def set_to(value: Rate | None) -> None:
        monkeypatch.setattr(connlog, "_rate", value)

    monkeypatch.setattr(connlog, "_logs", connlog.OrderedDict())
    monkeypatch.setattr(connlog, "_held", {})
    return set_to


@pytest.fixture
def out():
    """What the test's logger (a child of rtproxy's, kept to itself) writes."""
    lines = Lines()
    BASE.addHandler(lines)
    yield lines
    BASE.removeHandler(lines)


BASE = logging.getLogger("rtproxy.test_log_cap")
BASE.propagate = False
BASE.setLevel(logging.DEBUG)


def conn_log(conn: str = "abc123") -> tuple[ConnectionLog, Clock]:
    clock = Clock()
    return ConnectionLog(BASE, conn, clock=clock), clock


# ---------------------------------------------------------------------------------------------- clip


def test_clip_keeps_a_short_field_and_cuts_a_long_one_to_the_limit_with_its_length():
    assert clip("realtime:room1") == "realtime:room1"
    assert clip("x" * FIELD_MAX) == "x" * FIELD_MAX
    topic = "realtime:" + "a" * 5003
    clipped = clip(topic)
    assert len(clipped) == FIELD_MAX
    assert clipped.startswith("realtime:aaaa") and clipped.endswith("a...(5,012 chars)")
    assert clip(clipped) == clipped


def test_clip_line_clips_each_long_field_and_then_the_line():
    topic = "realtime:" + "a" * 5003
    line = clip_line(f"[rt abc123] join {topic} ref={'7' * 300} (join #2)")
    assert line.startswith("[rt abc123] join realtime:aaaa") and line.endswith(" (join #2)")
    assert (
        "...(5,012 chars)" in line and "ref=777" in line and "...(304 chars)" in line
    )  # the run: ref= and its value
    assert len(line) < 2 * FIELD_MAX + 50
    words = clip_line("[rt abc123] reason: " + "too many words " * 500)
    assert len(words) == LINE_MAX and words.endswith(f"...({len('[rt abc123] reason: ') + 15 * 500:,} chars)")
    assert clip_line("[rt abc123] joined in 3 ms") == "[rt abc123] joined in 3 ms"


# ---------------------------------------------------------------------------------------------- the cap


def test_parse_rate():
    assert parse_rate("40/10s") == Rate(40, 10.0)
    assert parse_rate(" 5 / 2.5 ") == Rate(5, 2.5)
    assert parse_rate("off") is None and parse_rate("0") is None
    for bad in ("abc", "40", "0/10s", "10/0s", "-1/10s", "40/10m"):
        with pytest.raises(ValueError):
            parse_rate(bad)


def test_lines_over_the_cap_are_counted_in_one_line_when_the_interval_is_over(rate, out):
    rate(Rate(3, 10.0))
    log, clock = conn_log()
    for i in range(10):
        log.info(f"join realtime:t{i}")
    clock.now = 9.9
    log.warning("realtime:t9 join error")
    assert out.lines == [
        "[rt abc123] join realtime:t0",
        "[rt abc123] join realtime:t1",
        "[rt abc123] join realtime:t2",
    ]
    clock.now = 10.0
    log.info("join realtime:t10")
    assert out.lines[3:] == [
        "[rt abc123] … 8 more lines suppressed for this connection in the last 10 s (rt_log_rate 3/10s)",
        "[rt abc123] join realtime:t10",
    ]
    assert out.records[3].levelno == logging.WARNING  # as loud as the loudest line it stands for


def test_findings_errors_and_the_connections_own_lines_pass_a_full_cap(rate, out):
    rate(Rate(1, 10.0))
    log, _ = conn_log()
    log.info("join realtime:t0")
    log.info("join realtime:t1")
    log.info("closed by client: 1000 after 1.0 s", capped=False)
    log.finding(
        logging.WARNING, "join-timeout", "finding join-timeout realtime:t1 (TIMED_OUT): x. Fix: y", "short"
    )
    log.error("rtproxy internal error, no longer tracking this connection: KeyError: 1")
    assert out.lines == [
        "[rt abc123] join realtime:t0",
        "[rt abc123] closed by client: 1000 after 1.0 s",
        "[rt abc123] finding join-timeout realtime:t1 (TIMED_OUT): x. Fix: y",
        "[rt abc123] rtproxy internal error, no longer tracking this connection: KeyError: 1",
    ]
    assert log.suppressed == 1


AS_FIRST = "rate-limited of this connection: its fix as in the first)"


def test_a_code_found_again_is_one_short_numbered_line(rate, out):
    rate(Rate(1, 10.0))
    log, _ = conn_log()
    for i in range(3):
        full = f"finding rate-limited realtime:t{i} (CHANNEL_ERROR): Too many channels. Fix: fewer channels"
        log.finding(
            logging.WARNING, "rate-limited", full, f"finding rate-limited realtime:t{i}: Too many channels"
        )
    log.finding(
        logging.WARNING, "join-timeout", "finding join-timeout realtime:t9 (TIMED_OUT): x. Fix: y", "short"
    )
    assert out.lines == [
        "[rt abc123] finding rate-limited realtime:t0 (CHANNEL_ERROR): Too many channels. Fix: fewer channels",
        f"[rt abc123] finding rate-limited realtime:t1: Too many channels (#2 {AS_FIRST}",
        f"[rt abc123] finding rate-limited realtime:t2: Too many channels (#3 {AS_FIRST}",
        "[rt abc123] finding join-timeout realtime:t9 (TIMED_OUT): x. Fix: y",
    ]


def test_the_tick_writes_the_count_once_the_interval_is_over_and_the_end_at_once(rate, out):
    rate(Rate(2, 10.0))
    quiet, clock = conn_log("aaaaaa")
    connlog._logs["aaaaaa"] = quiet
    for i in range(5):
        quiet.info(f"line {i}")
    clock.now = 9.0
    connlog.roll_over()
    assert len(out.lines) == 2
    clock.now = 12.0  # the connection went quiet: the tick, not a next line, says what was suppressed
    connlog.roll_over()
    assert (
        out.lines[2]
        == "[rt aaaaaa] … 3 more lines suppressed for this connection in the last 10 s (rt_log_rate 2/10s)"
    )
    connlog.roll_over()
    assert len(out.lines) == 3
    quiet.info("line 5")
    quiet.info("line 6")
    quiet.info("line 7")
    clock.now = 14.5
    connlog.end("aaaaaa")
    assert out.lines[3:] == [
        "[rt aaaaaa] line 5",
        "[rt aaaaaa] line 6",
        "[rt aaaaaa] … 1 more line suppressed for this connection in the last 2.5 s (rt_log_rate 2/10s)",
    ]
    assert "aaaaaa" not in connlog._logs and not connlog._held


def test_a_log_pushed_out_of_the_registry_writes_its_count_first(rate, out, monkeypatch):
    rate(Rate(1, 10.0))
    monkeypatch.setattr(connlog, "MAX_LOGS", 2)
    first = connlog.connection_log("aaaaaa")
    first.logger = BASE
    first.info("one")
    first.info("two")
    connlog.connection_log("bbbbbb")
    assert out.lines == ["[rt aaaaaa] one"]
    connlog.connection_log("cccccc")
    assert out.lines[1].startswith("[rt aaaaaa] … 1 more line suppressed for this connection")


def test_off_writes_every_line(rate, out):
    rate(None)
    log, _ = conn_log()
    for i in range(100):
        log.debug(f"→ realtime:t{i} broadcast")
    assert len(out.lines) == 100


# ---------------------------------------------------------------------------------------------- live

JOINS = 500
CAP = 20
LONG_TOPIC = "realtime:" + "a" * 4991  # 5,000 characters


def join(topic: str, ref: int) -> str:
    # realtime-js's 1.0.0 frame: {topic, event, payload, ref, join_ref} (RealtimeChannel's joinPush)
    return json.dumps(
        {
            "topic": topic,
            "event": "phx_join",
            "payload": {"config": {}},
            "ref": str(ref),
            "join_ref": str(ref),
        }
    )


async def replies(ws, n: int) -> list[dict]:
    got = []
    while len(got) < n:
        msg = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        if msg["event"] == "phx_reply":
            got.append(msg)
    return got


async def test_500_joins_and_a_5000_character_topic_through_the_rtproxy_command(tmp_path, anon_key):
    """One connection joins 500 channels (the local server, as Realtime, refuses those past its 100
    channels per client): its channel lines are capped (one interval of an hour: the count does not depend
    on timing), every finding is written, one line counts the rest at its end. Another joins a topic of
    5,000 characters: every line clipped."""
    cfg = ServerConfig(connect_error_backoff_ms=0, join_error_backoff_ms=0, max_joins_per_second=None)
    report = tmp_path / "report"
    async with LocalRealtime(cfg).running("127.0.0.1", 0) as server:
        proxy = await Mitmdump(
            tmp_path,
            f"rt_supabase_url={server.url}",
            f"rt_log_rate={CAP}/3600s",
            f"rt_report={report}",
            program=RTPROXY,
        ).start()
        try:
            url = f"ws://127.0.0.1:{proxy.port}/realtime/v1/websocket?apikey={anon_key}&vsn=1.0.0"
            async with connect(url) as ws:
                for i in range(JOINS):
                    await ws.send(join(f"realtime:t{i}", i))
                answers = await replies(ws, JOINS)
            async with connect(url, max_size=None) as ws:
                await ws.send(join(LONG_TOPIC, 1))
                (long_answer,) = await replies(ws, 1)
        finally:
            await proxy.stop()
    assert proxy.returncode == 0
    refused = [a for a in answers if a["payload"]["status"] == "error"]
    # Realtime's words (lib/realtime_web/channels/realtime_channel.ex, limit_max_channels): the local
    # server refuses the joins past max_channels_per_client.
    assert len(refused) == JOINS - 100, answers[-1]
    assert refused[0]["payload"]["response"]["reason"].startswith(
        "ChannelRateLimitReached: Too many channels"
    )
    assert long_answer["payload"]["status"] == "ok"

    conns = re.findall(r"\[rt (\w{6})\] connect ", proxy.output)
    assert len(conns) == 2, proxy.output
    many, long = conns
    mine = [line.split(f"[rt {many}] ", 1)[1] for line in proxy.lines if f"[rt {many}] " in line]
    findings = [line for line in mine if line.startswith("finding ")]
    own = ("connect ", "upstream ", "upgraded (101)", "closed by client: 1000")
    suppressed = [line for line in mine if line.startswith("… ")]
    capped = [
        line for line in mine if line not in findings and line not in suppressed and not line.startswith(own)
    ]
    assert [p for p in own if not any(line.startswith(p) for line in mine)] == []  # never suppressed
    # Without the cap: a join line, a reply line and a closing summary line per channel (3 × 500).
    assert len(capped) == CAP, capped
    assert len(suppressed) == 1, suppressed
    assert suppressed[0].startswith(
        f"… {3 * JOINS - CAP:,} more lines suppressed for this connection in the last "
    )
    assert mine[-1] == suppressed[0]  # written at the end of the connection
    # Every finding rt_report holds for the connection has its line: none suppressed.
    data = json.loads(report.with_suffix(".json").read_text())
    (conn,) = [c for c in data["connections"] if len(c["channels"]) == JOINS]
    expected = {(f["code"], f["topic"]) for f in conn["findings"]}
    assert len(expected) >= JOINS - 100
    logged = {(m[1], m[2]) for line in findings if (m := re.match(r"finding (\S+) (realtime:t\d+)", line))}
    assert logged == expected
    assert findings[0].count(" Fix: ") == 1 and findings[1].endswith("its fix as in the first)")

    # The session keeps a topic this long as its fixed-size key (session.limits.key), which the lines show.
    clipped = key(LONG_TOPIC)
    assert clipped.startswith("realtime:aaaa") and "[5000 chars #" in clipped and len(clipped) <= FIELD_MAX
    theirs = [line for line in proxy.lines if f"[rt {long}] " in line]
    assert any(f"join {clipped} ref=1" in line for line in theirs), theirs
    assert any(f"  {clipped}: closed" in line for line in theirs), theirs
    assert all("a" * (FIELD_MAX + 1) not in line for line in theirs)
    too_long = [line for line in proxy.lines if len(line) > LINE_MAX]
    assert not too_long, [line[:200] for line in too_long]
