"""Parity with supabase-js in Chromium: the page is loaded from the Worker (workerd with SITE_URL, or rtproxy
emulating it in reverse mode to the same site) and connects to the Worker's own origin, as a user of the
corrected Worker does (`createClient(workerOrigin, key)`), or through the design's wrapper. Each Worker, at
each compatibility date tests/test_parity.py uses: the same channel status, the same broadcasts back, the
same data types at the transport, and the same findings from rtproxy (behind the Worker in workerd, or in
front as its emulation).

Prerequisites are test_browser.py's (Chromium, playwright, the site's npm packages) and test_parity.py's
(workerd); missing ones skip, except under CI, where they fail.
"""

from __future__ import annotations

import contextlib
import types

import pytest
from conftest import IN_CI
from rtproxy_core.hop import BLOB_DATE
from test_browser import USER_BROADCAST, browser, open_site, site, status_js  # noqa: F401 - fixtures
from test_parity import WORKER_DATES, same_findings, side
from test_workerd import KeyAdder

# "keyed": the relay's upstream is test_workerd.KeyAdder, which puts back the query the relay drops and holds
# the first upgrade until the relay has dropped the page's join, so the relay's other defects reach the page.
CASES = [(w, d, "direct") for w, d in WORKER_DATES] + [("fixed", WORKER_DATES[0][1], "wrapper")]
CASES += [("relay", d, "keyed") for w, d in WORKER_DATES if w == "relay"]
SETTLED = ("SUBSCRIBED", "CHANNEL_ERROR", "CLOSED")  # TIMED_OUT is followed by a rejoin


def replies(tab) -> int:
    return sum('"phoenix","phx_reply"' in f for f in tab.received if isinstance(f, str))


async def outcome(tab, s, release) -> list:
    """The channel statuses up to the first settled one (with their errors); when subscribed, the page's own
    broadcast sent, then two more heartbeat replies awaited (Phoenix answers in order: the echo, if any,
    came before them): the broadcasts the page got, the binary kinds and data types it saw."""
    if release is not None:
        await s.dropped(1)
        release.set()
    await tab.wait(status_js(*SETTLED), "a channel status")
    statuses = [(x["status"], x.get("error")) for x in (await tab.rt())["statuses"]]
    out: list = statuses[: next(i for i, (st, _) in enumerate(statuses) if st in SETTLED) + 1]
    if out[-1][0] == "SUBSCRIBED":
        assert await tab.page.evaluate("() => window.sendBroadcast({x: 1})") == "ok"
        n = replies(tab)
        await tab.until(lambda: replies(tab) >= n + 2, "two heartbeat replies after the broadcast")
        rt = await tab.rt()
        kinds = sorted({f[0] for f in tab.received if isinstance(f, bytes)})
        out += [rt["broadcasts"], kinds, sorted(set(rt["dataTypes"]))]
    else:  # no reconnect loop (a subscribed page is just closed: whether its phx_leave got out would race)
        await tab.page.evaluate("() => window.client.removeAllChannels()")
    await tab.page.close()
    if any("] connect " in line for line in s.proxy.lines):
        await s.proxy.wait_for(r"\] (closed by |upgrade rejected)")  # what rtproxy saw has ended
    return out


@pytest.mark.parametrize(("worker", "date", "approach"), CASES)
async def test_browser_parity(site, browser, local_server, anon_key, tmp_path, worker, date, approach):  # noqa: F811
    from test_workerd import MISSING as WORKERD_MISSING

    if WORKERD_MISSING:
        (pytest.fail if IN_CI else pytest.skip)(f"the parity tests need workerd ({WORKERD_MISSING})")
    out = {}
    for kind in ("runtime", "emulation"):
        (tmp_path / kind).mkdir()
        async with contextlib.AsyncExitStack() as stack:
            stub = (
                KeyAdder(local_server.url, anon_key, "2.0.0", hold_first=True)
                if approach == "keyed"
                else None
            )
            upstream = await stack.enter_async_context(stub) if stub else local_server.url
            s = await stack.enter_async_context(
                side(kind, worker, date, upstream, tmp_path / kind, site=site)
            )
            origin = types.SimpleNamespace(url=s.ws.replace("ws://", "http://", 1))
            tab = await open_site(browser, origin, anon_key, "wrapper" if approach == "wrapper" else "direct")
            out[kind] = (await outcome(tab, s, stub.release if stub else None), await s.findings())
    print(worker, date, approach, out)
    assert out["runtime"][0] == out["emulation"][0]
    same_findings(out["runtime"][1], out["emulation"][1])
    if approach == "keyed":  # the dropped join times out; the rejoin succeeds; the echo is lost after 03-17
        echo = [[{"x": 1}], [4]] if date < BLOB_DATE else [[], []]
        assert out["runtime"][0][:4] == [("TIMED_OUT", None), ("SUBSCRIBED", None), *echo], out
    if worker == "fixed":
        broadcasts = [{"x": 1}] if approach == "direct" else []  # the wrapper hands supabase-js a Blob
        assert out["runtime"][0][:2] == [("SUBSCRIBED", None), broadcasts], out
