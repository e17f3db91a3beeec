"""Fuzzing the sans-I/O core and the offline tools with hypothesis: whatever arrives on the wire or in a
capture, only the documented exceptions escape (frames.DecodeError, ValueError from the option parsers,
CaptureError from the capture readers), the tracker and the rules never fail, and planted secrets never
reach anything rtproxy prints.

Profiles (issue #6), both without a deadline:
- quick (default, CI): 200 examples per target, about half a minute in all;
- long: `RTPROXY_FUZZ=long .venv/bin/python -m pytest tests/test_fuzz.py` runs 100,000 examples per target
  (a few hours on one core). RTPROXY_FUZZ_EXAMPLES=N sets the count in either profile.
Every bug this fuzzer found is also pinned as an @example, so the quick profile always re-checks them.
"""

from __future__ import annotations

import base64
import json
import math
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from rtproxy_core import closecodes, frames
from rtproxy_core.captures import CaptureError, har_connections
from rtproxy_core.diagnosis import Diagnoser, diagnose_captures
from rtproxy_core.events import Closed, Frame, Handshake, Hop, HopKind, Opened, Upstream, UpstreamHandshake
from rtproxy_core.faults import FAULTS, FaultPlan, FaultSpec, parse_faults
from rtproxy_core.hop import parse_supabase_url
from rtproxy_core.redact import Redactor, describe_jwt, jwt_claims, jwt_expired
from rtproxy_core.report import report_json, report_markdown, report_text
from rtproxy_core.rules import Timers
from rtproxy_core.session import Session
from rtproxy_tools import decode as rtdecode
from rtproxy_tools.captures import read as read_capture

ROOT = Path(__file__).resolve().parent.parent
LONG = os.environ.get("RTPROXY_FUZZ") == "long"
_COUNT = os.environ.get("RTPROXY_FUZZ_EXAMPLES")
_SLOW_DATA = [HealthCheck.too_slow, HealthCheck.data_too_large]  # big frames and deep nesting on purpose

settings.register_profile(
    "rtproxy-fuzz-quick", max_examples=int(_COUNT or 200), deadline=None, suppress_health_check=_SLOW_DATA
)
settings.register_profile(
    "rtproxy-fuzz-long", max_examples=int(_COUNT or 100_000), deadline=None, suppress_health_check=_SLOW_DATA
)
# Applied per test (not loaded globally) so the other test files keep hypothesis' own defaults.
FUZZ = settings(settings.get_profile("rtproxy-fuzz-long" if LONG else "rtproxy-fuzz-quick"))

pytestmark = pytest.mark.slow if LONG else []


T0 = 1_800_000_000.0

# ------------------------------------------------------------------------------------------ secrets
# Planted in every position a secret travels in; none may show up in anything rtproxy prints.


def _b64(obj) -> str:
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# Every secret carries MARK, and no free-form text the fuzzer makes does: hypothesis copies strings
# between draws (and mines this file's literals), so a secret could otherwise turn up where nothing can
# recognise it as one (a topic name, a bare word).
MARK = "Q"
SIGNATURE = "Qs" + _b64(b"signature-of-a-secret")


def free_text(max_size: int):
    return st.text(alphabet=st.characters(exclude_characters=MARK), max_size=max_size)


def jwt(claims, header=None, signature=SIGNATURE) -> str:
    return f"{_b64(header or {'alg': 'HS256', 'typ': 'JWT'})}.{_b64(claims)}.{signature}"


SECRET_APIKEY = jwt({"role": "anon", "exp": T0 + 3600, "iss": "fuzz-apikey"})
SECRET_TOKEN = jwt({"role": "authenticated", "exp": T0 - 60, "sub": "fuzz-access-token"})
SECRET_SB = "sb_secret_Q" + _b64(b"fuzz-sb-secret-key")
SECRET_PLAIN = "plain-Qkey-" + format(0x7F3A_19C4, "x")  # not a JWT: only recognisable by where it is
SECRETS = (SECRET_APIKEY, SECRET_TOKEN, SECRET_SB, SECRET_PLAIN)
RECOGNISABLE = (SECRET_APIKEY, SECRET_TOKEN, SECRET_SB)  # by their shape, wherever they appear
# What must never be printed: whole values, and each JWT's signature (a redactor that cut a token in
# the middle would leave it).
FORBIDDEN = SECRETS + (SIGNATURE,)
assert all(MARK in s for s in FORBIDDEN)

# ------------------------------------------------------------------------------------------ JSON values

