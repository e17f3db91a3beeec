"""Credentials out of what is stored and shared, never out of what is forwarded.

- rtproxy_core.sanitize: a JWT keeps its header and claims (role and exp still read) and loses its
  signature; sb_ keys keep their prefix; anything else that is a credential becomes the marker; URLs,
  headers, cookies and Realtime messages of every shape (1.0.0 objects, 2.0.0 arrays, binary kinds) keep
  every other byte; a binary frame still decodes as before; sanitizing twice changes nothing more.
- Live, through mitmdump + rtproxy on real sockets: the upstream receives the real tokens and the client
  gets every frame back byte for byte, while the `-w` flow file and the `savehar` output hold none of
  them, and rtdiagnose on those files gives the findings the live tracker gave (role and exp read from the
  sanitized JWTs). Checked on mitmproxy 12.0.0 too, the oldest rtproxy runs on.
- rtsanitize on the corpus of real bug reports and on every producer's HAR form: the same diagnosis, the
  same file form (BOM, UTF-16, .zhar), no signature, sb_ key or cookie value of the original left.
"""

from __future__ import annotations

import asyncio
import base64
import codecs
import dataclasses
import json
import logging
import random
import re
import socket
import subprocess
import sys
import time
import urllib.request
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import corpus
import pytest
import webapi
from conftest import TIMEOUT, command
from hypothesis import given, settings
from hypothesis import strategies as st
from mitmproxy import http, websocket
from mitmproxy import io as mio
from mitmproxy.test import tflow
from producers import (
    NO_MESSAGES,
    T0,
    Conn,
    chrome,
    flows,
    httptoolkit,
    joined,
    mitmproxy_har,
    without_messages,
)
from rtproxy_core import frames, sanitize
from rtproxy_core.redact import SECRET_KEYS, Redactor, describe_jwt, jwt_claims
from rtproxy_local.jwt import mint
from rtproxy_tools import captures as tool_captures
from rtproxy_tools import diagnose as rtdiagnose
from rtproxy_tools import sanitize as rtsanitize
from webapi import start_mitmweb
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import InvalidStatus
from wsproto.frame_protocol import Opcode

MARKER = sanitize.MARKER
NOW = int(time.time())
APIKEY = mint({"iss": "supabase-demo", "role": "anon", "exp": NOW + 3600})
USER = mint({"role": "authenticated", "sub": "user-1", "exp": NOW + 3600})
PUSHED = mint({"role": "authenticated", "sub": "user-1", "exp": NOW + 7200})
SB_SECRET = "sb_secret_" + "Zk8qP2vLw9Tn4xR7yB1c"
SB_PUBLISHABLE = "sb_publishable_" + "Qm3kT8sLx2Vb7nW4"
COOKIE = "base64-" + "c2Vzc2lvbi1jb29raWUtdmFsdWU"


def sig(token: str) -> str:
    return token.rsplit(".", 1)[1]


def kept(token: str) -> str:
    """What a JWT becomes: its header and claims, the marker for its signature."""
    return token.rsplit(".", 1)[0] + "." + MARKER


# ---------------------------------------------------------------------------------------------- core


def test_a_jwt_keeps_header_and_claims_and_loses_its_signature():
    new, found = sanitize.credential(USER)
    assert new == kept(USER) and found == {sanitize.JWT: 1}
    assert new.split(".")[:2] == USER.split(".")[:2]  # byte for byte
    assert jwt_claims(new) == jwt_claims(USER)  # role and exp still read
    assert describe_jwt(new, NOW) == "<jwt role=authenticated exp in 1h sanitized>"
    assert describe_jwt(USER, NOW) == "<jwt role=authenticated exp in 1h>"
    assert Redactor().text(f"token {new}", NOW) == "token <jwt role=authenticated exp in 1h sanitized>"
    assert sanitize.credential(new) == (new, {})  # idempotent


def test_keys_keep_only_their_prefix_and_opaque_credentials_become_the_marker():
    assert sanitize.credential(SB_SECRET) == ("sb_secret_" + MARKER, {"sb_secret_ key": 1})
    assert sanitize.credential(SB_PUBLISHABLE) == ("sb_publishable_" + MARKER, {"sb_publishable_ key": 1})
    assert sanitize.credential("opaque-session-id") == (MARKER, {sanitize.TOKEN: 1})
    for done in (MARKER, "sb_secret_" + MARKER, ""):
        assert sanitize.credential(done) == (done, {})


def test_url_every_secret_key_replaced_every_other_byte_kept():
    for key in sorted(SECRET_KEYS):
        new, found = sanitize.url(f"wss://h/realtime/v1/websocket?{key}=opaque&vsn=2.0.0")
        assert new == f"wss://h/realtime/v1/websocket?{key}={MARKER}&vsn=2.0.0", key
        assert found == {sanitize.TOKEN: 1}
    u = f"wss://u:hunter2@h/realtime/v1/websocket?a=%2F%20x+y&APIKEY={APIKEY}&notify_self&hint={SB_SECRET}&b="
    new, found = sanitize.url(u)
    assert new == (
        f"wss://u:{MARKER}@h/realtime/v1/websocket?a=%2F%20x+y&APIKEY={kept(APIKEY)}&notify_self"
        f"&hint=sb_secret_{MARKER}&b="
    )
    assert found == {sanitize.JWT: 1, "sb_secret_ key": 1, sanitize.PASSWORD: 1}
    assert sanitize.url(new) == (new, {})
    # Supabase's implicit flow puts the session in the fragment; a path is a URL too.
    assert sanitize.url(f"https://app/#access_token={USER}&refresh_token=r1")[0] == (
        f"https://app/#access_token={kept(USER)}&refresh_token={MARKER}"
    )
    assert sanitize.url(f"/realtime/v1/websocket?apikey={APIKEY}")[0] == (
        f"/realtime/v1/websocket?apikey={kept(APIKEY)}"
    )
    for plain in ("wss://h/realtime/v1/websocket?vsn=1.0.0", "http://h/?#", "not a url"):
        assert sanitize.url(plain) == (plain, {})


def test_headers_keep_the_scheme_the_names_and_the_attributes():
    cases = [
        ("Authorization", f"Bearer {USER}", f"Bearer {kept(USER)}", {sanitize.JWT: 1}),
        ("authorization", "Basic dXNlcjpwYXNz", f"Basic {MARKER}", {sanitize.TOKEN: 1}),
        ("apikey", SB_PUBLISHABLE, f"sb_publishable_{MARKER}", {"sb_publishable_ key": 1}),
        ("X-Api-Key", "opaque", MARKER, {sanitize.TOKEN: 1}),
        (
            "Cookie",
            f'theme=dark; sb-ref-auth-token="{COOKIE}"; jwt={USER}; empty=',
            f'theme={MARKER}; sb-ref-auth-token="{MARKER}"; jwt={kept(USER)}; empty=',
            {sanitize.COOKIE: 2, sanitize.JWT: 1},
        ),
        (
            "Set-Cookie",
            f"sid={COOKIE}; Path=/; HttpOnly\n__cf_bm=abc; Secure",  # Chrome's HAR joins Set-Cookie lines
            f"sid={MARKER}; Path=/; HttpOnly\n__cf_bm={MARKER}; Secure",
            {sanitize.COOKIE: 2},
        ),
        ("Sec-WebSocket-Protocol", f"realtime, {USER}", f"realtime, {kept(USER)}", {sanitize.JWT: 1}),
        ("Upgrade", "websocket", "websocket", {}),
    ]
    for name, value, want, counts in cases:
        assert sanitize.header(name, value) == (want, counts), name
        assert sanitize.header(name, want) == (want, {}), name


def test_text_and_json_bodies():
    body = json.dumps(
        {"access_token": USER, "refresh_token": "r-opaque", "user": {"id": 1}, "token_type": "x"}
    )
    new, found = sanitize.text(body)
    assert json.loads(new) == {
        "access_token": kept(USER),
        "refresh_token": MARKER,
        "user": {"id": 1},
        "token_type": "x",
    }
    assert found == {sanitize.JWT: 1, sanitize.TOKEN: 1}
    form = "grant_type=refresh_token&refresh_token=abc123&x=1"
    assert sanitize.text(form)[0] == f"grant_type=refresh_token&refresh_token={MARKER}&x=1"
    escaped = r'{"note":"token=abc\"x","token":"a\"b"}'  # a value stops short of an escaped quote
    assert json.loads(sanitize.text(escaped)[0]) == {"note": f'token={MARKER}"x', "token": MARKER}
    raw = b"\xff\xfe not utf-8 " + SB_SECRET.encode() + b" \x00"
    assert sanitize.data(raw) == (
        b"\xff\xfe not utf-8 sb_secret_" + MARKER.encode() + b" \x00",
        {"sb_secret_ key": 1},
    )
    nothing = b'{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"4"}'
    assert sanitize.message(nothing, binary=False, from_client=True)[0] is nothing  # no copy when clean


