"""The codec decodes what the real clients decode. Each server frame below goes to realtime-js 2.119.0's own
decoder (in Node, tests/node/decode.mjs) and to realtime-py's own parser (the installed `realtime`
package: message.ServerMessageAdapter, what AsyncRealtimeClient._listen uses). A frame either accepts
must decode; a frame neither accepts must be a DecodeError with a reason. Frames are literals (hex for
binary), several from the frames the real server sends (v2_serializer.ex) and from bug reports.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pydantic
import pytest
from conftest import ROOT
from realtime.message import ServerMessageAdapter
from rtproxy_core import frames

NODE_DIR = ROOT / "tests" / "node"

SERVER_FRAMES = [
    # 1.0.0 objects as Phoenix.Socket.V1.JSONSerializer writes them (no join_ref), and lighter ones
    '{"event":"phx_reply","payload":{"response":{},"status":"ok"},"ref":"1","topic":"phoenix"}',
    (
        '{"ref":"1","event":"phx_reply","payload":{"status":"ok","response":{"postgres_changes":[]}},'
        '"topic":"realtime:test"}'
    ),  # supabase/supabase-py#1297, as pasted
    (
        '{"event":"broadcast","payload":{"event":"e","payload":{"a":1},"type":"broadcast"},"ref":null,'
        '"topic":"realtime:room"}'
    ),
    '{"topic":"realtime:t","event":"broadcast","payload":{"event":"e","payload":{}}}',  # no ref: realtime-js
    '{"topic":"realtime:t","event":"presence_diff"}',  # no payload: realtime-js routes it
    (
        '{"event":"phx_reply","payload":{"response":"payload_size_exceeded","status":"error"},"ref":"7",'
        '"topic":"realtime:room"}'
    ),
    '{"topic":5,"event":"broadcast","payload":{},"ref":null}',  # neither: topic not a string
    '{"topic":"realtime:t","event":"phx_reply","ref":"1"}',  # neither: a reply without payload
    '{"topic":"realtime:t","event":"x","payload":{"n":NaN},"ref":null}',  # neither: NaN is not JSON
    # 2.0.0 arrays as V2Serializer encodes them
    '["1","1","realtime:room","phx_reply",{"response":{"postgres_changes":[]},"status":"ok"}]',
    '[null,null,"realtime:room","broadcast",{"event":"e","payload":{},"type":"broadcast"}]',
    (
        '["1",null,"realtime:room","system",{"channel":"room","extension":"system",'
        '"message":"Server requested disconnect","status":"ok"}]'
    ),
    '[null,null,"realtime:room","presence_diff"]',  # short: realtime-js destructures it
    '[null,null,"realtime:room"]',  # neither: no event
    '{"topic":"realtime:t","event":"e","payload":{},"ref":null',  # neither: cut off
]

SERVER_BINARY = [
    "040d010001" + b"realtime:roome".hex() + b'{"a":1}'.hex(),  # kind 4, JSON
    "040d010000" + b"realtime:roome".hex() + "00ff",  # kind 4, binary
    "040d010002" + b"realtime:roome".hex() + "01",  # kind 4, enc 2: realtime-js hands over the bytes
    "040d010301" + b"realtime:roome".hex() + b"[1]".hex() + b"{}".hex(),  # meta any JSON
    "040d010001" + b"realtime:roome".hex(),  # neither: enc 1 with no body (JSON.parse("") throws)
    "020d09" + b"realtime:roombroadcast".hex() + "00ff",  # kind 2: what a kind-0 broadcast becomes
    "00010d09" + b"1realtime:roombroadcast".hex() + "00",  # kind 0, server layout
    "0101010d02" + b"17realtime:roomok".hex() + "00",  # kind 1
    b'{"event":"phx_reply","payload":{"response":{},"status":"ok"},"ref":"1","topic":"phoenix"}'.hex(),
]


def realtime_js(batch: list[dict]) -> list[dict]:
    if shutil.which("node") is None or not (NODE_DIR / "node_modules" / "@supabase" / "realtime-js").exists():
        if os.environ.get("CI"):
            pytest.fail("node and tests/node/node_modules are needed; CI must install them")
        pytest.skip("needs node and npm ci --prefix tests/node")
    out = subprocess.run(
        ["node", str(NODE_DIR / "decode.mjs")],
        input=json.dumps(batch),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(out.stdout)


def realtime_py(data: str | bytes) -> bool:
    try:
        ServerMessageAdapter.validate_json(data)
        return True
    except pydantic.ValidationError:
        return False


@pytest.fixture(scope="module")
def js() -> dict:
    batch = [{"text": t} for t in SERVER_FRAMES] + [{"hex": h} for h in SERVER_BINARY]
    results = realtime_js(batch)
    return dict(zip(SERVER_FRAMES + SERVER_BINARY, results))


@pytest.mark.parametrize("text", SERVER_FRAMES)
def test_text_server_frames_decode_as_the_clients_do(js, text):
    accepted = js[text]["ok"] or realtime_py(text)
    try:
        m = frames.decode(text, binary=False, from_client=False)
    except frames.DecodeError as e:
        assert not accepted, f"realtime-js or realtime-py takes it, but: {e}"
        assert str(e)  # a reason
        return
    assert accepted, "neither realtime-js nor realtime-py takes this frame"
    if js[text]["ok"]:
        assert (m.topic, m.event, m.ref, m.join_ref) == (
            js[text]["topic"],
            js[text]["event"],
            js[text]["ref"],
            js[text]["join_ref"],
        )


@pytest.mark.parametrize("hexdata", SERVER_BINARY)
def test_binary_server_frames_decode_as_the_clients_do(js, hexdata):
    data = bytes.fromhex(hexdata)
    accepted = js[hexdata]["ok"] or realtime_py(data)
    try:
        m = frames.decode(data, binary=True, from_client=False)
    except frames.DecodeError as e:
        assert not accepted, f"realtime-js or realtime-py takes it, but: {e}"
        assert str(e)
        return
    assert accepted, "neither realtime-js nor realtime-py takes this frame"
    if js[hexdata]["ok"]:
        got = js[hexdata]
        assert (m.topic, m.event) == (got["topic"], got["event"])
        if m.kind == frames.USER_BROADCAST:
            assert frames.jsonable(m.payload) == got["payload"]


def test_the_reason_names_realtime_js_for_kinds_it_cannot_read():
    with pytest.raises(frames.DecodeError, match="kind 2 .broadcast. realtime:room 'broadcast'.*realtime-js"):
        frames.decode(bytes.fromhex(SERVER_BINARY[5]), binary=True, from_client=False)
