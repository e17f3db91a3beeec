"""rtbench and rtscale run end to end (behaviour, never speed): a tiny bench prints every
row of its table, and a small scale run drops no connection and leaves no live session in rtproxy."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import ROOT, command

BENCH = command("rtbench")
SCALE = command("rtscale")


def run(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )


def test_bench_quick_prints_the_table():
    r = run(BENCH, "--quick", "--messages", "20", "--warmup", "5", "--analyzer-frames", "2000")
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout
    for row in (
        "(1) direct client <-> local server",
        "(2) mitmdump + reroute only",
        "(3) mitmdump + rtproxy",
        "ratio (3)/(2)",
        "(4) rtproxy command",
        "ratio (4)/(3)",
        "ratio (4)/(2)",
        "json.loads of each frame's JSON",
        "analyzer: decode + track + diagnose",
        "ratio analyzer/json.loads",
        "text broadcast (client array)",
        "kind 3 user broadcast (client)",
        "Diagnoser.check, one session",
    ):
        assert row in out, f"missing row {row!r} in:\n{out}"
    assert "nproc" in out and "mitmproxy" in out


def test_bench_json_has_the_numbers():
    r = run(BENCH, "--quick", "--no-live", "--analyzer-frames", "2000", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout)
    assert res["analyzer"]["frames"] >= 2000
    assert res["analyzer"]["tracker_rate"]["frames_per_s"] > 0
    assert res["frame_costs"]["text broadcast (client array)"]["feed_us"] > 0


@pytest.mark.parametrize(
    ("proxy", "name"), [("launcher", "the rtproxy command"), ("rtproxy", "mitmdump + rtproxy")]
)
def test_scale_small_run_drops_nothing_and_leaves_no_session(proxy, name):
    r = run(
        SCALE,
        "--connections",
        "50",
        "--seconds",
        "3",
        "--rounds",
        "2",
        "--heartbeat",
        "1",
        "--proxy",
        proxy,
        "--json",
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads(r.stdout)
    assert res["proxy"].startswith(name)
    hold = res["hold"]
    assert hold["opened"] == 50 and hold["failed"] == 0 and hold["dropped"] == 0, hold
    assert hold["hb_sent"] > 0 and hold["hb_answered"] > 0
    assert hold["probe_after_open"]["live"] == 50  # the probe sees the tracker
    assert hold["probe_after_close"]["live"] == 0
    assert [r["live"] for r in res["rounds_detail"]] == [0, 0]
    assert all(r["opened"] == 50 and r["failed"] == 0 for r in res["rounds_detail"])
    assert res["final_probe"]["live"] == 0
    assert res["log_final"]["connect_lines"] == 150
    assert res["log_final"]["live_inferred"] == 0
    assert res["log_final"]["internal_errors"] == 0
