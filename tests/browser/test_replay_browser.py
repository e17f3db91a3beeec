"""rtreplay with supabase-js in Chromium: the page (tests/browser/site) through rtproxy (mitmdump in reverse
mode, the site behind it, rt_supabase_url pointing at `rtreplay --serve`) reaches the status the original
client reached, and rtproxy's top finding on the replay (its rt_report file) is the capture's own
(`rtdiagnose --json`). The same classes as tests/test_replay.py (realtime-py): join refused, token expired
and upgrade refused from the corpus (tests/corpus.py); heartbeat unanswered and channel shut down recorded
with this page through rtproxy with a fault, as the original run.

supabase-js 2.109 speaks vsn 2.0.0; the corpus captures here are 1.0.0 (and one 2.0.0): the replay encodes
in the live connection's vsn. Timers are short: heartbeatIntervalMs 1000, a 3 s join timeout, --speed.
"""

from __future__ import annotations

import pytest

# Importing test_browser applies its prerequisites (skip outside CI, fail inside) and brings its fixtures.
import test_browser
import test_replay
from conftest import Mitmdump
from test_browser import _prerequisites, open_site, status_js  # noqa: F401
from test_replay import (
    CASE,
    Rtreplay,
    capture_top,
    corpus_capture,
    first_refusal_capture,
    joined_topic,
    report_top,
)

# Fixtures: the site behind rtproxy and Chromium (test_browser), `rtreplay --serve` (test_replay).
site, browser, rtreplay_serve = test_browser.site, test_browser.browser, test_replay.rtreplay_serve

TIMERS = "join=3,heartbeat=1,idle=60"  # the page's: 3 s join timeout, 1 s heartbeats
ANY_STATUS = status_js("SUBSCRIBED", "CHANNEL_ERROR", "TIMED_OUT", "CLOSED")


async def statuses(tab, n: int) -> list[str]:
    """The page's first n channel statuses, once it has reported n."""
    await tab.wait(f"() => window.rt.statuses.length >= {n}", f"{n} channel status(es)")
    return [s["status"] for s in (await tab.rt())["statuses"]][:n]


async def stop_page(tab) -> None:
    """End the page's Realtime client (no more reconnects), then the page."""
    await tab.page.evaluate("() => window.client.removeAllChannels()")
    await tab.page.close()


async def replay_in_browser(
    tmp_path, site, browser, mitmdump, rtreplay_serve, anon_key, capture, topic, n, *args
) -> tuple[list[str], str, Rtreplay]:
    """Replay `capture` to the page through rtproxy: its first n statuses, rtproxy's top finding."""
    server = await rtreplay_serve(capture, *args)
    report = tmp_path / "replay-report"
    proxy = await mitmdump(
        f"rt_supabase_url=http://127.0.0.1:{server.port}",
        f"rt_timers={TIMERS}",
        f"rt_report={report}",
        mode=f"reverse:{site}",
    )
    tab = await open_site(browser, proxy, anon_key, "direct", channel=topic.removeprefix("realtime:"))
    try:
        got = await statuses(tab, n)
    finally:
        await tab.save(f"replay-{capture.stem}", proxy)
    await stop_page(tab)
    return got, await report_top(proxy, report), server


async def record_in_browser(tmp_path, site, browser, local_server, anon_key, fault: str, n: int):
    """The page run through rtproxy with `fault`, recorded (mitmdump -w): the flow file, its n statuses."""
    path = tmp_path / f"recorded-{fault.split('=')[0]}.flows"
    proxy = await Mitmdump(
        tmp_path,
        f"rt_supabase_url={local_server.url}",
        f"rt_fault={fault}",
        f"rt_timers={TIMERS}",
        mode=f"reverse:{site}",
        extra=("-w", str(path)),
    ).start()
    try:
        tab = await open_site(browser, proxy, anon_key, "direct", channel="room1")
        got = await statuses(tab, n)
        await stop_page(tab)
        await proxy.wait_for(r"closed by client")
    finally:
        await proxy.stop()
    return path, got


