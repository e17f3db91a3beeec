"""Issue #27, bounded: the hostile load of bench/hostile.py (healthy clients beside misbehaving
connections of every kind, upgrades reset right after the 101, upgrades stalled half-way) through the real
`rtproxy` command and through bare mitmdump (bare_reroute.py), both in front of the local Realtime server.
Nothing healthy may be lost and neither proxy may log a traceback. What it measures (latency, RSS) is
rtbench --hostile's business, never asserted here."""

from __future__ import annotations

import dataclasses
import itertools
import re

import pytest
from conftest import MITMDUMP, RTPROXY, TIMEOUT, Mitmdump, fast_config, read_flows
from hypothesis import given
from hypothesis import strategies as st
from rtproxy_core.clip import LINE_MAX
from rtproxy_core.diagnosis import CHECK_AFTER_INFO_S, Diagnoser
from rtproxy_core.events import Frame, Handshake, Opened
from rtproxy_core.session import NoteLevel, Session
from rtproxy_core.session.heartbeats import Heartbeats, _agree
from rtproxy_local.server import LocalRealtime
from rtproxy_tools.bench import hostile
from rtproxy_tools.bench.kit import bare_reroute_args
from wire import T0, v2

SCALE = hostile.Scale(
    healthy=4,
    misbehaving=len(hostile.KINDS),  # one of each kind
    resets=20,
    stalled=5,
    baseline_s=0.5,
    attack_s=2.0,
    cadence_s=0.1,  # the healthy clients' traffic, ten times the issue's pace
    drain_s=TIMEOUT,  # a safety net: every answer is awaited
    frames=4,
    joins=20,
    big_bytes=200_000,
    ref_bytes=10_000,
    depth=2_000,
)


KEEP_BYTES = 300_000  # rt_keep_bytes: above one 200 KB broadcast, below two
LOG_CAP = 20  # rt_log_rate's lines per connection
OWN = 8  # a connection's own lines, never capped: connect, upstream, upgraded/rejected, closed, heartbeats


class BareMitmdump(Mitmdump):
    """mitmdump with bare_reroute.py only, as rtbench's yardstick (bench/kit.py start_mitmdump)."""

    def __init__(self, tmp, upstream_port: int) -> None:
        super().__init__(tmp, program=RTPROXY)  # RTPROXY: no -s addon/rtproxy.py added
        self.args[0] = MITMDUMP
        self.args += [*bare_reroute_args(upstream_port), "--set", "flow_detail=0"]


def _server_without_quotas() -> LocalRealtime:
    """As rtlocal --no-quotas (rtproxy_tools/local.py), so the attack meets no tenant limit."""
    cfg = fast_config(
        max_concurrent_users=None,
        max_joins_per_second=None,
        max_events_per_second=None,
        max_presence_events_per_second=None,
        max_channels_per_client=10**9,
    )
    return LocalRealtime(cfg)


@pytest.mark.parametrize("proxy", ["rtproxy", "bare"])
async def test_healthy_clients_lose_nothing_under_hostile_load(proxy, tmp_path):
    async with _server_without_quotas().running("127.0.0.1", 0) as srv:
        scale = SCALE
        if proxy == "rtproxy":
            m = Mitmdump(
                tmp_path,
                f"rt_supabase_url=http://127.0.0.1:{srv.port}",
                f"rt_keep_bytes={KEEP_BYTES}",
                f"rt_log_rate={LOG_CAP}/3600s",  # one interval for the whole run: no line depends on timing
                "rt_header_timeout=1",
                f"save_stream_file={tmp_path / 'flows'}",
                program=RTPROXY,
            )
            scale = dataclasses.replace(SCALE, stalled_wait_s=TIMEOUT)  # the proxy closes them: await it
        else:
            m = BareMitmdump(tmp_path, srv.port)
        await m.start()
        try:
            assert m.proc is not None
            r = await hostile.attack(m.port, scale, pid=m.proc.pid, log_text=lambda: m.output)
        finally:
            await m.stop()
    assert r.heartbeats_sent >= SCALE.healthy
    assert r.heartbeats_answered == r.heartbeats_sent
    assert r.broadcasts_sent >= SCALE.healthy
    assert r.broadcasts_echoed == r.broadcasts_sent
    # The whole attack went out: every kind, every frame, every reset after its 101.
    assert r.attack_frames == {k: SCALE.joins if k == "joins" else SCALE.frames for k in hostile.KINDS}
    assert r.resets_done == SCALE.resets
    assert r.log_tracebacks == 0, m.output[-5000:]
    if proxy == "bare":
        return
    # rtproxy decoded the attack (its own warning for the invalid frames), so it was in the path.
    assert "undecodable client frame" in m.output
    # Stalled upgrades: each closed by rt_header_timeout, and counted.
    assert r.stalled_open_at_end == 0
    closed = re.findall(r"closed (\d+) connection\(s\) that sent no complete request within 1 s", m.output)
    assert sum(map(int, closed)) == SCALE.stalled, m.output[-3000:]
    # Memory: every Realtime flow mitmproxy kept holds its newest messages within rt_keep_bytes (a single
    # message past the cap alone), whatever went through (200 KB broadcasts, 10 KB refs).
    kept = [f.websocket.messages for f in read_flows(tmp_path / "flows") if getattr(f, "websocket", None)]
    assert len(kept) >= SCALE.healthy + len(hostile.KINDS)
    assert any(sum(len(msg.content) for msg in msgs) > KEEP_BYTES / 2 for msgs in kept)  # the cap was reached
    for msgs in kept:
        assert sum(len(msg.content) for msg in msgs) <= KEEP_BYTES or len(msgs) == 1
    # The log: per connection, at most LOG_CAP capped lines, its own lines (connect, upstream, upgrade, close,
    # heartbeat summary: OWN at most), its findings and the count of what was suppressed; no long line.
    by_conn: dict[str, list[str]] = {}
    for line in m.lines:
        if mt := re.search(r"\[rt (\w{6})\] (.*)", line):
            by_conn.setdefault(mt.group(1), []).append(mt.group(2))
    assert by_conn
    for conn, lines in by_conn.items():
        rest = [x for x in lines if not x.startswith(("finding ", "… "))]
        assert len(rest) <= LOG_CAP + OWN, (conn, rest)
    assert any(
        x.startswith("… ") and "more lines suppressed" in x for lines in by_conn.values() for x in lines
    )
    assert max(map(len, m.lines)) <= LINE_MAX


