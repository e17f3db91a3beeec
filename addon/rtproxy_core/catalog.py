"""The real Realtime server's words: every error and status string it sends a client, in one table.

Read from supabase/realtime 833cf36 (2026-08-21) and its history (docs/sources.md): the upgrade bodies of
RealtimeWeb.UserSocket, the join reasons of RealtimeChannel.join/3, the `system` messages of
shutdown_response/2 and handle_info(:postgres_subscribe), the push replies, and Phoenix's own
("unmatched topic", "join crashed"). Each entry says where the string travels, its class, the finding
code it maps to, and the file and function that send it; older wire forms are entries too, with the
date they ended (`until`), because captures from bug reports come from every era.

Texts are verbatim; a variable part is written ⟨name⟩ (⟨n⟩ an integer, anything else any text), so an
entry both matches a capture's string and renders the string the local server sends. Join reasons are
built by RealtimeChannel.Logging.build_msg/2 as "<Code>: <message>" since 2025-08-12; the messages a
running channel gets in `system` never carry the code.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple


class Where(StrEnum):
    """Where a string travels."""

    UPGRADE = "upgrade"  # HTTP answer to the WebSocket upgrade: status + {"error": text}
    JOIN = "join"  # phx_reply to phx_join: {"status": "error", "response": {"reason": text}}
    SYSTEM = (
        "system"  # `system` push, extension "system" (status error: the channel stops, phx_close follows)
    )
    POSTGRES = "postgres"  # `system` push, extension "postgres_changes" (the channel stays)
    REPLY = "reply"  # phx_reply to a push (broadcast, presence)
    CHANGE = "change"  # a database change's `errors` list: the change arrives without its record


class Cause(StrEnum):
    """A string's class: what kind of cause it names."""

    TOKEN = "token"  # the JWT: missing, expired, malformed, wrong signature or claims
    TENANT = "tenant"  # the project: unknown, suspended
    RATE = "rate-limit"  # the project's client quotas
    DATABASE = "database"  # the project's database side: pool, connections, replication, partitions, RPC
    TRANSIENT = "transient"  # Realtime itself is starting or restarting: retry with backoff
    SIZE = "size"  # a payload over a quota
    AUTHZ = "authorization"  # private channels / RLS
    REQUEST = "request"  # what the client asked for: topic, parameters
    INTERNAL = "internal"  # Realtime could not say
    STATUS = "status"  # not an error


# The members by their short names: the table below is written with them.
UPGRADE, JOIN, SYSTEM, POSTGRES, REPLY = Where.UPGRADE, Where.JOIN, Where.SYSTEM, Where.POSTGRES, Where.REPLY
CHANGE = Where.CHANGE
TOKEN, TENANT, RATE, DATABASE, TRANSIENT = (
    Cause.TOKEN,
    Cause.TENANT,
    Cause.RATE,
    Cause.DATABASE,
    Cause.TRANSIENT,
)
SIZE, AUTHZ, REQUEST, INTERNAL, STATUS = Cause.SIZE, Cause.AUTHZ, Cause.REQUEST, Cause.INTERNAL, Cause.STATUS

_VAR = re.compile(r"⟨(\w+)⟩")


@dataclass(frozen=True, slots=True)
class Said:
    key: str  # stable name: <where>.<Realtime's error atom or what it is>
    where: Where
    text: str  # verbatim; ⟨name⟩ marks a variable part
    cls: Cause
    finding: str  # finding code ("" for a status)
    source: str  # file and function in supabase/realtime (or the dependency) that sends it
    status: int | None = None  # HTTP status, for UPGRADE
    until: str = ""  # "" = sent today; else the date (and commit) it stopped being sent
    after: str = ""  # what follows it on the wire, when something does
    means: str = ""  # what it means, where the string alone does not say
    _rx: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts, pos = [], 0
        for m in _VAR.finditer(self.text):
            parts.append(re.escape(self.text[pos : m.start()]))
            parts.append(rf"(?P<{m[1]}>-?\d+)" if m[1] == "n" else rf"(?P<{m[1]}>.+?)")
            pos = m.end()
        parts.append(re.escape(self.text[pos:]))
        object.__setattr__(self, "_rx", re.compile("".join(parts), re.DOTALL))

    @property
    def variable(self) -> bool:
        return "⟨" in self.text

    def match(self, text: str) -> dict[str, str] | None:
        m = self._rx.fullmatch(text)
        return m.groupdict() if m else None

    def render(self, **values: object) -> str:
        """The string as the server sends it, with its variable parts filled in."""

        def fill(m: re.Match[str]) -> str:
            if m[1] not in values:
                raise KeyError(f"{self.key} needs {m[1]}=")
            return str(values[m[1]])

        return _VAR.sub(fill, self.text)


_US = "lib/realtime_web/channels/user_socket.ex"
_RC = "lib/realtime_web/channels/realtime_channel.ex"
_PS = "lib/realtime_web/channels/realtime_channel/presence_handler.ex"
_BH = "lib/realtime_web/channels/realtime_channel/broadcast_handler.ex"
_SUB = "lib/extensions/postgres_cdc_rls/subscriptions.ex"
_PHX = "phoenix lib/phoenix/socket.ex"