@pytest.mark.parametrize(
    ("case_id", "speed"),
    [("rls-read-denied-topicless", 1), ("v2-rejoin-stale-jwt-after-wake", 10)],
    ids=["join-refused", "token-expired"],
)
async def test_refused_join_replayed(
    case_id, speed, tmp_path, site, browser, local_server, mitmdump, rtreplay_serve, anon_key
):
    capture = corpus_capture(case_id, tmp_path)
    expected = await capture_top(capture)
    got, top, _ = await replay_in_browser(
        tmp_path,
        site,
        browser,
        mitmdump,
        rtreplay_serve,
        anon_key,
        capture,
        joined_topic(case_id),
        1,
        "--speed",
        str(speed),
    )
    assert got == ["CHANNEL_ERROR"]  # what the thread's client saw
    assert top == expected == CASE[case_id]["expect"]


async def test_a_rejoin_beyond_the_capture_is_refused_as_the_capture_refused(
    tmp_path, site, browser, mitmdump, rtreplay_serve, anon_key
):
    """A capture saved after the first refusal (one join, its error): realtime-js rejoins 1 s later
    (phoenix.js: channel.js schedules rejoinTimer, socket.js's rejoinAfterMs), beyond the capture's joins;
    the rejoin is refused again with the capture's reason, so the page reports CHANNEL_ERROR twice, not
    TIMED_OUT."""
    capture = first_refusal_capture(tmp_path)
    expected = await capture_top(capture)
    got, top, server = await replay_in_browser(
        tmp_path,
        site,
        browser,
        mitmdump,
        rtreplay_serve,
        anon_key,
        capture,
        joined_topic("rls-read-denied-topicless"),
        2,
    )
    assert got == ["CHANNEL_ERROR", "CHANNEL_ERROR"]
    assert top == expected == "join-unauthorized"
    await server.wait_for(r"\[1\] .* phx_join ref=\S+: beyond the capture's 1 join\(s\)")


async def test_upgrade_refused_replayed(tmp_path, site, browser, mitmdump, rtreplay_serve, anon_key):
    capture = corpus_capture("kong-431-chunked-auth-cookies", tmp_path)
    expected = await capture_top(capture)
    got, top, server = await replay_in_browser(
        tmp_path,
        site,
        browser,
        mitmdump,
        rtreplay_serve,
        anon_key,
        capture,
        "realtime:room1",
        1,
        "--connection",
        "1",
    )
    assert got == ["CHANNEL_ERROR"]
    assert top == expected == "upgrade-rejected"
    await server.wait_for(r"\[1\] answered 431 Request Header Fields Too Large")


@pytest.mark.parametrize(
    ("fault", "n", "code"),
    [
        # realtime-js closes 1000 "heartbeat timeout" at its next tick, CHANNEL_ERROR, and reconnects
        ("swallow-heartbeats", 2, "heartbeat-timeout"),
        # a system error in words Realtime never sends, then phx_close: CLOSED, not rejoined
        ("shutdown=Channel shut down for maintenance", 2, "channel-shutdown"),
    ],
    ids=["heartbeat-unanswered", "channel-shutdown"],
)
async def test_recorded_failure_replayed(
    fault, n, code, tmp_path, site, browser, local_server, mitmdump, rtreplay_serve, anon_key
):
    capture, original = await record_in_browser(tmp_path, site, browser, local_server, anon_key, fault, n)
    expected = await capture_top(capture, timers=TIMERS)
    assert expected == code
    got, top, _ = await replay_in_browser(
        tmp_path,
        site,
        browser,
        mitmdump,
        rtreplay_serve,
        anon_key,
        capture,
        "realtime:room1",
        n,
        "--connection",
        "1",
        "--timers",
        TIMERS,
    )
    assert got == original
    assert top == expected
