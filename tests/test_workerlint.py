"""rtproxy_tools.workerlint: the static reading of a Worker's source, over the defect fixtures in
tests/workers/defects/ (each folder's expect.json names its hits) and over the forms it must stay quiet on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rtproxy_core.rules import ORDER
from rtproxy_tools.workerlint import PATTERNS, Pattern, SourceHit, blank_comments, read_sources

DEFECTS = Path(__file__).parent / "workers" / "defects"
FIXTURES = sorted(p.name for p in DEFECTS.iterdir() if p.is_dir())
FORMS = {"ts-project", "service-worker", "pages", "dashboard"}
# Codes a hit may name that are no finding rule: apikey-replaced is a note (the Worker's key makes any client
# key pass); close-not-forwarded is the hop rule another change adds.
NOTE_CODES = {"apikey-replaced", "close-not-forwarded"}


def sources(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): p.read_text()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "expect.json"
    }


def expect(name: str) -> dict[str, object]:
    data: dict[str, object] = json.loads((DEFECTS / name / "expect.json").read_text())
    return data


def hits_of(src: str, name: str = "index.js", **more: str) -> list[tuple[str, int]]:
    return [(h.pattern.value, h.line) for h in read_sources({name: src, **more})]


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_hits_are_the_expected_ones(name: str) -> None:
    folder = DEFECTS / name
    got = [(h.pattern.value, h.file, h.line) for h in read_sources(sources(folder))]
    static = expect(name)["static"]
    assert isinstance(static, list)
    want = sorted((s["file"], s["line"], s["pattern"]) for s in static)
    assert got == [(p, f, n) for f, n, p in want]


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_expectations_are_well_formed(name: str) -> None:
    e = expect(name)
    assert {"form", "defect", "findings", "not", "static"} <= set(e) <= {
        "form", "defect", "findings", "not", "static", "notes", "incomplete",
    }  # fmt: skip
    assert e["form"] in FORMS
    findings, nots = e["findings"], e["not"]
    assert isinstance(findings, list) and isinstance(nots, list)
    assert not set(findings) & set(nots)
    assert set(findings) | set(nots) <= set(ORDER) | NOTE_CODES
    static = e["static"]
    assert isinstance(static, list)
    for s in static:
        # each static hit's code is among the findings rtworker check must report, or a note it prints
        code = PATTERNS[Pattern(s["pattern"])][0]
        assert code in findings or code in NOTE_CODES and e.get("notes")
        lines = (DEFECTS / name / s["file"]).read_text().splitlines()
        assert 1 <= s["line"] <= len(lines)
    if name.startswith("correct-"):
        assert findings == [] and static == []


def test_fixtures_read_supabase_url_from_env_but_one() -> None:
    hard = "https://abcdefghijklmnopqrstu.supabase.co"
    for name in FIXTURES:
        text = "\n".join(t for n, t in sources(DEFECTS / name).items() if n != "wrangler.toml")
        if name == "hardcoded-url":
            assert hard in text and "SUPABASE_URL" not in text
        else:
            assert "SUPABASE_URL" in text and "supabase.co" not in text, name


def test_fixtures_cover_every_form_and_pattern() -> None:
    assert {expect(n)["form"] for n in FIXTURES} == FORMS
    seen = {s["pattern"] for n in FIXTURES for s in expect(n)["static"]}  # type: ignore[attr-defined]
    assert seen == {p.value for p in Pattern}
    ts = [n for n in FIXTURES if expect(n)["form"] == "ts-project"]
    for n in ts:
        assert 'main = "src/index.ts"' in (DEFECTS / n / "wrangler.toml").read_text()
        assert 'from "./' in (DEFECTS / n / "src" / "index.ts").read_text()  # imports a second file


def test_the_pattern_table() -> None:
    assert set(PATTERNS) == set(Pattern)
    for code, text in PATTERNS.values():
        assert code in set(ORDER) | NOTE_CODES
        assert text and "\n" not in text


PASS_THROUGH = """\
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const upstream = new URL(url.pathname + url.search, env.SUPABASE_URL);
    return fetch(new Request(upstream, request));
  },
};
"""


def test_a_correct_pass_through_has_no_hit() -> None:
    assert hits_of(PASS_THROUGH) == []
    assert hits_of(PASS_THROUGH, "worker.ts") == []


def test_a_ws_replace_used_only_for_logging_is_no_hit() -> None:
    src = """\
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const wsUrl = env.SUPABASE_URL.replace('https://', 'wss://');
    console.log('realtime at', wsUrl, env.SUPABASE_URL.replace('https://', 'wss://'));
    return fetch(new Request(env.SUPABASE_URL + url.pathname + url.search, request));
  },
};
"""
    assert hits_of(src) == []


@pytest.mark.parametrize(
    "build",
    [
        "const target = env.SUPABASE_URL.replace(/^http/, 'ws') + url.pathname + url.search;",
        "const target = `wss://${new URL(env.SUPABASE_URL).host}${url.pathname}${url.search}`;",
        "const target = new URL(url.pathname + url.search, env.SUPABASE_URL); target.protocol = 'wss:';",
    ],
)
def test_ws_urls_built_in_the_ways_users_write_them(build: str) -> None:
    src = f"""\
