"""Dev JWTs for the local Realtime server: HS256 minting and Realtime-faithful verification. Stdlib only.

Verification follows Realtime's order (RealtimeWeb.JwtVerification.verify/3 + ChannelsAuthorization.
authorize_conn/3, supabase/realtime 833cf36): structure -> signer for the header's alg -> signature ->
claim validators -> `role`/`exp` present. Each failure is a JWTError naming Realtime's error atom; the
words each path sends for it (upgrade body, join reason, system message) are in rtproxy_core.catalog.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import time
from typing import Any
from urllib.parse import unquote

# The Supabase CLI's well-known local JWT secret; its anon/service keys are signed with it.
DEV_JWT_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"

_HS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}

# Why a token is refused, named after Realtime's error atoms (jwt_verification.ex, channels_authorization.ex).
MALFORMED = "token_malformed"  # Joken.peek_claims failed
NOT_A_MAP = "expected_claims_map"  # the claims are JSON but not an object
BAD_HEADER = "expected_header_map"  # the header is not a JSON object
SIGNER = "error_generating_signer"  # no signer for the header's alg (no JWKS here)
SIGNATURE = "signature_error"
EXPIRED = "expired_token"  # exp is an integer in the past: "Token has expired N seconds ago"
INVALID_CLAIM = "invalid_claim"  # a claim validator failed otherwise (exp/iat not a number, float exp past)
CLAIMS = "missing_claims"  # role or exp absent


class JWTError(Exception):
    """A token Realtime would refuse. `kind` is one of the names above; how each path (upgrade, join,
    access_token push, expiry timer) words it lives in rtproxy_core.catalog."""

    def __init__(
        self, kind: str, seconds_ago: int | None = None, claim: str = "", claim_val: Any = None, now: int = 0
    ) -> None:
        self.kind, self.seconds_ago = kind, seconds_ago
        self.claim, self.claim_val, self.now = claim, claim_val, now
        super().__init__(kind)


def _b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64d(seg: str) -> bytes:
    return base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4))


def mint(claims: dict[str, Any], secret: str = DEV_JWT_SECRET) -> str:
    """An HS256 JWT over `claims` (compact JSON, header {"alg":"HS256","typ":"JWT"})."""
    header = _b64e(b'{"alg":"HS256","typ":"JWT"}')
    body = _b64e(json.dumps(claims, separators=(",", ":")).encode("utf-8"))
    sig = hmac.new(secret.encode("utf-8"), f"{header}.{body}".encode("ascii"), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64e(sig)}"


def dev_anon_key(exp_in_s: int = 10 * 365 * 86400, role: str = "anon") -> str:
    """An anon key shaped like the Supabase CLI's (iss supabase-demo, role anon), valid for `exp_in_s`;
    `role="service_role"` gives the CLI's other key."""
    return mint({"iss": "supabase-demo", "role": role, "exp": int(time.time()) + exp_in_s})


def peek(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) without checking anything but the structure, in JwtVerification.verify/3's order:
    check_claims_format/1 (JWTError token_malformed; expected_claims_map for JSON that is not an object),
    then check_header_format/1 (expected_header_map)."""
    parts = clean(token).split(".")
    if len(parts) != 3:
        raise JWTError(MALFORMED)
    try:
        claims = json.loads(_b64d(parts[1]))
    except (ValueError, UnicodeDecodeError):
        raise JWTError(MALFORMED) from None
    if not isinstance(claims, dict):
        raise JWTError(NOT_A_MAP)
    try:
        header = json.loads(_b64d(parts[0]))
    except (ValueError, UnicodeDecodeError):
        header = None
    if not isinstance(header, dict):
        raise JWTError(BAD_HEADER)
    return header, claims


def clean(token: str) -> str:
    """ChannelsAuthorization.clean_token: URI-decoded, whitespace removed."""
    return "".join(unquote(token).split())


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)  # JSON true is an atom in Elixir


def verify(
    token: str, secret: str = DEV_JWT_SECRET, *, check_signature: bool = True, now: float | None = None
) -> dict[str, Any]:
    """The claims of a token Realtime would accept with `secret`; JWTError otherwise.

    Order of RealtimeWeb.JwtVerification.verify/3 then ChannelsAuthorization.authorize_conn/3: structure,
    signer for the header's alg, signature, claim validators (Joken checks "exp" before "iat", each only
    when present: exp must be a number after now, iat a number), then role and exp present. Only an
    integer exp in the past is "expired"; a float one, or any other failed validator, is an error
    Realtime has no message for (500 at the upgrade, "Unknown Error on Channel" at a join)."""
    header, claims = peek(token)
    cleaned = clean(token)
    if check_signature:
        digest = _HS.get(str(header.get("alg")))  # no JWKS here: asymmetric algs have no signer
        if digest is None:
            raise JWTError(SIGNER)
        signing_input, _, sig = cleaned.rpartition(".")
        try:
            given = _b64d(sig)
        except ValueError:
            raise JWTError(SIGNATURE) from None
        want = hmac.new(secret.encode("utf-8"), signing_input.encode("ascii", "replace"), digest).digest()
        if not hmac.compare_digest(given, want):
            raise JWTError(SIGNATURE)
    current = int(now if now is not None else time.time())  # Joken.current_time(): whole seconds
    if "exp" in claims:
        exp = claims["exp"]
        if not (_is_number(exp) and exp > current):
            if isinstance(exp, int) and not isinstance(exp, bool):
                raise JWTError(EXPIRED, seconds_ago=current - exp)
            raise JWTError(INVALID_CLAIM, claim="exp", claim_val=exp, now=current)
    if "iat" in claims and not _is_number(claims["iat"]):
        raise JWTError(INVALID_CLAIM, claim="iat", claim_val=claims["iat"], now=current)
    if "role" not in claims or "exp" not in claims:
        raise JWTError(CLAIMS)
    # "JWT spec allows exp and iat to be a decimal number ... we round it" (verify/3)
    return {k: (_round(v) if k in ("exp", "iat") and _is_number(v) else v) for k, v in claims.items()}


def _round(v: float) -> int:
    """Elixir's round/1: halves away from zero (Python's round() rounds them to even)."""
    return math.floor(abs(v) + 0.5) * (1 if v >= 0 else -1)
