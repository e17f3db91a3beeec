"""mitmweb's own HTTP API, as its UI calls it (mitmproxy/tools/web/app.py): `POST /commands/<name>`
(ExecuteCommand: `commands.call_strings`), `PUT /options` (the Options editor), `GET /flows`. Auth is the
web_password as a Bearer token; writes carry tornado's XSRF cookie and header, as the UI does."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.parse
import urllib.request

from conftest import MITMWEB

PASSWORD = "rtproxy-test"
# tornado's check_xsrf_cookie compares the header with the cookie; an unversioned token is taken as is.
XSRF = "rtproxy-test-xsrf"


def free_port() -> int:
    """mitmweb names its UI port 0 when asked for 0, so pick one (loopback)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def start_mitmweb(mitmdump, *sets: str, **kw):
    """mitmweb with rtproxy (the `mitmdump` fixture's process, run as mitmweb); returns (proc, WebApi)."""
    web = await mitmdump(
        *sets,
        f"web_password={PASSWORD}",
        "web_open_browser=false",
        program=MITMWEB,
        extra=("--web-host", "127.0.0.1", "--web-port", str(free_port()), *kw.pop("extra", ())),
        **kw,
    )
    ui = (await web.wait_for(r"Web server listening at (http://127\.0\.0\.1:\d+)/")).group(1)
    return web, WebApi(ui)


class WebApi:
    def __init__(self, base: str, token: str = PASSWORD) -> None:
        """`token`: the web_password, or the login token mitmweb printed."""
        self.base = base
        self.token = token

    def _request(self, method: str, path: str, body: object = None) -> object:
        headers = {"Authorization": f"Bearer {self.token}"}
        if method != "GET":
            headers |= {
                "Cookie": f"_mitmproxy_xsrf={XSRF}",
                "X-XSRFToken": XSRF,
                "Content-Type": "application/json",
            }
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.base}{path}", data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            return {"status": e.code, "error": e.read().decode()}
        return json.loads(raw) if raw.strip() else None

    async def command(self, name: str, *args: str) -> dict:
        """{"value": ...} or {"error": "..."}, as mitmweb answers its UI."""
        return await asyncio.to_thread(self._request, "POST", f"/commands/{name}", {"arguments": list(args)})

    async def set_options(self, **values: object) -> object:
        return await asyncio.to_thread(self._request, "PUT", "/options", values)

    async def update_flow(self, flow_id: str, **fields: object) -> object:
        """What the UI sends when the user marks a flow or edits its comment."""
        return await asyncio.to_thread(self._request, "PUT", f"/flows/{flow_id}", fields)

    async def flows(self) -> list[dict]:
        return await asyncio.to_thread(self._request, "GET", "/flows")

    async def messages(self, flow_id: str, view: str = "auto") -> list[dict]:
        """The flow's WebSocket messages as mitmweb's WebSocket tab gets them in VIEW (a View menu name):
        [{"text", "view_name", "from_client", "timestamp", ...}, ...]."""
        name = urllib.parse.quote(view.lower(), safe="-_.!~*'()")  # the UI's encodeURIComponent
        path = f"/flows/{flow_id}/messages/content/{name}.json"
        return await asyncio.to_thread(self._request, "GET", path)  # type: ignore[return-value]
