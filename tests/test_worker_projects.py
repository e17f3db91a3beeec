"""Workers as their users have them, run by rtworker in workerd (addon/rtproxy_tools/workerproject.py,
pagesrouter.py, worker.py): a TypeScript wrangler project, a dashboard service-worker script, Pages
Functions and a one-file module (tests/workers/forms/), each loaded, bundled with esbuild and run in front
of the local Realtime server, where the real `realtime` client reaches SUBSCRIBED through it; [vars],
.dev.vars and KV seen by the Worker; the lines for bindings rtworker cannot serve; the egress guard (a
non-loopback fetch() or WebSocket is refused and logged, redacted); a local CA trusted for https://; the
jsonc and .dev.vars readers; one-line errors for bad input.

Without workerd (or esbuild) these tests are skipped, except under CI (CI=true), where they fail.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import urllib.request
from pathlib import Path

import pytest
from conftest import IN_CI, TIMEOUT, command, run_to_exit
from realtime import AsyncRealtimeClient
from rtproxy_local.tls import LocalTLS
from rtproxy_tools.worker import Workerd
from rtproxy_tools.workerbase import WorkerError, find_esbuild
from rtproxy_tools.workerconfig import Config, config_text
from rtproxy_tools.workerproject import bundle, load_project, read_dev_vars, strip_jsonc

# test_workerd skips (or, under CI, fails) when workerd is missing: importing it skips this module too
from test_workerd import MISSING, RtWorker, Statuses, subscribe_and_broadcast

FORMS = Path(__file__).parent / "workers" / "forms"
RTWORKER = command("rtworker")
try:
    find_esbuild()
    NO_ESBUILD = ""
except WorkerError as e:
    NO_ESBUILD = str(e)
if NO_ESBUILD and not IN_CI:
    pytest.skip(f"the Worker project tests need esbuild ({NO_ESBUILD})", allow_module_level=True)


@pytest.fixture(autouse=True)
def _prerequisites():
    if MISSING or NO_ESBUILD:
        pytest.fail(f"CI is set but workerd/esbuild cannot run: {MISSING or NO_ESBUILD}", pytrace=False)


async def get(url: str, method: str = "GET") -> tuple[int, str]:
    def fetch() -> tuple[int, str]:
        request = urllib.request.Request(url, method=method)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=TIMEOUT) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    return await asyncio.to_thread(fetch)


async def subscribes(w: Workerd, key: str) -> None:
    client = AsyncRealtimeClient(
        f"ws://127.0.0.1:{w.port}/realtime/v1", token=key, auto_reconnect=False, max_retries=1, timeout=3
    )
    await client.connect()
    statuses = Statuses()
    try:
        assert await subscribe_and_broadcast(client, statuses) == {"x": 1}
        assert statuses.seen == ["SUBSCRIBED"]
    finally:
        await client.close()


# ------------------------------------------------------------------------------------------ the four forms


@pytest.mark.parametrize(
    ("path", "form"),
    [
        ("ts-project", "module"),
        ("service-worker.js", "service-worker"),
        ("pages", "pages"),
        ("dashboard.js", "module"),
    ],
)
async def test_each_form_passes_realtime_through(path, form, local_server, anon_key):
    project = load_project(FORMS / path)
    assert project.form == form
    assert not any("node_modules" in p.parts for p in project.sources) and project.sources
    async with Workerd(project, local_server.url) as w:
        await subscribes(w, anon_key)
        assert anon_key not in w.output


async def test_ts_project_vars_dev_vars_and_kv(local_server, anon_key):
    project = load_project(FORMS / "ts-project")
    assert project.config_file and project.config_file.name == "wrangler.toml"
    assert project.compat_date == "2025-06-01" and project.compat_flags == ["nodejs_compat"]
    assert project.kv == ["CACHE"] and project.unsupported == []
    assert project.secrets == {
        "SHARED_SECRET": "dummy-shared-secret",
        "DEBUG_TOKEN": "dummy-debug-token",
        "ALLOWED_ORIGINS": "http://127.0.0.1:5173",
    }
    assert "dummy-shared-secret" not in repr(project)
    async with Workerd(project, local_server.url, var_overrides={"DEBUG_TOKEN": "from --var"}) as w:
        assert w.compat_date == "2025-06-01" and "nodejs_compat" in w.compat_flags
        await subscribes(w, anon_key)
        status, body = await get(f"{w.url}/debug/env")
    assert status == 200, body
    seen = json.loads(body)
    assert seen == {
        "allowedOrigins": "http://127.0.0.1:5173",  # .dev.vars wins over [vars]
        "sharedSecret": "dummy-shared-secret",
        "debugToken": "from --var",  # --var wins over .dev.vars
        "limits": {"maxUpgrades": 5, "paths": ["/realtime/v1"]},  # a JSON [vars] value
        "upgrades": "1",  # the Worker's KV put, read back
        "hasMetadata": True,
        "listed": ["upgrades"],
    }


async def test_pages_routes_params_and_middleware(local_server):
    async with Workerd(FORMS / "pages", local_server.url) as w:
        assert (await get(f"{w.url}/debug/alice")) == (
            200,
            json.dumps(
                {"name": "alice", "middleware": "root", "functionPath": "/debug/alice"}, separators=(",", ":")
            ),
        )
        assert await get(f"{w.url}/debug/alice", "POST") == (201, "posted")
        assert await get(f"{w.url}/realtime/v1/a/b") == (200, '{"path":["a","b"]}')
        status, body = await get(f"{w.url}/elsewhere")
        assert status == 404 and "serves no static assets" in body


async def test_service_worker_bindings_are_globals(local_server):
    async with Workerd(FORMS / "service-worker.js", local_server.url, var_overrides={"GREETING": "hi"}) as w:
        assert await get(f"{w.url}/debug/env") == (200, '{"form":"service-worker","greeting":"hi"}')


# ------------------------------------------------------------------------------------------ egress


BLOCKING_WORKER = """
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/ws") {
      try {
        const ws = new WebSocket(env.TARGET.replace("http", "ws"));
        const closed = await new Promise((resolve) => {
          ws.addEventListener("error", () => resolve("error"));
          ws.addEventListener("close", (e) => resolve("close " + e.code));
          ws.addEventListener("open", () => resolve("open"));
        });
        return new Response(closed);
      } catch (e) {
        return new Response("threw " + e.message);
      }
    }
    const r = await fetch(env.TARGET + "/realtime/v1/websocket?apikey=" + env.KEY + "&vsn=2.0.0");
    return new Response(r.status + " " + (await r.text()));
  },
};
"""


async def test_egress_blocks_non_loopback_and_says_so(tmp_path, anon_key, local_server):
    script = tmp_path / "reach.mjs"
    script.write_text(BLOCKING_WORKER)
    vars_ = {"TARGET": "http://203.0.113.1", "KEY": anon_key}
    async with Workerd(script, var_overrides=vars_) as w:
        status, body = await get(f"{w.url}/")
        assert status == 200 and body.startswith("502 rtworker blocked this request to http://203.0.113.1")
        line = (await w.wait_for(r"^rtworker: the Worker tried to reach .*", TIMEOUT)).group(0)
        assert line.startswith(
            "rtworker: the Worker tried to reach http://203.0.113.1/realtime/v1/websocket?apikey="
        )
        assert line.endswith(": blocked (only loopback; --allow-net lets it)")
        assert anon_key not in line and anon_key not in w.output
        # `new WebSocket(url)` goes through the globalOutbound too: refused the same way
        status, body = await get(f"{w.url}/ws")
        assert status == 200 and body != "open", body
        # (workerd hands it to the globalOutbound as an http:// request)
        await w.wait_for(
            r"^rtworker: the Worker tried to reach (ws|http)://203\.0\.113\.1/?: blocked", TIMEOUT
        )
        assert len(w.blocked) == 2
    async with Workerd(script, var_overrides={"TARGET": local_server.url, "KEY": anon_key}) as w:
        status, body = await get(f"{w.url}/")
        assert status == 200 and not body.startswith("502"), body  # loopback goes through
        assert w.blocked == []


# ------------------------------------------------------------------------------------------ TLS


async def test_trusted_ca_reaches_a_local_https_server(tmp_path):
    """The local server's throwaway CA (rtproxy_local.tls, what rtworker check uses), trusted by workerd."""
    tls = LocalTLS.create()
    ca_pem, context = tls.ca_pem, tls.server_context()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\nover tls!")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    script = tmp_path / "tls.mjs"
    script.write_text(
        "export default { async fetch(req, env) {\n"
        "  try { const r = await fetch(env.TARGET); return new Response(r.status + ' ' + await r.text()); }\n"
        "  catch (e) { return new Response('failed ' + e.message); } } };\n"
    )
    target = {"TARGET": f"https://127.0.0.1:{port}/"}
    async with server:
        async with Workerd(script, var_overrides=target, trusted_ca=ca_pem) as w:
            assert await get(w.url) == (200, "200 over tls!")
        async with Workerd(script, var_overrides=target) as w:
            status, body = await get(w.url)
            assert body.startswith("failed") or status >= 500, body  # not trusted without it


