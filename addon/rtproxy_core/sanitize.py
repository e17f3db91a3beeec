"""How a stored credential is replaced, so a capture or a saved flow can be attached to a bug report.

Sans-I/O: strings and bytes in, the sanitized value and what was replaced out. The one place that says
what a credential becomes (the live addon, rtproxy_mitm.sanitize, and `rtsanitize` both call it):

- a JWT `header.claims.signature` becomes `header.claims.rtproxy-sanitized` (redact.SANITIZED): header and
  claims byte for byte, so role, exp and ref still read (redact.jwt_claims) and a diagnosis of the
  sanitized capture is the original's; without its signature no server takes it;
- an `sb_publishable_…` / `sb_secret_…` key keeps its prefix (which kind of key it was matters to the
  diagnosis): `sb_secret_rtproxy-sanitized`;
- any other credential (an opaque apikey, token, password, Basic credentials, a cookie's value, a URL's
  password) becomes `rtproxy-sanitized`.

What is a credential by its name is CREDENTIAL_KEYS (redact's lists: the Redactor prints the same names as
[redacted]); `code` only where it is an authorization code (a URL's query, a body `request_codes` picks).

Every function returns (new value, Replaced): a count per kind of what it replaced, never a value. All are
idempotent: a marker is never replaced again, so sanitizing twice changes nothing more. Bytes that hold
nothing to replace come back as they were (the same object), so the common case costs one regex search.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from . import frames
from .redact import AUTH_CODE_KEYS, AUTH_HEADERS, KEY_HEADERS, SANITIZED, SECRET_KEYS, replace_url_secrets

MARKER = SANITIZED

# Kinds of what was replaced: the keys of a Replaced count.
JWT = "JWT signature"
SB_KEY = "{} key"  # .format(prefix): "sb_secret_ key"
TOKEN = "opaque credential"
COOKIE = "cookie value"
PASSWORD = "URL password"

Replaced = Counter[str]  # kind -> how many

# Where a capture holds what was replaced: the keys of the per-place counts rtsanitize prints.
URLS, HEADERS, COOKIES, BODIES, MESSAGES, ELSEWHERE = (
    "URLs",
    "headers",
    "cookies",
    "bodies",
    "WebSocket messages",
    "elsewhere",
)
Places = dict[str, Replaced]

# What sanitizing replaces by name: redact.SECRET_KEYS (the names whose value is a credential wherever they
# stand: apikey, access_token, password, provider_token, code_verifier, ...) and AUTH_CODE_KEYS (`code`: a
# credential in a URL's query, and in a request body `request_codes` picks; kept in WebSocket messages,
# response bodies and other text, where it is an app's field or an error's name). Both lists are redact's:
# the Redactor prints the same names as [redacted], `code` in URLs only.
CREDENTIAL_KEYS = SECRET_KEYS | AUTH_CODE_KEYS
# GoTrue's endpoints, as supabase-js calls them through the API gateway (auth-js GoTrueClient.ts: every
# request goes to `${this.url}/...`, this.url being `${supabaseUrl}/auth/v1`).
AUTH_PATH = "/auth/v1/"
# The project's APIs behind the same gateway (supabase-js SupabaseClient.ts: `${baseUrl}/auth/v1`, `/rest/v1`,
# `/storage/v1`, `/functions/v1`, `/realtime/v1`; the GraphQL endpoint `/graphql/v1`): a request under one of
# these to the configured project carries the app's credentials (apikey and Authorization headers, a
# login's password, Storage's signed `?token=`), its answer the user's session. The live addon stores such
# flows sanitized (rtproxy_mitm.sanitize); rtsanitize sanitizes every flow of a file whatever its path.
SUPABASE_API_PATHS = (
    AUTH_PATH,
    "/rest/v1/",
    "/storage/v1/",
    "/functions/v1/",
    "/realtime/v1/",
    "/graphql/v1",
)


def is_supabase_api(path: str) -> bool:
    """Is this request path (a query may follow) under one of the project's APIs (SUPABASE_API_PATHS)?"""
    path = path.split("?", 1)[0]
    return any(path.startswith(p) or path == p.rstrip("/") for p in SUPABASE_API_PATHS)