KEYS = [
    "topic",
    "event",
    "payload",
    "ref",
    "join_ref",
    "status",
    "response",
    "reason",
    "config",
    "postgres_changes",
    "private",
    "access_token",
    "apikey",
    "extension",
    "message",
    "joins",
    "leaves",
    "id",
    "exp",
    "role",
    "error",
    "type",
    "meta",
    "broadcast",
    "presence",
    "key",
    "schema",
    "table",
    "filter",
    "channel",
    "user_token",
    "token",
]
TOPICS = ["phoenix", "realtime:room1", "realtime:room2", "realtime:", "", "realtime:\ud800", "t" * 300]
EVENTS = [
    "phx_join",
    "phx_reply",
    "phx_close",
    "phx_error",
    "phx_leave",
    "heartbeat",
    "system",
    "presence_state",
    "presence_diff",
    "postgres_changes",
    "broadcast",
    "access_token",
    "presence",
    "",
]
STATUSES = ["ok", "error", "timeout", None, 1]
REASONS = [
    "Token has expired 12 seconds ago",
    "InvalidJWTToken: Token has expired 3 seconds ago",
    "Unauthorized: You do not have permissions to read from this Channel topic",
    "RateLimitReached: Too many joins per second",
    "TenantNotFound",
    "heartbeat timeout",
    f"bad token {SECRET_TOKEN}",
    f"apikey={SECRET_PLAIN}",
    f"key {SECRET_SB} refused",
    "mismatch between server and client bindings for postgres changes",
]

huge_ints = st.sampled_from([10**400, -(10**400), 2**63, -(2**63), 10**4000])
# Names (topic, event, ref) are printed as they are: no secrets planted there (test_jwt_in_a_topic_name).
name_leaf = (
    st.none()
    | st.booleans()
    | st.integers()
    | huge_ints
    | st.floats()
    | free_text(max_size=20)
    | st.sampled_from(TOPICS + EVENTS)
)
json_leaf = name_leaf | st.sampled_from(REASONS + list(RECOGNISABLE))
json_values = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | free_text(max_size=6), inner, max_size=5)
    ),
    max_leaves=25,
)


def _dumps(value) -> str:
    try:
        return json.dumps(value)
    except ValueError:  # ints past Python's str-conversion limit
        return "null"


@st.composite
def nested(draw) -> str:
    """Deeply nested JSON (deeper than any recursion limit, or just below it)."""
    depth = draw(st.sampled_from([50, 900, 990, 1100, 5000]))  # json's limit is the recursion limit (~1000)
    inner = draw(st.sampled_from(["[", '{"a":', '{"payload":']))
    close = {"[": "]", '{"a":': "}", '{"payload":': "}"}[inner]
    body = inner * depth + "1" + close * depth
    if draw(st.booleans()):
        body = body[: draw(st.integers(0, len(body)))]  # unterminated
    return body


@st.composite
def jwts(draw) -> str:
    """Tokens that look like JWTs to the redactor, with claims of every shape."""
    claims = draw(
        st.one_of(
            st.fixed_dictionaries(
                {"role": json_leaf, "exp": st.one_of(st.floats(), st.integers(), huge_ints, json_leaf)}
            ),
            json_values,
            nested().map(lambda s: s.encode()),
            st.binary(max_size=40),
        )
    )
    # (not the planted secrets' signature: these are not secrets, only shapes)
    if isinstance(claims, bytes):
        token = f"{_b64({'alg': 'none'})}.{_b64(claims)}.x"
    else:
        token = jwt(claims, signature="c2ln")
    if draw(st.booleans()):
        token = token[: draw(st.integers(0, len(token)))]
    return token


texty = st.one_of(
    free_text(max_size=40),
    st.sampled_from(REASONS + list(RECOGNISABLE)),
    jwts(),
    st.text(alphabet="eyJ.=&?%_-sb", max_size=30),
    nested(),
)

# ------------------------------------------------------------------------------------------ frames


@st.composite
def realtime_message(draw) -> tuple:
    """(join_ref, ref, topic, event, payload) with plausible values, sometimes of the wrong type."""
    ref = st.one_of(
        st.none(),
        st.sampled_from(["1", "2", "3", "10"]),
        st.integers(0, 20).map(str),
        st.integers(),
        name_leaf,
    )
    topic = st.one_of(st.sampled_from(TOPICS), free_text(max_size=10), name_leaf)
    event = st.one_of(st.sampled_from(EVENTS), name_leaf)
    payload = st.one_of(payload_for(draw(st.sampled_from(EVENTS))), json_values)
    return draw(ref), draw(ref), draw(topic), draw(event), draw(payload)


def payload_for(event: str):
    if event == "phx_join":
        return st.fixed_dictionaries(
            {
                "config": st.fixed_dictionaries(
                    {
                        "broadcast": json_values,
                        "presence": json_values,
                        "private": json_leaf,
                        "postgres_changes": st.lists(
                            st.fixed_dictionaries(
                                {"event": json_leaf, "schema": json_leaf, "table": json_leaf}
                            )
                            | json_leaf,
                            max_size=3,
                        ),
                    }
                ),
                "access_token": st.sampled_from([SECRET_TOKEN, SECRET_APIKEY, SECRET_SB]) | texty,
            }
        )
    if event == "phx_reply":
        return st.fixed_dictionaries(
            {
                "status": st.sampled_from(STATUSES),
                "response": st.one_of(
                    st.fixed_dictionaries({"reason": st.sampled_from(REASONS) | texty}),
                    st.fixed_dictionaries(
                        {
                            "postgres_changes": st.lists(
                                st.fixed_dictionaries(
                                    {"id": json_leaf, "event": json_leaf, "table": json_leaf}
                                )
                                | json_leaf,
                                max_size=3,
                            )
                        }
                    ),
                    json_values,
                ),
            }
        )
    if event == "system":
        return st.fixed_dictionaries(
            {
                "extension": st.sampled_from(["system", "postgres_changes"]) | json_leaf,
                "status": st.sampled_from(["ok", "error"]) | json_leaf,
                "message": st.sampled_from(REASONS) | texty,
            }
        )
    if event in ("presence_state", "presence_diff"):
        return st.fixed_dictionaries({"joins": json_values, "leaves": json_values}) | json_values
    if event == "access_token":
        return st.fixed_dictionaries({"access_token": st.sampled_from([SECRET_TOKEN, SECRET_SB]) | texty})
    return json_values