_SIGNER = "Failed to generate JWT signer, check your JWT secret or JWKS configuration"
_SIGNER_KID = (
    "Failed to generate JWT signer for key ID (kid) ⟨kid⟩, check your JWT secret or JWKS configuration"
)
_CLAIMS = "Fields `role` and `exp` are required in JWT"
_NOT_JWT = "The token provided is not a valid JWT"
_NO_READ = "You do not have permissions to read from this Channel topic: ⟨topic⟩"
_DB = "Realtime was unable to connect to the project database"
_PG_PARAMS = "Unable to subscribe to changes with given parameters. "
# realtime.apply_rls, the SQL function Realtime's migrations create (20211116214523 first; 413 and 401 there,
# the 400 since 20211210212804_enable_generic_subscription_claims).
_APPLY_RLS = "lib/realtime/tenants/repo/migrations/*_apply_rls_function.ex realtime.apply_rls"

ENTRIES: tuple[Said, ...] = (
    # ---------------------------------------------------------------- the upgrade (UserSocket.handle_error/2)
    Said(
        "upgrade.missing_api_key",
        UPGRADE,
        "API key is missing",
        TOKEN,
        "apikey-missing",
        f"{_US} error_response/1 (validate_token/1)",
        401,
    ),
    Said(
        "upgrade.expired_token",
        UPGRADE,
        "Token has expired",
        TOKEN,
        "token-expired",
        f"{_US} error_response/1",
        401,
    ),
    Said("upgrade.missing_claims", UPGRADE, _CLAIMS, TOKEN, "token-invalid", f"{_US} error_response/1", 401),
    Said(
        "upgrade.token_malformed", UPGRADE, _NOT_JWT, TOKEN, "token-invalid", f"{_US} error_response/1", 401
    ),
    Said(
        "upgrade.signature_error",
        UPGRADE,
        "Failed to validate JWT signature",
        TOKEN,
        "token-invalid",
        f"{_US} error_response/1",
        401,
    ),
    Said(
        "upgrade.error_generating_signer",
        UPGRADE,
        _SIGNER,
        TOKEN,
        "token-invalid",
        f"{_US} error_response/1",
        401,
    ),
    Said(
        "upgrade.error_generating_signer_kid",
        UPGRADE,
        _SIGNER_KID,
        TOKEN,
        "token-invalid",
        f"{_US} error_response/1",
        401,
    ),
    Said(
        "upgrade.tenant_suspended",
        UPGRADE,
        "Realtime was disabled for this tenant",
        TENANT,
        "realtime-disabled",
        f"{_US} error_response/1",
        403,
    ),
    Said(
        "upgrade.tenant_not_found",
        UPGRADE,
        "Tenant not found",
        TENANT,
        "tenant-not-found",
        f"{_US} error_response/1",
        404,
    ),
    Said(
        "upgrade.too_many_connections",
        UPGRADE,
        "Too many connected users",
        RATE,
        "rate-limited",
        f"{_US} error_response/1 (TenantRateLimiters.check_tenant/1)",
        429,
    ),
    Said(
        "upgrade.too_many_joins",
        UPGRADE,
        "Too many joins per second",
        RATE,
        "rate-limited",
        f"{_US} error_response/1 (TenantRateLimiters.check_tenant/1)",
        429,
    ),
    # Anything else connect/3 gets back: a claim validator that failed (exp or iat not a number, a float
    # exp in the past), claims or header not a JSON object, a rate-counter error.
    Said(
        "upgrade.error",
        UPGRADE,
        "Error connecting to Realtime",
        INTERNAL,
        "token-invalid",
        f"{_US} error_response/1 (catch-all)",
        500,
    ),
    # ---------------------------------------------------------------- Phoenix's own replies
    Said(
        "join.unmatched_topic",
        JOIN,
        "unmatched topic",
        REQUEST,
        "join-error",
        f"{_PHX} encode_ignore/2 (a topic outside realtime:*, or a push to a topic not joined)",
    ),
    Said(
        "join.join_crashed",
        JOIN,
        "join crashed",
        INTERNAL,
        "join-error",
        "phoenix lib/phoenix/channel/server.ex join/4",
    ),
    Said(
        "join.too_many_channels_joined",
        JOIN,
        "too many channels joined",
        RATE,
        "rate-limited",
        f"{_PHX} handle_in/4 (max_channels_per_transport 99,999)",
    ),
    # ---------------------------------------------------------------- join reasons (RealtimeChannel.join/3)
    Said(
        "join.topic_required",
        JOIN,
        "TopicNameRequired: You must provide a topic name",
        REQUEST,
        "join-error",
        f'{_RC} join/3 ("realtime:")',
    ),
    Said(
        "join.shutdown_in_progress",
        JOIN,
        "RealtimeRestarting: Realtime is restarting, please standby",
        TRANSIENT,
        "server-restarting",
        f"{_RC} join/3 (SignalHandler.shutdown_in_progress?/0)",
    ),
    Said(
        "join.expired_token",
        JOIN,
        "InvalidJWTToken: Token has expired ⟨n⟩ seconds ago",
        TOKEN,
        "token-expired",
        f"{_RC} join/3 (confirm_token/1)",
    ),
    Said("join.missing_claims", JOIN, f"InvalidJWTToken: {_CLAIMS}", TOKEN, "token-invalid", f"{_RC} join/3"),
    Said(
        "join.invalid_exp",
        JOIN,
        "InvalidJWTToken: Token expiration time is invalid",
        TOKEN,
        "token-expired",
        f"{_RC} join/3 (confirm_token/1: exp - now <= 0)",
    ),
    Said("join.token_malformed", JOIN, f"MalformedJWT: {_NOT_JWT}", TOKEN, "token-invalid", f"{_RC} join/3"),
    Said(
        "join.signature_error",
        JOIN,
        "JwtSignatureError: Failed to validate JWT signature",
        TOKEN,
        "token-invalid",
        f"{_RC} join/3",
    ),
    Said(
        "join.error_generating_signer_kid",
        JOIN,
        f"JwtSignerError: {_SIGNER_KID}",
        TOKEN,
        "token-invalid",
        f"{_RC} join/3",
    ),
    Said(
        "join.error_generating_signer",
        JOIN,
        f"JwtSignerError: {_SIGNER}",
        TOKEN,
        "token-invalid",
        f"{_RC} join/3",
    ),
    Said(
        "join.unauthorized",
        JOIN,
        f"Unauthorized: {_NO_READ}",
        AUTHZ,
        "join-unauthorized",
        f"{_RC} join/3 (maybe_assign_policies/3, can_replay?/3)",
    ),
    Said(
        "join.private_only",
        JOIN,
        "PrivateOnly: This project only allows private channels",
        AUTHZ,
        "join-unauthorized",
        f"{_RC} join/3 (only_private?/2)",
    ),
    Said(
        "join.too_many_channels",
        JOIN,
        "ChannelRateLimitReached: Too many channels",
        RATE,
        "rate-limited",
        f"{_RC} join/3 (limit_channels/2)",
    ),
    Said(
        "join.too_many_connections",
        JOIN,
        "ConnectionRateLimitReached: Too many connected users",
        RATE,
        "rate-limited",
        f"{_RC} join/3 (limit_max_users/2)",
    ),
    Said(
        "join.too_many_joins",
        JOIN,
        "ClientJoinRateLimitReached: Too many joins per second",
        RATE,
        "rate-limited",
        f"{_RC} join/3 (limit_joins/2)",
        after="socket close 1001",
    ),
    Said(
        "join.tenant_not_found",
        JOIN,
        "TenantNotFound: Tenant with the given ID does not exist",
        TENANT,
        "tenant-not-found",
        f"{_RC} join/3",
        after="socket close 1001",
    ),
    Said(
        "join.tenant_suspended",
        JOIN,
        "RealtimeDisabledForTenant: Realtime disabled for this tenant",
        TENANT,
        "realtime-disabled",
        f"{_RC} join/3 (Connect.call_external_node/2)",
    ),
    Said(
        "join.initializing",
        JOIN,
        "InitializingProjectConnection: Realtime is initializing the project connection",
        TRANSIENT,
        "server-restarting",
        f"{_RC} join/3 (Connect.lookup_or_start_connection/2)",
    ),
    Said(
        "join.tenant_database_connection_initializing",
        JOIN,
        "InitializingProjectConnection: Connecting to the project database",
        TRANSIENT,
        "server-restarting",
        f"{_RC} join/3 (Connect.lookup_or_start_connection/2)",
    ),
    Said(
        "join.increase_connection_pool",
        JOIN,
        "IncreaseConnectionPool: Please increase your connection pool size",
        DATABASE,
        "database-unavailable",
        f"{_RC} join/3 (Authorization.get_read_authorizations/4)",
    ),
    Said(
        "join.tenant_db_too_many_connections",
        JOIN,
        "DatabaseLackOfConnections: Database can't accept more connections, Realtime won't connect",
        DATABASE,
        "database-unavailable",
        f"{_RC} join/3 (Connect)",
    ),
    Said(
        "join.connect_rate_limit_reached",
        JOIN,
        "DatabaseConnectionRateLimitReached: Too many database connections attempts per second",
        DATABASE,
        "database-unavailable",
        f"{_RC} join/3 (Connect.lookup_or_start_connection/2)",
    ),
    Said(
        "join.tenant_database_unavailable",
        JOIN,
        f"UnableToConnectToProject: {_DB}",
        DATABASE,
        "database-unavailable",
        f"{_RC} join/3",
    ),
    Said(
        "join.unable_to_set_policies",
        JOIN,
        _DB,
        DATABASE,
        "database-unavailable",
        f"{_RC} join/3 (maybe_assign_policies/3; no code prefix)",
    ),
    Said(
        "join.query_canceled",
        JOIN,
        "QueryCanceled: ⟨term⟩",
        DATABASE,
        "database-unavailable",
        f"{_RC} join/3 (policy query hit statement_timeout)",
    ),
    Said(
        "join.missing_partition",
        JOIN,
        "MissingPartition: Realtime was unable to find the expected messages partition",
        DATABASE,
        "database-unavailable",
        f"{_RC} join/3",
    ),
    Said(
        "join.rpc_timeout",
        JOIN,
        "TimeoutOnRpcCall: Node request timeout",
        DATABASE,
        "database-unavailable",
        f"{_RC} join/3",
    ),
    Said(
        "join.rpc_error",
        JOIN,
        "ErrorOnRpcCall: RPC call error: ⟨term⟩",
        DATABASE,
        "database-unavailable",
        f"{_RC} join/3",
    ),
    Said(
        "join.failed_to_replay_messages",
        JOIN,
        "UnableToReplayMessages: Realtime was unable to replay messages",
        DATABASE,
        "join-error",
        f"{_RC} join/3 (Messages.replay/5)",
    ),
    Said(
        "join.invalid_replay_params",
        JOIN,
        "UnableToReplayMessages: Replay params are not valid",
        REQUEST,
        "join-error",
        f"{_RC} join/3",
    ),
    Said(
        "join.invalid_replay_channel",
        JOIN,
        "UnableToReplayMessages: Replay is not allowed for public channels",
        REQUEST,
        "join-error",
        f"{_RC} join/3 (maybe_replay_messages/5)",
    ),
    Said(
        "join.muster",
        JOIN,
        "MusterJoinError: ⟨term⟩",
        INTERNAL,
        "join-error",
        f"{_RC} await_muster_join/2 (the join had subscribed already)",
    ),
    Said(
        "join.unknown",
        JOIN,
        "Unknown Error on Channel",
        INTERNAL,
        "join-error",
        f"{_RC} join/3 (catch-all; also a token whose exp or iat is not a number)",
    ),
    Said(
        "join.exception",
        JOIN,
        "UnknownErrorOnChannel: ⟨text⟩",
        INTERNAL,
        "join-error",
        f"{_RC} join/3 (rescue)",
    ),
    # ---------------------------------------------------------------- a running channel stops (shutdown_response/2)
    Said(
        "system.too_many_messages",
        SYSTEM,
        "Too many messages per second",
        RATE,
        "rate-limited",
        f"{_RC} handle_info(:update_rate_counter)",
        after="phx_close",
    ),
    Said(
        "system.too_many_presence_messages",
        SYSTEM,
        "Too many presence messages per second",
        RATE,
        "rate-limited",
        f'{_RC} handle_in("presence") / handle_info(:sync_presence)',
        after="phx_close",
    ),
    Said(
        "system.client_presence_rate_limit",
        SYSTEM,
        "Client presence rate limit exceeded",
        RATE,
        "rate-limited",
        f'{_RC} handle_in("presence") ({_PS} limit_client_presence_event/1)',
        after="phx_close",
    ),
    Said(
        "system.track_size_exceeded",
        SYSTEM,
        "Track message size exceeded",
        SIZE,
        "message-too-large",
        f'{_RC} handle_in("presence") (Tenants.validate_payload_size/2)',
        after="phx_close",
    ),
    Said(
        "system.expired_token",
        SYSTEM,
        "Token has expired ⟨n⟩ seconds ago",
        TOKEN,
        "token-expired",
        f'{_RC} handle_info(:confirm_token), handle_in("access_token")',
        after="phx_close",
    ),
    Said(
        "system.missing_claims",
        SYSTEM,
        _CLAIMS,
        TOKEN,
        "token-invalid",
        f'{_RC} handle_info(:confirm_token), handle_in("access_token")',
        after="phx_close",
    ),
    Said(
        "system.token_malformed",
        SYSTEM,
        _NOT_JWT,
        TOKEN,
        "token-invalid",
        f'{_RC} handle_in("access_token")',
        after="phx_close",
    ),
    Said(
        "system.error_generating_signer_kid",
        SYSTEM,
        _SIGNER_KID,
        TOKEN,
        "token-invalid",
        f'{_RC} handle_info(:confirm_token), handle_in("access_token")',
        after="phx_close",
    ),
    # inspect/1 of the error atom (handle_in("access_token") catch-all, Realtime.Logs.to_log/1).
    Said(
        "system.signature_error",
        SYSTEM,
        ":signature_error",
        TOKEN,
        "token-invalid",
        f'{_RC} handle_in("access_token") catch-all',
        after="phx_close",
    ),
    Said(
        "system.error_generating_signer",
        SYSTEM,
        ":error_generating_signer",
        TOKEN,
        "token-invalid",
        f'{_RC} handle_in("access_token") catch-all',
        after="phx_close",
    ),
    Said(
        "system.expected_claims_map",
        SYSTEM,
        ":expected_claims_map",
        TOKEN,
        "token-invalid",
        f'{_RC} handle_in("access_token") catch-all',
        after="phx_close",
    ),
    Said(
        "system.expected_header_map",
        SYSTEM,
        ":expected_header_map",
        TOKEN,
        "token-invalid",
        f'{_RC} handle_in("access_token") catch-all',
        after="phx_close",
    ),
    Said(
        "system.token_race",
        SYSTEM,
        "0",
        TOKEN,
        "token-expired",
        f"{_RC} handle_info(:confirm_token) (exp - now reached 0 between two checks)",
        after="phx_close",
    ),
    Said(
        "system.increase_connection_pool",
        SYSTEM,
        ":increase_connection_pool",
        DATABASE,
        "database-unavailable",
        f'{_RC} handle_in("access_token") catch-all',
        after="phx_close",
    ),
    Said(
        "system.tenant_db_too_many_connections",
        SYSTEM,
        ":tenant_db_too_many_connections",
        DATABASE,
        "database-unavailable",
        f'{_RC} handle_in("access_token") catch-all',
        after="phx_close",
    ),
    Said(
        "system.connect_rate_limit_reached",
        SYSTEM,
        ":connect_rate_limit_reached",
        DATABASE,
        "database-unavailable",
        f'{_RC} handle_in("access_token") catch-all',
        after="phx_close",
    ),
    Said(
        "system.timeout",
        SYSTEM,
        ":timeout",
        DATABASE,
        "database-unavailable",
        f'{_RC} handle_in("access_token") catch-all (a remote policy check timed out)',
        after="phx_close",
    ),
    Said(
        "system.initializing",
        SYSTEM,
        ":initializing",
        TRANSIENT,
        "server-restarting",
        f'{_RC} handle_in("access_token") catch-all',
        after="phx_close",
    ),
    Said(
        "system.tenant_database_connection_initializing",
        SYSTEM,
        ":tenant_database_connection_initializing",
        TRANSIENT,
        "server-restarting",
        f'{_RC} handle_in("access_token") catch-all',
        after="phx_close",
    ),
    Said(
        "system.tenant_suspended",
        SYSTEM,
        ":tenant_suspended",
        TENANT,
        "realtime-disabled",
        f'{_RC} handle_in("access_token") catch-all',
        after="phx_close",
    ),
    Said(
        "system.tenant_not_found",
        SYSTEM,
        ":tenant_not_found",
        TENANT,
        "tenant-not-found",
        f'{_RC} handle_in("access_token") catch-all',
        after="phx_close",
    ),
    Said(
        "system.invalid_claim",
        SYSTEM,
        "[message: ⟨term⟩, claim: ⟨claim⟩, claim_val: ⟨value⟩]",
        TOKEN,
        "token-invalid",
        f'{_RC} handle_in("access_token") catch-all (a Joken validator failed)',
        after="phx_close",
    ),
    Said(
        "system.unauthorized",
        SYSTEM,
        _NO_READ,
        AUTHZ,
        "join-unauthorized",
        f'{_RC} handle_in("access_token")',
        after="phx_close",
    ),
    Said(
        "system.read_permissions_revoked",
        SYSTEM,
        "You no longer have permission to read from this Channel topic: ⟨topic⟩",
        AUTHZ,
        "join-unauthorized",
        f'{_RC} handle_in("access_token") (check_read_permissions_revoked/2)',
        after="phx_close",
    ),
    Said(
        "system.database_unavailable",
        SYSTEM,
        _DB,
        DATABASE,
        "database-unavailable",
        f'{_RC} handle_in("access_token")',
        after="phx_close",
    ),
    Said(
        "system.query_canceled",
        SYSTEM,
        "Query was cancelled, please try again",
        DATABASE,
        "database-unavailable",
        f'{_RC} handle_in("access_token")',
        after="phx_close",
    ),
    Said(
        "system.rpc_timeout",
        SYSTEM,
        "Node request timeout",
        DATABASE,
        "database-unavailable",
        f'{_RC} handle_in("access_token")',
        after="phx_close",
    ),
    Said(
        "system.rpc_error",
        SYSTEM,
        "RPC call error: ⟨term⟩",
        DATABASE,
        "database-unavailable",
        f'{_RC} handle_in("access_token")',
        after="phx_close",
    ),
    Said(
        "system.replication_not_ready",
        SYSTEM,
        "Replication connection was not established in time",
        DATABASE,
        "database-unavailable",
        f"{_RC} handle_info(:notify_replication_ready)",
        after="phx_close",
    ),
    Said(
        "system.replication_ready",
        SYSTEM,
        "Replication connection established",
        STATUS,
        "",
        f"{_RC} handle_info(:notify_replication_ready)",
    ),
    # UserSocket.disconnect/1 (a tenant drain): status ok, no `channel` key, then close 1012, no phx_close.
    Said(
        "system.disconnect",
        SYSTEM,
        "Server requested disconnect",
        TRANSIENT,
        "server-close",
        f"{_US} disconnect/1",
        after="socket close 1012",
    ),
    # ---------------------------------------------------------------- postgres_changes (handle_info(:postgres_subscribe))
    Said(
        "postgres.subscribed",
        POSTGRES,
        "Subscribed to PostgreSQL",
        STATUS,
        "",
        f"{_RC} handle_info(:postgres_subscribe)",
    ),
    Said(
        "postgres.subscription_insert_failed",
        POSTGRES,
        _PG_PARAMS + "Please check Realtime is enabled for the given connect parameters: [⟨params⟩]",
        REQUEST,
        "postgres-changes-error",
        f"{_SUB} create/5 (no publication table matched; not retried)",
    ),
    Said(
        "postgres.subscription_exception",
        POSTGRES,
        _PG_PARAMS + "An exception happened so please check your connect parameters: [⟨params⟩]. "
        "Exception: ⟨text⟩",
        REQUEST,
        "postgres-changes-error",
        f"{_SUB} create/5 (not retried)",
    ),
    Said(
        "postgres.filter_parse",
        POSTGRES,
        "Error parsing `filter` params: ⟨text⟩",
        REQUEST,
        "postgres-changes-error",
        "lib/extensions/postgres_cdc_rls/subscriptions.ex parse_subscription_params/1",
    ),
    Said(
        "postgres.no_params",
        POSTGRES,
        "No subscription params provided. Please provide at least a `schema` or "
        "`table` to subscribe to: ⟨term⟩",
        REQUEST,
        "postgres-changes-error",
        "lib/extensions/postgres_cdc_rls/subscriptions.ex parse_subscription_params/1",
    ),
    Said(
        "postgres.select_parse",
        POSTGRES,
        "Error parsing `select` params: expected a list of column name "
        'strings, e.g. select: ["col1", "col2"]',
        REQUEST,
        "postgres-changes-error",
        "lib/extensions/postgres_cdc_rls/subscriptions.ex",
    ),
    Said(
        "postgres.select_wildcard",
        POSTGRES,
        "Column selection is not supported for wildcard subscriptions. "
        "Provide an explicit schema and table name.",
        REQUEST,
        "postgres-changes-error",
        "lib/extensions/postgres_cdc_rls/subscriptions.ex",
    ),
    Said(
        "postgres.too_many_database_timeouts",
        POSTGRES,
        '{:error, "Too many database timeouts"}',
        DATABASE,
        "postgres-changes-error",
        "lib/extensions/postgres_cdc_rls/cdc_rls.ex create_subscription/7 (retried every 5-10 s)",
    ),
    # ---------------------------------------------------------------- replies to pushes
    Said(
        "reply.payload_size_exceeded",
        REPLY,
        "payload_size_exceeded",
        SIZE,
        "message-too-large",
        f"{_BH} handle/3 (acked broadcasts; unacked ones are dropped silently)",
    ),
    # The channel stays; the client's track failed (logged as a rejected push, no finding of its own).
    Said(
        "reply.presence_payload_not_a_map",
        REPLY,
        "Presence track payload must be a map",
        REQUEST,
        "",
        f'{_RC} handle_in("presence")',
    ),
    # ---------------------------------------------------------------- older forms still found in bug reports
    # Join reasons were the raw message (no code) from 2024-05-09 (cd04f2f7) to 2025-08-12 (96866172), and
    # inspect/1 of the error tuple before that.
    Said(
        "join.expired_token.2025-03",
        JOIN,
        "Token has expired ⟨n⟩ seconds ago",
        TOKEN,
        "token-expired",
        f"{_RC} join/3",
        until="2025-08-12 (96866172)",
    ),
    Said(
        "join.expired_token.typo1",
        JOIN,
        "Token as expired ⟨n⟩ seconds ago",
        TOKEN,
        "token-expired",
        f"{_RC} join/3",
        until="2025-02-28 (bc9ca37a)",
    ),
    Said(
        "join.expired_token.typo2",
        JOIN,
        "Token hasexpired ⟨n⟩ seconds ago",
        TOKEN,
        "token-expired",
        f"{_RC} join/3",
        until="2025-03-13 (60b36e47)",
    ),
    Said(
        "join.expired_token.joken",
        JOIN,
        'Invalid value for JWT claim "exp" with value ⟨n⟩',
        TOKEN,
        "token-expired",
        f"{_RC} join/3",
        until="2025-01-22 (00a44429)",
    ),
    Said(
        "join.expired_token.joken_coded",
        JOIN,
        'InvalidJWTToken: Invalid value for JWT claim "exp" with value ⟨n⟩',
        TOKEN,
        "token-expired",
        f"{_RC} join/3 (as pasted from clients and logs)",
        until="2025-01-22 (00a44429)",
    ),
    Said(
        "join.expired_token.joken0",
        JOIN,
        'Invalid value for JWT claim "exp"',
        TOKEN,
        "token-expired",
        f"{_RC} join/3",
        until="2024-09-17 (bcfc92a3)",
    ),
    Said(
        "join.invalid_jwt.2024",
        JOIN,
        "Invalid JWT Token",
        TOKEN,
        "token-invalid",
        f"{_RC} join/3",
        until="2024-08-28 (8233ca53)",
    ),
    Said(
        "join.expired_token.tuple",
        JOIN,
        '{:error, [message: "Invalid token", claim: "exp", claim_val: ⟨n⟩]}',
        TOKEN,
        "token-expired",
        f"{_RC} join/3",
        until="2024-05-09 (cd04f2f7)",
    ),
    Said(
        "join.too_many_channels.2024",
        JOIN,
        "Too many channels",
        RATE,
        "rate-limited",
        f"{_RC} join/3",
        until="2025-08-12 (96866172)",
    ),
    Said(
        "join.too_many_channels.tuple",
        JOIN,
        "{:error, :too_many_channels}",
        RATE,
        "rate-limited",
        f"{_RC} join/3",
        until="2024-05-09 (cd04f2f7)",
    ),
    Said(
        "join.too_many_connections.2024",
        JOIN,
        "Too many connected users",
        RATE,
        "rate-limited",
        f"{_RC} join/3",
        until="2025-08-12 (96866172)",
    ),
    Said(
        "join.too_many_connections.tuple",
        JOIN,
        "{:error, :too_many_connections}",
        RATE,
        "rate-limited",
        f"{_RC} join/3",
        until="2024-05-09 (cd04f2f7)",
    ),
    Said(
        "join.too_many_joins.2024",
        JOIN,
        "Too many joins per second",
        RATE,
        "rate-limited",
        f"{_RC} join/3",
        until="2025-08-19 (a11fc673)",
    ),
    Said(
        "join.too_many_joins.tuple",
        JOIN,
        "{:error, :too_many_joins}",
        RATE,
        "rate-limited",
        f"{_RC} join/3",
        until="2024-05-09 (cd04f2f7)",
    ),
    Said(
        "join.signature_error.2024",
        JOIN,
        "Failed to validate JWT signature",
        TOKEN,
        "token-invalid",
        f"{_RC} join/3",
        until="2025-08-12 (96866172)",
    ),
    Said(
        "join.signature_error.atom",
        JOIN,
        "signature_error",
        TOKEN,
        "token-invalid",
        f"{_RC} join/3 catch-all",
        until="2024-11-21 (83c756d4)",
    ),
    Said(
        "join.signature_error.inspect",
        JOIN,
        ":signature_error",
        TOKEN,
        "token-invalid",
        f"{_RC} join/3 catch-all",
        until="2024-05-09 (cd04f2f7)",
    ),
    Said(
        "join.missing_claims.2025",
        JOIN,
        "missing_claims",
        TOKEN,
        "token-invalid",
        f"{_RC} join/3 catch-all",
        until="2025-01-24 (5c0e68ba)",
    ),
    Said(
        "join.missing_claims.2024",
        JOIN,
        _CLAIMS,
        TOKEN,
        "token-invalid",
        f"{_RC} join/3",
        until="2025-08-12 (96866172)",
    ),
    Said(
        "join.token_malformed.2025",
        JOIN,
        _NOT_JWT,
        TOKEN,
        "token-invalid",
        f"{_RC} join/3",
        until="2025-08-12 (96866172)",
    ),
    Said(
        "join.claims_not_a_map",
        JOIN,
        "Token claims must be a map",
        TOKEN,
        "token-invalid",
        f"{_RC} join/3",
        until="2025-05-29 (a8f2f95c)",
    ),
    Said(
        "join.unauthorized.2024",
        JOIN,
        _NO_READ,
        AUTHZ,
        "join-unauthorized",
        f"{_RC} join/3",
        until="2025-08-12 (96866172)",
    ),
    Said(
        "join.unauthorized.topicless",
        JOIN,
        "You do not have permissions to read from this Topic",
        AUTHZ,
        "join-unauthorized",
        f"{_RC} join/3",
        until="2024-09-19 (07a0a150)",
    ),
    Said(
        "join.unauthorized.broadcast",
        JOIN,
        "You do not have permissions to read Broadcast messages from this channel",
        AUTHZ,
        "join-unauthorized",
        f"{_RC} join/3",
        until="2024-09-19 (07a0a150)",
    ),
    Said(
        "join.private_only.2024",
        JOIN,
        "This project only allows private channels",
        AUTHZ,
        "join-unauthorized",
        f"{_RC} join/3",
        until="2025-08-12 (96866172)",
    ),
    Said(
        "join.tenant_database_unavailable.2024",
        JOIN,
        "Realtime was unable to connect to the tenant database",
        DATABASE,
        "database-unavailable",
        f"{_RC} join/3",
        until="2024-05-09 (cd04f2f7)",
    ),
    Said(
        "join.tenant_database_unavailable.tuple",
        JOIN,
        "{:error, :tenant_database_unavailable}",
        DATABASE,
        "database-unavailable",
        f"{_RC} join/3",
        until="2024-03-07 (ea45848f)",
    ),
    Said(
        "join.unable_to_set_policies.2024",
        JOIN,
        "Unable to set policies for connection",
        DATABASE,
        "database-unavailable",
        f"{_RC} join/3",
        until="2025-01-28 (a5eaa0ad)",
    ),
    Said(
        "join.initializing.2024",
        JOIN,
        "Realtime is initializing the project connection",
        TRANSIENT,
        "server-restarting",
        f"{_RC} join/3",
        until="2025-08-12 (96866172)",
    ),
    Said(
        "join.db_initializing.2024",
        JOIN,
        "Connecting to the project database",
        TRANSIENT,
        "server-restarting",
        f"{_RC} join/3",
        until="2025-08-12 (96866172)",
    ),
    Said(
        "join.db_initializing.warning",
        JOIN,
        "Start channel error: Connecting to the project database",
        TRANSIENT,
        "server-restarting",
        f"{_RC} join/3",
        until="2025-01-28 (a5eaa0ad)",
    ),
    Said(
        "join.shutdown_in_progress.2024",
        JOIN,
        "Realtime is restarting, please standby",
        TRANSIENT,
        "server-restarting",
        f"{_RC} join/3",
        until="2025-08-12 (96866172)",
    ),
    Said(
        "join.increase_connection_pool.2025",
        JOIN,
        "Please increase your connection pool size",
        DATABASE,
        "database-unavailable",
        f"{_RC} join/3",
        until="2025-08-12 (96866172)",
    ),
    Said(
        "join.tenant_db_too_many_connections.2025",
        JOIN,
        "Database can't accept more connections, Realtime won't connect",
        DATABASE,
        "database-unavailable",
        f"{_RC} join/3",
        until="2025-08-12 (96866172)",
    ),
    Said(
        "join.rpc_timeout.2025",
        JOIN,
        "Node request timeout",
        DATABASE,
        "database-unavailable",
        f"{_RC} join/3",
        until="2025-08-12 (96866172)",
    ),
    Said(
        "join.tenant_not_found.2025",
        JOIN,
        "Tenant with the given ID does not exist",
        TENANT,
        "tenant-not-found",
        f"{_RC} join/3",
        until="2025-08-12 (96866172)",
    ),
    Said(
        "join.tenant_suspended.2025",
        JOIN,
        "Realtime disabled for this tenant",
        TENANT,
        "realtime-disabled",
        f"{_RC} join/3",
        until="2025-08-12 (96866172)",
    ),
    Said(
        "system.expired_token.2025",
        SYSTEM,
        "Access token has expired: ⟨term⟩",
        TOKEN,
        "token-expired",
        f"{_RC} handle_info(:confirm_token)",
        until="2025-01-24 (fa457b1b)",
        after="phx_close",
    ),
    Said(
        "system.expired_token.2023",
        SYSTEM,
        "access token has expired: ⟨term⟩",
        TOKEN,
        "token-expired",
        f"{_RC} handle_info(:confirm_token)",
        until="2024-05-09 (cd04f2f7)",
        after="phx_close",
    ),
    Said(
        "system.expired_token.typo1",
        SYSTEM,
        "Token as expired ⟨n⟩ seconds ago",
        TOKEN,
        "token-expired",
        f"{_RC} handle_info(:confirm_token)",
        until="2025-02-28 (bc9ca37a)",
        after="phx_close",
    ),
    Said(
        "system.expired_token.typo2",
        SYSTEM,
        "Token hasexpired ⟨n⟩ seconds ago",
        TOKEN,
        "token-expired",
        f"{_RC} handle_info(:confirm_token)",
        until="2025-03-13 (60b36e47)",
        after="phx_close",
    ),
    Said(
        "system.invalid_access_token.2024",
        SYSTEM,
        "Received an invalid access token from client: ⟨term⟩",
        TOKEN,
        "token-invalid",
        f'{_RC} handle_in("access_token")',
        until="2025-01-24 (fa457b1b)",
        after="phx_close",
    ),
    Said(
        "postgres.subscribe_failed.2024",
        POSTGRES,
        "Subscribing to PostgreSQL failed: ⟨term⟩",
        DATABASE,
        "postgres-changes-error",
        f"{_RC} handle_info(:postgres_subscribe)",
        until="2024-05-09 (cd04f2f7)",
    ),
    Said(
        "postgres.subscription_insert_failed.2025",
        POSTGRES,
        '{:error, "' + _PG_PARAMS + '⟨text⟩"}',
        REQUEST,
        "postgres-changes-error",
        f"{_RC} handle_info(:postgres_subscribe) (retried every 5-10 s)",
        until="2025-10-28 (b80da2dc)",
    ),
    # ---------------------------------------------------------------- a change's errors (realtime.apply_rls)
    # The SQL function that decides, per subscriber, what of a WAL change it gets: on an error the change
    # goes out with `errors`, and with no record (400, 401) or an empty one (413)
    # (postgres_cdc_rls/replication_poller.ex carries them as `errors`; realtime-js 1.x read them from the
    # payload, postgres_changes from `data`).
    Said(
        "change.payload_too_large",
        CHANGE,
        "Error 413: Payload Too Large",
        SIZE,
        "postgres-changes-error",
        _APPLY_RLS,
        means="the change is over the subscription's max_record_bytes: its record is sent empty",
    ),
    Said(
        "change.unauthorized",
        CHANGE,
        "Error 401: Unauthorized",
        AUTHZ,
        "postgres-changes-error",
        _APPLY_RLS,
        means="the subscriber's role may not select the table's primary key (column privileges)",
    ),
    Said(
        "change.no_primary_key",
        CHANGE,
        "Error 400: Bad Request, no primary key",
        REQUEST,
        "postgres-changes-error",
        _APPLY_RLS,
        means="an INSERT or UPDATE on a table without a primary key",
    ),
)