# Headers whose value is a URL: a redirect's Location (GoTrue's 302 to the app's callback with `?code=`, or
# with the implicit flow's `#access_token=…&provider_token=…`), the Referer the callback page's requests carry.
URL_HEADERS = frozenset({"location", "referer", "content-location"})


def _alternation(keys: frozenset[str]) -> str:
    return "|".join(sorted(keys, key=len, reverse=True))


_KEYS, _CODE_KEYS = _alternation(SECRET_KEYS), _alternation(CREDENTIAL_KEYS)
# As redact's _JWT_RE, the signature being its own group; a further `.segment` is left (not a credential).
_JWT = re.compile(r"(eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.)([A-Za-z0-9_-]*)")
_SB = re.compile(r"(sb_(?:publishable|secret)_)([A-Za-z0-9_-]+)")  # as redact: glued to a word too
# `apikey=…` in free text (a URL inside an error message or a body), and `"access_token": "…"` in JSON text
# (a Realtime payload, an auth response's refresh_token): the value is a credential whatever its shape.
_PARAM = re.compile(rf"(?i)\b({_KEYS})=([^&\s\"'#;<>\\]+)")
_JSON_KEY = re.compile(rf'(?i)"({_KEYS})"(\s*:\s*)"((?:[^"\\]|\\.)*)"')
# The same with `code` (AUTH_CODE_KEYS), where it is an authorization code: a URL, a request_codes body.
_CODE_PARAM = re.compile(rf"(?i)\b({_CODE_KEYS})=([^&\s\"'#;<>\\]+)")
_CODE_JSON_KEY = re.compile(rf'(?i)"({_CODE_KEYS})"(\s*:\s*)"((?:[^"\\]|\\.)*)"')
# Cheap test first: text holding none of these has nothing to replace.
# The cheap first look, per stored frame: nothing to do unless one of these is in it. One case-sensitive
# alternation over the lower-cased text: a case-insensitive one, `(?i:…)`, costs Python's re ~25 ns a byte
# (5.3 µs for a 194-byte broadcast, against 1.2 µs this way: rtbench's hook line).
# Every name in SECRET_KEYS holds one of these (tests/test_sanitize.py checks).
_HINTS = re.compile(r"eyj|sb_|token|api_?key|jwt|passw|secret|verifier|auth_code")
_HINTS_B = re.compile(_HINTS.pattern.encode())


def _maybe(s: str) -> bool:
    return _HINTS.search(s.lower()) is not None


def _maybe_b(raw: bytes) -> bool:
    return _HINTS_B.search(raw.lower()) is not None


# The first look at a stored frame, at each place a hint stands: a JWT or sb_ key starting there
# (case-sensitive, as _JWT and _SB are), or a secret key name around it with `=` after it or in quotes
# (_PARAM's and _JSON_KEY's shapes, lower-cased, without their \b and `:`: a superset of what they
# replace). A frame whose hints are all ordinary bytes (a 1 MB base64 blob holds "jwt" about 18 times,
# JSON rows may hold "token" as a word) then skips `message`'s regex passes over the whole frame. One
# bytes.find pass per hint (CPython's fast search) costs a third of one pass of _HINTS over a frame that
# holds none.
_HINT_WORDS = (b"eyj", b"sb_", b"token", b"api", b"jwt", b"passw", b"secret", b"verifier", b"auth_code")
_JWT_B = re.compile(_JWT.pattern.encode())
_SB_B = re.compile(_SB.pattern.encode())
_KEYS_L = "|".join(sorted(SECRET_KEYS, key=len, reverse=True)).encode()
_KEY_SHAPE_B = re.compile(b"(?:" + _KEYS_L + b')=|"(?:' + _KEYS_L + b')"')
_KEY_REACH = max(map(len, SECRET_KEYS)) + 2  # a key with its quotes, around a hint inside it
_HINTS_CHECKED = 256  # past this many hints without a credential shape, `message` decides


def may_hold_secret(content: bytes | None) -> bool:
    """False when `message` would return `content` as it is: the first look, for callers that skip the
    call (rtproxy_mitm/sanitize.py, on every frame). A pass over the lower-cased bytes per hint word,
    then a look around each place one stands, bounded by its neighbourhood (not by the frame's size)."""
    if not content:
        return False
    low, seen = content.lower(), 0
    for word in _HINT_WORDS:
        p = low.find(word)
        while p != -1:
            seen += 1
            if seen > _HINTS_CHECKED:
                return True
            if word == b"eyj":
                if _JWT_B.match(content, p):
                    return True
            elif word == b"sb_":
                if _SB_B.match(content, p):
                    return True
            elif _KEY_SHAPE_B.search(low, max(0, p - _KEY_REACH), p + 2 * _KEY_REACH):
                return True
            p = low.find(word, p + 1)
    return False


