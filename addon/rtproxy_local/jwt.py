"""Dev JWTs for the local Realtime server: HS256 minting and Realtime-faithful verification. Stdlib only.

Verification follows Realtime's order (RealtimeWeb.JwtVerification + ChannelsAuthorization.authorize_conn):
structure -> signer for the header's alg -> signature -> `exp` in the past -> `role`/`exp` present. Each
failure is a JWTError whose str() is the exact string Realtime puts in the upgrade's 401 body; the join
reason and the channel-shutdown message differ per failure, so they are properties.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

# The Supabase CLI's well-known local JWT secret; its anon/service keys are signed with it.
DEV_JWT_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"

_HS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}

MALFORMED, SIGNER, SIGNATURE, EXPIRED, CLAIMS = "malformed", "signer", "signature", "expired", "claims"

_MESSAGES = {  # upgrade 401 bodies (user_socket.ex)
    MALFORMED: "The token provided is not a valid JWT",
    SIGNER: "Failed to generate JWT signer, check your JWT secret or JWKS configuration",
    SIGNATURE: "Failed to validate JWT signature",
    EXPIRED: "Token has expired",
    CLAIMS: "Fields `role` and `exp` are required in JWT",
}
_JOIN_CODES = {  # realtime_channel.ex join/3 error codes
    MALFORMED: "MalformedJWT",
    SIGNER: "JwtSignerError",
    SIGNATURE: "JwtSignatureError",
    EXPIRED: "InvalidJWTToken",
    CLAIMS: "InvalidJWTToken",
}


class JWTError(Exception):
    """A token Realtime would refuse. str(e) is the upgrade's error string."""

    def __init__(self, kind: str, seconds_ago: int | None = None) -> None:
        self.kind = kind
        self.seconds_ago = seconds_ago
        self.message = _MESSAGES[kind]
        super().__init__(self.message)

    @property
    def detail(self) -> str:
        """Message inside a channel: the expiry carries its age there."""
        if self.kind == EXPIRED:
            return f"Token has expired {self.seconds_ago} seconds ago"
        return self.message

    @property
    def join_reason(self) -> str:
        """`phx_join` error reason, "<Code>: <message>"."""
        return f"{_JOIN_CODES[self.kind]}: {self.detail}"

    @property
    def shutdown_message(self) -> str:
        """`system` error text when an `access_token` push or the expiry timer fails. Realtime passes
        signature/signer errors through `inspect/1`, hence the atoms."""
        if self.kind == SIGNATURE:
            return ":signature_error"
        if self.kind == SIGNER:
            return ":error_generating_signer"
        return self.detail


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


def dev_anon_key(exp_in_s: int = 10 * 365 * 86400) -> str:
    """An anon key shaped like the Supabase CLI's (iss supabase-demo, role anon), valid for `exp_in_s`."""
    return mint({"iss": "supabase-demo", "role": "anon", "exp": int(time.time()) + exp_in_s})


def peek(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) without checking anything but the structure; JWTError(malformed) otherwise."""
    parts = "".join(token.split()).split(".")  # Realtime strips whitespace before verifying
    if len(parts) != 3:
        raise JWTError(MALFORMED)
    try:
        header, claims = json.loads(_b64d(parts[0])), json.loads(_b64d(parts[1]))
    except (ValueError, UnicodeDecodeError):
        raise JWTError(MALFORMED) from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise JWTError(MALFORMED)
    return header, claims


def verify(token: str, secret: str = DEV_JWT_SECRET, *, check_signature: bool = True,
           now: float | None = None) -> dict[str, Any]:
    """The claims of a token Realtime would accept with `secret`; JWTError otherwise."""
    header, claims = peek(token)
    if check_signature:
        digest = _HS.get(header.get("alg"))  # no JWKS here: asymmetric algs have no signer
        if digest is None:
            raise JWTError(SIGNER)
        signing_input, _, sig = "".join(token.split()).rpartition(".")
        try:
            given = _b64d(sig)
        except ValueError:
            raise JWTError(SIGNATURE) from None
        want = hmac.new(secret.encode("utf-8"), signing_input.encode("ascii", "replace"), digest).digest()
        if not hmac.compare_digest(given, want):
            raise JWTError(SIGNATURE)
    exp = claims.get("exp")
    current = int(now if now is not None else time.time())
    # Joken only validates claims that are present, and only numbers can be "in the past".
    if isinstance(exp, (int, float)) and not isinstance(exp, bool) and exp <= current:
        raise JWTError(EXPIRED, seconds_ago=int(current - exp))
    if "role" not in claims or "exp" not in claims:
        raise JWTError(CLAIMS)
    return claims
