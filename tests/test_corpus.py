"""The corpus of real bug reports, named right case by case (tests/corpus/cases.json; how it was built:
tests/corpus/README.md). Each case is a thread where a user pasted frames, replies, close codes or error
strings and the thread settles the cause. HAR cases are diagnosed from the HAR a user could have saved
from DevTools; flows cases from a mitmproxy flow file, and the live tracker, fed the same flows hook by
hook, must say the same (same findings, same order)."""

from __future__ import annotations

import json

import pytest
from corpus import CASES, flows, har, write_flows
from mitmproxy import websocket
from mitmproxy.test import taddons
from rtproxy_core.diagnosis import diagnose_captures, ranked
from rtproxy_core.redact import Redactor
from rtproxy_core.rules import Timers
from rtproxy_mitm.tracker import Tracker
from rtproxy_tools.captures import read


def offline(path) -> list[list]:
    sessions = diagnose_captures([read(path)], Redactor(), Timers())
    return [ranked(s.findings) for s in sessions]


def first_code(per_connection: list[list], connection: int | None = None) -> str | None:
    """The cause: the first finding of the case's connection, or of the first connection that has one."""
    if connection is not None:
        return per_connection[connection][0].code if per_connection[connection] else None
    return next((fs[0].code for fs in per_connection if fs), None)


def live(case) -> list[list]:
    tracker = Tracker()
    with taddons.context(tracker):
        for f in sorted(flows(case), key=lambda f: f.request.timestamp_start):
            ws, f.websocket = f.websocket, None
            tracker.request(f)
            if ws is None:
                tracker.response(f)
                continue
            f.websocket = websocket.WebSocketData()
            tracker.response(f)
            for m in ws.messages:
                f.websocket.messages.append(m)
                tracker.websocket_message(f)
            if ws.timestamp_end is not None:
                f.websocket.timestamp_end, f.websocket.close_code = ws.timestamp_end, ws.close_code
                f.websocket.close_reason, f.websocket.closed_by_client = ws.close_reason, ws.closed_by_client
                tracker.websocket_end(f)
        tracker.done()
        sessions = sorted(tracker.finished, key=lambda s: s.opened_at or 0)
    return [ranked(s.findings) for s in sessions]


def marks(case) -> list:
    """A case the rules do not name right yet says why in `open`: an expected failure, strict, so the case
    must lose its `open` the day the rules name it."""
    return [pytest.mark.xfail(reason=case["open"], strict=True)] if case.get("open") else []


@pytest.mark.parametrize("case", [pytest.param(c, id=c["id"], marks=marks(c)) for c in CASES])
def test_case_is_named_right(case, tmp_path):
    assert case["thread"].startswith("https://") and case["quote"] and case["cause"]
    if case["capture"] == "har":
        path = tmp_path / "capture.har"
        path.write_text(json.dumps(har(case)))
    else:
        path = tmp_path / "capture.flows"
        write_flows(case, path)
    found = offline(path)
    codes = [f.code for fs in found for f in fs]
    assert first_code(found, case.get("connection")) == case["expect"], (case["id"], codes)
    for also in case.get("also") or []:
        assert also in codes, (case["id"], also, codes)
    if case["capture"] == "flows":
        assert [[(f.code, f.topic) for f in fs] for fs in live(case)] == [
            [(f.code, f.topic) for f in fs] for fs in found
        ]


def test_every_new_case_kept_its_first_look():
    """A case added after the rules were first fitted (batch 1 on) records what the rules of the day said
    before any rule was changed for its batch: the commit and the first code (null: none)."""
    for case in CASES:
        if case.get("batch", 0) >= 1:
            look = case.get("first_look")
            assert look and len(look["commit"]) >= 7 and "code" in look, case["id"]


def test_the_docs_say_the_rates_the_corpus_gives():
    """docs/reading-findings.md's two figures, and the README's, from the cases: the first look (batch 1 on, before any rule changed for
    them) and today (every case, those still `open` missing)."""
    from conftest import ROOT

    new = [c for c in CASES if c.get("batch", 0) >= 1]
    first = sum(c["first_look"]["code"] == c["expect"] for c in new)
    today = sum(not c.get("open") for c in CASES)
    readme = " ".join((ROOT / "docs" / "reading-findings.md").read_text().split())
    assert f"**First look: {first} of {len(new)}**" in readme
    assert f"**Today: {today} of {len(CASES)}** on all cases" in readme
    top = " ".join((ROOT / "README.md").read_text().split())
    assert (
        f"cause in **{today} of {len(CASES)}** today" in top
        and f"before it was added: **{first} of {len(new)}**" in top
    )
