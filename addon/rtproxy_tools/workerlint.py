"""A static reading of a Cloudflare Worker's source for the ways Workers in front of Supabase break Realtime.

Sans-I/O: `read_sources({name: text})` takes the project's files (JS or TS, and its wrangler.toml when
there is one) and returns one `SourceHit` per place a known defect shows, with the 1-based line of the
user's file. `rtworker check` runs the Worker for the verdict; these hits say where in the source to look.

The reading is regex over the code with its comments blanked, plus light tracking of variables within a
file (what a `const`/`let`/`var` is built from, and later `x.search = …` / `x.pathname = …` assignments to
it). It is not a parser: it reads JS as users write it and stays quiet on the correct form (a pass-through
`return fetch(new Request(upstream, request))` with path and query kept).

Runtime facts the patterns rest on (workerd, src/workerd/api/http.c++):
- fetch() of a ws:// or wss:// URL throws `TypeError: Fetch API cannot load: <url>` once the
  compatibility flag fetch_refuses_unknown_protocols is on (the default from 2021-11-10):
  `JSG_FAIL_REQUIRE(TypeError, kj::str("Fetch API cannot load: ", url));`. WebSockets are fetched
  with http(s) URLs and an `Upgrade: websocket` header.
- `new Response(body, {status: 101, ...})` without `webSocket` throws RangeError "Responses may only be
  constructed with status codes in the range 200 to 599, inclusive."; `new Response(body, otherResponse)`
  copies otherResponse's webSocket (Response::constructor, the `jsg::Ref<Response>` case), so that form is
  right and is not flagged.
- A Request has no webSocket: `request.webSocket` is undefined.
All three as the project's workerd (worker/package.json, 1.20261117.1) answers them, from a Worker run by rtworker.
"""

from __future__ import annotations

import bisect
import json
import re
import tomllib
from dataclasses import dataclass
from enum import StrEnum

from rtproxy_core.redact import Redactor

from rtproxy_tools.workerproject import strip_jsonc


class Pattern(StrEnum):
    FETCH_WS_URL = "fetch-ws-url"
    REQUEST_WEBSOCKET = "request-websocket"
    RESPONSE_REBUILT = "response-rebuilt"
    HEADER_ALLOWLIST = "header-allowlist"
    QUERY_DROPPED = "query-dropped"
    APIKEY_REPLACED = "apikey-replaced"
    VSN_FORCED = "vsn-forced"
    VSN_REMOVED = "vsn-removed"
    EARLY_101 = "early-101"
    SEND_IF_OPEN = "send-if-open"
    CLOSE_CODE_FORWARDED = "close-code-forwarded"
    NO_CLOSE_LISTENER = "no-close-listener"
    BINARY_AS_TEXT = "binary-as-text"
    ENV_UNDECLARED = "env-undeclared"


