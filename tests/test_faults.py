"""The fault plan, sans-I/O: spec parsing and what each fault does to a frame."""

import json
import re

import pytest
from rtproxy_core import closecodes, frames
from rtproxy_core.faults import FaultPlan, FaultSpec, parse_faults


def v2(*fields):
    return json.dumps(list(fields)).encode()


def test_parse_all_faults():
    spec = parse_faults(
        "swallow-heartbeats, delay-replies=250,drop-join,shutdown=Node request timeout,"
        "close=4001:2.5:bye now,idle-timeout=30,max-frame=1000,strip-query"
    )
    assert spec == FaultSpec(
        True, 250, True, "Node request timeout", (4001, 2.5, "bye now"), 30.0, 1000, True
    )
    assert parse_faults("") == FaultSpec() and not parse_faults("").any


@pytest.mark.parametrize(
    "text,why",
    [
        ("nonsense", "unknown fault 'nonsense'; known: swallow-heartbeats"),
        ("drop-joins", "unknown fault 'drop-joins' (did you mean drop-join?); known: swallow-heartbeats"),
        ("delay-replies", "needs an argument: delay-replies=MS"),
        ("delay-replies=soon", "needs a number"),
        ("delay-replies=-5", "must not be negative"),
        ("delay-replies=1.5", "delay-replies needs a number (a whole number), got '1.5'"),
        ("idle-timeout=nan", "idle-timeout needs a finite number, got 'nan'"),
        ("drop-join=1", "takes no argument"),
        ("close=4000", "CODE:SECONDS"),
        (
            "close=1006:1",
            'code 1006 cannot be sent (mitmproxy closes with 1002 "remote CLOSE with local-only',
        ),
        ("close=999:1", '999 cannot be sent (mitmproxy closes with 1002 "CLOSE with invalid code" instead)'),
        (
            "close=2000:1",
            '2000 cannot be sent (mitmproxy closes with 1002 "CLOSE with unknown reserved code" instead)',
        ),
        ("close=1014:1", "use 1000-1003, 1007-1013 or 3000-4999"),
        ("close=4000:1:" + "x" * 124, "at most 123 bytes"),
    ],
)
def test_parse_errors_say_what_is_accepted(text, why):
    with pytest.raises(ValueError, match=re.escape(why)):
        parse_faults(text)


def test_close_takes_exactly_the_sendable_codes():
    for code in range(6000):
        try:
            spec = parse_faults(f"close={code}:1")
        except ValueError as e:
            assert not closecodes.sendable(code), (code, e)
            assert str(e) == closecodes.unsendable(code)
        else:
            assert closecodes.sendable(code) and spec.close == (code, 1.0, ""), code


def test_swallow_heartbeats_drops_only_heartbeat_replies():
    plan = FaultPlan(parse_faults("swallow-heartbeats"), frames.V2)
    assert plan.on_frame(
        False, False, v2(None, "5", "phoenix", "phx_reply", {"status": "ok", "response": {}})
    ).drop
    assert not plan.on_frame(False, False, v2("1", "1", "realtime:r", "phx_reply", {"status": "ok"})).drop


def test_drop_join_drops_client_joins_only():
    plan = FaultPlan(parse_faults("drop-join"), frames.V2)
    dropped = plan.on_frame(True, False, v2("1", "1", "realtime:r", "phx_join", {}))
    assert dropped.drop and dropped.fault == "drop-join"  # named for the Realtime view (framenotes)
    assert not plan.on_frame(True, False, v2(None, "2", "phoenix", "heartbeat", {})).drop


def test_delay_replies():
    plan = FaultPlan(parse_faults("delay-replies=300"), frames.V1)
    reply = b'{"event":"phx_reply","payload":{"status":"ok","response":{}},"ref":"1","topic":"t"}'
    a = plan.on_frame(False, False, reply)
    assert a.delay_ms == 300 and not a.drop and a.fault == "delay-replies"


@pytest.mark.parametrize("vsn", [frames.V1, frames.V2])
def test_shutdown_after_successful_join_in_the_sockets_vsn(vsn):
    plan = FaultPlan(parse_faults("shutdown=Too many messages per second"), vsn)
    join = frames.Message("realtime:r", "phx_join", {}, "3", "3")
    plan.on_frame(True, False, frames.encode_text(join, vsn, from_client=True).encode())
    reply = frames.Message("realtime:r", "phx_reply", {"status": "ok", "response": {}}, "3", "3")
    a = plan.on_frame(False, False, frames.encode_text(reply, vsn, from_client=False).encode())
    system, close = (frames.decode(t, binary=False, from_client=False) for t in a.inject_to_client)
    assert a.injected_by == "shutdown"
    assert system.shape == frames.shape_for(vsn)
    assert (system.event, system.payload["message"], system.payload["status"]) == (
        "system",
        "Too many messages per second",
        "error",
    )
    assert (close.event, close.ref, close.topic) == ("phx_close", "3", "realtime:r")
    again = plan.on_frame(False, False, frames.encode_text(reply, vsn, from_client=False).encode())
    assert again.inject_to_client == []  # only the join's own reply triggers it


def test_max_frame_closes_with_1009():
    plan = FaultPlan(parse_faults("max-frame=10"), frames.V2)
    a = plan.on_frame(True, True, b"\x03" + b"x" * 20)
    assert a.drop and a.close == (1009, "Message is too large") and a.fault == "max-frame"
    assert plan.on_frame(True, False, b"[]").close is None


def test_undecodable_frames_pass():
    plan = FaultPlan(parse_faults("drop-join,swallow-heartbeats"), frames.V2)
    assert not plan.on_frame(False, True, b"\xff\x00").drop