def _jwt_sub(m: re.Match[str], out: Replaced) -> str:
    if m.group(2) == MARKER:
        return m.group(0)
    out[JWT] += 1
    return m.group(1) + MARKER


def _sb_sub(m: re.Match[str], out: Replaced) -> str:
    if m.group(2) == MARKER:
        return m.group(0)
    out[SB_KEY.format(m.group(1))] += 1
    return m.group(1) + MARKER


def _shapes(s: str, out: Replaced) -> str:
    """JWTs and sb_ keys wherever they stand."""
    if "eyJ" in s:
        s = _JWT.sub(lambda m: _jwt_sub(m, out), s)
    if "sb_" in s:
        s = _SB.sub(lambda m: _sb_sub(m, out), s)
    return s


def _is_marked(value: str) -> bool:
    """Already a marker, or a JWT / sb_ key already sanitized."""
    return value == MARKER or value.endswith(("." + MARKER, "_" + MARKER))


def _credential(value: str, out: Replaced, kind: str = TOKEN) -> str:
    """A value known to be a credential: a JWT or sb_ key inside it is sanitized as such, anything else
    (not yet a marker) replaced whole."""
    if not value or _is_marked(value):
        return value
    found: Replaced = Counter()
    new = _shapes(value, found)
    if found:
        out.update(found)
        return new
    if _is_marked(new):
        return new
    out[kind] += 1
    return MARKER


def credential(value: str) -> tuple[str, Replaced]:
    """A value that is a credential as a whole (an apikey query value or header, a bearer token)."""
    out: Replaced = Counter()
    return _credential(value, out), out


def text(s: str, *, codes: bool = False) -> tuple[str, Replaced]:
    """Free text: JWTs and sb_ keys wherever they stand, `secret=value` parameters and JSON
    `"secret": "value"` pairs (the keys redact.SECRET_KEYS names; with `codes`, `code` too: a URL, a body
    `request_codes` picks) whatever their value's shape."""
    out: Replaced = Counter()
    if not s or not (_maybe(s) or codes and "code" in s.lower()):
        return s, out
    s = _shapes(s, out)
    param, json_key = (_CODE_PARAM, _CODE_JSON_KEY) if codes else (_PARAM, _JSON_KEY)
    s = param.sub(lambda m: f"{m.group(1)}={_credential(m.group(2), out)}", s)
    s = json_key.sub(lambda m: f'"{m.group(1)}"{m.group(2)}"{_credential(m.group(3), out)}"', s)
    return s, out


def _latin1(raw: bytes, fix: Callable[[str], tuple[str, Replaced]]) -> tuple[bytes, Replaced]:
    """`fix` over bytes byte for byte (latin-1 maps each byte to one character and back, and every pattern
    is ASCII), so bytes that are not UTF-8 are kept as they are; the same object when nothing changed."""
    new, out = fix(raw.decode("latin-1"))
    return (new.encode("latin-1"), out) if out else (raw, out)


def data(raw: bytes, *, codes: bool = False) -> tuple[bytes, Replaced]:
    """Bytes of any kind (a body, a frame that is not a Realtime message): `text` over them."""
    if not raw or not (_maybe_b(raw) or codes and b"code" in raw.lower()):
        return raw, Counter()
    return _latin1(raw, lambda s: text(s, codes=codes))


# ---------------------------------------------------------------------------------------------- bodies

FORM = "application/x-www-form-urlencoded"
# An OAuth token request names its grant (RFC 6749 §4.1.3; GoTrue's own, internal/api/token.go `Token`
# reads `grant_type`, and its OAuth server's, internal/api/oauthserver/handlers.go `OAuthTokenParams`, JSON
# or a form: grant_type, code, code_verifier, client_secret); an authorization response posted back
# (OAuth 2.0 Form Post Response Mode, as Sign in with Apple sends it) is a form with `state` and `code`.
_GRANT = re.compile(r'(?i)(?:^|&)grant_type=|"grant_type"\s*:')
_STATE = re.compile(r"(?i)(?:^|&)state=")


