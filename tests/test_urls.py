"""The URLs users type, and the Realtime socket each leads to (rtproxy_core.urls.resolve): one table that
rtclient (through the real realtime-py client), rtprobe and rtreplay --client must all follow, and a check
of the table's project URLs against supabase-js itself and its endpoints against realtime-js, in Node."""

from __future__ import annotations

import json
import shutil
import subprocess
from urllib.parse import urlsplit

import pytest
from conftest import IN_CI, ROOT, TIMEOUT
from realtime import AsyncRealtimeClient
from rtproxy_core import urls
from rtproxy_core.events import Handshake, Opened
from rtproxy_core.redact import Redactor
from rtproxy_core.replay import Script, client_url
from rtproxy_tools import client, probe

REF = "abcdefghijklmnop.supabase.co"
APP = "app.example.com"
BASE, ENDPOINT, SOCKET = urls.BASE, urls.ENDPOINT, urls.SOCKET

# (what a user types, the socket it leads to, what they gave)
TABLE = [
    # a hosted project URL, as createClient takes it
    (f"https://{REF}", f"wss://{REF}/realtime/v1/websocket", BASE),
    (f"https://{REF}/", f"wss://{REF}/realtime/v1/websocket", BASE),
    (f"wss://{REF}", f"wss://{REF}/realtime/v1/websocket", BASE),
    (f"https://{REF}:443", f"wss://{REF}:443/realtime/v1/websocket", BASE),
    (f"HTTPS://{REF.upper()}", f"wss://{REF.upper()}/realtime/v1/websocket", BASE),
    (f"https://{REF}/#top", f"wss://{REF}/realtime/v1/websocket", BASE),
    # its Realtime endpoint (what RealtimeClient is given) and socket URL
    (f"https://{REF}/realtime/v1", f"wss://{REF}/realtime/v1/websocket", ENDPOINT),
    (f"https://{REF}/realtime/v1/", f"wss://{REF}/realtime/v1/websocket", ENDPOINT),
    (f"wss://{REF}/realtime/v1", f"wss://{REF}/realtime/v1/websocket", ENDPOINT),
    (f"wss://{REF}/realtime/v1/websocket", f"wss://{REF}/realtime/v1/websocket", SOCKET),
    (f"wss://{REF}/realtime/v1/websocket/", f"wss://{REF}/realtime/v1/websocket", SOCKET),
    (f"https://{REF}/realtime/v1/websocket", f"wss://{REF}/realtime/v1/websocket", SOCKET),
    # a relay under a path prefix (a Worker route, nginx location): the prefix stays, as in supabase-js
    (f"https://{APP}/prefix", f"wss://{APP}/prefix/realtime/v1/websocket", BASE),
    (f"https://{APP}/prefix/", f"wss://{APP}/prefix/realtime/v1/websocket", BASE),
    (f"https://{APP}/a/b", f"wss://{APP}/a/b/realtime/v1/websocket", BASE),
    (f"https://{APP}/prefix/realtime/v1", f"wss://{APP}/prefix/realtime/v1/websocket", ENDPOINT),
    (f"wss://{APP}/prefix/realtime/v1/websocket", f"wss://{APP}/prefix/realtime/v1/websocket", SOCKET),
    (f"https://{APP}/prefix/socket/websocket", f"wss://{APP}/prefix/socket/websocket", SOCKET),
    # local: rtlocal, rtproxy, a Worker in workerd, a self-hosted Realtime (its own /socket mount)
    ("http://127.0.0.1:54321", "ws://127.0.0.1:54321/realtime/v1/websocket", BASE),
    ("http://localhost:8080/", "ws://localhost:8080/realtime/v1/websocket", BASE),
    ("ws://127.0.0.1:8787", "ws://127.0.0.1:8787/realtime/v1/websocket", BASE),
    ("http://[::1]:54321", "ws://[::1]:54321/realtime/v1/websocket", BASE),
    ("ws://localhost:54321/realtime/v1", "ws://localhost:54321/realtime/v1/websocket", ENDPOINT),
    ("http://localhost:4000/socket", "ws://localhost:4000/socket/websocket", ENDPOINT),
    ("ws://localhost:4000/socket/", "ws://localhost:4000/socket/websocket", ENDPOINT),
    ("ws://localhost:4000/socket/websocket", "ws://localhost:4000/socket/websocket", SOCKET),
    ("https://localhost:4000/socket/websocket/", "wss://localhost:4000/socket/websocket", SOCKET),
    # with a query: kept apart, never in the socket URL
    (f"https://{REF}?apikey=KEY&vsn=2.0.0", f"wss://{REF}/realtime/v1/websocket", BASE),
    (
        f"wss://{REF}/realtime/v1/websocket?apikey=KEY&vsn=1.0.0",
        f"wss://{REF}/realtime/v1/websocket",
        SOCKET,
    ),
    (
        "http://127.0.0.1:54321/realtime/v1/?apikey=&vsn=1.0.0&log_level=info",
        "ws://127.0.0.1:54321/realtime/v1/websocket",
        ENDPOINT,
    ),
    ("ws://localhost:4000/socket?vsn=2.0.0", "ws://localhost:4000/socket/websocket", ENDPOINT),
]