# ------------------------------------------------------------------------------------------ reading


def test_jsonc_config(tmp_path):
    text = """{
  // a comment, and a URL with // in a string
  "main": "worker.ts", /* block
  comment */ "compatibility_date": "2025-03-01",
  "vars": { "SUPABASE_URL": "https://x.supabase.co", "NOTE": "a /* not a comment */ string", "N": 3, },
  "compatibility_flags": ["nodejs_compat",],
  "kv_namespaces": [{ "binding": "CACHE", "id": "abc" }],
  "d1_databases": [{ "binding": "DB", "database_id": "x" }],
  "r2_buckets": [{ "binding": "FILES", "bucket_name": "f" }],
  "durable_objects": { "bindings": [{ "name": "ROOMS", "class_name": "Room" }] },
  "ai": { "binding": "AI" },
  "env": { "staging": { "vars": {} } },
}
"""
    assert json.loads(strip_jsonc(text))["vars"]["NOTE"] == "a /* not a comment */ string"
    (tmp_path / "wrangler.jsonc").write_text(text)
    (tmp_path / "worker.ts").write_text("export default { fetch: () => new Response('ok') };\n")
    p = load_project(tmp_path)
    assert (p.form, p.entry.name, p.compat_date, p.compat_flags) == (
        "module",
        "worker.ts",
        "2025-03-01",
        ["nodejs_compat"],
    )
    assert p.vars == {"SUPABASE_URL": "https://x.supabase.co", "NOTE": "a /* not a comment */ string", "N": 3}
    assert p.kv == ["CACHE"]
    assert p.unsupported == [
        "binding DB (d1_databases): rtworker cannot serve it, env.DB is undefined in this run",
        "binding FILES (r2_buckets): rtworker cannot serve it, env.FILES is undefined in this run",
        "binding ROOMS (durable_objects): rtworker cannot serve it, env.ROOMS is undefined in this run",
        "binding AI (ai): rtworker cannot serve it, env.AI is undefined in this run",
        "[env.X] sections (staging): not read (out of scope); the top-level settings are used",
    ]