def is_form(mime: str) -> bool:
    return FORM in (mime or "").lower()


def request_codes(url: str, body: str, mime: str = "") -> bool:
    """Is a `code` in this request's body an authorization code (AUTH_CODE_KEYS)? On GoTrue's endpoints
    (AUTH_PATH: `POST /auth/v1/factors/{id}/verify`'s MFA `code`, its OAuth server's token exchange), in any
    OAuth token request (it names grant_type), and in a form that also names `state`. Never in a response
    body (GoTrue's error `{"code": "invalid_credentials"}` names the error: it stays for the reader) nor in
    a WebSocket message (a Realtime payload's `code` is the app's)."""
    try:
        path = urlsplit(url).path
    except ValueError:
        path = url
    if AUTH_PATH in path or _GRANT.search(body):
        return True
    return is_form(mime) and _STATE.search(body) is not None


def form(s: str, *, codes: bool = False) -> tuple[str, Replaced]:
    """`a=1&password=…` (application/x-www-form-urlencoded): a field named in redact.SECRET_KEYS (with
    `codes`, AUTH_CODE_KEYS too) replaced whole as written, whatever bytes its value holds; every other field
    as text. Names, order and separators kept."""
    keys = CREDENTIAL_KEYS if codes else SECRET_KEYS
    out: Replaced = Counter()
    pieces = []
    for piece in s.split("&"):
        name, eq, value = piece.partition("=")
        if eq and value and unquote_plus(name).strip().lower() in keys:
            piece = f"{name}={_credential(value, out)}"
        else:
            piece, found = text(piece, codes=codes)
            out.update(found)
        pieces.append(piece)
    return "&".join(pieces), out


def body(s: str, *, mime: str = "", codes: bool = False) -> tuple[str, Replaced]:
    """A request's or response's body text (HAR's postData and content): a form field by field (its
    Content-Type says so), anything else (JSON, HTML, text) as text. `codes`: `request_codes` said so."""
    return form(s, codes=codes) if is_form(mime) else text(s, codes=codes)


def body_bytes(raw: bytes, *, mime: str = "", codes: bool = False) -> tuple[bytes, Replaced]:
    """`body` over bytes (a flow's, a base64 HAR body's), byte for byte."""
    if not raw:
        return raw, Counter()
    return _latin1(raw, lambda s: body(s, mime=mime, codes=codes))


# ---------------------------------------------------------------------------------------------- URLs


def query_value(name: str, value: str) -> tuple[str, Replaced]:
    """One query parameter's value (HAR's queryString): a credential when its name is one of
    CREDENTIAL_KEYS (`code` included, as in `url`), free text otherwise."""
    if unquote_plus(name).strip().lower() in CREDENTIAL_KEYS:
        return credential(value)
    return text(value, codes=True)


def form_value(name: str, value: str, *, codes: bool = False) -> tuple[str, Replaced]:
    """One field of a form body (HAR's postData.params): as `form` takes it."""
    if unquote_plus(name).strip().lower() in (CREDENTIAL_KEYS if codes else SECRET_KEYS):
        return credential(value)
    return text(value, codes=codes)


def url(u: str) -> tuple[str, Replaced]:
    """A URL (or a path with a query) with its secret query values (CREDENTIAL_KEYS: an OAuth callback's
    `?code=` too), a userinfo password and any JWT or sb_ key replaced; every other byte kept as written (a
    bare `&notify_self` stays bare, escapes stay)."""
    out: Replaced = Counter()
    try:
        parts = urlsplit(u)
    except ValueError:
        return text(u, codes=True)
    if parts.password and parts.password != MARKER:
        out[PASSWORD] += 1
    parts = replace_url_secrets(parts, lambda value: _credential(value, out), MARKER)
    # Rebuilt only when something changed: urlunsplit drops an empty `?` or `#`.
    # Then a fragment's #access_token=…&provider_token=… (the implicit flow's redirect), a JWT in the path.
    new, found = text(urlunsplit(parts) if out else u, codes=True)
    out.update(found)
    return new, out


# ---------------------------------------------------------------------------------------------- headers