# ------------------------------------------------------------------------------------------ per-frame cost


def _flood(d: Diagnoser, s: Session, joins: int, gap_s: float) -> list:
    """A join flood on one socket: `joins` distinct topics, each answered ok, one every gap_s."""
    s.feed(Opened("http://worker.localhost/realtime/v1/websocket?apikey=k&vsn=2.0.0", [], T0))
    s.feed(Handshake(101, [], b"", T0))
    found = []
    for i in range(joins):
        topic, t = f"realtime:flood-{i}", i * gap_s
        for f in (
            v2(str(i), str(i), topic, "phx_join", {"config": {}}, client=True, t=t),
            v2(str(i), str(i), topic, "phx_reply", {"status": "ok", "response": {}}, client=False, t=t),
        ):
            found += d.feed(s, f)[1]
    return found


def test_a_join_flood_runs_the_rules_per_interval_not_per_join(monkeypatch):
    """Each join and its reply are info notes; a rule pass reads every channel, so one pass per join made
    a flood quadratic (issue #27's 74 ms p99 with mass joins)."""
    passes = []
    real = Diagnoser.check
    monkeypatch.setattr(
        Diagnoser, "check", lambda self, s, now, final=False: passes.append(now) or real(self, s, now, final)
    )
    _flood(Diagnoser(), Session(), joins=500, gap_s=0.002)  # 1 s of event time
    assert len(passes) <= 1 + 1 / CHECK_AFTER_INFO_S + 1
    assert all(b - a >= CHECK_AFTER_INFO_S for a, b in itertools.pairwise(passes))


def test_a_warning_still_runs_the_rules_at_once_inside_a_flood():
    d, s = Diagnoser(), Session()
    _flood(d, s, joins=50, gap_s=0.001)
    refused = v2(
        "x",
        "x",
        "realtime:refused",
        "phx_reply",
        # RealtimeWeb.RealtimeChannel: the reason PrivateOnly (as in tests/test_session.py)
        {"status": "error", "response": {"reason": "PrivateOnly: This project only allows private channels"}},
        client=False,
        t=0.051,
    )
    d.feed(s, v2("x", "x", "realtime:refused", "phx_join", {"config": {}}, client=True, t=0.0505))
    notes, found = d.feed(s, refused)
    assert any(n.level == NoteLevel.WARNING for n in notes)
    assert "realtime:refused" in {f.topic for f in found}


def test_a_big_broadcast_and_a_big_invalid_frame_mean_what_they_meant():
    """The per-frame work is cut, not the meaning: a 1 MB broadcast is one broadcast sent on its channel
    (Realtime relays its payload unparsed: BroadcastHandler.handle builds a Phoenix.Socket.Broadcast
    around the map it got), and the same frame cut short is an undecodable frame (Realtime's
    V2Serializer.decode_text Jason-decodes the whole text: MalformedWebSocketMessage)."""
    big = {"type": "broadcast", "event": "big", "payload": {"blob": "A" * 1_000_000}}
    s = Session()
    s.feed(Opened("http://worker.localhost/realtime/v1/websocket?apikey=k&vsn=2.0.0", [], T0))
    s.feed(Handshake(101, [], b"", T0))
    s.feed(v2("1", "1", "realtime:room", "phx_join", {"config": {}}, client=True, t=0))
    s.feed(v2("1", "1", "realtime:room", "phx_reply", {"status": "ok", "response": {}}, client=False, t=0))
    frame = v2("1", "2", "realtime:room", "broadcast", big, client=True, t=1)
    assert s.feed(frame) == []
    assert s.current["realtime:room"].broadcasts_sent == 1 and s.decode_errors == 0
    cut = Frame(True, False, frame.data[:-3], T0 + 2)
    notes = s.feed(cut)
    assert s.decode_errors == 1 and s.current["realtime:room"].broadcasts_sent == 1
    assert [n.level for n in notes] == [NoteLevel.WARNING] and "undecodable client frame" in notes[0].text


def _interval_pairwise(gaps: list[float], default: float | None) -> float | None:
    """Heartbeats.interval as it was written first: every gap against every other."""
    gaps, best = sorted(gaps), []
    for g in gaps:
        group = [h for h in gaps if _agree(g, h)]
        if len(group) > len(best):
            best = group
    if len(best) >= 2 or best and default is not None and _agree(best[0], default):
        return best[len(best) // 2]
    return None


@given(
    st.lists(
        st.one_of(st.sampled_from([0.0, 20.0, 24.0, 25.0, 29.9, 30.0, 37.5]), st.floats(0, 120)), max_size=64
    ),
    st.sampled_from([None, 25.0, 30.0]),
)
def test_the_heartbeat_interval_sweep_finds_what_every_pair_found(gaps, default):
    hb = Heartbeats()
    hb.gaps.extend(gaps)
    assert hb.interval(default) == _interval_pairwise(gaps, default)