JOIN_V1 = {
    "topic": "realtime:room",
    "event": "phx_join",
    "payload": {"config": {"broadcast": {"self": True}}, "access_token": USER},
    "ref": "1",
    "join_ref": "1",
}


def frames_of_every_shape(token: str, room: str = "realtime:room") -> list[tuple[bytes, bool, bool]]:
    """(content, binary, from_client): where a Realtime client or server carries a token."""
    user_payload = {"token": "opaque", "key": SB_SECRET}
    return [
        (
            json.dumps({**JOIN_V1, "payload": {**JOIN_V1["payload"], "access_token": token}}).encode(),
            False,
            True,
        ),
        (
            json.dumps(["1", "2", room, "access_token", {"access_token": token}]).encode(),
            False,
            True,
        ),
        (json.dumps([None, "3", "phoenix", "heartbeat", {}]).encode(), False, True),
        (
            frames.encode_user_push(
                f"{room}-{token}", "e", user_payload, join_ref="1", ref="4", meta={"jwt": token}
            ),
            True,
            True,
        ),
        (frames.encode_user_push(room, "e", token.encode(), join_ref="1", ref="5"), True, True),
        (
            frames.encode_push(
                room,
                "access_token",
                json.dumps({"access_token": token}).encode(),
                join_ref="1",
                ref="6",
                from_client=True,
            ),
            True,
            True,
        ),
        (frames.encode_user_broadcast(room, "e", {"t": token}, meta={"id": "x"}), True, False),
        (frames.encode_reply(f"realtime:{token}", "ok", b"{}", join_ref="1", ref="1"), True, False),
        (frames.encode_broadcast(room, "e", token.encode()), True, False),
        (
            frames.encode_push(room, "system", token.encode(), join_ref="1", from_client=False),
            True,
            False,
        ),
        (b"\x09 not a realtime frame " + token.encode(), True, True),
        (b"not json " + token.encode(), False, False),
        (json.dumps(JOIN_V1).encode(), True, True),  # the 1.0.0 serializer reads a binary object as JSON
    ]


def same_message(old: bytes, new: bytes, binary: bool, from_client: bool) -> None:
    """The sanitized frame decodes as the original did: shape, kind, event and refs the same; a topic
    differs only where it held a token."""
    try:
        a = frames.decode(old, binary=binary, from_client=from_client)
    except frames.DecodeError:
        with pytest.raises(frames.DecodeError):
            frames.decode(new, binary=binary, from_client=from_client)
        return
    b = frames.decode(new, binary=binary, from_client=from_client)
    assert (a.shape, a.kind, a.event, a.ref, a.join_ref) == (b.shape, b.kind, b.event, b.ref, b.join_ref)
    assert sanitize.text(a.topic)[0] == b.topic


def test_messages_of_every_shape():
    for content, binary, from_client in frames_of_every_shape(USER):
        new, found = sanitize.message(content, binary=binary, from_client=from_client)
        assert USER.encode() not in new and sig(USER).encode() not in new, content
        assert SB_SECRET.encode() not in new
        if USER.encode() in content:
            assert kept(USER).encode() in new and found[sanitize.JWT] >= 1
        same_message(content, new, binary, from_client)
        assert sanitize.message(new, binary=binary, from_client=from_client) == (new, {})  # idempotent
        if not binary:  # text frames: every byte but the token's kept (key order, spacing)
            assert new == content.replace(USER.encode(), kept(USER).encode()).replace(
                b'"opaque"', f'"{MARKER}"'.encode()
            )
    join = json.dumps(JOIN_V1).encode()
    new, _ = sanitize.message(join, binary=False, from_client=True)
    msg = frames.decode(new, binary=False, from_client=True)
    assert jwt_claims(msg.payload["access_token"])["role"] == "authenticated"  # the diagnosis reads it
    for key, want in ((SB_PUBLISHABLE, f"sb_publishable_{MARKER}"), ("opaque", MARKER)):
        frame = json.dumps({**JOIN_V1, "payload": {"access_token": key}}).encode()
        new, _ = sanitize.message(frame, binary=False, from_client=True)
        assert frames.decode(new, binary=False, from_client=True).payload["access_token"] == want


def test_a_field_that_would_outgrow_its_length_byte_is_searched_as_bytes():
    short = USER.rsplit(".", 1)[0] + ".s"  # a signature shorter than the marker: the topic grows
    topic = "realtime:" + "x" * (254 - len("realtime:") - len(short)) + short
    frame = frames.encode_reply(topic, "ok", b"{}", join_ref="1", ref="1")
    new, found = sanitize.message(frame, binary=True, from_client=False)
    assert found == {sanitize.JWT: 1} and b".s\x00" not in new and short.encode() not in new


_TOKEN = st.builds(
    lambda role, exp, secret: mint({"role": role, "exp": exp}, secret=secret),
    st.sampled_from(["anon", "authenticated", "service_role"]),
    st.integers(0, 2**33),
    st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=32, max_size=40),
)


@settings(max_examples=60, deadline=None)
@given(_TOKEN, st.text(max_size=30), st.sampled_from(range(13)))
def test_any_frame_any_token(token, noise, which):
    room = "realtime:room" + noise
    while len(f"{room}-{token}".encode()) > 255:
        room = room[:-1]
    content, binary, from_client = frames_of_every_shape(token, room)[which]
    new, _ = sanitize.message(content, binary=binary, from_client=from_client)
    assert token.encode() not in new and sig(token).encode() not in new
    same_message(content, new, binary, from_client)
    assert sanitize.message(new, binary=binary, from_client=from_client) == (new, {})


@settings(max_examples=200, deadline=None)
@given(_TOKEN, st.binary(max_size=80), st.binary(max_size=80), st.booleans(), st.booleans())
def test_any_bytes_around_a_token(token, before, after, binary, from_client):
    """Whatever a frame's bytes say: no signature left in what does not decode; what decodes decodes the
    same, every field sanitized (a length may cut a token in two: each field is what the peer reads)."""
    content = before + token.encode() + after
    new, _ = sanitize.message(content, binary=binary, from_client=from_client)
    try:
        frames.decode(content, binary=binary, from_client=from_client)
    except frames.DecodeError:  # searched as bytes
        assert sig(token).encode() not in new
    else:  # sanitized as the peer reads it: each field, whatever the bytes around it
        same_message(content, new, binary, from_client)
        assert token.encode() not in new
    assert sanitize.message(new, binary=binary, from_client=from_client) == (new, {})


# ---------------------------------------------------------------------------------------------- live


@pytest.fixture
async def recording_upstream():
    """A Realtime-path WebSocket server on loopback that records the upgrade and every message it gets,
    and sends each back."""
    got: dict = {"messages": []}

    async def echo(ws):
        got["path"], got["headers"] = ws.request.path, dict(ws.request.headers)
        async for m in ws:
            got["messages"].append(m)
            await ws.send(m)

    async with serve(echo, "127.0.0.1", 0, compression=None) as srv:
        yield srv.sockets[0].getsockname()[1], got


SENT = [
    json.dumps(JOIN_V1),
    json.dumps(["1", "2", "realtime:room", "access_token", {"access_token": PUSHED}]),
    frames.encode_user_push(
        "realtime:room", "note", {"key": SB_SECRET, "token": USER}, join_ref="1", ref="3"
    ),
    json.dumps([None, "4", "phoenix", "heartbeat", {}]),
]
SECRETS = [APIKEY, USER, PUSHED, SB_SECRET, COOKIE, sig(APIKEY), sig(USER), sig(PUSHED)]


def leaks(data: bytes | str) -> list[str]:
    data = data if isinstance(data, bytes) else data.encode()
    return [s[:12] + "…" for s in SECRETS if s.encode() in data]


async def wire_vs_stored(mitmdump, upstream, tmp_path, program: str | None = None, *sets: str):
    """One connection through mitmdump + rtproxy; returns (what the upstream got, what the client got,
    the saved flow file, the savehar output)."""
    port, got = upstream
    saved, har = tmp_path / "run.flows", tmp_path / "run.har"
    kw = {"program": program} if program else {}
    proxy = await mitmdump(
        f"rt_supabase_url=http://127.0.0.1:{port}", f"hardump={har}", *sets, extra=("-w", str(saved)), **kw
    )
    url = f"ws://127.0.0.1:{proxy.port}/realtime/v1/websocket?apikey={APIKEY}&vsn=2.0.0"
    headers = {"Authorization": f"Bearer {USER}", "apikey": APIKEY, "Cookie": f"sb-ref-auth-token={COOKIE}"}
    back = []
    async with connect(url, additional_headers=headers, compression=None, open_timeout=TIMEOUT) as ws:
        for m in SENT:
            await ws.send(m)
            back.append(await asyncio.wait_for(ws.recv(), TIMEOUT))
    await proxy.wait_for(r"closed by client: 1000")
    await proxy.stop()  # hardump is written on exit, -w at the flow's end
    assert proxy.returncode == 0, proxy.output
    assert "stores WebSocket messages unsanitized" not in proxy.output  # a version whose layer was read
    return got, back, saved, har