def cookie_value(value: str) -> tuple[str, Replaced]:
    """A cookie's value: every one is replaced (a session cookie is a credential whatever it looks like);
    a JWT keeps its header and claims."""
    out: Replaced = Counter()
    return _credential(value, out, COOKIE), out


def cookie_header(value: str) -> tuple[str, Replaced]:
    """`Cookie: a=1; b=2`: names kept, values replaced."""
    out: Replaced = Counter()
    pieces = []
    for piece in value.split(";"):
        name, eq, v = piece.partition("=")
        if eq:
            if len(v) >= 2 and v[0] == v[-1] == '"':  # a quoted value (RFC 6265 allows it) stays quoted
                piece = f'{name}="{_credential(v[1:-1], out, COOKIE)}"'
            else:
                piece = f"{name}={_credential(v, out, COOKIE)}"
        pieces.append(piece)
    return ";".join(pieces), out


def set_cookie(value: str) -> tuple[str, Replaced]:
    """`Set-Cookie: name=value; Path=/; HttpOnly`: the value replaced, the attributes kept. Chrome's HAR
    joins several Set-Cookie lines into one value with newlines: each line is one cookie."""
    out: Replaced = Counter()
    lines = []
    for line in value.split("\n"):
        first, sep, attributes = line.partition(";")
        name, eq, v = first.partition("=")
        if eq:
            first = f"{name}={_credential(v, out, COOKIE)}"
        rest, found = text(attributes)  # an attribute holds no credential; a JWT anywhere is one all the same
        out.update(found)
        lines.append(first + sep + rest)
    return "\n".join(lines), out


def header(name: str, value: str) -> tuple[str, Replaced]:
    """One header's value. The credential headers are redact.SECRET_HEADERS: Authorization keeps its
    scheme (`Bearer <jwt>` becomes `Bearer header.claims.rtproxy-sanitized`), apikey/x-api-key (KEY_HEADERS)
    are credentials whole, cookies lose their values. Location/Referer are URLs; any other header is free
    text (a JWT in Sec-WebSocket-Protocol is one all the same)."""
    lower = name.lower()
    if lower in AUTH_HEADERS:
        scheme, space, cred = value.strip().partition(" ")
        if not space:
            return credential(value)
        out: Replaced = Counter()
        return f"{scheme} {_credential(cred.strip(), out)}", out
    if lower in KEY_HEADERS:
        return credential(value)
    if lower in URL_HEADERS:
        return url(value)
    if lower == "cookie":
        return cookie_header(value)
    if lower == "set-cookie":
        return set_cookie(value)
    return text(value)


def headers(pairs: Iterable[tuple[str, str]]) -> tuple[list[tuple[str, str]], Replaced]:
    out: Replaced = Counter()
    new = []
    for name, value in pairs:
        v, found = header(name, value)
        out.update(found)
        new.append((name, v))
    return new, out


# ---------------------------------------------------------------------------------------------- frames

# Binary layouts (frames' docstring): after the kind byte, this many one-byte lengths and then flag bytes
# (kinds 3 and 4: `enc`), the fields the lengths count, and the payload (the rest, no length).
# Only the kinds `frames.decode` takes in that direction.
_LAYOUTS = {
    (True, frames.PUSH): (4, 0),  # join_ref ref topic event | payload
    (True, frames.USER_PUSH): (5, 1),  # join_ref ref topic user_event meta, enc | payload
    (False, frames.USER_BROADCAST): (3, 1),  # topic user_event meta, enc | payload
}


def _binary(raw: bytes, from_client: bool) -> tuple[bytes, Replaced] | None:
    """A 2.0.0 binary frame, field by field, its lengths rewritten; None if its layout does not parse, a
    field would outgrow its one-byte length (only a JWT with a signature shorter than the marker can), or
    a credential runs across two fields (then the lengths do not say what the bytes are)."""
    layout = _LAYOUTS.get((from_client, raw[0]))
    if layout is None:
        return None
    n, flags = layout
    start = 1 + n + flags
    if len(raw) < start:
        return None
    pos, fields = start, []
    for length in raw[1 : 1 + n]:
        if pos + length > len(raw):
            return None
        fields.append(raw[pos : pos + length])
        pos += length
    out: Replaced = Counter()
    new_fields = []
    for f in [*fields, raw[pos:]]:
        new, found = data(f)
        out.update(found)
        new_fields.append(new)
    if not out:
        return raw, out
    *new_fields, payload = new_fields
    if any(len(f) > 255 for f in new_fields):
        return None
    head = bytes([raw[0], *map(len, new_fields)]) + raw[1 + n : start]
    new = head + b"".join(new_fields) + payload
    if _across(new):  # a credential across two fields, which no field showed whole: searched as bytes
        return None
    return new, out