def _text_frame(draw, msg: tuple) -> bytes:
    join_ref, ref, topic, event, payload = msg
    shape = draw(st.sampled_from(["object", "array", "array-short", "object-missing"]))
    if shape == "object":
        obj = {"topic": topic, "event": event, "payload": payload, "ref": ref, "join_ref": join_ref}
    elif shape == "object-missing":
        obj = {
            k: v
            for k, v in {"topic": topic, "event": event, "payload": payload, "ref": ref}.items()
            if draw(st.booleans())
        }
    elif shape == "array":
        obj = [join_ref, ref, topic, event, payload]
    else:
        obj = [join_ref, ref, topic, event, payload][: draw(st.integers(0, 4))]
    return _dumps(obj).encode("utf-8", "surrogatepass")


def _s(value) -> str:
    return value if isinstance(value, str) else str(value)


def _binary_frame(draw, msg: tuple, from_client: bool) -> bytes:
    join_ref, ref, topic, event, payload = (_s(v) if i < 4 else v for i, v in enumerate(msg))
    kind = draw(st.integers(0, 6))
    raw = draw(st.binary(max_size=30) | st.just(_dumps(payload).encode("utf-8", "surrogatepass")))
    meta = draw(st.none() | st.dictionaries(st.sampled_from(KEYS), json_leaf, max_size=3))
    try:
        if kind == 0:
            return frames.encode_push(topic, event, raw, join_ref=join_ref, ref=ref, from_client=from_client)
        if kind == 1:
            return frames.encode_reply(
                topic, _s(draw(st.sampled_from(STATUSES))), raw, join_ref=join_ref, ref=ref
            )
        if kind == 2:
            return frames.encode_broadcast(topic, event, raw)
        value = draw(st.just(raw) | json_values)
        if kind == 3:
            return frames.encode_user_push(topic, event, value, join_ref=join_ref, ref=ref, meta=meta)
        if kind == 4:
            return frames.encode_user_broadcast(topic, event, value, meta=meta)
    except (ValueError, UnicodeEncodeError):  # fields over 255 bytes, lone surrogates: not encodable
        pass
    return bytes([kind]) + draw(st.binary(max_size=40))


