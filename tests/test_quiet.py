"""The Quiet addon in-process (mitmproxy.test.taddons): mitmproxy's dumper_filter keeps Realtime URLs out of
its own lines unless the user opted in; every log record passes the redactor, its traceback included.
In mitmweb: the login URL mitmweb prints works, every other secret in the log stays redacted."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import urllib.error
import urllib.request

from conftest import MITMWEB, TIMEOUT
from mitmproxy.addons.dumper import Dumper
from mitmproxy.test import taddons
from rtproxy_local.jwt import mint
from rtproxy_mitm.quiet import REALTIME_FLOWS_HIDDEN, Quiet, RedactRecords, loopback
from rtproxy_mitm.tracker import Tracker
from webapi import free_port
from websockets.asyncio.client import connect

TOKEN = mint({"role": "anon", "exp": int(time.time()) + 3600})


def test_dumper_filter_hides_realtime_flows_until_secrets_are_asked_for(caplog):
    quiet = Quiet()
    with taddons.context(Dumper(), Tracker(), quiet) as tctx, caplog.at_level(logging.INFO, logger="rtproxy"):
        tctx.configure(quiet, rt_show_secrets=False)
        assert tctx.options.dumper_filter == REALTIME_FLOWS_HIDDEN
        tctx.configure(quiet, rt_show_secrets=True)
        assert tctx.options.dumper_filter == ""
        assert "hidden (their URLs carry the apikey)" in caplog.text


def test_a_users_own_dumper_filter_is_kept_with_a_warning(caplog):
    quiet = Quiet()
    with (
        taddons.context(Dumper(), Tracker(), quiet) as tctx,
        caplog.at_level(logging.WARNING, logger="rtproxy"),
    ):
        tctx.configure(quiet, dumper_filter="~u /api")
        assert tctx.options.dumper_filter == "~u /api"
        [record] = [r for r in caplog.records if r.name == "rtproxy"]
        assert "your dumper_filter lets mitmproxy print Realtime flows" in record.getMessage()
        assert "cannot cover what mitmproxy prints of other hosts' traffic" in record.getMessage()


def test_every_record_is_redacted_its_traceback_too():
    handler_out = []

    class Keep(logging.Handler):
        def emit(self, record):
            handler_out.append(self.format(record))

    handler = Keep()
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    handler.addFilter(RedactRecords())
    log = logging.getLogger("rtproxy.test-quiet")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.info("rtproxy's own line: join realtime:room-%s", TOKEN)
        try:
            raise KeyError(f'["1", "1", "realtime:boom-{TOKEN}", "phx_join", {{}}]')
        except KeyError:
            log.exception("rtproxy internal error")
    finally:
        log.removeHandler(handler)
    text = "\n".join(handler_out)
    assert "Traceback" in text and "KeyError" in text and "realtime:boom-<jwt role=anon" in text
    assert TOKEN not in text and TOKEN.split(".")[2] not in text


def test_loopback_hosts():
    assert all(map(loopback, ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost", "LOCALHOST"]))
    assert not any(map(loopback, ["", "0.0.0.0", "::", "192.168.1.20", "example.com", "*"]))


def _get(url: str, token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


async def test_mitmweb_login_url_is_shown(local_server, mitmdump, anon_key):
    """mitmweb with rtproxy on a loopback UI, no web_password: the URL mitmweb prints logs in (its token
    is the user's own key to their own tool), while a client's apikey in the same log stays redacted."""
    local_server.config.accept_any_apikey = True
    web = await mitmdump(
        f"rt_supabase_url={local_server.url}",
        "web_open_browser=false",
        program=MITMWEB,
        extra=("--web-host", "127.0.0.1", "--web-port", str(free_port())),
    )
    url = (await web.wait_for(r"Web server listening at (http://127\.0\.0\.1:\d+/\?token=[0-9a-f]+)$")).group(
        1
    )
    status, page = await asyncio.to_thread(_get, url)
    assert status == 200 and "mitmproxy" in page.lower() and "login" not in page.lower()
    token = url.split("token=", 1)[1]
    assert (await asyncio.to_thread(_get, url.split("?")[0] + "?token=wrong"))[0] == 403

    async with connect(f"ws://127.0.0.1:{web.port}/realtime/v1/websocket?apikey={anon_key}&vsn=1.0.0") as ws:
        await ws.send(json.dumps({"topic": "phoenix", "event": "heartbeat", "payload": {}, "ref": "1"}))
        await asyncio.wait_for(ws.recv(), TIMEOUT)
    await web.wait_for(r"closed by client")
    status, flows = await asyncio.to_thread(_get, url.split("?")[0] + "flows", token)
    assert status == 200 and len(json.loads(flows)) == 1
    assert re.search(r"connect http://\S+apikey=\[redacted\]", web.output)
    assert anon_key not in web.output and anon_key.split(".")[2] not in web.output
