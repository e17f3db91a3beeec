"""What the server says when something fails: the configured database and policy conditions
(ServerConfig.database, .policies) and the token errors, each as Realtime words it (rtproxy_core.catalog)."""

from __future__ import annotations

from rtproxy_core.catalog import say

from .. import jwt
from ..elixir import inspect

# Connect.lookup_or_start_connection/2 failures: (join reason, what a running channel's access_token
# refresh says; None: the catch-all inspect/1 of the error atom).
DATABASE = {
    "initializing": ("join.initializing", say("system.initializing")),
    "connecting": (
        "join.tenant_database_connection_initializing",
        say("system.tenant_database_connection_initializing"),
    ),
    "no-connections": ("join.tenant_db_too_many_connections", say("system.tenant_db_too_many_connections")),
    "connect-rate": ("join.connect_rate_limit_reached", say("system.connect_rate_limit_reached")),
    "unavailable": ("join.tenant_database_unavailable", say("system.database_unavailable")),
    "rpc-timeout": ("join.rpc_timeout", say("system.rpc_timeout")),
    "rpc-error": ("join.rpc_error", say("system.rpc_error", term=":noconnection")),
}
# maybe_assign_policies/3 failures (private channels): (join reason, access_token refresh message).
POLICIES = {
    "pool": ("join.increase_connection_pool", say("system.increase_connection_pool")),
    "unable-to-set": ("join.unable_to_set_policies", say("system.database_unavailable")),
    "query-canceled": ("join.query_canceled", say("system.query_canceled")),
    "missing-partition": ("join.missing_partition", say("system.database_unavailable")),
    "rls-error": ("join.unauthorized", "system.unauthorized"),
}
# What inspect(error, pretty: true) of the policy query's Postgrex.Error looks like (its ids vary).
_QUERY_CANCELED = (
    "%Postgrex.Error{\n  message: nil,\n  postgres: %{\n    code: :query_canceled,\n"
    '    message: "canceling statement due to statement timeout",\n    severity: "ERROR",\n'
    '    pg_code: "57014"\n  },\n  connection_id: 4242,\n  query: nil\n}'
)


def join_reason(e: jwt.JWTError) -> str:
    """RealtimeChannel.join/3's else clauses for what confirm_token/1 returned."""
    return {
        jwt.MALFORMED: lambda: say("join.token_malformed"),
        jwt.SIGNATURE: lambda: say("join.signature_error"),
        jwt.SIGNER: lambda: say("join.error_generating_signer"),
        jwt.EXPIRED: lambda: say("join.expired_token", n=e.seconds_ago),
        jwt.CLAIMS: lambda: say("join.missing_claims"),
    }.get(e.kind, lambda: say("join.unknown"))()  # claim validators, claims not a map: the catch-all


def shutdown_text(e: jwt.JWTError) -> str:
    """handle_in("access_token") / handle_info(:confirm_token): what a running channel is told."""
    if e.kind == jwt.MALFORMED:
        return say("system.token_malformed")
    if e.kind == jwt.EXPIRED:
        return say("system.expired_token", n=e.seconds_ago)
    if e.kind == jwt.CLAIMS:
        return say("system.missing_claims")
    if e.kind == jwt.INVALID_CLAIM:  # inspect/1 of Joken's keyword list
        message = str(e.now) if e.claim == "exp" else '"Invalid token"'
        return say("system.invalid_claim", term=message, claim=inspect(e.claim), value=inspect(e.claim_val))
    return say(
        "system." + e.kind
    )  # inspect/1 of :signature_error, :error_generating_signer, :expected_claims_map


def db_reason(condition: str) -> str:
    """A join's refusal for a configured database condition."""
    key = DATABASE[condition][0]
    return say(key, term=":noconnection") if condition == "rpc-error" else say(key)


def policy_reason(condition: str, sub: str) -> str:
    """A private join's refusal for a configured policy condition."""
    key = POLICIES[condition][0]
    if condition == "query-canceled":
        return say(key, term=_QUERY_CANCELED)
    return say(key, topic=sub) if condition == "rls-error" else say(key)