export default {{
  async fetch(request, env) {{
    const url = new URL(request.url);
    {build}
    const upstreamRequest = new Request(target, request);
    return fetch(upstreamRequest);
  }},
}};
"""
    assert hits_of(src) == [("fetch-ws-url", 6)]


def test_a_ws_url_turned_back_to_https_is_no_hit() -> None:
    src = """\
const ws = SUPABASE_URL.replace('https://', 'wss://');
const back = ws.replace('wss://', 'https://');
addEventListener('fetch', (e) => e.respondWith(fetch(back + new URL(e.request.url).search)));
"""
    assert [p for p, _ in hits_of(src, "worker.js")] == []


def test_url_search_appended_on_a_later_line_keeps_the_query() -> None:
    src = """\
export async function onRequest({ request, env }) {
  const incoming = new URL(request.url);
  const target = new URL(incoming.pathname, env.SUPABASE_URL);

  target.search = incoming.search;
  return fetch(new Request(target, request));
}
"""
    assert hits_of(src, "functions/[[path]].js") == []
    dropped = src.replace("  target.search = incoming.search;\n", "\n")
    assert hits_of(dropped, "functions/[[path]].js") == [("query-dropped", 3)]


def test_an_allow_list_with_upgrade_is_no_hit() -> None:
    src = """\
const ALLOWED = new Set(['apikey', 'authorization', 'content-type', 'upgrade', 'connection',
  'sec-websocket-key', 'sec-websocket-version']);
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const headers = new Headers();
    for (const [k, v] of request.headers) if (ALLOWED.has(k)) headers.set(k, v);
    return fetch(env.SUPABASE_URL + url.pathname + url.search, { method: request.method, headers });
  },
};
"""
    assert hits_of(src) == []
    without = src.replace("'upgrade', ", "")
    assert hits_of(without) == [("header-allowlist", 1)]


def test_an_allow_list_for_response_cors_only_is_no_hit() -> None:
    src = """\