def _mutate(draw, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["truncate", "set", "insert", "delete", "length", "kind", "utf8"]))
        i = draw(st.integers(0, max(len(buf) - 1, 0)))
        if op == "truncate":
            del buf[i:]
        elif op == "set" and buf:
            buf[i] = draw(st.integers(0, 255))
        elif op == "insert":
            buf[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and buf:
            del buf[i]
        elif op == "length" and len(buf) > 1:  # a header length byte running past the end
            buf[min(draw(st.integers(1, 6)), len(buf) - 1)] = draw(st.sampled_from([0, 1, 200, 255]))
        elif op == "kind" and buf:
            buf[0] = draw(st.integers(0, 255))
        elif op == "utf8":
            buf[i:i] = draw(
                st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x00"])
            )
    return bytes(buf)


@st.composite
def frame_data(draw, from_client: bool | None = None) -> tuple[bool, bool, bytes]:
    """(from_client, binary, data): valid encodings, then mutated; raw garbage; nested JSON."""
    client = draw(st.booleans()) if from_client is None else from_client
    how = draw(
        st.sampled_from(
            ["text", "binary", "text-mutated", "binary-mutated", "raw", "nested", "nested-payload", "utf8"]
        )
    )
    if how == "raw":
        return client, draw(st.booleans()), draw(st.binary(max_size=200))
    if how == "utf8":
        return client, False, draw(free_text(max_size=80)).encode("utf-8", "surrogatepass")
    if how == "nested":
        return client, draw(st.booleans()), draw(nested()).encode()
    if how == "nested-payload":
        head = draw(
            st.sampled_from(
                [
                    '["1","1","realtime:r","phx_join",',
                    '["1","1","phoenix","phx_reply",',
                    '{"topic":"t","event":"e","ref":"1","payload":',
                ]
            )
        )
        return client, False, (head + draw(nested()) + draw(st.sampled_from(["]", "}", ""]))).encode()
    msg = draw(realtime_message())
    binary = how.startswith("binary")
    data = _binary_frame(draw, msg, client) if binary else _text_frame(draw, msg)
    if how.endswith("mutated"):
        data = _mutate(draw, data)
    return client, binary, data


# ------------------------------------------------------------------------------------------ events

times = st.one_of(st.floats(T0, T0 + 120), st.floats(T0, T0 + 120), st.floats(), st.just(0.0))
secret_query = st.sampled_from(
    [
        f"apikey={SECRET_APIKEY}",
        f"apikey={SECRET_PLAIN}",
        f"apikey={SECRET_SB}",
        f"access_token={SECRET_TOKEN}",
        "apikey=",
        "",
    ]
)
vsn_query = st.sampled_from(
    ["vsn=1.0.0", "vsn=2.0.0", "vsn=2.0.0-rc.1", "vsn=1.9.3", "vsn=", "", "vsn=2.0.0+build", "vsn=%ff"]
)
urls = st.one_of(
    st.builds(
        lambda base, path, q: f"{base}{path}?{'&'.join(x for x in q if x)}",
        st.sampled_from(
            [
                "http://worker.localhost",
                "https://abc.supabase.co",
                "ws://[::1]:8080",
                "http://[::1",
                "http://h:99999",
                "",
            ]
        ),
        st.sampled_from(["/realtime/v1/websocket", "/socket/websocket", "/", "/realtime/v1"]),
        st.lists(secret_query | vsn_query | free_text(max_size=10), max_size=4),
    ),
    free_text(max_size=60),
)
header_names = st.sampled_from(
    ["x-api-key", "apikey", "authorization", "cookie", "host", "upgrade", "sec-websocket-protocol"]
) | free_text(max_size=10)
header_values = st.sampled_from(
    [SECRET_APIKEY, f"Bearer {SECRET_TOKEN}", SECRET_SB, SECRET_PLAIN, "websocket"]
) | free_text(max_size=20)
headers = st.lists(st.tuples(header_names, header_values), max_size=4)
bodies = st.one_of(
    st.sampled_from(
        [
            b'{"error":"API key is missing"}',
            b'{"error":"Token has expired"}',
            b'{"error":"Tenant not found: fuzz"}',
            b"Expected WebSocket",
            b"",
            b'{"error":"error code: 1101 Worker threw exception"}',
            json.dumps({"error": f"JwtSignatureError {SECRET_TOKEN}"}).encode(),
        ]
    ),
    st.binary(max_size=60),
    nested().map(str.encode),
    json_values.map(lambda v: _dumps({"error": v}).encode("utf-8", "surrogatepass")),
)
statuses = st.sampled_from([101, 101, 101, 200, 401, 403, 404, 426, 429, 431, 500, 502]) | st.integers()
close_codes = (
    st.none() | st.sampled_from([1000, 1001, 1005, 1006, 1009, 1011, 1012, 4000, 4001]) | st.integers()
)


@st.composite
def frames_ev(draw) -> Frame:
    client, binary, data = draw(frame_data())
    return Frame(client, binary, data, draw(times))


HOP_WHATS = [*HopKind, ""]  # every kind a hop reports, and one no producer writes
events = st.one_of(
    st.builds(Opened, urls, headers, times),
    st.builds(Upstream, urls, headers, times),
    st.builds(Handshake, statuses, headers, bodies, times),
    st.builds(UpstreamHandshake, statuses, headers, bodies, times),
    frames_ev(),
    frames_ev(),
    frames_ev(),
    frames_ev(),
    # (`what` is one of rtproxy's own words, never from the wire)
    st.builds(Hop, st.sampled_from(HOP_WHATS), texty, times, st.none() | frames_ev()),
    st.builds(Closed, close_codes, texty, st.none() | st.booleans(), times, texty),
)
timers = st.builds(Timers, st.floats(0.001, 1e6), st.floats(0.001, 1e6), st.floats(0.001, 1e6))


@st.composite
def sessions_events(draw) -> list:
    """A plausible opening (most of the time), then anything."""
    start = []
    if draw(st.integers(0, 9)):
        start = [
            Opened(draw(urls), draw(headers), T0),
            Handshake(draw(statuses), draw(headers), draw(bodies), T0),
        ]
    return start + draw(st.lists(events, max_size=30))


# ------------------------------------------------------------------------------------------ helpers


def assert_no_secret(text: str, where: str) -> None:
    for secret in FORBIDDEN:
        assert secret not in text, f"{where} leaks {secret!r}: {text!r}"


def assert_printable(text: str, where: str) -> None:
    """Output goes to a UTF-8 terminal, file or pipe."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise AssertionError(f"{where} is not encodable as UTF-8 ({e}): {text!r}") from None


def run_session(
    evs: list, debug: bool, tm: Timers, diagnoser: Diagnoser | None = None
) -> tuple[Session, list[str]]:
    """Feed like the tracker and rtdiagnose do: feed, check at the event's time, end."""
    d = diagnoser or Diagnoser(tm)
    s = Session(conn="fz", redactor=Redactor(), debug=debug, join_timeout_s=tm.join)
    printed: list[str] = []
    for ev in evs:
        for note in s.feed(ev):
            assert note.level in ("debug", "info", "warning")
            printed.append(note.text)
        printed += [f.evidence for f in d.check(s, getattr(ev, "time", 0.0) or T0)]
    printed += [f.evidence for f in d.end(s)]
    failed = [f for f in s.findings if f.code == "rule-failed"]
    assert not failed, f"a rule raised: {failed[0].evidence}"
    return s, printed


# ------------------------------------------------------------------------------------------ the codec


@FUZZ
@given(frame_data())
def test_decode_only_raises_decode_error(item):
    client, binary, data = item
    try:
        msg = frames.decode(data, binary=binary, from_client=client)
    except frames.DecodeError as e:
        assert str(e)
        return
    assert isinstance(msg.topic, str) and isinstance(msg.event, str)
    assert msg.ref is None or isinstance(msg.ref, str)
    assert msg.join_ref is None or isinstance(msg.join_ref, str)
    json.dumps(msg.as_dict())  # what rtdecode prints is always JSON


@FUZZ
@given(st.one_of(st.binary(max_size=300), free_text(max_size=300)), st.booleans(), st.booleans())
def test_decode_arbitrary_bytes_and_str(data, binary, client):
    try:
        frames.decode(data, binary=binary, from_client=client)
    except frames.DecodeError:
        pass


@FUZZ
@given(
    st.one_of(
        json_values.map(lambda v: json.dumps(v, ensure_ascii=False)),
        free_text(max_size=200),
    ),
    st.sampled_from(["", " ", "\n", "\t "]),
    st.sampled_from(["", " ", "\r\n", "x", "]", ",1"]),
)
def test_json_fast_path_is_jsondecoder_decode(text, before, after):
    text = before + text + after

    def outcome(parse):
        try:
            return "value", parse(text)
        except (ValueError, RecursionError) as e:
            return type(e).__name__, str(e), type(e.__context__).__name__

    assert outcome(frames._parse_json) == outcome(frames._decode_json)


@FUZZ
@given(
    st.one_of(
        st.none(),
        free_text(max_size=30),
        st.sampled_from(["1.0.0", "2.0.0", "2.0.0+x", "02.0.0", "2.0.0-rc.1", "١.0.0"]),
    )
)
def test_vsn_family_total(vsn):
    assert frames.vsn_family(vsn) in (None, frames.V1, frames.V2)


# ------------------------------------------------------------------------------------------ tracker + rules


# Each found by this fuzzer once; kept as fixed examples.
@example(
    [Opened("http://w/realtime/v1/websocket?vsn=1.0.0", [], T0), Handshake(403, [], b"[" * 5000, T0)],
    False,
    Timers(),
)
@example(
    [Opened("", [], T0), Handshake(101, [], b"", T0), Closed(None, "", None, T0 + 1, f"bad {SECRET_TOKEN}")],
    False,
    Timers(),
)
@example(
    [Opened("http://w/realtime/v1/websocket?x=\udcff&apikey=k", [], T0), Hop("fault", "\udcff", T0)],
    True,
    Timers(),
)
@example(
    [Frame(True, False, b'{"topic":"realtime:\\ud800","event":"phx_join","payload":{},"ref":"1"}', T0)],
    True,
    Timers(),
)
@example(
    [
        Opened(f"http://w/realtime/v1/websocket?apikey={jwt({'role': 'anon', 'exp': 10**400})}", [], T0),
        Opened(f"http://w/realtime/v1/websocket?apikey={jwt({'exp': -(10**400)})}", [], T0),
    ],
    False,
    Timers(),
)
@FUZZ
@given(sessions_events(), st.booleans(), timers)
def test_session_and_diagnoser_never_raise_and_never_print_secrets(evs, debug, tm):
    s, printed = run_session(evs, debug, tm)
    for text in printed:
        assert_no_secret(text, "a log line or finding")
        assert_printable(text, "a log line or finding")
    report = json.dumps(report_json([s]), ensure_ascii=False)
    for name, out in (
        ("report json", report),
        ("report text", report_text([s])),
        ("report markdown", report_markdown([s])),
    ):
        assert_no_secret(out, name)
        assert_printable(out, name)


def test_jwt_in_a_topic_name():
    """A client that puts a token into a channel name does not see it in the log or the report."""
    s = Session(conn="fz")
    s.feed(Opened("http://w/realtime/v1/websocket?vsn=1.0.0", [], T0))
    s.feed(Handshake(101, [], b"", T0))
    topic = f"realtime:{SECRET_TOKEN}"
    notes = s.feed(
        Frame(
            True,
            False,
            json.dumps({"topic": topic, "event": "phx_join", "payload": {}, "ref": "1"}).encode(),
            T0,
        )
    )
    assert_no_secret("\n".join(n.text for n in notes) + report_text([s]), "a topic name")


@FUZZ
@given(st.lists(sessions_events(), min_size=2, max_size=4), timers)
def test_diagnoser_across_connections(many, tm):
    d = Diagnoser(tm)
    sessions = [run_session(evs, False, tm, d)[0] for evs in many]
    report_text(sessions)
    report_markdown(sessions)


# ------------------------------------------------------------------------------------------ redactor


@example("", "", SECRET_TOKEN, "", 0.0)
@example(SECRET_APIKEY, "", SECRET_TOKEN, "", 0.0)  # two JWTs glued together
@example("eyJhbGciOiAiSFMyNTYiLCAidHlwIjogIkpXVCJ9.", "", SECRET_TOKEN, "", 0.0)  # a stray header in front
@FUZZ
@given(texty, texty, st.sampled_from(SECRETS), st.sampled_from(["", " ", "&", "\n", '"']), times)
def test_redactor_text_hides_recognisable_secrets(before, after, secret, glue, now):
    r = Redactor()
    if secret == SECRET_PLAIN:  # a plain key is only recognisable by its parameter name
        text = f"{before} apikey={secret}&x=1 {after}"
    else:  # JWTs and sb_ keys by their shape, even glued to whatever surrounds them
        text = f"{before}{glue}{secret}{glue}{after}"
    planted = (secret, SIGNATURE) if secret.startswith("eyJ") else (secret,)
    for out in (
        r.text(text, now),
        r.url(f"https://x.supabase.co/realtime/v1/websocket?{before}&apikey={secret}"),
    ):
        for value in planted:
            assert value not in out, f"{value!r} survives redaction: {out!r}"


@FUZZ
@given(texty | free_text(max_size=200), json_values, times, st.booleans())
def test_redactor_total(text, value, now, show):
    r = Redactor(show_secrets=show)
    r.text(text, now)
    r.url(text)
    r.secret(text, now)
    assert r.output(r.output(text, now), now) == r.output(text, now)  # idempotent: safe as the last pass
    out = r.payload({"access_token": SECRET_TOKEN, "nested": [value, {"apikey": SECRET_PLAIN}]}, now)
    if not show:
        assert_no_secret(json.dumps(frames.jsonable(out), default=str), "Redactor.payload")
    jwt_claims(text)
    jwt_expired(text, now)
    describe_jwt(text, now)


@example(jwt({"role": "anon", "exp": 10**400}), T0)
@example(jwt({"role": "anon", "exp": -(10**400)}), T0)
@example(jwt({"role": "anon", "exp": 1.0}), float("nan"))
@example(f"{_b64({'alg': 'none'})}.{_b64(b'[' * 5000)}.x", T0)
@example(jwt({"role": f"bad {SECRET_TOKEN}", "exp": 0}), T0)  # the claims are the token's content
@example(jwt({"role": "realtime:\ud800", "exp": 0}), T0)
@FUZZ
@given(jwts(), times)
def test_jwt_helpers_total(token, now):
    claims = jwt_claims(token)
    assert claims is None or isinstance(claims, dict)
    ago = jwt_expired(token, now)
    assert ago is None or isinstance(ago, float | int)
    described = describe_jwt(token, now)
    assert described.startswith("<")
    assert_no_secret(described, "describe_jwt")
    assert_printable(described, "describe_jwt")


# ------------------------------------------------------------------------------------------ captures


@st.composite
def har_docs(draw):
    """HAR-shaped documents with every field possibly of the wrong type."""

    def maybe(strategy):  # mostly the right shape, sometimes anything
        return st.one_of(strategy, strategy, strategy, strategy, json_values)

    message = st.fixed_dictionaries(
        {
            "type": st.sampled_from(["send", "receive", "other"]) | json_leaf,
            "time": st.floats() | st.integers() | huge_ints | json_leaf,
            "opcode": st.sampled_from([1, 2, 8]) | json_leaf,
            "data": st.one_of(
                free_text(max_size=40),
                st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode()),
                frame_data().map(lambda f: f[2].decode("latin-1")),
                json_leaf,
            ),
        }
    )
    entry = st.fixed_dictionaries(
        {
            "startedDateTime": st.sampled_from(
                [
                    "2026-11-25T10:00:00.000Z",
                    "0001-01-01T00:00:00",
                    "9999-12-31T23:59:59",
                    "2026-11-25T10:00:00+23:59",
                    "0001-01-01T00:00:00-23:59",
                    "x",
                ]
            )
            | json_leaf,
            "_resourceType": st.sampled_from(["websocket", "xhr"]) | json_leaf,
            "request": st.fixed_dictionaries(
                {
                    "url": urls | json_leaf,
                    "headers": st.lists(
                        st.fixed_dictionaries(
                            {"name": header_names | json_leaf, "value": header_values | json_leaf}
                        )
                        | json_leaf,
                        max_size=3,
                    )
                    | json_leaf,
                }
            )
            | json_values,
            "response": st.fixed_dictionaries(
                {
                    "status": statuses | json_leaf,
                    "headers": json_values,
                    "content": st.fixed_dictionaries(
                        {
                            "text": free_text(max_size=30) | json_leaf,
                            "encoding": st.sampled_from(["base64", ""]) | json_leaf,
                        }
                    )
                    | json_values,
                }
            )
            | json_values,
            "_webSocketMessages": st.lists(message | json_leaf, max_size=6) | json_values,
        }
    )
    entries = maybe(st.lists(maybe(entry), max_size=4))
    return draw(maybe(st.fixed_dictionaries({"log": maybe(st.fixed_dictionaries({"entries": entries}))})))