def stored_flow(path: Path) -> http.HTTPFlow:
    with open(path, "rb") as f:
        (flow,) = [f for f in mio.FlowReader(f).stream() if isinstance(f, http.HTTPFlow)]
    return flow


def check_wire_kept_and_store_clean(got, back, saved, har) -> None:
    # The wire: the upstream got the real credentials and every frame as sent; the client got them back.
    assert f"apikey={APIKEY}" in got["path"]
    assert got["headers"]["authorization"] == f"Bearer {USER}" and got["headers"]["apikey"] == APIKEY
    assert got["headers"]["cookie"] == f"sb-ref-auth-token={COOKIE}"
    assert got["messages"] == SENT and back == SENT
    # The store: neither file holds a credential; what a diagnosis reads is still there.
    for path in (saved, har):
        assert not leaks(path.read_bytes()), path.name
    flow = stored_flow(saved)
    assert f"apikey={kept(APIKEY)}&vsn=2.0.0" in flow.request.path
    assert flow.request.headers["authorization"] == f"Bearer {kept(USER)}"
    assert flow.request.headers["cookie"] == f"sb-ref-auth-token={MARKER}"
    stored = [m.content for m in flow.websocket.messages if m.from_client]
    assert len(stored) == len(SENT) and len(flow.websocket.messages) == 2 * len(SENT)
    for raw, sent in zip(stored, SENT):
        binary = isinstance(sent, bytes)
        wire = sent if binary else sent.encode()
        assert raw == sanitize.message(wire, binary=binary, from_client=True)[0]
    assert stored[3] == SENT[3].encode()  # nothing to replace: stored as it went
    join = frames.decode(stored[0], binary=False, from_client=True)
    assert jwt_claims(join.payload["access_token"]) == jwt_claims(USER)
    entry = json.loads(har.read_text())["log"]["entries"][0]
    assert f"apikey={kept(APIKEY)}" in entry["request"]["url"]


async def test_the_wire_keeps_the_credentials_the_stored_flow_does_not(
    mitmdump, recording_upstream, tmp_path
):
    check_wire_kept_and_store_clean(*await wire_vs_stored(mitmdump, recording_upstream, tmp_path))


async def test_refused_and_unreachable_upgrades_are_stored_sanitized(mitmdump, local_server, tmp_path):
    """A flow that ends at its upgrade is saved at its `response` (refused) or `error` (no upstream), right
    after rtproxy's hooks ran."""
    bad = mint({"role": "anon", "exp": NOW + 3600}, secret="not-the-project-secret-but-long-enough-1234")
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    for upstream, key, status in ((local_server.url, bad, 401), (f"http://127.0.0.1:{closed}", APIKEY, 502)):
        saved = tmp_path / f"{status}.flows"
        proxy = await mitmdump(f"rt_supabase_url={upstream}", extra=("-w", str(saved)))
        with pytest.raises(InvalidStatus) as e:
            async with connect(f"ws://127.0.0.1:{proxy.port}/realtime/v1/websocket?apikey={key}&vsn=1.0.0"):
                pass
        assert e.value.response.status_code == status
        await proxy.stop()
        data = saved.read_bytes()
        assert sig(key).encode() not in data and kept(key).encode() in data, status
        flow = stored_flow(saved)
        assert (flow.response.status_code if flow.response else 502) == status
        assert f"apikey={kept(key)}" in flow.request.path


async def test_mitmweb_shows_no_credential_while_the_connection_is_open(mitmdump, recording_upstream):
    """What a new user sees in mitmweb (its UI's own API: the flow list, the raw view of the messages, and
    the flows it saves), while the socket is still open."""
    port, got = recording_upstream
    proc, api = await start_mitmweb(mitmdump, f"rt_supabase_url=http://127.0.0.1:{port}")
    url = f"ws://127.0.0.1:{proc.port}/realtime/v1/websocket?apikey={APIKEY}&vsn=2.0.0"
    async with connect(url, additional_headers={"Authorization": f"Bearer {USER}"}, compression=None) as ws:
        for m in SENT:
            await ws.send(m)
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == m
        (flow,) = [f for f in await api.flows() if f["type"] == "http"]
        assert flow["websocket"] is not None and flow["websocket"]["closed_by_client"] is None  # still open
        shown = {
            "flow list": json.dumps(flow),
            "raw view": await asyncio.to_thread(
                web_get, api, f"/flows/{flow['id']}/messages/content/raw.json"
            ),
            "saved flows": await asyncio.to_thread(web_get, api, "/flows/dump"),
        }
        for what, data in shown.items():
            assert not leaks(data), what
        assert f"apikey={kept(APIKEY)}" in flow["request"]["path"]
        assert kept(USER).encode() in shown["raw view"] and b"realtime:room" in shown["raw view"]
    assert got["messages"] == SENT and f"apikey={APIKEY}" in got["path"]


def web_get(api, path: str) -> bytes:
    req = urllib.request.Request(f"{api.base}{path}", headers={"Authorization": f"Bearer {webapi.PASSWORD}"})
    with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
        return r.read()


async def test_rt_show_secrets_stores_them(mitmdump, recording_upstream, tmp_path):
    _, back, saved, _ = await wire_vs_stored(
        mitmdump, recording_upstream, tmp_path, None, "rt_show_secrets=true"
    )
    assert back == SENT
    assert set(leaks(saved.read_bytes())) == set(leaks("".join(SECRETS)))  # the user's opt-in


async def test_the_stored_flow_on_mitmproxy_12_0(mitmproxy120, mitmdump, recording_upstream, tmp_path):
    """mitmproxy 12.0.0's WebSocket layer stores and forwards messages as 12.3.1's does
    (internals.store_message_copy): the same run, the same result."""
    got, back, saved, har = await wire_vs_stored(mitmdump, recording_upstream, tmp_path, str(mitmproxy120))
    check_wire_kept_and_store_clean(got, back, saved, har)


OLDEST = "12.0.0"


@pytest.fixture(scope="session")
def mitmproxy120(request, tmp_path_factory) -> Path:
    """mitmdump of mitmproxy 12.0.0 installed alone, built as tests/test_mitmproxy_versions.py builds its
    venvs (and cached next to them)."""
    from test_mitmproxy_versions import PIP_TIMEOUT, UNREACHABLE, _locked, _pip_install

    cache = getattr(request.config, "cache", None)
    root = Path(cache.mkdir("mitmproxy-venvs")) if cache else tmp_path_factory.mktemp("mitmproxy-venvs")
    venv = root / f"mitmproxy-{OLDEST}-py{sys.version_info[0]}{sys.version_info[1]}"
    stamp, key = venv / ".built", f"mitmproxy=={OLDEST} {sys.version} {venv}"
    with _locked(root / ".lock"):
        if not (stamp.is_file() and stamp.read_text() == key and (venv / "bin" / "mitmdump").exists()):
            subprocess.run([sys.executable, "-m", "venv", "--clear", "--without-pip", str(venv)], check=True)
            proc = _pip_install(venv, f"mitmproxy=={OLDEST}")
            out = proc.communicate(timeout=PIP_TIMEOUT)[0].decode("utf-8", "replace")
            if proc.returncode != 0:
                if said := [line.strip() for line in out.splitlines() if UNREACHABLE.search(line)]:
                    pytest.skip(f"pip could not reach a package index for mitmproxy=={OLDEST}: {said[-1]}")
                pytest.fail(f"pip install mitmproxy=={OLDEST} failed:\n{out}")
            stamp.write_text(key)
    mitmdump = venv / "bin" / "mitmdump"
    version = subprocess.run([mitmdump, "--version"], capture_output=True, text=True, check=True).stdout
    assert f"Mitmproxy: {OLDEST}" in version, version
    return mitmdump


# The token expired before it was pushed: the finding is read from the JWT's exp (the server says nothing
# that names it before it stops the channel), so the sanitized files must still carry it.
EXPIRED = mint({"role": "authenticated", "sub": "user-1", "exp": NOW - 600})


async def test_rtdiagnose_on_the_saved_files_finds_what_the_live_tracker_found(
    mitmdump, local_server, tmp_path, anon_key
):
    expired = mint({"role": "authenticated", "sub": "user-1", "exp": int(time.time()) - 600})
    saved, har, report = tmp_path / "run.flows", tmp_path / "run.har", tmp_path / "live"
    proxy = await mitmdump(
        f"rt_supabase_url={local_server.url}",
        f"hardump={har}",
        f"rt_report={report}",
        extra=("-w", str(saved)),
    )
    url = f"ws://127.0.0.1:{proxy.port}/realtime/v1/websocket?apikey={anon_key}&vsn=1.0.0"
    async with connect(url) as ws:
        await ws.send(json.dumps({**JOIN_V1, "payload": {"config": {}, "access_token": anon_key}}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        assert reply["payload"]["status"] == "ok"  # the server verified the real signature
        await ws.send(
            json.dumps({**JOIN_V1, "event": "access_token", "ref": "2", "payload": {"access_token": expired}})
        )
        while json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))["event"] != "phx_close":
            pass  # the server stops the channel: system error, then phx_close
    await proxy.wait_for(r"closed by client: 1000")
    await proxy.stop()
    live = json.loads(report.with_suffix(".json").read_text())
    want = findings(live)
    assert any(
        code == "token-expired"
        and re.match(r"an access_token pushed on realtime:room had expired 10 min", evidence)
        for code, _, evidence in want
    ), want
    for path in (saved, har):
        data = path.read_bytes()
        assert (
            anon_key.encode() not in data
            and sig(anon_key).encode() not in data
            and sig(expired).encode() not in data
        )
        assert kept(expired).encode() in data
        assert findings(diagnose_json(path)) == want, path.name


