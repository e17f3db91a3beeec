"""Redaction of Realtime secrets: apikey, JWTs, access_token, Supabase sb_ keys.

Everything rtproxy prints or writes goes through a `Redactor`, so output is safe to paste into a public
issue. A JWT is replaced by the claims that matter for diagnosis (role, exp relative to now), never by
its value; `show_secrets` (the user's explicit opt-in) turns redaction off.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import SplitResult, unquote_plus, urlsplit, urlunsplit

REDACTED = "[redacted]"
# What a stored credential is replaced with (rtproxy_core.sanitize says how): base64url-safe, so a JWT whose
# signature it replaces is still header.claims.signature in shape, and still read by jwt_claims.
SANITIZED = "rtproxy-sanitized"

# The payload keys a client's frames carry its user's JWT in: phx_join's and the access_token event's
# `access_token`, or `user_token`, which Realtime reads in their place (realtime_channel.ex,
# assign_access_token/2: Map.get(params, "access_token") || Map.get(params, "user_token")).
TOKEN_KEYS = frozenset({"access_token", "user_token"})
# The one list of names whose value is a credential wherever the name stands (a query parameter, a JSON or
# payload key, `name=value` in text, a form field): what rtproxy prints as [redacted] (Redactor) and what it
# stores as rtsanitize's marker (sanitize.CREDENTIAL_KEYS is this and AUTH_CODE_KEYS). Realtime's and
# supabase-js's, then GoTrue's (supabase/auth): internal/api/token.go, `PasswordGrantParams.Password`,
# `IdTokenGrantParams.IdToken`, `PKCEGrantParams` (`auth_code`, `code_verifier`) and `AccessTokenResponse`
# (`provider_token`, `provider_refresh_token`, also in the implicit flow's redirect fragment: external.go,
# internalExternalProviderCallback); auth-js GoTrueClient.ts `verifyOtp` (`token_hash`); external.go
# `ExternalProviderRedirect` (`invite_token`); internal/api/oauthserver/handlers.go `OAuthTokenParams`
# (`client_secret`).
SECRET_KEYS = TOKEN_KEYS | frozenset(
    {"apikey", "api_key", "token", "refresh_token", "jwt"}
    | {"password", "id_token", "auth_code", "code_verifier", "provider_token", "provider_refresh_token"}
    | {"token_hash", "invite_token", "client_secret"}
)
# `code` is an OAuth authorization code where OAuth puts one, and an ordinary word elsewhere (a Realtime
# payload's `code`, GoTrue's error `{"code": "invalid_credentials"}`: internal/api/errors.go,
# HTTPErrorResponse20240101). A credential in a URL's query, always: GoTrue's PKCE redirect to the app's
# `redirect_to` carries `?code=` alone (verify.go, prepPKCERedirectURL, which external.go's
# internalExternalProviderCallback and the verify endpoint call; auth-js GoTrueClient.ts
# `_getSessionFromURL` reads `params.code`), at whatever path the app chose, and no Realtime URL has one;
# in a request body only where sanitize.request_codes says (GoTrue's endpoints, OAuth token requests).
AUTH_CODE_KEYS = frozenset({"code"})
_URL_KEYS = SECRET_KEYS | AUTH_CODE_KEYS

# The one list of header names whose value is a credential (SECRET_HEADERS): what rtproxy hides when it
# quotes a header (the two-leg view's hop-headers-rewritten prints Redactor.secret of the value) and what
# sanitize.header replaces in a stored flow, which keeps what is not the credential: Authorization's scheme
# (`Bearer <jwt>`), a cookie's name and attributes; any other's value is a credential whole (Realtime reads
# `x-api-key`, the API gateway `apikey`; a header named as one of SECRET_KEYS).
AUTH_HEADERS = frozenset({"authorization", "proxy-authorization"})
COOKIE_HEADERS = frozenset({"cookie", "set-cookie"})
KEY_HEADERS = frozenset({"apikey", "x-api-key"}) | SECRET_KEYS
SECRET_HEADERS = AUTH_HEADERS | COOKIE_HEADERS | KEY_HEADERS

# Further dot-separated segments are taken too: a JWT glued to another (or to a stray segment) must not
# leave its payload or signature behind.
_JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*")
# What is left of a JWT that something cut short before it was redacted (a reason clipped to 80 characters,
# a browser's error text): a header, its dot, and whatever of the claims and signature follows.
_JWT_CUT_RE = re.compile(r"eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*)*")
JWT_CUT = "<jwt, cut short>"
_ROLE_RE = re.compile(r"[A-Za-z0-9_.:@-]{1,64}")
_SB_KEY_RE = re.compile(r"sb_(?:publishable|secret)_[A-Za-z0-9_-]{6,}")
# `apikey=...` in free text (URLs inside error messages, log lines from other tools).
_PARAM_RE = re.compile(r"(?i)\b(" + "|".join(SECRET_KEYS) + r")=([^&\s\"']+)")


def printable(s: str) -> str:
    """`s` as text any UTF-8 output can hold: lone surrogates (bytes mitmproxy decoded with surrogateescape,
    unpaired \\uD800 escapes in JSON) become backslash escapes."""
    return s if s.isascii() else s.encode("utf-8", "backslashreplace").decode("utf-8")


def jwt_claims(token: str) -> dict[str, Any] | None:
    """The claims of a JWT, unverified; None if it is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        raw = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(raw))
    except (ValueError, TypeError, RecursionError):  # RecursionError: hostile nesting in the claims
        return None
    return claims if isinstance(claims, dict) else None