# The one table: pattern → (the finding code it is evidence of, what the source does).
PATTERNS: dict[Pattern, tuple[str, str]] = {
    Pattern.FETCH_WS_URL: (
        "worker-exception",
        "fetch() of a ws:// or wss:// URL: deployed, it throws TypeError 'Fetch API cannot load'",
    ),
    Pattern.REQUEST_WEBSOCKET: (
        "worker-exception",
        "reads request.webSocket: a Request has no webSocket (only a fetch() Response or a WebSocketPair)",
    ),
    Pattern.RESPONSE_REBUILT: (
        "worker-exception",
        "rebuilds a response that may be the 101 without its webSocket: RangeError (status outside 200-599)",
    ),
    Pattern.HEADER_ALLOWLIST: (
        "upgrade-rejected",
        "copies only allow-listed request headers upstream, and the list has no Upgrade",
    ),
    Pattern.QUERY_DROPPED: (
        "apikey-missing",
        "builds the upstream URL from the path without the query (apikey and vsn are lost)",
    ),
    Pattern.APIKEY_REPLACED: (
        "apikey-replaced",
        "replaces the client's apikey with the Worker's own: any client key then passes",
    ),
    Pattern.VSN_FORCED: (
        "serializer-mismatch",
        "forces vsn=1.0.0 upstream while the client speaks its own vsn (2.0.0 for realtime-js ≥2.91)",
    ),
    Pattern.VSN_REMOVED: ("vsn-missing", "removes the vsn query parameter from the upstream URL"),
    Pattern.EARLY_101: (
        "early-101",
        "answers 101 from a WebSocketPair before the upstream WebSocket is open",
    ),
    Pattern.SEND_IF_OPEN: (
        "join-dropped-by-proxy",
        "forwards a client frame only if the upstream is already OPEN, with no queue: early frames are lost",
    ),
    Pattern.CLOSE_CODE_FORWARDED: (
        "reserved-close-code",
        "forwards close(event.code, …) as is: close() throws on 1005/1006, which may not be sent",
    ),
    Pattern.NO_CLOSE_LISTENER: (
        "close-not-forwarded",
        "relays a WebSocket pair with no close listener: neither side's close frame is forwarded",
    ),
    Pattern.BINARY_AS_TEXT: (
        "binary-as-text",
        "turns a relayed message into text (String(), toString(), JSON.stringify, .text()): binary is lost",
    ),
    Pattern.ENV_UNDECLARED: (
        "worker-exception",
        "calls a method on an env variable no wrangler config declares: TypeError on undefined",
    ),
}


@dataclass(frozen=True)
class SourceHit:
    pattern: Pattern
    code: str
    file: str
    line: int
    text: str


_SOURCE_EXT = (".js", ".mjs", ".ts", ".mts", ".jsx", ".tsx")
_REDACT = Redactor(False)
_REGEX_BEFORE = set("(,=:[!&|?{};+-*%<>~^") | {""}


def blank_comments(src: str) -> str:
    """The source with comments replaced by spaces (newlines kept), so offsets and lines stay the user's.
    Strings, template literals and regex literals are kept and skipped over."""
    out = list(src)
    i, n = 0, len(src)
    prev = ""  # the last non-space code character, to tell a regex literal from a division
    while i < n:
        c = src[i]
        if c == "/" and i + 1 < n and src[i + 1] in "/*":
            end = src.find("\n", i) if src[i + 1] == "/" else src.find("*/", i + 2)
            end = n if end < 0 else (end if src[i + 1] == "/" else end + 2)
            for j in range(i, end):
                if out[j] != "\n":
                    out[j] = " "
            i = end
            continue
        if c in "'\"`" or (c == "/" and prev in _REGEX_BEFORE):
            j, in_class = i + 1, False
            while j < n:
                d = src[j]
                if d == "\\":
                    j += 2
                    continue
                if c == "/" and d == "[":
                    in_class = True
                elif c == "/" and d == "]":
                    in_class = False
                elif d == c and not in_class or d == "\n" and c != "`":
                    break
                j += 1
            i, prev = j + 1, c
            continue
        if not c.isspace():
            prev = c if not (c.isalnum() or c in "_$") else "a"
        i += 1
    return "".join(out)