# ---------------------------------------------------------------------------------------------- rtsanitize


def diagnose_json(path: Path) -> dict:
    r = subprocess.run(
        [command("rtdiagnose"), str(path), "--json"],
        check=False,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert r.returncode in (0, 1), r.stderr
    return json.loads(r.stdout)


def findings(report: dict) -> list[tuple[str, str | None, str]]:
    return [(f["code"], f["topic"], f["evidence"]) for c in report["connections"] for f in c["findings"]]


def diagnosis_in_process(path: Path, capsys) -> list:
    rc = rtdiagnose.main([str(path), "--json"])
    out, err = capsys.readouterr()
    if rc == 2:  # nothing in it can be diagnosed (a HAR of a socket that sent nothing): the same reason
        return [("undiagnosable", err.split(": ", 2)[-1])]
    assert rc in (0, 1), err
    report = json.loads(out)
    return [
        [(f["code"], f["topic"], f["evidence"], f["confidence"], f["candidates"]) for f in c["findings"]]
        + [c["status"], c["vsn"], c["channels"], c["frames"]]
        for c in report["connections"]
    ]


def sanitize_file(src: Path, dst: Path, capsys) -> str:
    assert rtsanitize.main([str(src), str(dst)]) == 0
    out, err = capsys.readouterr()
    assert err == "" and out.startswith(f"rtsanitize: wrote {dst}"), out + err
    return out


def originals(raw: bytes) -> list[bytes]:
    """What must not be left: every JWT's signature (with the claims it was glued to), every sb_ key."""
    text = raw.decode("latin-1")
    found = [
        m.group(0)
        for m in re.finditer(r"eyJ[\w-]{4,}\.eyJ[\w-]{4,}\.[\w-]+", text)
        if sig(m.group(0)) != MARKER
    ]
    found += [s for t in found for s in [sig(t)] if len(s) >= 16]
    found += re.findall(r"sb_(?:publishable|secret)_(?!rtproxy-sanitized)[\w-]+", text)
    return [s.encode() for s in found]


@pytest.mark.parametrize("case", corpus.CASES, ids=[c["id"] for c in corpus.CASES])
def test_corpus_sanitized_diagnoses_the_same(case, tmp_path, capsys):
    har = tmp_path / "case.har"
    har.write_text(json.dumps(corpus.har(case), indent=2))
    flows_path = tmp_path / "case.flows"
    corpus.write_flows(case, flows_path)
    for src in (har, flows_path):
        dst = tmp_path / f"clean-{src.name}"
        sanitize_file(src, dst, capsys)
        data = dst.read_bytes()
        assert not [s for s in originals(src.read_bytes()) if s in data], src.name
        assert diagnosis_in_process(dst, capsys) == diagnosis_in_process(src, capsys), src.name


def with_credentials(doc: dict) -> dict:
    """Cookies, an Authorization header and a token response body added to every entry, as a browser's
    HAR of a logged-in app holds them."""
    for e in doc["log"]["entries"]:
        req, resp = e["request"], e["response"]
        req["url"] = req["url"].replace("apikey=k", f"apikey={APIKEY}")
        req["headers"] += [
            {"name": "Authorization", "value": f"Bearer {USER}"},
            {"name": "Cookie", "value": f"sb-ref-auth-token={COOKIE}; theme=dark-mode-on"},
        ]
        req["cookies"] = [
            {"name": "sb-ref-auth-token", "value": COOKIE},
            {"name": "theme", "value": "dark-mode-on"},
        ]
        req["queryString"] = [{"name": "apikey", "value": APIKEY}, {"name": "vsn", "value": "1.0.0"}]
        resp["headers"].append({"name": "Set-Cookie", "value": "__cf_bm=cf-cookie-value-1; Path=/; HttpOnly"})
        resp["cookies"] = [{"name": "__cf_bm", "value": "cf-cookie-value-1", "httpOnly": True}]
        e["_initiator"] = {"type": "script", "url": f"https://app.example/?token={SB_SECRET}"}
    token_body = {"access_token": PUSHED, "refresh_token": "refresh-opaque-1", "token_type": "bearer"}
    doc["log"]["entries"].append(
        {
            "startedDateTime": "2027-01-15T08:00:00.000Z",
            "time": 10,
            "request": {
                "method": "POST",
                "url": "https://abcdefghijklmnopqrst.supabase.co/auth/v1/token?grant_type=refresh_token",
                "headers": [{"name": "apikey", "value": SB_PUBLISHABLE}],
                "postData": {
                    "mimeType": "application/json",
                    "text": json.dumps({"refresh_token": "refresh-opaque-0"}),
                },
            },
            "response": {
                "status": 200,
                "headers": [],
                "content": {
                    "mimeType": "application/json",
                    "text": base64.b64encode(json.dumps(token_body).encode()).decode(),
                    "encoding": "base64",
                },
            },
        }
    )
    return doc


CREDENTIALS = [
    APIKEY,
    USER,
    PUSHED,
    COOKIE,
    SB_SECRET,
    SB_PUBLISHABLE,
    "dark-mode-on",
    "cf-cookie-value-1",
    "refresh-opaque-0",
    "refresh-opaque-1",
]


def expired_conn(**kw) -> Conn:
    """A joined channel, then an access_token push with a token that had expired."""
    push = {"topic": "realtime:room", "event": "access_token", "payload": {"access_token": EXPIRED}}
    push |= {"ref": "3", "join_ref": "1"}
    return Conn(frames=[*joined(), (26.0, "send", json.dumps(push))], **kw)


PRODUCERS = {
    "chrome": lambda: chrome([expired_conn(), Conn(status=401, body='{"message":"Invalid API key"}')]),
    "httptoolkit": lambda: httptoolkit([expired_conn(close={"code": 1000, "reason": ""})]),
    **{p.lower(): (lambda p=p: without_messages(p, [Conn(frames=[])])) for p in NO_MESSAGES},
    "mitmproxy": lambda: mitmproxy_har(flows([expired_conn()])),
}

# How each producer's file is laid out and encoded (tests/test_captures.py reads the same forms).
FORMS = {
    "utf-8": lambda doc: json.dumps(doc, indent=2).encode(),
    "utf-8 BOM": lambda doc: codecs.BOM_UTF8 + json.dumps(doc, indent=2).encode(),
    "utf-16 BOM": lambda doc: json.dumps(doc, indent=2).encode("utf-16"),
    "utf-16-be": lambda doc: json.dumps(doc, indent=4).encode("utf-16-be"),
    "one line": lambda doc: json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode(),
}


@pytest.mark.parametrize("producer", sorted(PRODUCERS))
@pytest.mark.parametrize("form", sorted(FORMS))
def test_every_producers_har_in_its_form(producer, form, tmp_path, capsys):
    src, dst = tmp_path / "in.har", tmp_path / "out.har"
    src.write_bytes(FORMS[form](with_credentials(PRODUCERS[producer]())))
    out = sanitize_file(src, dst, capsys)
    data, raw = dst.read_bytes(), src.read_bytes()
    text, original = data.decode(json.detect_encoding(data)), raw.decode(json.detect_encoding(raw))
    assert [c for c in CREDENTIALS if c not in original] == [PUSHED, "refresh-opaque-1"]  # in a base64 body
    assert [c for c in CREDENTIALS if c in text] == []
    # The same form: encoding, byte order mark, layout.
    assert json.detect_encoding(data) == json.detect_encoding(raw) and data[:4] == raw[:4]
    assert (b"\n" in data) == (b"\n" in raw)
    doc = json.loads(text)
    entry = doc["log"]["entries"][0]
    assert entry["request"]["cookies"][0] == {"name": "sb-ref-auth-token", "value": MARKER}
    assert entry["response"]["cookies"][0]["httpOnly"] is True
    token = json.loads(base64.b64decode(doc["log"]["entries"][-1]["response"]["content"]["text"]))
    assert token == {"access_token": kept(PUSHED), "refresh_token": MARKER, "token_type": "bearer"}
    assert "cookies: " in out and "bodies: " in out and "headers: " in out and "URLs: " in out
    assert "WebSocket messages: " in out or producer not in ("chrome", "mitmproxy", "httptoolkit")
    if producer not in ("firefox", "safari", "charles", "playwright"):
        assert diagnosis_in_process(dst, capsys) == diagnosis_in_process(src, capsys)
    if producer in ("chrome", "mitmproxy", "httptoolkit"):
        report = diagnosis_in_process(dst, capsys)
        assert any(f[0] == "token-expired" and "had expired" in f[2] for f in report[0][:-4]), report


def test_zhar_and_flow_files_keep_their_form(tmp_path, capsys):
    fl = flows([expired_conn()])
    fl[0].request.headers["Cookie"] = f"sb-ref-auth-token={COOKIE}"
    fl[0].request.url = fl[0].request.url.replace("apikey=k", f"apikey={APIKEY}")
    fl[0].response.headers["Set-Cookie"] = "__cf_bm=cf-cookie-value-1; Path=/"
    fl[0].metadata["rtproxy.original_url"] = f"ws://127.0.0.1:8080/realtime/v1/websocket?apikey={APIKEY}"
    fl[0].metadata["rtproxy.original_headers"] = [("Authorization", f"Bearer {USER}")]
    fl[0].comment = f"see {SB_SECRET}"
    zhar, flow_file = tmp_path / "in.zhar", tmp_path / "in.flows"
    zhar.write_bytes(zlib.compress(json.dumps(mitmproxy_har(fl), indent=4).encode(), 9))
    with open(flow_file, "wb") as f:
        w = mio.FlowWriter(f)
        for x in fl:
            w.add(x)
    for src in (zhar, flow_file):
        dst = tmp_path / f"out{src.suffix}"
        out = sanitize_file(src, dst, capsys)
        data = dst.read_bytes()
        raw = zlib.decompress(data) if src.suffix == ".zhar" else data
        assert not [c for c in CREDENTIALS if c.encode() in raw], src.name
        assert diagnosis_in_process(dst, capsys) == diagnosis_in_process(src, capsys)
        assert "replaced" in out
    assert "compressed" in sanitize_file(zhar, tmp_path / "again.zhar", capsys)
    flow = stored_flow(tmp_path / "out.flows")
    assert flow.metadata["rtproxy.original_headers"] == [
        ["Authorization", f"Bearer {kept(USER)}"]
    ] or flow.metadata["rtproxy.original_headers"] == [("Authorization", f"Bearer {kept(USER)}")]
    assert flow.comment == f"see sb_secret_{MARKER}"


def test_sanitizing_a_sanitized_file_changes_nothing(tmp_path, capsys):
    once, twice = tmp_path / "once.har", tmp_path / "twice.har"
    src = tmp_path / "in.har"
    src.write_bytes(FORMS["utf-8 BOM"](with_credentials(PRODUCERS["chrome"]())))
    sanitize_file(src, once, capsys)
    out = sanitize_file(once, twice, capsys)
    assert "replaced nothing" in out and twice.read_bytes() == once.read_bytes()


def test_refuses_to_overwrite_its_input_and_says_why_it_cannot_read(tmp_path, capsys):
    src = tmp_path / "in.har"
    src.write_text(json.dumps(corpus.har(corpus.CASES[0])))
    before = src.read_bytes()
    link = tmp_path / "link.har"
    link.symlink_to(src)
    for dst in (src, tmp_path / "." / "in.har", link):
        assert rtsanitize.main([str(src), str(dst)]) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1 and "refusing to overwrite the input" in err
    assert src.read_bytes() == before
    bad = {
        "missing.har": None,
        "empty.har": b"",
        "broken.har": b'{"log": {',
        "not-a-har.json": b'{"entries": []}',
        "truncated.zhar": zlib.compress(b'{"log": {"entries": []}}')[:-4],
        "garbage.flows": b"\x00\x01 not a flow file",
    }
    for name, content in bad.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        dst = tmp_path / f"out-{name}"
        assert rtsanitize.main([str(path), str(dst)]) == 2, name
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1 and err.startswith(f"rtsanitize: {path}: "), (name, err)
        assert not dst.exists() and not list(tmp_path.glob(".*rtsanitize-tmp")), name


def test_a_sanitizer_for_every_capture_format():
    assert [f.name for f in tool_captures.FORMATS] == list(rtsanitize.SANITIZERS)


def test_the_installed_command(tmp_path):
    src, dst = tmp_path / "in.har", tmp_path / "out.har"
    src.write_text(json.dumps(with_credentials(PRODUCERS["chrome"]())))
    r = subprocess.run(
        [command("rtsanitize"), str(src), str(dst)],
        check=False,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert r.returncode == 0, r.stderr
    assert not leaks(r.stdout) and not [c for c in CREDENTIALS if c in r.stdout]
    assert re.search(r"replaced \d+: .*JWT signatures", r.stdout), r.stdout
    assert not [c for c in CREDENTIALS if c.encode() in dst.read_bytes()]


# ---------------------------------------------------------------------------------------------- names


def test_every_credential_name_is_replaced_in_a_message_and_printed_redacted():
    """Each name of the one list (redact.SECRET_KEYS, which sanitize.CREDENTIAL_KEYS extends by `code`) is
    replaced in a Realtime message (its first look, the hint, lets every one through) and printed
    [redacted]; `code` stays in a message, where it is the app's."""
    assert SECRET_KEYS < sanitize.CREDENTIAL_KEYS and sanitize.CREDENTIAL_KEYS - SECRET_KEYS == {"code"}
    for key in sorted(SECRET_KEYS):
        payload = {"type": "broadcast", "event": "e", "payload": {key: "opaque-value-1", "code": "ROOM-42"}}
        frame = json.dumps(["1", "3", "realtime:room", "broadcast", payload]).encode()
        new, found = sanitize.message(frame, binary=False, from_client=True)
        assert found == {sanitize.TOKEN: 1}, key
        assert json.loads(new)[4]["payload"] == {key: MARKER, "code": "ROOM-42"}, key
        binary = frames.encode_user_push(
            "realtime:room", "e", {key.upper(): "opaque-value-1"}, join_ref="1", ref="4"
        )
        assert b"opaque-value-1" not in sanitize.message(binary, binary=True, from_client=True)[0], key
        printed = Redactor().output({"payload": {key: "opaque-value-1", "code": "ROOM-42"}})
        assert printed == {"payload": {key: "[redacted]", "code": "ROOM-42"}}, key
        assert Redactor().text(f"{key}=opaque-value-1 code=ROOM-42") == f"{key}=[redacted] code=ROOM-42"


def test_code_is_an_authorization_code_where_oauth_puts_one():
    """AUTH_CODE_KEYS: a URL's query (any path: an app's callback is where redirect_to says), a Location or
    Referer, a fragment; a request body to GoTrue, an OAuth token request, a form with `state`. Not a
    response body (GoTrue's error code), not a PostgREST row, not a Realtime message."""
    for u in (
        f"http://localhost:3000/cb?code={UUID}",
        f"https://x.supabase.co/auth/v1/callback?code={UUID}&state=s",
    ):
        new, found = sanitize.url(u)
        assert UUID not in new and f"code={MARKER}" in new and found == {sanitize.TOKEN: 1}, u
        assert Redactor().url(u) == u.replace(UUID, "[redacted]")  # printed the same way
    assert sanitize.url(f"http://app/#code={UUID}&state=s")[0] == f"http://app/#code={MARKER}&state=s"
    assert sanitize.url("http://app/?error_code=otp_expired&error=access_denied")[1] == {}
    for name in ("Location", "Referer", "content-location"):
        assert sanitize.header(name, f"http://localhost:3000/cb?code={UUID}")[0].endswith(f"code={MARKER}")
    assert sanitize.query_value("code", UUID) == (MARKER, {sanitize.TOKEN: 1})
    mfa = json.dumps({"challenge_id": "c1", "code": "914207"})
    cases = [  # (request url, body, mime, is `code` an authorization code here?)
        (f"{SB}/auth/v1/factors/f1/verify", mfa, "application/json;charset=UTF-8", True),
        (
            "https://idp.example/token",
            f"grant_type=authorization_code&code={UUID}&code_verifier=v",
            FORM,
            True,
        ),
        (
            "https://idp.example/token",
            json.dumps({"grant_type": "authorization_code", "code": UUID}),
            "",
            True,
        ),
        ("https://app.example/apple/callback", f"state=s1&code={UUID}&id_token=x", FORM, True),
        (f"{SB}/rest/v1/rooms", json.dumps({"state": "open", "code": "ROOM-42"}), "application/json", False),
        ("https://app.example/join", "code=ROOM-42&name=a", FORM, False),
    ]
    for u, body, mime, codes in cases:
        assert sanitize.request_codes(u, body, mime) is codes, (u, body)
        new, _ = sanitize.body(body, mime=mime, codes=codes)
        assert (UUID not in new and "914207" not in new) if codes else new == body, (u, new)
    error = json.dumps({"code": "invalid_credentials", "message": "Invalid login credentials"})
    assert sanitize.body(error, mime="application/json")[0] == error  # a response: never `codes`
    form_pw = "email=a%40example.com&password=p%3Ba'b%22c&remember=1"  # a form field, whatever its bytes
    assert sanitize.body(form_pw, mime=FORM) == (
        f"email=a%40example.com&password={MARKER}&remember=1",
        {sanitize.TOKEN: 1},
    )
    assert sanitize.form_value("Password", "p;a'b") == (MARKER, {sanitize.TOKEN: 1})
    assert (
        sanitize.form_value("code", UUID) == (UUID, {})
        and sanitize.form_value("code", UUID, codes=True)[0] == MARKER
    )


# ---------------------------------------------------------------------------------------------- Supabase Auth

# A supabase-js session in a browser's capture: password login (one wrong password first), an OAuth sign-in
# with PKCE and its callback, the code exchange, a token refresh, the implicit flow's redirect, MFA, a magic
# link's token_hash, GoTrue's OAuth server's form token request, an app's own HTML login form, and a Realtime
# connection whose broadcast carries some of them. Requests as auth-js sends them (GoTrueClient.ts:
# signInWithPassword, _getUrlForProvider, _exchangeCodeForSession, _refreshAccessToken, mfa verify,
# verifyOtp; lib/fetch.ts `_request`: Content-Type application/json;charset=UTF-8, X-Supabase-Api-Version,
# the body JSON.stringify'd, so `captcha_token: undefined` leaves `gotrue_meta_security: {}`); answers as
# GoTrue gives them (supabase/auth internal/api/token.go AccessTokenResponse; external.go and verify.go
# prepPKCERedirectURL for the redirects; errors.go HTTPErrorResponse20240101 for the refused login).

SB = "https://abcdefghijklmnopqrst.supabase.co"
APP = "http://localhost:3000"
FORM = "application/x-www-form-urlencoded"  # HTML forms (sanitize.FORM)
UUID = "4d0c7f9e-6a2b-4c1e-9f3a-2b7d8e1c5a60"  # GoTrue's PKCE auth code (flow_state.auth_code) is a UUID
LOGIN_PASSWORD = "hunter2-login-Passw0rd"
WRONG_PASSWORD = "hunter1-wrong-Passw0rd"
FORM_PASSWORD = "form-posted-pa55word"
BROADCAST_PASSWORD = "hunter3-broadcast-pw"
REFRESH = [f"gotrue-refresh-{c * 4}{i}" for i, c in enumerate("abcdef")]
PROVIDER_TOKEN = "gho_16C7e42F292c6912E7710c838347Ae178B4a"
PROVIDER_REFRESH = "ghr_1B4a2e77838347a7E420ce178F2E7c6912E169246"
IMPLICIT_PROVIDER_TOKEN = "gho_ImplicitFlowProviderToken0000000000"
GITHUB_CODES = ["gh-oauth-code-0f3a9c1b7d", "gh-oauth-code-9e8d7c6b5a"]
VERIFIER = "pkce-verifier-Qm9vZnlWZXJpZmllclN0cmluZzEyMzQ1Njc4OTBhYmNk"
TOKEN_HASH = "pkce_4c9a1b2e0d7f6a5b3c8e9d0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6"
OAUTH_CODE = "oauth-server-code-5a6b7c8d"
CLIENT_SECRET = "client-secret-Zx9Yw8Vu7Ts6"
MFA_CODE = "914207"  # six digits: checked where it stood, not as bytes (a JWT's base64 may hold them)
ROOM_CODE = "ROOM-42"  # the app's own `code`: kept
JWTS = {
    name: mint({"role": "authenticated", "sub": "user-1", "session_id": name, "exp": NOW + 3600})
    for name in ("login", "pkce", "refreshed", "implicit", "mfa", "otp", "oauth")
}
STATE = mint({"provider": "github", "flow_state_id": "f-1", "exp": NOW + 300})  # GoTrue signs its state
AUTH_CREDENTIALS = [
    LOGIN_PASSWORD,
    WRONG_PASSWORD,
    FORM_PASSWORD,
    *REFRESH,
    PROVIDER_TOKEN,
    PROVIDER_REFRESH,
    IMPLICIT_PROVIDER_TOKEN,
    *GITHUB_CODES,
    UUID,
    VERIFIER,
    TOKEN_HASH,
    OAUTH_CODE,
    CLIENT_SECRET,
    sig(APIKEY),
    sig(STATE),
    *(sig(t) for t in JWTS.values()),
]
MESSAGE_CREDENTIALS = [BROADCAST_PASSWORD, sig(JWTS["pkce"])]
KEPT = [
    "invalid_credentials",
    ROOM_CODE,
    "grant_type=password",
    "a@example.com",
    "code_challenge_method=s256",
]


@dataclasses.dataclass
class Exchange:
    method: str
    url: str
    headers: list[tuple[str, str]]
    body: str = ""
    status: int = 200
    response_headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    response_body: str = ""
    kind: str = "fetch"  # Chrome's _resourceType

    @property
    def mime(self) -> str:
        return {k.lower(): v for k, v in self.headers}.get("content-type", "")

    @property
    def response_mime(self) -> str:
        return {k.lower(): v for k, v in self.response_headers}.get("content-type", "")


JSON_MIME = "application/json;charset=UTF-8"


def auth_js(method: str, path: str, body: dict | None = None, jwt: str | None = None, **kw) -> Exchange:
    """A request as auth-js's _request sends it, and GoTrue's JSON answer."""
    headers = [
        ("apikey", APIKEY),
        ("Authorization", f"Bearer {jwt or APIKEY}"),
        ("X-Client-Info", "supabase-js-web/2.50.0"),
    ]
    headers.append(("X-Supabase-Api-Version", "2024-01-01"))
    if body is not None:
        headers.append(("Content-Type", JSON_MIME))
    answer = kw.pop("answer", None)
    response = [("Content-Type", "application/json"), ("X-Supabase-Api-Version", "2024-01-01")]
    return Exchange(
        method,
        f"{SB}/auth/v1{path}",
        headers,
        json.dumps(body, separators=(",", ":")) if body is not None else "",
        response_headers=response,
        response_body=json.dumps(answer) if answer is not None else "",
        **kw,
    )


def session(jwt: str, refresh: str, **provider) -> dict:
    """GoTrue's AccessTokenResponse (token.go)."""
    user = {"id": "user-1", "aud": "authenticated", "role": "authenticated", "email": "a@example.com"}
    return {
        "access_token": jwt,
        "token_type": "bearer",
        "expires_in": 3600,
        "expires_at": NOW + 3600,
        "refresh_token": refresh,
        "user": user,
        **provider,
    }


def redirect(url: str, to: str, **kw) -> Exchange:
    return Exchange(
        "GET",
        url,
        [("Accept", "text/html")],
        status=302,
        response_headers=[("Location", to)],
        kind="document",
        **kw,
    )


def supabase_js_session() -> list[Exchange]:
    login = {"email": "a@example.com", "gotrue_meta_security": {}}
    implicit = urlencode(  # token.go AsRedirectURL: url.Values.Encode(), keys sorted
        sorted(
            {
                "access_token": JWTS["implicit"],
                "expires_in": "3600",
                "provider_refresh_token": "ghr_" + REFRESH[4],
                "provider_token": IMPLICIT_PROVIDER_TOKEN,
                "refresh_token": REFRESH[5],
                "token_type": "bearer",
            }.items()
        )
    )
    challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"  # S256 of the verifier: not a credential
    oauth_form = urlencode(
        {
            "grant_type": "authorization_code",
            "code": OAUTH_CODE,
            "redirect_uri": f"{APP}/oauth",
            "client_id": "c0ffee00-0000-4000-8000-000000000001",
            "client_secret": CLIENT_SECRET,
            "code_verifier": VERIFIER[::-1],
        }
    )
    return [
        auth_js(
            "POST",
            "/token?grant_type=password",
            {**login, "password": WRONG_PASSWORD},
            status=400,
            answer={"code": "invalid_credentials", "message": "Invalid login credentials"},
        ),
        auth_js(
            "POST",
            "/token?grant_type=password",
            {**login, "password": LOGIN_PASSWORD},
            answer=session(JWTS["login"], REFRESH[0]),
        ),
        redirect(
            f"{SB}/auth/v1/authorize?provider=github&redirect_to={quote(APP + '/cb', safe='')}"
            f"&code_challenge={challenge}&code_challenge_method=s256",
            f"https://github.com/login/oauth/authorize?client_id=Iv1.0a1b2c&redirect_uri="
            f"{quote(SB + '/auth/v1/callback', safe='')}&response_type=code&scope=user%3Aemail&state={STATE}",
        ),
        redirect(f"{SB}/auth/v1/callback?code={GITHUB_CODES[0]}&state={STATE}", f"{APP}/cb?code={UUID}"),
        Exchange(
            "GET",
            f"{APP}/cb?code={UUID}",
            [("Accept", "text/html")],
            response_headers=[("Content-Type", "text/html")],
            response_body="<!doctype html><script src=/assets/index.js></script>",
            kind="document",
        ),
        Exchange(
            "GET",
            f"{APP}/assets/index.js",
            [("Referer", f"{APP}/cb?code={UUID}")],
            kind="script",
            response_headers=[("Content-Type", "text/javascript")],
            response_body="export {}",
        ),
        auth_js(
            "POST",
            "/token?grant_type=pkce",
            {"auth_code": UUID, "code_verifier": VERIFIER},
            answer=session(
                JWTS["pkce"],
                REFRESH[1],
                provider_token=PROVIDER_TOKEN,
                provider_refresh_token=PROVIDER_REFRESH,
            ),
        ),
        auth_js(
            "POST",
            "/token?grant_type=refresh_token",
            {"refresh_token": REFRESH[1]},
            answer=session(JWTS["refreshed"], REFRESH[2]),
        ),
        redirect(f"{SB}/auth/v1/callback?code={GITHUB_CODES[1]}&state={STATE}", f"{APP}/#{implicit}"),
        auth_js(
            "POST",
            "/factors/f-1/verify",
            {"challenge_id": "ch-1", "code": MFA_CODE},
            jwt=JWTS["refreshed"],
            answer=session(JWTS["mfa"], REFRESH[3]),
        ),
        auth_js(
            "POST",
            "/verify",
            {"type": "email", "token_hash": TOKEN_HASH, "gotrue_meta_security": {}},
            answer=session(JWTS["otp"], "gotrue-refresh-otp-1"),
        ),
        Exchange(
            "POST",
            f"{SB}/auth/v1/oauth/token",
            [("Content-Type", FORM)],
            oauth_form,
            response_headers=[("Content-Type", "application/json")],
            response_body=json.dumps({"access_token": JWTS["oauth"], "refresh_token": "oauth-refresh-1"}),
        ),
        Exchange(
            "POST",
            f"{APP}/login",
            [("Content-Type", FORM)],
            urlencode({"email": "a@example.com", "password": FORM_PASSWORD}),
            status=302,
            response_headers=[("Location", "/")],
            kind="document",
        ),
        Exchange(
            "POST",
            f"{SB}/rest/v1/rooms",
            [("apikey", APIKEY), ("Content-Type", "application/json")],
            json.dumps({"state": "open", "code": ROOM_CODE}),
            status=201,
        ),
    ]


def realtime_after_login() -> Conn:
    """The app's Realtime connection: joined with the PKCE session's token, then a broadcast carrying a
    password, a provider token and the app's own `code`."""
    join = {"topic": "realtime:room", "event": "phx_join", "ref": "1", "join_ref": "1"}
    join["payload"] = {"config": {}, "access_token": JWTS["pkce"]}
    payload = {"code": ROOM_CODE, "password": BROADCAST_PASSWORD, "provider_token": PROVIDER_TOKEN}
    broadcast = {"topic": "realtime:room", "event": "broadcast", "ref": "3", "join_ref": "1"}
    broadcast["payload"] = {"type": "broadcast", "event": "signed-in", "payload": payload}
    return Conn(
        url=f"wss://abcdefghijklmnopqrst.supabase.co/realtime/v1/websocket?apikey={APIKEY}&vsn=1.0.0",
        frames=[(0.1, "send", json.dumps(join)), *joined()[1:], (26.0, "send", json.dumps(broadcast))],
        start=T0 + 60,
    )


def har_entry(x: Exchange, producer: str, i: int) -> dict:
    """One exchange as a HAR 1.2 entry (request/response, queryString, postData with a form's params,
    content, redirectURL), with Chrome's own fields (Log.ts, Entry.build) for Chrome."""
    pairs = [{"name": k, "value": v} for k, v in parse_qsl(urlsplit(x.url).query, keep_blank_values=True)]
    request = {
        "method": x.method,
        "url": x.url,
        "httpVersion": "HTTP/1.1",
        "headers": [{"name": k, "value": v} for k, v in x.headers],
        "queryString": pairs,
        "cookies": [],
        "headersSize": -1,
        "bodySize": len(x.body),
    }
    if x.body:
        request["postData"] = {"mimeType": x.mime, "text": x.body}
        if FORM in x.mime:
            request["postData"]["params"] = [{"name": k, "value": v} for k, v in parse_qsl(x.body)]
    location = {k.lower(): v for k, v in x.response_headers}.get("location", "")
    entry = {
        "startedDateTime": f"2027-01-15T08:00:{i:02d}.000Z",
        "time": 12,
        "request": request,
        "response": {
            "status": x.status,
            "statusText": "",
            "httpVersion": "HTTP/1.1",
            "headers": [{"name": k, "value": v} for k, v in x.response_headers],
            "cookies": [],
            "content": {
                "size": len(x.response_body),
                "mimeType": x.response_mime or "x-unknown",
                **({"text": x.response_body} if x.response_body else {}),
            },
            "redirectURL": location,
            "headersSize": -1,
            "bodySize": len(x.response_body),
        },
        "cache": {},
        "timings": {"send": 0, "wait": 12, "receive": 0},
    }
    if producer == "chrome":
        entry |= {
            "_initiator": {"type": "script" if x.kind == "fetch" else "other"},
            "_priority": "High",
            "_resourceType": x.kind,
            "pageref": "page_1",
        }
    return entry


def auth_flows() -> list[http.HTTPFlow]:
    """The same session as mitmproxy holds it (what -w writes, and savehar reads)."""
    out = []
    for i, x in enumerate(supabase_js_session()):
        f = tflow.tflow(resp=True)
        f.request = http.Request.make(
            x.method, x.url, x.body.encode(), http.Headers([(k.encode(), v.encode()) for k, v in x.headers])
        )
        f.request.timestamp_start = f.request.timestamp_end = T0 + i
        f.response = http.Response.make(
            x.status,
            x.response_body.encode(),
            http.Headers([(k.encode(), v.encode()) for k, v in x.response_headers]),
        )
        f.response.timestamp_start = f.response.timestamp_end = T0 + i + 0.01
        out.append(f)
    return [*out, *flows([realtime_after_login()])]


def auth_har(producer: str) -> dict:
    """The session in `producer`'s HAR: its Realtime entry as tests/producers.py builds it, then the HTTP
    exchanges (mitmproxy: its own savehar over the flows)."""
    if producer == "mitmproxy":
        return mitmproxy_har(auth_flows())
    conns = [realtime_after_login()]
    builders = {"chrome": chrome, "httptoolkit": httptoolkit}
    doc = (
        builders[producer](conns)
        if producer in builders
        else without_messages(PRODUCER_NAMES[producer], conns)
    )
    doc["log"]["entries"] += [har_entry(x, producer, i) for i, x in enumerate(supabase_js_session())]
    if producer == "chrome":  # the page's title is its URL: the OAuth callback's, code and all
        doc["log"]["pages"] = [
            {
                "startedDateTime": "2027-01-15T08:00:00.000Z",
                "id": "page_1",
                "title": f"{APP}/cb?code={UUID}",
                "pageTimings": {},
            }
        ]
    return doc


PRODUCER_NAMES = {p.lower(): p for p in NO_MESSAGES}
AUTH_PRODUCERS = ["chrome", "httptoolkit", *PRODUCER_NAMES, "mitmproxy"]


def assert_auth_sanitized(original: bytes, out: bytes, messages: bool) -> None:
    wanted = AUTH_CREDENTIALS + (MESSAGE_CREDENTIALS if messages else [])
    assert [c for c in wanted if c.encode() not in original] == []  # the builder put each one in
    assert [c for c in wanted if c.encode() in out] == []
    assert not [s for s in originals(original) if s in out]
    assert [k for k in KEPT if k.encode() not in out] == []  # what is no credential stays
    if messages:
        assert (
            out.count(ROOM_CODE.encode()) == original.count(ROOM_CODE.encode()) == 2
        )  # PostgREST, broadcast


def rtdiagnose_says(path: Path, capsys) -> tuple[int, str, str]:
    """rtdiagnose's exit status and output, whatever they are (a HAR without messages: one line, 2)."""
    rc = rtdiagnose.main([str(path), "--json"])
    out, err = capsys.readouterr()
    return rc, out.replace(str(path), "CAPTURE"), err.replace(str(path), "CAPTURE")


def bodies_by_url(doc: dict) -> dict[str, tuple[Any, Any]]:
    def parsed(content):
        text = (content or {}).get("text") or ""
        try:
            return json.loads(text)
        except ValueError:
            return text

    return {
        e["request"]["url"]: (parsed(e["request"].get("postData")), parsed(e["response"].get("content")))
        for e in doc["log"]["entries"]
    }


@pytest.mark.parametrize("producer", AUTH_PRODUCERS)
@pytest.mark.parametrize("form", sorted(FORMS))
def test_a_supabase_js_login_oauth_and_refresh_har(producer, form, tmp_path, capsys):
    src, dst = tmp_path / "in.har", tmp_path / "out.har"
    src.write_bytes(FORMS[form](auth_har(producer)))
    out = sanitize_file(src, dst, capsys)
    raw, data = src.read_bytes(), dst.read_bytes()
    original, text = raw.decode(json.detect_encoding(raw)), data.decode(json.detect_encoding(data))
    assert_auth_sanitized(original.encode(), text.encode(), messages=producer not in PRODUCER_NAMES)
    assert "bodies: " in out and "URLs: " in out and "headers: " in out
    got = bodies_by_url(json.loads(text))
    login = got[f"{SB}/auth/v1/token?grant_type=password"]
    assert login[0] == {"email": "a@example.com", "password": MARKER, "gotrue_meta_security": {}}
    assert got[f"{SB}/auth/v1/factors/f-1/verify"][0] == {"challenge_id": "ch-1", "code": MARKER}
    pkce = got[f"{SB}/auth/v1/token?grant_type=pkce"]
    assert pkce[0] == {"auth_code": MARKER, "code_verifier": MARKER}
    assert (pkce[1]["provider_token"], pkce[1]["provider_refresh_token"]) == (MARKER, MARKER)
    assert pkce[1]["access_token"] == kept(JWTS["pkce"])  # role and exp still read
    assert got[f"{SB}/rest/v1/rooms"][0] == {"state": "open", "code": ROOM_CODE}
    assert got[f"{APP}/cb?code={MARKER}"] is not None
    assert rtdiagnose_says(dst, capsys) == rtdiagnose_says(src, capsys)
    if producer not in PRODUCER_NAMES:
        assert diagnosis_in_process(dst, capsys) == diagnosis_in_process(src, capsys)
    assert "replaced nothing" in sanitize_file(dst, tmp_path / "again.har", capsys)


def test_a_supabase_js_session_in_a_flow_file_and_a_zhar(tmp_path, capsys):
    flow_file, zhar = tmp_path / "in.flows", tmp_path / "in.zhar"
    with open(flow_file, "wb") as f:
        w = mio.FlowWriter(f)
        for x in auth_flows():
            w.add(x)
    zhar.write_bytes(zlib.compress(json.dumps(mitmproxy_har(auth_flows()), indent=4).encode(), 9))
    for src in (flow_file, zhar):
        dst = tmp_path / f"out{src.suffix}"
        sanitize_file(src, dst, capsys)
        unpack = zlib.decompress if src.suffix == ".zhar" else (lambda b: b)
        assert_auth_sanitized(unpack(src.read_bytes()), unpack(dst.read_bytes()), messages=True)
        assert diagnosis_in_process(dst, capsys) == diagnosis_in_process(src, capsys), src.name
    with open(tmp_path / "out.flows", "rb") as f:
        stored = {x.request.url: x for x in mio.FlowReader(f).stream()}
    mfa = stored[f"{SB}/auth/v1/factors/f-1/verify"]
    assert json.loads(mfa.request.content) == {"challenge_id": "ch-1", "code": MARKER}
    with open(tmp_path / "out.flows", "rb") as f:  # both GitHub callbacks now read the same
        callbacks = [x for x in mio.FlowReader(f).stream() if x.request.path.startswith("/auth/v1/callback")]
    assert {x.request.path for x in callbacks} == {f"/auth/v1/callback?code={MARKER}&state={kept(STATE)}"}
    pkce, implicit = (x.response.headers["location"] for x in callbacks)
    assert pkce == f"{APP}/cb?code={MARKER}"
    assert dict(parse_qsl(urlsplit(implicit).fragment)) == {
        "access_token": kept(JWTS["implicit"]),
        "expires_in": "3600",
        "provider_refresh_token": MARKER,
        "provider_token": MARKER,
        "refresh_token": MARKER,
        "token_type": "bearer",
    }
    login = stored[f"{APP}/login"]
    assert (
        login.request.urlencoded_form["password"] == MARKER
        and login.request.urlencoded_form["email"] == "a@example.com"
    )


# ---------------------------------------------------------------------------------------------- versions


@pytest.mark.parametrize(
    "version, checked",
    [
        ("12.0.0", True),
        ("12.3.1", True),
        ("12.3.9", True),
        ("12.4.0", False),
        ("12.10.0", False),
        ("13.0.0.dev", False),
        ("11.1.3", False),
        ("unknown", False),
    ],
)
def test_stored_messages_are_sanitized_only_on_the_mitmproxy_versions_checked(
    version, checked, monkeypatch, caplog
):
    """On a mitmproxy whose WebSocket layer was not read (internals.RELAY_MESSAGES_CHECKED), the message
    mitmproxy holds is left as it is (it may be what goes on the wire), with one warning; the upgrade's URL
    is sanitized on every version."""
    from mitmproxy.test import taddons
    from rtproxy_mitm import internals
    from rtproxy_mitm import sanitize as live
    from rtproxy_mitm.tracker import Tracker

    assert internals.relay_messages_checked(version) is checked
    monkeypatch.setattr(live, "VERSION", version)
    addon = live.Sanitize()
    with caplog.at_level(logging.WARNING, logger="rtproxy"), taddons.context(Tracker(), addon) as tctx:
        tctx.configure(addon, rt_show_secrets=False)
        (flow,) = flows(
            [Conn(url=f"wss://h/realtime/v1/websocket?apikey={APIKEY}&vsn=1.0.0", frames=[])], closed=False
        )
        addon.response(flow)
        sent = websocket.WebSocketMessage(Opcode.TEXT, True, json.dumps(JOIN_V1).encode())
        flow.websocket.messages.append(sent)
        addon.websocket_message(flow)
    assert f"apikey={kept(APIKEY)}" in flow.request.path  # the request side: every version
    assert sent.content == json.dumps(JOIN_V1).encode()  # what mitmproxy forwards: never touched
    stored = flow.websocket.messages[-1]
    warnings = [
        r.getMessage() for r in caplog.records if r.name == "rtproxy" and r.levelno == logging.WARNING
    ]
    if checked:
        assert stored is not sent and kept(USER).encode() in stored.content and warnings == []
    else:
        assert stored is sent
        assert len(warnings) == 1 and f"mitmproxy {version}" in warnings[0] and "unsanitized" in warnings[0]
        assert "12.0 to 12.3" in warnings[0] and "rtsanitize" in warnings[0]


# ---------------------------------------------------------------------------------------------- first look

_PIECES = [
    *sorted(SECRET_KEYS),
    *(k.upper() for k in SECRET_KEYS),
    "Access_Token",
    "eyJ",
    "eyJhbGciOiJIUzI1NiJ9.",
    "eyJzdWIiOiIxIn0.",
    "sig-nature_1",
    "sb_publishable_",
    "sb_secret_",
    "sb_",
    "=",
    '"',
    ":",
    " ",
    "&",
    "x",
    "token",
    "auth_codex",
    "secreteyJ",
    "é",
    "\x00",
]


_KEY = st.sampled_from(sorted(SECRET_KEYS)).flatmap(lambda k: st.sampled_from([k, k.upper(), k.title()]))
_SPACE = st.sampled_from(["", " ", "  "])
_CREDENTIAL_SHAPE = st.one_of(
    st.builds(lambda k, v: f"{k}={v}", _KEY, st.sampled_from(["v", "opaque-1", ""])),
    st.builds(lambda k, a, b: f'"{k}"{a}:{b}"opaque"', _KEY, _SPACE, _SPACE),
    st.sampled_from([USER, SB_SECRET, SB_PUBLISHABLE, USER[:40]]),
)


@given(
    st.lists(st.sampled_from(_PIECES), max_size=6),
    st.lists(_CREDENTIAL_SHAPE, max_size=2),
    st.lists(st.sampled_from(_PIECES), max_size=6),
    st.binary(max_size=8),
    st.integers(0, 400),
    st.integers(0, 400),
)
@settings(max_examples=500, deadline=None)
def test_the_first_look_lets_through_whatever_the_full_pass_replaces(before, shapes, after, noise, a, b):
    """may_hold_secret (the per-frame gate, which looks only around where its hints stand) says True for
    every frame in which `data`, the full regex pass, would replace something: over the whole frame (a
    text frame, a binary one that does not decode) or over any slice of it (a binary frame's field)."""
    raw = "".join(before + shapes + after).encode("utf-8") + noise
    a, b = sorted((a, b))
    if sanitize.data(raw)[1] or sanitize.data(raw[a:b])[1]:
        assert sanitize.may_hold_secret(raw), raw


def test_the_first_look_skips_a_big_frame_of_ordinary_bytes_and_not_a_jwt_inside_one():
    """A 1 MB base64 blob holds the hint words by chance ("jwt", "api"): no credential shape around
    them, so the frame is stored as it came; the same blob with a JWT inside is sanitized."""
    blob = base64.b64encode(random.Random(27).randbytes(750_000)).decode()
    body = {"type": "broadcast", "event": "big", "payload": {"blob": blob}}
    frame = json.dumps(["1", "2", "realtime:room", "broadcast", body]).encode()
    assert b"jwt" in frame.lower() and not sanitize.may_hold_secret(frame)
    assert sanitize.message(frame, binary=False, from_client=True) == (frame, {})
    i = len(frame) // 2
    with_jwt = frame[:i] + b"+" + USER.encode() + b"+" + frame[i:]
    new, found = sanitize.message(with_jwt, binary=False, from_client=True)
    assert found == {sanitize.JWT: 1} and USER.encode() not in new