def test_dev_vars(tmp_path):
    f = tmp_path / ".dev.vars"
    f.write_text(
        "# comment\nA=plain # trailing\nexport B=\"two\\nlines\"\nC='single # kept'\n\nD = spaced \nE=\n"
        'F="https://x.co/a#b"\n'
    )
    assert read_dev_vars(f) == {
        "A": "plain",
        "B": "two\nlines",
        "C": "single # kept",
        "D": "spaced",
        "E": "",
        "F": "https://x.co/a#b",
    }


def test_a_file_inside_a_project_takes_its_config(tmp_path):
    (tmp_path / "wrangler.toml").write_text(
        'main = "src/a.js"\ncompatibility_date = "2025-02-02"\n[vars]\nX = "1"\n'
    )
    (tmp_path / "src").mkdir()
    other = tmp_path / "src" / "b.js"
    other.write_text("export default { fetch() { return new Response('b') } };\n")
    p = load_project(other)
    assert (p.entry, p.compat_date, p.vars) == (other, "2025-02-02", {"X": "1"})


@pytest.mark.parametrize(
    ("files", "target", "said"),
    [
        ({}, "missing", "missing: no such file or folder"),
        ({"x.txt": "hi"}, "x.txt", "a Worker file is .js, .mjs, .cjs, .ts or .mts"),
        (
            {"readme.md": "hi"},
            ".",
            "no wrangler.json, wrangler.jsonc or wrangler.toml, and no functions/ folder",
        ),
        ({"wrangler.toml": 'main = "a.js"\nvars = [\n'}, ".", "wrangler.toml: not valid TOML:"),
        ({"wrangler.jsonc": '{\n  "main": "a.js",\n  oops\n}'}, ".", "wrangler.jsonc:3: not valid JSON"),
        ({"wrangler.toml": 'name = "x"\n'}, ".", "wrangler.toml: no `main`"),
        ({"wrangler.toml": 'main = "nope.js"\n'}, ".", "main = 'nope.js': no such file"),
        ({"w.js": "console.log(1)\n"}, "w.js", "no `export default { fetch }` and no addEventListener"),
        (
            {".dev.vars": "nonsense\n", "wrangler.toml": 'main = "a.js"\n', "a.js": "export default {}"},
            ".",
            ".dev.vars:1: expected KEY=VALUE",
        ),
    ],
)
def test_bad_input_one_line(tmp_path, files, target, said):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(WorkerError) as e:
        load_project(tmp_path / target)
    assert e.value.status == 2 and said in str(e.value) and "\n" not in str(e.value), str(e.value)