@example({"log": {"entries": [{"_resourceType": "websocket", "request": 7, "response": True}]}}, Timers())
@example(
    {"log": {"entries": [{"_webSocketMessages": [], "request": ["x"], "response": {"content": [1]}}]}},
    Timers(),
)
@example(
    {"log": {"entries": [{"_webSocketMessages": [{"type": "send", "data": "x", "time": 10**400}]}]}}, Timers()
)
@example(
    {"log": {"entries": [{"_resourceType": "websocket", "request": {"url": "ws://h/\ud800?apikey=k"}}]}},
    Timers(),
)
@FUZZ
@given(har_docs(), timers)
def test_har_reader_only_raises_capture_error(doc, tm):
    try:
        captures = har_connections(doc)
    except CaptureError as e:
        assert str(e)
        return
    sessions = diagnose_captures([captures], Redactor(), tm)
    out = report_text(sessions) + json.dumps(report_json(sessions), ensure_ascii=False)
    assert_no_secret(out, "rtdiagnose output")
    assert_printable(out, "rtdiagnose output")


@example(b'{"log":' + b"[" * 5000)
@FUZZ
@given(
    st.one_of(
        st.binary(max_size=300),
        har_docs().map(lambda d: _dumps(d).encode("utf-8", "surrogatepass")),
        nested().map(lambda s: ('{"log":' + s).encode()),
    )
)
def test_capture_file_reader_only_raises_capture_error(raw):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "capture"
        path.write_bytes(raw)
        try:
            read_capture(path)
        except CaptureError:
            pass