def _across(raw: bytes) -> bool:
    """Does a JWT or sb_ key show across two fields of this frame, which no field held whole (a header cut
    in two by a length)? A sanitized one followed by the next field's bytes (a topic ending in a JWT, then
    the event) does not count: each field is what the peer reads."""
    t = raw.decode("latin-1")
    return any(not m.group(2).startswith(MARKER) for rx in (_JWT, _SB) for m in rx.finditer(t))


def message(content: bytes, *, binary: bool, from_client: bool) -> tuple[bytes, Replaced]:
    """One WebSocket message as it is stored: in a Realtime message the access_token (phx_join's payload,
    the `access_token` event), an apikey, any JWT or sb_ key.

    Text frames (1.0.0 objects, 2.0.0 arrays, anything else) are sanitized as text in place: every other
    byte is kept (key order, spacing), and JWTs and the marker need no JSON escaping. A binary frame that
    `frames` decodes (a client's kinds 0 and 3, a server's kind 4) is sanitized field by field and its
    lengths rewritten, so it decodes as before with the same event and refs. A binary frame that does not
    decode (a server's kinds 0-3, which realtime-js refuses, or no Realtime frame at all) is searched as
    bytes for JWT-shaped strings, sb_ keys and key=value pairs."""
    if not may_hold_secret(content):
        return content, Counter()
    if binary and content[:1] != b"{":  # the 1.0.0 serializer reads a binary frame holding an object as JSON
        try:
            frames.decode(content, binary=True, from_client=from_client, lazy=True)
        except frames.DecodeError:
            return data(content)
        sanitized = _binary(content, from_client)
        if sanitized is not None:
            return sanitized
    return data(content)


# ---------------------------------------------------------------------------------------------- anything


def add(places: Places, where: str, found: Replaced) -> None:
    if found:
        places.setdefault(where, Counter()).update(found)


def walk(v: Any, places: Places, where: str = ELSEWHERE, _depth: int = 0) -> Any:
    """A copy of a JSON-like value (a flow's metadata, the fields of a HAR entry rtproxy knows nothing of)
    with every string in it sanitized: as a URL when it looks like one, a (name, value) pair of strings as
    a header, anything else as free text. Containers are rebuilt, so the input is not modified."""
    if _depth > 64:  # hostile nesting: left as it is past this depth
        return v
    if isinstance(v, str):
        new, found = url(v) if "://" in v[:12] else text(v)
        add(places, where, found)
        return new
    if isinstance(v, (bytes, bytearray)):
        new_b, found = data(bytes(v))
        add(places, where, found)
        return new_b
    if isinstance(v, (list, tuple)):
        rebuild: Callable[[Iterable[Any]], Any] = type(v)  # the same container type, list or tuple
        if len(v) == 2 and isinstance(v[0], str) and isinstance(v[1], str):
            new_v, found = header(v[0], v[1])
            add(places, where, found)
            return rebuild((v[0], new_v))
        return rebuild(walk(x, places, where, _depth + 1) for x in v)
    if isinstance(v, dict):
        return {k: walk(x, places, where, _depth + 1) for k, x in v.items()}
    return v


# ---------------------------------------------------------------------------------------------- totals


def describe(counts: Replaced) -> str:
    """`3 JWT signatures, 1 sb_secret_ key`: what was replaced, never a value."""
    if not counts:
        return "nothing"
    return ", ".join(f"{n} {kind}{'s' if n != 1 else ''}" for kind, n in sorted(counts.items()))


def total(places: Places) -> Replaced:
    out: Replaced = Counter()
    for counts in places.values():
        out.update(counts)
    return out


def summary(places: Places) -> list[str]:
    """One line per place: `headers: 1 JWT signature, 2 cookie values`."""
    return [f"{where}: {describe(counts)}" for where, counts in places.items() if counts]