def _ago(seconds: float) -> str:
    s = abs(int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def describe_jwt(token: str, now: float | None = None) -> str:
    """`<jwt role=anon exp in 59m>`: what a diagnosis needs from a token, without the token."""
    claims = jwt_claims(token)
    if claims is None:
        return "<not a jwt>"
    role = claims.get("role", "?")
    # The claim is the token's content: print it only when it looks like a role name (it could hold
    # anything, another token included).
    plain = isinstance(role, str) and _ROLE_RE.fullmatch(role) and not _SB_KEY_RE.search(role)
    bits = [f"role={role if plain else '?'}"]
    exp = claims.get("exp")
    if isinstance(exp, (int, float)) and not isinstance(exp, bool):
        try:
            delta = exp - (time.time() if now is None else now)
            bits.append(f"exp in {_ago(delta)}" if delta >= 0 else f"expired {_ago(delta)} ago")
        except (OverflowError, ValueError):  # exp or now past float range, or NaN
            bits.append("exp out of range")
    else:
        bits.append("no exp")
    if token.rpartition(".")[2] == SANITIZED:  # its signature was replaced (rtsanitize, a stored flow)
        bits.append("sanitized")
    return f"<jwt {' '.join(bits)}>"


def jwt_expired(token: str, now: float) -> float | None:
    """Seconds since expiry if the JWT has expired, else None."""
    claims = jwt_claims(token) or {}
    exp = claims.get("exp")
    if isinstance(exp, (int, float)) and not isinstance(exp, bool) and exp < now:
        try:
            return float(now - exp)
        except OverflowError:  # exp far past float range
            return None
    return None


def replace_url_secrets(parts: SplitResult, secret: Callable[[str], str], password: str) -> SplitResult:
    """The URL with each query value named in SECRET_KEYS or AUTH_CODE_KEYS replaced by secret(value) and
    a userinfo password (wss://user:password@host) by `password`; every other byte as written (a bare
    `&notify_self` stays bare, percent-escapes stay). One walk for what rtproxy prints (Redactor.url) and what it stores
    (sanitize.url)."""
    if parts.password:
        userinfo, _, hostport = parts.netloc.rpartition("@")
        parts = parts._replace(netloc=f"{userinfo.partition(':')[0]}:{password}@{hostport}")
    if parts.query:
        pieces = []
        for piece in parts.query.split("&"):
            key, eq, value = piece.partition("=")
            if eq and value and unquote_plus(key).lower() in _URL_KEYS:
                piece = f"{key}={secret(value)}"
            pieces.append(piece)
        parts = parts._replace(query="&".join(pieces))
    return parts


class Redactor:
    """Redacts secrets in URLs, headers, text and decoded payloads. `now` is injectable for tests
    and offline analysis (a capture's own time)."""

    def __init__(self, show_secrets: bool = False) -> None:
        self.show_secrets = show_secrets

    def secret(self, value: str, now: float | None = None) -> str:
        if self.show_secrets:
            return printable(value)
        if jwt_claims(value) is not None:
            return describe_jwt(value, now)
        return REDACTED

    def text(self, s: str, now: float | None = None) -> str:
        s = printable(s)
        if self.show_secrets or ("eyJ" not in s and "sb_" not in s and "=" not in s):
            return s
        # `apikey=<value>` first: the JWT pass would otherwise leave "apikey=<jwt …>" for this one to mangle.
        s = _PARAM_RE.sub(lambda m: f"{m.group(1)}={REDACTED}", s)
        s = _JWT_RE.sub(lambda m: describe_jwt(m.group(0), now), s)
        s = _JWT_CUT_RE.sub(JWT_CUT, s)
        return _SB_KEY_RE.sub(REDACTED, s)

    def url(self, url: str) -> str:
        """A URL with its secret query values and a userinfo password redacted; every other byte of it kept
        as written (a bare `&notify_self` stays bare, percent-escapes stay)."""
        url = printable(url)
        if self.show_secrets:
            return url
        try:
            parts = urlsplit(url)
        except ValueError:
            return self.text(url)
        redacted = replace_url_secrets(parts, lambda value: REDACTED, REDACTED)
        # Rebuilt only when something changed: urlunsplit drops an empty `?` or `#`.
        return self.text(url if redacted == parts else urlunsplit(redacted))

    def output(self, value: Any, now: float | None = None) -> Any:
        """The one pass everything rtproxy prints or writes goes through last (log lines, reports, the
        content view, every command's output): text is redacted as text, a JSON-able structure as a
        payload (secret keys and every string in it: topics, URLs, reasons). Idempotent."""
        return self.text(value, now) if isinstance(value, str) else self.payload(value, now)

    def payload(self, value: Any, now: float | None = None, _depth: int = 0) -> Any:
        """A redacted copy of a decoded payload (the input is not modified)."""
        if self.show_secrets:
            return value
        if _depth > 64:  # hostile nesting: stop copying, say so
            return "[nested too deep]"
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                key = self.text(k, now) if isinstance(k, str) else k  # presence keys are the app's to pick
                if isinstance(k, str) and k.lower() in SECRET_KEYS and isinstance(v, str) and v:
                    out[key] = self.secret(v, now)
                else:
                    out[key] = self.payload(v, now, _depth + 1)
            return out
        if isinstance(value, list):
            return [self.payload(v, now, _depth + 1) for v in value]
        if isinstance(value, str):
            return self.text(value, now)
        if isinstance(value, (bytes, bytearray, memoryview)):
            # Shown as hex (and UTF-8) later: a token in a binary payload is a token all the same.
            text = bytes(value).decode("utf-8", "surrogateescape")
            redacted = self.text(text, now)
            return value if redacted == printable(text) else redacted.encode("utf-8", "surrogateescape")
        return value