# ------------------------------------------------------------------------------------------ rtdecode


@st.composite
def rtdecode_lines(draw) -> str:
    _client, binary, data = draw(frame_data())
    item = {
        "vsn": draw(st.sampled_from(["1.0.0", "2.0.0"]) | json_leaf),
        "direction": draw(st.sampled_from(["client->server", "server->client"]) | json_leaf),
        "encoding": draw(st.sampled_from(["text", "binary"]) | json_leaf),
        "raw": data.hex() if binary else data.decode("utf-8", "surrogateescape"),
    }
    if draw(st.integers(0, 4)) == 0:
        item["raw"] = draw(json_leaf)
    line = _dumps(item)
    if draw(st.integers(0, 4)) == 0:
        line = line[: draw(st.integers(0, len(line)))]
    return line


@example("[" * 5000)
@example(
    json.dumps({"vsn": "1.0.0", "direction": f"bad token {SECRET_TOKEN}", "encoding": "text", "raw": ""})
)
@FUZZ
@given(st.one_of(rtdecode_lines(), free_text(max_size=200), nested()))
def test_rtdecode_decode_line_never_raises(line):
    out = rtdecode.decode_line(line, Redactor())
    assert isinstance(out, dict)
    printed = json.dumps(out, ensure_ascii=False)  # main() prints exactly this
    assert_no_secret(printed, "rtdecode output")
    assert_printable(printed, "rtdecode output")