async def test_esbuild_error_names_file_and_line(tmp_path):
    (tmp_path / "w.ts").write_text("import { x } from './lib';\nexport default { fetch() { return x } };\n")
    (tmp_path / "lib.ts").write_text("export const x = ;\n")
    with pytest.raises(WorkerError) as e:
        await bundle(load_project(tmp_path / "w.ts"), tmp_path / "out")
    assert str(e.value).startswith("esbuild: lib.ts:1:17: Unexpected"), str(e.value)


async def test_rtworker_prints_form_date_and_unsupported_lines(tmp_path):
    (tmp_path / "wrangler.toml").write_text(
        'main = "w.ts"\ncompatibility_date = "2099-01-01"\n[[d1_databases]]\nbinding = "DB"\ndatabase_id = "x"\n'
    )
    (tmp_path / "w.ts").write_text("export default { fetch: () => new Response('ok') };\n")
    code, out = await run_to_exit([RTWORKER, "--worker", str(tmp_path), "--port", "0"])
    assert (
        code == 2
        and "compatibility date 2099-01-01 (wrangler.toml's) is newer than the installed workerd" in out
    )
    w = await RtWorker(
        "--worker", str(tmp_path), "--port", "0", "--compat-date", "2025-01-01", "--var", "A=b"
    ).start()
    out = w.output
    assert await w.stop() == 0
    assert (
        "rtworker: binding DB (d1_databases): rtworker cannot serve it, env.DB is undefined in this run"
        in out
    )
    assert "module form, in workerd, compatibility date 2025-01-01 (--compat-date)" in out
    assert "env: A" in out


def test_pages_project_with_a_wrangler_config(tmp_path):
    (tmp_path / "wrangler.toml").write_text(
        'pages_build_output_dir = "./public"\ncompatibility_date = "2025-04-01"\n[vars]\nA = "1"\n'
    )
    (tmp_path / "functions").mkdir()
    (tmp_path / "functions" / "index.ts").write_text("export const onRequest = () => new Response('hi');\n")
    p = load_project(tmp_path)
    assert (p.form, p.entry, p.compat_date, p.vars) == (
        "pages",
        tmp_path / "functions",
        "2025-04-01",
        {"A": "1"},
    )


def test_config_allow_net_and_trusted_ca():
    ca = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    text = config_text(Config(script="w.mjs", compat_date="2025-01-01", kv=["CACHE"], trusted_ca=ca))
    assert 'allow = ["local"]' in text and '(name = "ALLOW_NET", json = "false")' in text
    assert 'globalOutbound = "egress"' in text and '(name = "CACHE", kvNamespace = "kv-CACHE")' in text
    assert 'trustedCertificates = ["-----BEGIN CERTIFICATE-----\\nAAAA\\n' in text
    text = config_text(
        Config(script="w.mjs", compat_date="2025-01-01", allow=["public", "local"], allow_net=True)
    )
    assert 'allow = ["public", "local"]' in text and '(name = "ALLOW_NET", json = "true")' in text