BY_KEY: dict[str, Said] = {e.key: e for e in ENTRIES}
assert len(BY_KEY) == len(ENTRIES), "duplicate catalog key"

_EXACT: dict[str, list[Said]] = {}
for _e in ENTRIES:
    if not _e.variable:
        _EXACT.setdefault(_e.text, []).append(_e)
_PATTERNS = [e for e in ENTRIES if e.variable]

# Realtime's error code -> (class, finding), for the "<Code>: message" reasons whose message the table does
# not hold (a later release rewording it): the code names the cause as reliably as the words.
BY_ERROR_CODE: dict[str, tuple[Cause, str]] = {
    "InvalidJWTToken": (TOKEN, "token-invalid"),
    "MalformedJWT": (TOKEN, "token-invalid"),
    "JwtSignatureError": (TOKEN, "token-invalid"),
    "JwtSignerError": (TOKEN, "token-invalid"),
    "Unauthorized": (AUTHZ, "join-unauthorized"),
    "PrivateOnly": (AUTHZ, "join-unauthorized"),
    "ChannelRateLimitReached": (RATE, "rate-limited"),
    "ConnectionRateLimitReached": (RATE, "rate-limited"),
    "ClientJoinRateLimitReached": (RATE, "rate-limited"),
    "TenantNotFound": (TENANT, "tenant-not-found"),
    "RealtimeDisabledForTenant": (TENANT, "realtime-disabled"),
    "RealtimeRestarting": (TRANSIENT, "server-restarting"),
    "InitializingProjectConnection": (TRANSIENT, "server-restarting"),
    "MusterJoinError": (INTERNAL, "join-error"),
    "IncreaseConnectionPool": (DATABASE, "database-unavailable"),
    "DatabaseLackOfConnections": (DATABASE, "database-unavailable"),
    "DatabaseConnectionRateLimitReached": (DATABASE, "database-unavailable"),
    "UnableToConnectToProject": (DATABASE, "database-unavailable"),
    "MissingPartition": (DATABASE, "database-unavailable"),
    "QueryCanceled": (DATABASE, "database-unavailable"),
    "TimeoutOnRpcCall": (DATABASE, "database-unavailable"),
    "ErrorOnRpcCall": (DATABASE, "database-unavailable"),
    "UnableToReplayMessages": (REQUEST, "join-error"),
    "TopicNameRequired": (REQUEST, "join-error"),
    "UnknownErrorOnChannel": (INTERNAL, "join-error"),
}
_ERROR_CODE = re.compile(r"([A-Z][A-Za-z]+): ")