# ------------------------------------------------------------------------------------------ faults + options

fault_args = st.one_of(
    st.sampled_from(
        [
            "",
            "0",
            "1",
            "-1",
            "1.5",
            "nan",
            "inf",
            "-inf",
            "1e400",
            "4000:1",
            "4000:1:bye",
            "1006:1",
            "999:1",
            "4000:nan",
            "4000:-1",
            "4000",
            "x" * 200,
            "4000:1:" + "r" * 200,
            "١٢",
            "1_000",
            " 5 ",
        ]
    ),
    free_text(max_size=12),
)
fault_items = st.builds(
    lambda n, eq, a: f"{n}{eq}{a}",
    st.sampled_from(list(FAULTS)) | free_text(max_size=8),
    st.sampled_from(["=", "", "=="]),
    fault_args,
)


@FUZZ
@given(st.one_of(free_text(max_size=80), st.lists(fault_items, max_size=4).map(",".join)))
@example("idle-timeout=nan")
@example("close=4000:inf:bye")
@example("delay-replies=" + "9" * 400)
@example("max-frame=1e400")
def test_parse_faults_only_value_error(text):
    try:
        spec = parse_faults(text)
    except ValueError as e:
        assert str(e)
        return
    assert isinstance(spec, FaultSpec)
    for value in (
        spec.delay_replies_ms,
        spec.idle_timeout_s,
        spec.max_frame,
        spec.close[1] if spec.close else None,
    ):
        # The mitmproxy layer sleeps on these: NaN or infinity would spin or never fire.
        assert value is None or (value >= 0 and (isinstance(value, int) or math.isfinite(value))), (
            text,
            spec,
        )
    if spec.close:
        assert closecodes.sendable(spec.close[0])


fault_specs = st.builds(
    FaultSpec,
    st.booleans(),
    st.none() | st.integers(0, 5000),
    st.booleans(),
    st.none() | st.sampled_from(["Too many messages per second", "bye"]) | free_text(max_size=20),
    st.none() | st.tuples(st.sampled_from([1000, 4000, 4001]), st.floats(0, 10), free_text(max_size=10)),
    st.none() | st.floats(0, 10),
    st.none() | st.integers(0, 500),
    st.booleans(),
)