const EXPOSED = ['content-type', 'x-client-info'];
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const resp = await fetch(new Request(new URL(url.pathname + url.search, env.SUPABASE_URL), request));
    if (resp.status === 101) return resp;
    const out = new Response(resp.body, { status: resp.status, headers: resp.headers });
    out.headers.set('Access-Control-Expose-Headers', EXPOSED.join(', '));
    return out;
  },
};
"""
    assert hits_of(src) == []


def test_a_response_rebuilt_from_the_response_itself_keeps_its_websocket() -> None:
    # workerd's Response constructor copies webSocket from a Response passed as init (http.c++).
    src = """\
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const resp = await fetch(new Request(new URL(url.pathname + url.search, env.SUPABASE_URL), request));
    const out = new Response(resp.body, resp);
    out.headers.set('Access-Control-Allow-Origin', '*');
    return out;
  },
};
"""
    assert hits_of(src) == []
    rebuilt = src.replace("new Response(resp.body, resp)", "new Response(resp.body, { status: resp.status })")
    assert hits_of(rebuilt) == [("response-rebuilt", 5)]
    with_ws = rebuilt.replace("{ status: resp.status }", "{ status: resp.status, webSocket: resp.webSocket }")
    assert hits_of(with_ws) == []


def test_upstream_websocket_of_a_response_is_no_hit() -> None:
    src = """\
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const upstreamResponse = await fetch(new URL(url.pathname + url.search, env.SUPABASE_URL), request);
    const ws = upstreamResponse.webSocket;
    return new Response(null, { status: 101, webSocket: ws });
  },
};
"""
    assert hits_of(src) == []
    assert hits_of(src.replace("upstreamResponse.webSocket", "request.webSocket")) == [
        ("request-websocket", 5)
    ]


RELAY = """\
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const upstream = new WebSocket(new URL(url.pathname + url.search, env.SUPABASE_URL).toString());
    const [client, server] = Object.values(new WebSocketPair());
    server.accept();
    const queue = [];
    upstream.addEventListener('open', () => queue.splice(0).forEach((m) => upstream.send(m)));
    server.addEventListener('message', (e) => {
      if (upstream.readyState === WebSocket.OPEN) upstream.send(e.data);
      else queue.push(e.data);
    });
    upstream.addEventListener('message', (e) => server.send(e.data));
    server.addEventListener('close', (e) => upstream.close(e.code === 1005 ? 1000 : e.code, e.reason));
    upstream.addEventListener('close', (e) => server.close(e.code === 1006 ? 1011 : e.code, e.reason));
    await new Promise((resolve) => upstream.addEventListener('open', resolve));
    return new Response(null, { status: 101, webSocket: client });
  },
};
"""


def test_a_relay_that_queues_maps_codes_and_waits_is_no_hit() -> None:
    assert hits_of(RELAY) == []


def test_relay_defects_each_on_its_line() -> None:
    no_wait = RELAY.replace(
        "    await new Promise((resolve) => upstream.addEventListener('open', resolve));\n", ""
    )
    assert hits_of(no_wait) == [("early-101", 16)]
    no_queue = RELAY.replace("      else queue.push(e.data);\n", "").replace(
        "queue.splice(0).forEach", "[].forEach"
    )
    assert hits_of(no_queue) == [("send-if-open", 10)]
    as_is = RELAY.replace("e.code === 1005 ? 1000 : e.code", "e.code")
    assert hits_of(as_is) == [("close-code-forwarded", 14)]
    no_close = "".join(line for line in RELAY.splitlines(True) if "'close'" not in line)
    assert hits_of(no_close) == [("no-close-listener", 5)]


@pytest.mark.parametrize(
    "send",
    [
        "upstream.send(String(e.data))",
        "upstream.send(e.data.toString())",
        "upstream.send(JSON.stringify(e.data))",
        "upstream.send(await e.data.text())",
    ],
)
def test_binary_turned_into_text(send: str) -> None:
    src = RELAY.replace(
        "if (upstream.readyState === WebSocket.OPEN) upstream.send(e.data);", f"if (1) {send};"
    )
    src = src.replace("(e) => {", "async (e) => {")
    assert hits_of(src) == [("binary-as-text", 10)]


def test_text_of_a_message_for_logging_is_no_hit() -> None:
    src = RELAY.replace(
        "    server.accept();\n",
        "    server.accept();\n    server.addEventListener('message', (e) => console.log(String(e.data)));\n",
    )
    assert hits_of(src) == []


def test_apikey_and_vsn_rewrites() -> None:
    src = """\
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const target = new URL(url.pathname + url.search, env.SUPABASE_URL);
    target.searchParams.set('apikey', request.headers.get('apikey') ?? '');
    const headers = new Headers(request.headers);
    headers.set('apikey', env.SUPABASE_ANON_KEY);
    target.searchParams.set('vsn', '1.0.0');
    target.searchParams.delete('vsn');
    return fetch(new Request(target, { headers, method: request.method }));
  },
};
"""
    assert hits_of(src) == [("apikey-replaced", 7), ("vsn-forced", 8), ("vsn-removed", 9)]
    literal = PASS_THROUGH.replace(
        "url.pathname + url.search", "'/realtime/v1/websocket?vsn=1.0.0' + url.search"
    )
    assert hits_of(literal) == [("vsn-forced", 4)]


def test_env_vars_are_read_against_the_wrangler_config() -> None:
    src = """\
export default {
  async fetch(request, env) {
    const origins = env.ALLOWED_ORIGINS.split(',');
    const safe = (env.OTHER ?? '').split(',');
    return fetch(new Request(new URL(new URL(request.url).pathname + new URL(request.url).search, env.SUPABASE_URL), request));
  },
};
"""
    toml = 'main = "index.js"\n[vars]\nSUPABASE_URL = "https://example.supabase.co"\n'
    assert hits_of(src) == []  # no config: the dashboard holds the vars, nothing to read against
    assert hits_of(src, **{"wrangler.toml": toml}) == [("env-undeclared", 3)]
    declared = toml + 'ALLOWED_ORIGINS = "https://a.example"\n'
    assert hits_of(src, **{"wrangler.toml": declared}) == []


def test_comments_are_not_read() -> None:
    src = PASS_THROUGH.replace(
        "    return fetch",
        "    // return fetch(env.SUPABASE_URL.replace('https://', 'wss://'));\n    /* request.webSocket */\n    return fetch",
    )
    assert hits_of(src) == []
    blank = blank_comments("const a = 'x//y'; // c\nconst r = /\\/\\//; /* b */ const b = 1;\n")
    assert blank == "const a = 'x//y';     \nconst r = /\\/\\//;         const b = 1;\n"


def test_a_hit_line_is_stripped_cut_and_redacted() -> None:
    jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJyb2xlIjoiYW5vbiJ9.c2lnbmF0dXJlc2lnbmF0dXJl"
    src = PASS_THROUGH.replace(
        "    return fetch",
        f"    url.searchParams.set('vsn', '1.0.0'); headers.set('apikey', SUPABASE_KEY || '{jwt}');\n    return fetch",
    )
    hits = read_sources({"index.js": src})
    assert {h.pattern for h in hits} == {Pattern.VSN_FORCED, Pattern.APIKEY_REPLACED}
    for h in hits:
        assert isinstance(h, SourceHit) and h.line == 5
        assert jwt not in h.text and "eyJhbGci" not in h.text
        assert h.text.startswith("url.searchParams") and len(h.text) <= 120


def test_a_rebuild_after_a_return_for_non_upgrades_only_is_flagged() -> None:
    src = """\
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (request.headers.get('Upgrade') !== 'websocket') {
      return fetch(new Request(new URL(url.pathname + url.search, env.SUPABASE_URL), request));
    }
    const resp = await fetch(new Request(new URL(url.pathname + url.search, env.SUPABASE_URL), request));
    return new Response(resp.body, { status: resp.status, headers: { 'x-proxied': '1' } });
  },
};
"""
    assert hits_of(src) == [("response-rebuilt", 8)]
    upgrades_first = src.replace("!== 'websocket'", "=== 'websocket'")
    assert hits_of(upgrades_first) == []


def test_a_rebuild_in_a_then_callback() -> None:
    src = """\
addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  const target = SUPABASE_URL + url.pathname + url.search;
  event.respondWith(fetch(new Request(target, event.request)).then((r) => new Response(r.body, { status: r.status })));
});
"""
    assert hits_of(src, "worker.js") == [("response-rebuilt", 4)]


def test_relay_variants_users_write() -> None:
    early_return = RELAY.replace(
        "      if (upstream.readyState === WebSocket.OPEN) upstream.send(e.data);\n      else queue.push(e.data);\n",
        "      if (upstream.readyState !== WebSocket.OPEN) return;\n      upstream.send(e.data);\n",
    ).replace("queue.splice(0).forEach", "[].forEach")
    assert hits_of(early_return) == [("send-if-open", 10)]
    fallback = RELAY.replace("e.code === 1005 ? 1000 : e.code", "e.code || 1000")
    assert hits_of(fallback) == [("close-code-forwarded", 14)]
    decoded = RELAY.replace("server.send(e.data)", "server.send(new TextDecoder().decode(e.data))")
    assert hits_of(decoded) == [("binary-as-text", 13)]


def test_a_pair_only_used_to_answer_a_close_is_no_relay() -> None:
    src = """\
export default {
  async fetch(request) {
    const [client, server] = Object.values(new WebSocketPair());
    server.accept();
    server.close(4000, 'maintenance');
    return new Response(null, { status: 101, webSocket: client });
  },
};
"""
    assert hits_of(src) == []


def test_env_vars_declared_in_a_wrangler_jsonc() -> None:
    src = "export default { fetch: (r, env) => fetch(new Request(r.url.replace(new URL(r.url).origin, "
    src += "env.SUPABASE_URL), r), { cf: { x: env.ORIGINS.split(',') } }) };\n"
    jsonc = '{\n  // bindings\n  "main": "index.js",\n  "vars": { "SUPABASE_URL": "https://example.supabase.co", },\n}\n'
    assert hits_of(src, **{"wrangler.jsonc": jsonc}) == [("env-undeclared", 1)]
    declared = jsonc.replace('"SUPABASE_URL"', '"ORIGINS": "a", "SUPABASE_URL"')
    assert hits_of(src, **{"wrangler.jsonc": declared}) == []


def test_a_destructured_pathname_without_search() -> None:
    src = """\
export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const { pathname } = new URL(request.url);
    return fetch(new Request(`${env.SUPABASE_URL}${pathname}`, request));
  },
};
"""
    assert hits_of(src, "src/index.ts") == [("query-dropped", 4)]
    kept = src.replace("{ pathname }", "{ pathname, search }").replace("${pathname}", "${pathname}${search}")
    assert hits_of(kept, "src/index.ts") == []


def test_the_projects_own_workers() -> None:
    # worker/: the corrected Worker reads clean; the design's relay and its as-written Worker show the
    # defects their headers list (query dropped, close codes forwarded, frames dropped before the upstream
    # is open, the 101 first; request.webSocket).
    root = Path(__file__).parent.parent / "worker"

    def read(rel: str) -> list[tuple[str, int]]:
        return hits_of((root / rel).read_text(), rel)

    assert read("src/index.js") == []
    relay = read("fixtures/relay.js")
    assert [p for p, _ in relay] == [
        "query-dropped",
        "close-code-forwarded",
        "send-if-open",
        "close-code-forwarded",
        "early-101",
    ]
    assert [p for p, _ in read("fixtures/as-written.js")] == ["query-dropped", "request-websocket"]