def _balanced(code: str, start: int) -> int:
    """The offset just past the bracket that closes the one at `start` (or the end of the text)."""
    depth, i, quote = 0, start, ""
    while i < len(code):
        c = code[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
        elif c in "'\"`":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return len(code)


def _first_arg(code: str, open_paren: int) -> str:
    """The first argument of the call whose `(` is at open_paren."""
    i = open_paren + 1
    end = _balanced(code, open_paren) - 1
    while i < end:
        c = code[i]
        if c in "([{":
            i = _balanced(code, i)
            continue
        if c in "'\"`":
            close = code.find(c, i + 1)
            i = close + 1 if close > 0 else end
            continue
        if c == ",":
            return code[open_paren + 1 : i]
        i += 1
    return code[open_paren + 1 : end]


_DECL_RE = re.compile(r"\b(?:const|let|var)\s+([A-Za-z_$][\w$]*)\s*(?::\s*[^=;\n]+?)?\s*=(?!=)")
_ASSIGN_RE = re.compile(r"(?<![.\w$])([A-Za-z_$][\w$]*)(\.[\w$.]+)?\s*(?:\+=|=(?![=>]))")
_IDENT_RE = re.compile(r"[A-Za-z_$][\w$]*")
_WS_LITERAL_RE = re.compile(r"""['"`}]wss?://""")  # `}`: a template's text after an interpolation
_SCHEME_REPLACE_RE = re.compile(r"""\.replace(?:All)?\(\s*(?:[^,]+?),\s*['"`](\w+)(?::|://)?['"`]\s*\)""")
_WS_PROTOCOL_RE = re.compile(r"""\.protocol\s*=\s*['"`]wss?:?['"`]""")


_URL_PART_RE = re.compile(r"\b[A-Za-z_$][\w$]*\.(?:pathname|hostname|host|origin|protocol|port)\b(?!\s*=)")


class _File:
    def __init__(self, name: str, src: str) -> None:
        self.name = name
        self.src = src
        self.code = blank_comments(src)
        self.lines = src.splitlines()
        self._nl = [m.start() for m in re.finditer("\n", src)]
        # name → [(offset, text)]: its declaration's initializer and every later assignment to it or its members
        self.defs: dict[str, list[tuple[int, str]]] = {}
        for m in _DECL_RE.finditer(self.code):
            self.defs.setdefault(m.group(1), []).append((m.start(), self._statement(m.end())))
        # `const { pathname, search } = new URL(request.url)`: each name is that URL's part (URL.part)
        for m in re.finditer(r"\b(?:const|let|var)\s*\{([^{}]*)\}\s*(?::[^=]*)?=(?!=)", self.code):
            rhs = self._statement(m.end()).strip()
            obj = "URL" if re.match(r"new\s+URL\s*\(|[\w$]+$", rhs) else rhs
            for part in m.group(1).split(","):
                prop, _, local = part.partition(":")
                name = (local or prop).split("=")[0].strip()
                if re.fullmatch(r"[A-Za-z_$][\w$]*", name):
                    self.defs.setdefault(name, []).append((m.start(), f"{obj}.{prop.strip()}"))
        for m in _ASSIGN_RE.finditer(self.code):
            if m.group(1) in self.defs and not self.code[max(0, m.start() - 8) : m.start()].rstrip().endswith(
                ("const", "let", "var")
            ):
                self.defs[m.group(1)].append((m.start(), self._statement(m.start())))

    def _statement(self, start: int) -> str:
        """From start to the end of the statement: a `;` or a line end at bracket depth 0."""
        i = start
        while i < len(self.code):
            c = self.code[i]
            if c in "([{":
                i = _balanced(self.code, i)
                continue
            if c in "'\"`":
                close = self.code.find(c, i + 1)
                i = close + 1 if close > 0 else len(self.code)
                continue
            if c == ";" or (c == "\n" and self.code[start:i].strip() and not self._continues(i)):
                break
            i += 1
        return self.code[start:i]

    def _continues(self, nl: int) -> bool:
        before = self.code[max(0, nl - 80) : nl].rstrip()
        after = self.code[nl : nl + 80].lstrip()
        return before.endswith(("=", "+", "?", ":", "(", ",", "&&", "||")) or after.startswith(
            (".", "+", "?", ":", "&&", "||")
        )

    def line(self, offset: int) -> int:
        return bisect.bisect_right(self._nl, offset - 1) + 1

    def hit(self, pattern: Pattern, offset: int) -> SourceHit:
        n = self.line(offset)
        text = self.lines[n - 1].strip() if n <= len(self.lines) else ""
        return SourceHit(pattern, PATTERNS[pattern][0], self.name, n, _REDACT.text(text)[:120])

    def refs(self, text: str) -> set[str]:
        return {w for w in _IDENT_RE.findall(text) if w in self.defs}

    def closure(self, text: str) -> set[str]:
        """The variables text is built from, and theirs, transitively; not through `x.pathname` (or another
        part that is not the whole URL): what x itself is built from does not reach the result."""

        def refs(t: str) -> set[str]:
            return self.refs(_URL_PART_RE.sub("", t))

        seen: set[str] = set()
        todo = list(refs(text))
        while todo:
            v = todo.pop()
            if v in seen:
                continue
            seen.add(v)
            for _, t in self.defs[v]:
                if not re.match(r"\s*(?:await\s+)?fetch\s*\(", t):
                    todo.extend(refs(t) - seen)
        return seen

    def text_of(self, names: set[str]) -> str:
        return "\n".join(t for v in names for _, t in self.defs[v])


def _is_ws(f: _File, expr: str, ws_vars: set[str], ws_funcs: frozenset[str] = frozenset()) -> bool:
    """Whether expr is a ws(s) URL: a ws literal, a scheme replace to ws, a ws variable or a call of a
    function (of any file) that returns one. The last scheme replace in it decides."""
    scheme = [m.group(1).lower() for m in _SCHEME_REPLACE_RE.finditer(expr)]
    if scheme:
        return scheme[-1] in ("ws", "wss")
    if _WS_LITERAL_RE.search(expr):
        return True
    if any(re.search(rf"(?<![\w$.]){re.escape(fn)}\s*\(", expr) for fn in ws_funcs):
        return True
    return bool(f.refs(expr) & ws_vars)


def _ws_vars(f: _File, ws_funcs: frozenset[str]) -> set[str]:
    ws_vars: set[str] = set()
    changed = True
    while changed:
        changed = False
        for v, defs in f.defs.items():
            if v in ws_vars:
                continue
            for _, t in defs:
                if re.match(r"\s*(?:await\s+)?fetch\s*\(", t) or re.search(r"\bnew\s+WebSocket\s*\(", t):
                    continue
                rhs = re.sub(rf"^\s*{re.escape(v)}[\w$.]*\s*\+?=", "", t)
                if _WS_PROTOCOL_RE.search(t) or _is_ws(f, rhs, ws_vars, ws_funcs):
                    ws_vars.add(v)
                    changed = True
                    break
    return ws_vars


_FUNC_RE = re.compile(
    r"\bfunction\s+([A-Za-z_$][\w$]*)\s*\(|\b(?:const|let)\s+([A-Za-z_$][\w$]*)\s*=\s*(?:async\s*)?\([^)]*\)[^=]*=>"
)


def ws_functions(f: _File, ws_funcs: frozenset[str] = frozenset()) -> set[str]:
    """The functions of f that return a ws(s) URL (read across files: `import { realtimeUrl }`)."""
    ws_vars = _ws_vars(f, ws_funcs)
    names = set()
    for m in _FUNC_RE.finditer(f.code):
        brace = f.code.find("{", m.end())
        if brace < 0:
            continue
        body = f.code[brace : _balanced(f.code, brace)]
        for r in re.finditer(r"\breturn\b", body):
            if _is_ws(f, f._statement(brace + r.end()), ws_vars, ws_funcs):
                names.add(m.group(1) or m.group(2))
    return names


def _fetch_ws(f: _File, ws_funcs: frozenset[str]) -> list[SourceHit]:
    ws_vars = _ws_vars(f, ws_funcs)
    hits = []
    for m in re.finditer(r"(?<![\w$.])fetch\s*\(", f.code):
        arg = _first_arg(f.code, m.end() - 1)
        if _is_ws(f, arg, ws_vars, ws_funcs):
            hits.append(f.hit(Pattern.FETCH_WS_URL, m.start()))
    return hits


def _request_websocket(f: _File) -> list[SourceHit]:
    rx = r"\b((?:\w+\.)?(?:req|request|\w*Request|\w*Req))\s*\??\.webSocket\b"
    return [f.hit(Pattern.REQUEST_WEBSOCKET, m.start()) for m in re.finditer(rx, f.code)]


def _upgrade_handled_before(f: _File, offset: int) -> bool:
    """An `if` before offset whose condition is about the upgrade (or a 101/webSocket answer) and whose
    branch returns: the rebuild after it never sees the 101."""
    flags = {v for v, defs in f.defs.items() if re.search(r"upgrade", defs[0][1], re.IGNORECASE)}
    for m in re.finditer(r"\bif\s*\(", f.code[:offset]):
        cond_end = _balanced(f.code, m.end() - 1)
        cond = f.code[m.end() : cond_end]
        if not (
            re.search(r"upgrade|\.status\s*===?\s*101|webSocket", cond, re.IGNORECASE) or f.refs(cond) & flags
        ):
            continue
        if re.search(
            r"""!==?\s*['"]websocket|!\s*[\w$.]*(?:[Uu]pgrade|webSocket)\b|status\s*!==?\s*101""", cond
        ):
            continue  # the branch that returns is the one for everything but the upgrade
        body = f.code[cond_end:]
        body = (
            body[: _balanced(body, body.index("{"))]
            if body.lstrip().startswith("{")
            else f._statement(cond_end)
        )
        if re.search(r"\breturn\b", body):
            return True
    return False


def _response_rebuilt(f: _File) -> list[SourceHit]:
    hits = []
    then_params = set(
        re.findall(r"\bfetch\s*\([^;]*?\)\s*\.then\(\s*(?:async\s*)?\(?\s*([A-Za-z_$][\w$]*)", f.code)
    )
    for m in re.finditer(r"\bnew\s+Response\s*\(\s*([A-Za-z_$][\w$]*)\.body\s*,\s*\{", f.code):
        init = f.code[m.end() - 1 : _balanced(f.code, m.end() - 1)]
        fetched = m.group(1) in then_params or any(
            re.match(r"\s*(?:await\s+)?fetch\s*\(", t) for _, t in f.defs.get(m.group(1), [])
        )
        if "webSocket" in init or not fetched or _upgrade_handled_before(f, m.start()):
            continue
        hits.append(f.hit(Pattern.RESPONSE_REBUILT, m.start()))
    return hits


_NAME_LIST_RE = re.compile(
    r"""\b(?:const|let|var)\s+([A-Za-z_$][\w$]*)[^=\n]*=\s*(?:new\s+Set\s*\(\s*)?\[\s*((?:['"][\w-]+['"]\s*,?\s*)+)\]"""
)
_HEADER_NAMES = re.compile(
    r"^(?:content-|accept|authorization$|apikey$|x-|prefer$|origin$|cookie$|user-agent$)"
)


def _header_allowlist(f: _File) -> list[SourceHit]:
    hits = []
    for m in _NAME_LIST_RE.finditer(f.code):
        names = [n.lower() for n in re.findall(r"""['"]([\w-]+)['"]""", m.group(2))]
        if len(names) < 2 or not any(_HEADER_NAMES.match(n) for n in names) or "upgrade" in names:
            continue
        used = [
            u.start()
            for u in re.finditer(rf"(?<![\w$.]){re.escape(m.group(1))}\b", f.code)
            if u.start() > m.end()
        ]
        for h, defs in f.defs.items():
            start, init = defs[0]
            if not re.match(r"\s*new\s+Headers\s*\(", init) or not any(u > start for u in used):
                continue
            sent = rf"(?:headers\s*:\s*{re.escape(h)}\b|\bheaders\s*[,}}]|(?:fetch|Request)\s*\([^)]*\b{re.escape(h)}\b)"
            if h == "headers" and re.search(r"\bheaders\s*[,}]", f.code) or re.search(sent, f.code[start:]):
                hits.append(f.hit(Pattern.HEADER_ALLOWLIST, m.start()))
                break
    return hits


_SUPABASE_RE = re.compile(r"SUPABASE_URL|supabase\.co|/realtime")
_QUERY_KEPT_RE = re.compile(
    r"\.search\b|searchParams|\b(?:req|request)\.url\b|\.href\b|\b(?:url|reqUrl|requestUrl)\.toString\(\)"
)


def _query_dropped(f: _File) -> list[SourceHit]:
    hits: list[SourceHit] = []
    for m in re.finditer(r"(?<![\w$.])fetch\s*\(|\bnew\s+(?:Request|WebSocket)\s*\(", f.code):
        arg = _first_arg(f.code, m.end() - 1)
        names = f.closure(arg)
        built = arg + "\n" + f.text_of(names)
        if not _SUPABASE_RE.search(built) or _QUERY_KEPT_RE.search(built):
            continue
        # where the URL is built from the path: a text with `.pathname`, a fixed /realtime path, or a
        # destructured pathname; the one that also names the Supabase URL first
        paths = {v for v in names if any(t == "URL.pathname" for _, t in f.defs[v])}
        where = [(o, t) for v in names for o, t in f.defs[v] if t != "URL.pathname"] + [(m.start(), arg)]
        where = [
            (o, t) for o, t in where if re.search(r"\.pathname\b|['\"`]/realtime", t) or f.refs(t) & paths
        ]
        if where:
            best = [w for w in where if _SUPABASE_RE.search(w[1])] or where
            hit = f.hit(Pattern.QUERY_DROPPED, min(best)[0])
            if hit not in hits:
                hits.append(hit)
    return hits


def _apikey_vsn(f: _File) -> list[SourceHit]:
    hits = []
    from_env = r"(?:\benv\.|\bcontext\.env\.|\b[A-Z][A-Z0-9_]{2,}\b)"
    for m in re.finditer(rf"""\.(?:set|append)\(\s*['"](?i:apikey)['"]\s*,\s*[^)]*{from_env}""", f.code):
        hits.append(f.hit(Pattern.APIKEY_REPLACED, m.start()))
    for m in re.finditer(rf"""['"]?apikey['"]?\s*:\s*{from_env}""", f.code):
        hits.append(f.hit(Pattern.APIKEY_REPLACED, m.start()))
    for m in re.finditer(r"""\.set\(\s*['"]vsn['"]\s*,\s*['"]1\.0\.0['"]|(?<![\w-])vsn=1\.0\.0""", f.code):
        hits.append(f.hit(Pattern.VSN_FORCED, m.start()))
    for m in re.finditer(r"""\.delete\(\s*['"]vsn['"]\s*\)""", f.code):
        hits.append(f.hit(Pattern.VSN_REMOVED, m.start()))
    return hits


def _relay(f: _File) -> list[SourceHit]:
    hits: list[SourceHit] = []
    pair = re.search(r"\bnew\s+WebSocketPair\s*\(", f.code)
    if pair is None:
        return hits
    # An outbound `new WebSocket()` (wherever in the file: a helper below the handler too) connects after
    # the constructor returns; a 101 not preceded by an await of its open event answers first.
    if re.search(r"\bnew\s+WebSocket\s*\(", f.code):
        for m in re.finditer(r"\bstatus\s*:\s*101\b", f.code):
            if not re.search(r"""\bawait\b[^;]*['"]open['"]|\bawait\s+\w*[Oo]pen""", f.code[: m.start()]):
                hits.append(f.hit(Pattern.EARLY_101, m.start()))
    queued = re.search(r"\.(?:push|unshift)\(", f.code)
    is_open = r"\.readyState\s*===?\s*(?:WebSocket\.OPEN|1|\w+\.OPEN)\s*\)"
    not_open = r"\.readyState\s*!==?\s*(?:WebSocket\.OPEN|1|\w+\.OPEN)\s*\)\s*\{?\s*return\b[^;\n]*;?\s*\}?"
    for m in re.finditer(rf"\bif\s*\(\s*([A-Za-z_$][\w$.]*)(?:{is_open}|{not_open})", f.code):
        body = f.code[m.end() : m.end() + 200]
        if re.match(rf"\s*\{{?\s*{re.escape(m.group(1))}\.send\(", body) and not queued:
            hits.append(f.hit(Pattern.SEND_IF_OPEN, m.start()))
    for m in re.finditer(r"\.close\(\s*([A-Za-z_$][\w$]*)\.code\s*(?:(?:\|\||\?\?)\s*\d+\s*)?[,)]", f.code):
        hits.append(f.hit(Pattern.CLOSE_CODE_FORWARDED, m.start()))
    relays = re.search(r"""addEventListener\(\s*['"]message['"]|\.onmessage\s*=""", f.code)
    if relays and not re.search(r"""addEventListener\(\s*['"]close['"]|\.onclose\s*=""", f.code):
        hits.append(f.hit(Pattern.NO_CLOSE_LISTENER, pair.start()))
    return hits


_TEXTIFY = (
    r"(?:String\(\s*\w+\.data\s*\)|\w+\.data\.toString\(\)|JSON\.stringify\(\s*\w+\.data\s*\)|\w+\.data\.text\(\)"
    r"|\.decode\(\s*\w+\.data\s*\))"
)


def _binary_as_text(f: _File) -> list[SourceHit]:
    hits = []
    sent = {v for v, defs in f.defs.items() if re.search(_TEXTIFY, defs[0][1])}
    for m in re.finditer(r"\.send\s*\(", f.code):
        arg = _first_arg(f.code, m.end() - 1)
        t = re.search(_TEXTIFY, arg)
        if t:
            hits.append(f.hit(Pattern.BINARY_AS_TEXT, m.start()))
        elif f.refs(arg) & sent:
            v = min(f.refs(arg) & sent)
            hits.append(f.hit(Pattern.BINARY_AS_TEXT, f.defs[v][0][0]))
    return hits


def declared_vars(files: dict[str, str]) -> set[str] | None:
    """The names a wrangler config (toml, json, jsonc) among files binds ([vars] and every binding), or None without one."""
    names: set[str] | None = None
    for name, text in files.items():
        base = name.rsplit("/", 1)[-1]
        if base not in ("wrangler.toml", "wrangler.json", "wrangler.jsonc"):
            continue
        try:
            if base == "wrangler.toml":
                conf = tomllib.loads(text)
            else:  # JSONC: comments blanked, trailing commas dropped (outside strings), as rtworker reads it
                conf = json.loads(strip_jsonc(text))
        except (tomllib.TOMLDecodeError, json.JSONDecodeError):
            continue
        names = set() if names is None else names
        names |= set(conf.get("vars", {}))
        names |= set(re.findall(r"""\bbinding['"]?\s*[=:]\s*['"](\w+)['"]""", text))
        names |= {v for env in conf.get("env", {}).values() for v in env.get("vars", {})}
    return names


def _env_undeclared(f: _File, declared: set[str]) -> list[SourceHit]:
    rx = r"\b(?:context\.)?env\.([A-Za-z_$][\w$]*)\.(?!length\b)[A-Za-z_$][\w$]*\s*\("
    return [
        f.hit(Pattern.ENV_UNDECLARED, m.start())
        for m in re.finditer(rx, f.code)
        if m.group(1) not in declared and m.group(1) != "SUPABASE_URL"  # rtworker binds SUPABASE_URL
    ]


def read_sources(files: dict[str, str]) -> list[SourceHit]:
    """Every hit in the project's source files (name → text), by file then line."""
    declared = declared_vars(files)
    parsed = [
        _File(n, t) for n, t in sorted(files.items()) if n.endswith(_SOURCE_EXT) and not n.endswith(".d.ts")
    ]
    ws_funcs: frozenset[str] = frozenset()
    for _ in range(3):  # a function returning another's ws URL, across files
        ws_funcs = frozenset().union(*(ws_functions(f, ws_funcs) for f in parsed))
    hits: list[SourceHit] = []
    for f in parsed:
        hits += _fetch_ws(f, ws_funcs)
        for check in (_request_websocket, _response_rebuilt, _header_allowlist, _query_dropped):
            hits += check(f)
        hits += _apikey_vsn(f) + _relay(f) + _binary_as_text(f)
        if declared is not None:
            hits += _env_undeclared(f, declared)
    return sorted(set(hits), key=lambda h: (h.file, h.line, h.pattern))