# What every command refuses (one line, the URL quoted and redacted): no Realtime socket is there.
BAD = {
    "ftp://relay.example.com": "expected a ws://, wss://, http:// or https:// URL",
    "relay.example.com": "expected a ws://, wss://, http:// or https:// URL",
    "file:///realtime/v1": "expected a ws://, wss://, http:// or https:// URL",
    "https://": "no host",
    "https:///realtime/v1": "no host",
    "http://relay.example.com:99999": "not a URL",
    "https://relay.example.com/websocket": "is no Realtime path",
    "https://relay.example.com/prefix/websocket": "is no Realtime path",
    "https://relay.example.com/realtime": "is no Realtime path",
    "https://relay.example.com/realtime/v2/websocket": "is no Realtime path",
    "https://relay.example.com/realtime/v1/websocket/extra": "is no Realtime path",
    "https://relay.example.com/api/realtime": "is no Realtime path",
    "https://relay.example.com/socket/websocket/websocket": "is no Realtime path",
}


def test_the_table_covers_what_users_type():
    assert len(TABLE) >= 30
    assert {g for _, _, g in TABLE} == {BASE, ENDPOINT, SOCKET}
    assert {urlsplit(u).scheme.lower() for u, _, _ in TABLE} == {"http", "https", "ws", "wss"}


@pytest.mark.parametrize(("url", "socket", "given"), TABLE)
def test_resolve(url, socket, given):
    r = urls.resolve(url)
    assert (r.socket, r.given) == (socket, given)
    assert r.endpoint == socket.removesuffix("/websocket")
    query = urlsplit(url).query
    assert "?" not in r.socket and r.query == tuple(tuple(p.split("=", 1)) for p in query.split("&") if query)


def test_the_query_is_kept_apart():
    r = urls.resolve(f"WSS://{REF}/realtime/v1/websocket?apikey=k%2By&vsn=2.0.0&vsn=1.0.0")
    assert r.query == (("apikey", "k+y"), ("vsn", "2.0.0"), ("vsn", "1.0.0"))
    assert r.apikey == "k+y" and r.param("vsn") == "2.0.0" and r.param("log_level") is None
    assert urls.resolve(f"https://{REF}/?apikey=").apikey is None  # blank: no key


@pytest.mark.parametrize(
    "host", ["relay.example.com", "relay.example.com:8443", "127.0.0.1:8080", "[::1]:80"]
)
@pytest.mark.parametrize(("schemes", "ws"), [(("ws", "http"), "ws"), (("wss", "https"), "wss")])
def test_every_form_of_one_host_leads_to_one_socket(host, schemes, ws):
    hosted = ["", "/", "/realtime/v1", "/realtime/v1/", "/realtime/v1/websocket", "/realtime/v1/websocket/"]
    self_hosted = ["/socket", "/socket/", "/socket/websocket", "/socket/websocket/"]
    for scheme in schemes:
        for query in ("", "?vsn=1.0.0&log_level=info"):
            for path in hosted:
                assert urls.resolve(f"{scheme}://{host}{path}{query}").socket == (
                    f"{ws}://{host}/realtime/v1/websocket"
                )
            for path in self_hosted:
                assert urls.resolve(f"{scheme}://{host}{path}{query}").socket == (
                    f"{ws}://{host}/socket/websocket"
                )


# -------------------------------------------------------------------------------- the commands agree

SCRIPT = Script.from_connection(
    f"wss://{REF}/realtime/v1/websocket?apikey=CAPTURED&vsn=2.0.0",
    [
        Opened(f"wss://{REF}/realtime/v1/websocket?apikey=CAPTURED&vsn=2.0.0", [], 1.0),
        Handshake(101, [], b"", 1.0),
    ],
)