@functools.lru_cache(maxsize=4096)  # the rules ask about the same few strings every second
def lookup(text: str, where: Where | None = None) -> Said | None:
    """The catalog entry for a string as found on the wire (whitespace at the ends ignored), or None.
    `where` narrows the search to one place (a join reason, an upgrade body...)."""
    text = text.strip()
    for e in _EXACT.get(text, ()):
        if where is None or e.where == where:
            return e
    for e in _PATTERNS:
        if (where is None or e.where == where) and e.match(text) is not None:
            return e
    return None


class Classified(NamedTuple):
    """What a string the server sent is: its class, the finding code it maps to, and its catalog entry
    (None when only its "<Code>: " prefix, or nothing, placed it)."""

    cls: Cause
    finding: str
    entry: Said | None


def classify(text: str, where: Where | None = None) -> Classified:
    """A string the server sent, classified. A string the table does not hold is classified by its
    "<Code>: " prefix when it has a known one, else it is INTERNAL / "join-error"."""
    said = lookup(text, where)
    if said is not None:
        return Classified(said.cls, said.finding, said)
    by_code = by_error_code(text)
    if by_code is not None:
        return Classified(*by_code, None)
    return Classified(INTERNAL, "join-error", None)


def by_error_code(text: str) -> tuple[Cause, str] | None:
    """(class, finding code) of a string by its "<Code>: " prefix, when it has a known one."""
    m = _ERROR_CODE.match(text.strip())
    return BY_ERROR_CODE.get(m[1]) if m else None


def say(key: str, **values: object) -> str:
    """The string the real server sends for `key` (the local server speaks through this)."""
    return BY_KEY[key].render(**values)