@FUZZ
@given(fault_specs, st.sampled_from([frames.V1, frames.V2]), st.lists(frame_data(), max_size=20))
def test_fault_plan_on_frame_never_raises(spec, vsn, items):
    plan = FaultPlan(spec, vsn)
    for client, binary, data in items:
        action = plan.on_frame(client, binary, data)
        assert action.delay_ms >= 0
        if action.close:
            assert 1000 <= action.close[0] <= 4999
        for text in action.inject_to_client:
            # mitmproxy sends these as text frames: they must be UTF-8 and decodable by a client
            text.encode("utf-8")
            frames.decode(text, binary=False, from_client=False)


@FUZZ
@given(
    st.one_of(
        free_text(max_size=60),
        st.lists(
            st.builds(
                lambda n, v: f"{n}={v}",
                st.sampled_from(["join", "heartbeat", "idle", "x", ""]),
                st.sampled_from(["1", "0", "-1", "nan", "inf", "1e400", "", "abc", "0.001"])
                | free_text(max_size=5),
            ),
            max_size=4,
        ).map(",".join),
    )
)
def test_timers_parse_only_value_error(text):
    try:
        tm = Timers.parse(text)
    except ValueError:
        return
    assert tm.join > 0 and tm.heartbeat > 0 and tm.idle > 0


@FUZZ
@given(
    st.one_of(
        free_text(max_size=60),
        st.builds(
            lambda s, h, p, rest: f"{s}://{h}{p}{rest}",
            st.sampled_from(["http", "https", "ws", "wss", "ftp", ""]),
            st.sampled_from(
                [
                    "abc.supabase.co",
                    "127.0.0.1",
                    "[::1]",
                    "[::1",
                    "",
                    "u:p@h",
                    "h:",
                    "h:99999",
                    "h:-1",
                    "h:0x10",
                ]
            )
            | free_text(max_size=10),
            st.sampled_from(["", ":443", ":0", ":65536", ":abc"]),
            st.sampled_from(["", "/", "/x", "?q", "#f"]),
        ),
    )
)
def test_parse_supabase_url_only_value_error(value):
    try:
        up = parse_supabase_url(value)
    except ValueError as e:
        assert str(e)
        return
    assert up.scheme in ("http", "https") and up.host and 0 <= up.port <= 65535


# ------------------------------------------------------------------------------------------ hooks
# A bug in rtproxy must never disturb the traffic: an exception inside a hook is logged once for its
# connection, that connection is no longer tracked (or faulted), and its frames keep flowing unchanged.
# The bug is planted with a second -s script that patches the core class the hook calls.

BUGGY = """
from rtproxy_core.{module} import {cls}
_original = {cls}.{method}

def _buggy(self, *args):
    if any(b"boom" in a for a in args if isinstance(a, bytes)) or \\
            any(b"boom" in getattr(a, "data", b"") for a in args):
        raise RuntimeError("planted bug")
    return _original(self, *args)

{cls}.{method} = _buggy
"""


@pytest.fixture
async def echo_upstream():
    from websockets.asyncio.server import serve

    async def echo(ws):
        async for m in ws:
            await ws.send(m)

    async with serve(echo, "127.0.0.1", 0, compression=None) as srv:
        yield srv.sockets[0].getsockname()[1]


@pytest.mark.parametrize(
    "module, cls, method, sets",
    [
        ("session", "Session", "feed", ()),  # the tracker's path
        ("faults", "FaultPlan", "on_frame", ("rt_fault=max-frame=1000000",)),  # the fault injector's path
    ],
    ids=["tracker", "faults"],
)
async def test_hook_error_logged_once_flow_untouched(
    module, cls, method, sets, echo_upstream, mitmdump, tmp_path
):
    import asyncio

    from conftest import TIMEOUT
    from websockets.asyncio.client import connect

    script = tmp_path / "buggy.py"
    script.write_text(BUGGY.format(module=module, cls=cls, method=method))
    proxy = await mitmdump(
        f"rt_supabase_url=http://127.0.0.1:{echo_upstream}", *sets, extra=("-s", str(script))
    )
    url = f"ws://127.0.0.1:{proxy.port}/realtime/v1/websocket?vsn=2.0.0"
    frames_sent = [
        '["1","1","realtime:a","phx_join",{}]',
        '["1","2","realtime:a","boom",{}]',
        b"boom\xff",
        '["1","3","realtime:a","boom",{}]',
        '["1","4","realtime:a","broadcast",{}]',
        b"\x00binary",
    ]
    async with connect(url, compression=None) as ws:
        for m in frames_sent:
            await ws.send(m)
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == m  # every frame, unchanged, both ways
    await proxy.wait_for(r"\[rt \w+\] .*internal error")
    # A healthy connection after it is tracked as usual.
    async with connect(url, compression=None) as ws:
        await ws.send('["1","1","realtime:b","phx_join",{}]')
        await asyncio.wait_for(ws.recv(), TIMEOUT)
    await proxy.wait_for(r"join realtime:b ref=1")
    await proxy.wait_for(r"closed by client: 1000", start=len(proxy.lines) - 50)
    errors = [line for line in proxy.lines if "internal error" in line]
    assert len(errors) == 1, "\n".join(errors)  # once, though three frames hit the bug
    assert "Addon error" not in proxy.output  # caught by rtproxy, not by mitmproxy's last resort