def sockets(url: str) -> dict[str, str]:
    """The socket each command opens for `url`, without the query each adds."""
    rtclient = AsyncRealtimeClient(client.endpoint(url), token="KEY")  # what rtclient hands the real client
    target = urls.resolve(url)
    rtprobe = probe.Probe(target, "KEY", 1.0, probe.Scrubber(Redactor(), "KEY"))
    return {
        "rtclient": rtclient.url.partition("?")[0],
        "rtprobe": rtprobe.url("KEY").partition("?")[0],
        "rtreplay": client_url(url, SCRIPT, "KEY").partition("?")[0],
    }


@pytest.mark.parametrize(("url", "socket", "given"), TABLE)
def test_rtclient_rtprobe_and_rtreplay_open_one_socket(url, socket, given):
    assert sockets(url) == dict.fromkeys(("rtclient", "rtprobe", "rtreplay"), socket)


def test_the_prefix_case_rtclient_used_to_differ_on():
    assert set(sockets(f"https://{APP}/prefix").values()) == {f"wss://{APP}/prefix/realtime/v1/websocket"}


@pytest.mark.parametrize("url", list(BAD))
def test_every_command_refuses_the_same_urls(url, capsys):
    with pytest.raises(ValueError, match=BAD[url]):
        urls.resolve(url)
    with pytest.raises(ValueError, match=BAD[url]):
        client_url(url, SCRIPT, "KEY")
    with pytest.raises(SystemExit) as e:
        client.main([url, "--channel", "room1"])
    assert e.value.code == 2 and BAD[url] in capsys.readouterr().err
    assert probe.main([url]) == 2
    assert BAD[url] in capsys.readouterr().err


def test_a_refused_url_is_printed_redacted(capsys):
    url = "https://relay.example.com/api/websocket?apikey=sb_secret_abcdefghijklmnopqrstuv"
    with pytest.raises(SystemExit):
        client.main([url, "--channel", "room1"])
    assert "abcdefghijklmnopqrstuv" not in capsys.readouterr().err


# -------------------------------------------------------------------------------- supabase-js, realtime-js

SITE = ROOT / "tests" / "browser" / "site"  # supabase-js (and the realtime-js it runs), npm ci'd
NODE_MISSING = [
    what
    for what, ok in (
        ("node", shutil.which("node") is not None),
        (
            "tests/browser/site/node_modules (npm ci --prefix tests/browser/site)",
            (SITE / "node_modules" / "@supabase" / "supabase-js" / "package.json").exists(),
        ),
    )
    if not ok
]

# createClient(url).realtime for a project URL (createClient takes http(s) only), RealtimeClient for an
# endpoint: the URL each opens, endpointURL().
NODE_SCRIPT = """
import { createClient } from '@supabase/supabase-js'
import { RealtimeClient } from '@supabase/realtime-js'
const transport = class {}  // never connects; Node 20 has no WebSocket of its own
const out = {}
for (const [kind, url] of JSON.parse(process.argv[1])) {
  out[url] = kind === 'base'
    ? createClient(url, 'KEY', { auth: { persistSession: false, autoRefreshToken: false },
                                 realtime: { transport } }).realtime.endpointURL()
    : new RealtimeClient(url, { params: { apikey: 'KEY' }, transport }).endpointURL()
}
console.log(JSON.stringify(out))
"""


def test_supabase_js_and_realtime_js_open_the_tables_sockets():
    if NODE_MISSING:
        why = "missing " + ", ".join(NODE_MISSING)
        if IN_CI:
            pytest.fail(f"{why}; CI must install them")
        pytest.skip(why)
    asked: list[tuple[str, str]] = []
    for url, socket, given in TABLE:
        parts = urlsplit(url)
        if given == BASE:  # what createClient is given: http(s), as validateSupabaseUrl requires
            scheme = {"ws": "http", "wss": "https"}.get(parts.scheme.lower(), parts.scheme)
            asked.append(("base", parts._replace(scheme=scheme, query="").geturl()))
        elif given == ENDPOINT:  # what RealtimeClient is given: the resolver's endpoint, the user's form
            asked.append(("endpoint", urls.resolve(url).endpoint))
    done = subprocess.run(
        ["node", "--input-type=module", "-e", NODE_SCRIPT, json.dumps(asked)],
        cwd=SITE,
        check=False,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    opened = json.loads(done.stdout)
    assert len(opened) == len({u for _, u in asked}) >= 15
    for kind, url in asked:
        socket = urls.resolve(url).socket
        # new URL() lowercases the host and drops a default port; the path is what must agree
        got, want = urlsplit(opened[url]), urlsplit(socket)
        assert (got.scheme, got.hostname, got.path) == (want.scheme, str(want.hostname).lower(), want.path), (
            kind,
            url,
        )
