"""Every string of the catalog, tested with the string as the real server sends it: literals copied from
supabase/realtime 833cf36 (user_socket.ex, realtime_channel.ex, subscriptions.ex, broadcast_handler.ex,
Phoenix's socket.ex), its history, and threads where users pasted them. Never the catalog's own
constants: a typo in the catalog makes its literal here unknown, and the test fails.
"""

from __future__ import annotations

import pytest
from rtproxy_core import catalog
from rtproxy_core.rules import classify_reason

U, J, S, P, R = catalog.UPGRADE, catalog.JOIN, catalog.SYSTEM, catalog.POSTGRES, catalog.REPLY

WIRE = [
    # user_socket.ex error_response/1
    (U, "API key is missing", "apikey-missing"),
    (U, "Token has expired", "token-expired"),
    (U, "Fields `role` and `exp` are required in JWT", "token-invalid"),
    (U, "The token provided is not a valid JWT", "token-invalid"),
    (U, "Failed to validate JWT signature", "token-invalid"),
    (U, "Failed to generate JWT signer, check your JWT secret or JWKS configuration", "token-invalid"),
    (
        U,
        'Failed to generate JWT signer for key ID (kid) "key-1", check your JWT secret or JWKS configuration',
        "token-invalid",
    ),
    (U, "Realtime was disabled for this tenant", "realtime-disabled"),
    (U, "Tenant not found", "tenant-not-found"),
    (U, "Too many connected users", "rate-limited"),
    (U, "Too many joins per second", "rate-limited"),
    (U, "Error connecting to Realtime", "token-invalid"),
    # Phoenix socket.ex / channel/server.ex
    (J, "unmatched topic", "join-error"),
    (J, "join crashed", "join-error"),
    (J, "too many channels joined", "rate-limited"),
    # realtime_channel.ex join/3
    (J, "TopicNameRequired: You must provide a topic name", "join-error"),
    (J, "RealtimeRestarting: Realtime is restarting, please standby", "server-restarting"),
    (J, "InvalidJWTToken: Token has expired 1742 seconds ago", "token-expired"),
    (J, "InvalidJWTToken: Fields `role` and `exp` are required in JWT", "token-invalid"),
    (J, "InvalidJWTToken: Token expiration time is invalid", "token-expired"),
    (J, "MalformedJWT: The token provided is not a valid JWT", "token-invalid"),
    (J, "JwtSignatureError: Failed to validate JWT signature", "token-invalid"),
    (
        J,
        (
            'JwtSignerError: Failed to generate JWT signer for key ID (kid) "k1", check your JWT secret or JWKS '
            "configuration"
        ),
        "token-invalid",
    ),
    (
        J,
        "JwtSignerError: Failed to generate JWT signer, check your JWT secret or JWKS configuration",
        "token-invalid",
    ),
    (
        J,
        "Unauthorized: You do not have permissions to read from this Channel topic: private-room",
        "join-unauthorized",
    ),
    (
        J,
        "PrivateOnly: This project only allows private channels",
        "join-unauthorized",
    ),  # supabase-flutter#1311
    (J, "ChannelRateLimitReached: Too many channels", "rate-limited"),
    (J, "ConnectionRateLimitReached: Too many connected users", "rate-limited"),
    (J, "ClientJoinRateLimitReached: Too many joins per second", "rate-limited"),
    (J, "TenantNotFound: Tenant with the given ID does not exist", "tenant-not-found"),
    (J, "RealtimeDisabledForTenant: Realtime disabled for this tenant", "realtime-disabled"),
    (
        J,
        "InitializingProjectConnection: Realtime is initializing the project connection",
        "server-restarting",
    ),
    (J, "InitializingProjectConnection: Connecting to the project database", "server-restarting"),
    (J, "IncreaseConnectionPool: Please increase your connection pool size", "database-unavailable"),
    (
        J,
        "DatabaseLackOfConnections: Database can't accept more connections, Realtime won't connect",
        "database-unavailable",
    ),
    (
        J,
        "DatabaseConnectionRateLimitReached: Too many database connections attempts per second",
        "database-unavailable",
    ),
    (
        J,
        "UnableToConnectToProject: Realtime was unable to connect to the project database",
        "database-unavailable",
    ),
    (J, "Realtime was unable to connect to the project database", "database-unavailable"),  # flutter#982
    (
        J,
        "QueryCanceled: %Postgrex.Error{\n  message: nil,\n  postgres: %{code: :query_canceled}\n}",
        "database-unavailable",
    ),
    (
        J,
        "MissingPartition: Realtime was unable to find the expected messages partition",
        "database-unavailable",
    ),
    (J, "TimeoutOnRpcCall: Node request timeout", "database-unavailable"),
    (J, "ErrorOnRpcCall: RPC call error: :noconnection", "database-unavailable"),
    (J, "UnableToReplayMessages: Realtime was unable to replay messages", "join-error"),
    (J, "UnableToReplayMessages: Replay params are not valid", "join-error"),
    (J, "UnableToReplayMessages: Replay is not allowed for public channels", "join-error"),
    (J, "MusterJoinError: timed out after 4000ms", "join-error"),
    (J, "Unknown Error on Channel", "join-error"),
    (J, "UnknownErrorOnChannel: no match of right hand side value: {:error, :foo}", "join-error"),
    # shutdown_response/2 and the `system` messages of a running channel
    (S, "Too many messages per second", "rate-limited"),
    (S, "Too many presence messages per second", "rate-limited"),
    (S, "Client presence rate limit exceeded", "rate-limited"),
    (S, "Track message size exceeded", "message-too-large"),
    (S, "Token has expired 0 seconds ago", "token-expired"),
    (S, "Fields `role` and `exp` are required in JWT", "token-invalid"),
    (S, "The token provided is not a valid JWT", "token-invalid"),
    (
        S,
        'Failed to generate JWT signer for key ID (kid) "k1", check your JWT secret or JWKS configuration',
        "token-invalid",
    ),
    (S, ":signature_error", "token-invalid"),
    (S, ":error_generating_signer", "token-invalid"),
    (S, ":expected_claims_map", "token-invalid"),
    (S, ":expected_header_map", "token-invalid"),
    (S, '[message: "Invalid token", claim: "iat", claim_val: "now"]', "token-invalid"),
    (S, "0", "token-expired"),
    (S, ":increase_connection_pool", "database-unavailable"),
    (S, ":tenant_db_too_many_connections", "database-unavailable"),
    (S, ":connect_rate_limit_reached", "database-unavailable"),
    (S, ":timeout", "database-unavailable"),
    (S, ":initializing", "server-restarting"),
    (S, ":tenant_database_connection_initializing", "server-restarting"),
    (S, ":tenant_suspended", "realtime-disabled"),
    (S, ":tenant_not_found", "tenant-not-found"),
    (S, "You do not have permissions to read from this Channel topic: room", "join-unauthorized"),
    (S, "You no longer have permission to read from this Channel topic: room", "join-unauthorized"),
    (S, "Realtime was unable to connect to the project database", "database-unavailable"),
    (S, "Query was cancelled, please try again", "database-unavailable"),
    (S, "Node request timeout", "database-unavailable"),
    (S, "RPC call error: :badnode", "database-unavailable"),
    (S, "Replication connection was not established in time", "database-unavailable"),
    (S, "Replication connection established", ""),
    (S, "Server requested disconnect", "server-close"),
    # handle_info(:postgres_subscribe), subscriptions.ex
    (P, "Subscribed to PostgreSQL", ""),
    (
        P,
        (
            "Unable to subscribe to changes with given parameters. Please check Realtime is enabled for the given "
            "connect parameters: [event: *, schema: public, table: doesnotexist, filters: [], select: nil]"
        ),
        "postgres-changes-error",
    ),
    (
        P,
        (
            "Unable to subscribe to changes with given parameters. An exception happened so please check your "
            'connect parameters: [event: *, schema: public, table: todos, filters: [{"notacolumn", "eq", "123", '
            "false}], select: nil]. Exception: ERROR P0001 (raise_exception) invalid column for filter notacolumn"
        ),
        "postgres-changes-error",
    ),
    (P, 'Error parsing `filter` params: ["foo", "hey"]', "postgres-changes-error"),
    (
        P,
        "No subscription params provided. Please provide at least a `schema` or `table` to subscribe to: %{}",
        "postgres-changes-error",
    ),
    (
        P,
        'Error parsing `select` params: expected a list of column name strings, e.g. select: ["col1", "col2"]',
        "postgres-changes-error",
    ),
    (
        P,
        (
            "Column selection is not supported for wildcard subscriptions. Provide an explicit schema and table "
            "name."
        ),
        "postgres-changes-error",
    ),
    (P, '{:error, "Too many database timeouts"}', "postgres-changes-error"),
    # push replies
    (R, "payload_size_exceeded", "message-too-large"),
    (R, "Presence track payload must be a map", ""),
    # Older forms, as they were sent and pasted in bug reports
    (J, "Token has expired 30 seconds ago", "token-expired"),
    (J, "Token as expired 12 seconds ago", "token-expired"),  # supabase/realtime#1297
    (J, "Token hasexpired 12 seconds ago", "token-expired"),
    (J, 'Invalid value for JWT claim "exp" with value 1743593832', "token-expired"),  # supabase-js#1390
    (J, 'Invalid value for JWT claim "exp"', "token-expired"),
    (
        J,
        'InvalidJWTToken: Invalid value for JWT claim "exp" with value 1743593832',
        "token-expired",
    ),  # js#1390
    (J, "Invalid JWT Token", "token-invalid"),  # supabase-flutter#982
    (J, '{:error, [message: "Invalid token", claim: "exp", claim_val: 1692674245]}', "token-expired"),
    (J, "Too many channels", "rate-limited"),
    (J, "{:error, :too_many_channels}", "rate-limited"),  # supabase/realtime#843
    (J, "Too many connected users", "rate-limited"),  # Auties00/Reboot-Launcher#146
    (J, "{:error, :too_many_connections}", "rate-limited"),
    (J, "Too many joins per second", "rate-limited"),
    (J, "{:error, :too_many_joins}", "rate-limited"),
    (J, "Failed to validate JWT signature", "token-invalid"),
    (J, "signature_error", "token-invalid"),
    (J, ":signature_error", "token-invalid"),
    (J, "missing_claims", "token-invalid"),
    (J, "Fields `role` and `exp` are required in JWT", "token-invalid"),
    (J, "The token provided is not a valid JWT", "token-invalid"),
    (J, "Token claims must be a map", "token-invalid"),
    (J, "You do not have permissions to read from this Channel topic: x", "join-unauthorized"),
    (J, "You do not have permissions to read from this Topic", "join-unauthorized"),  # supabase/realtime#1111
    (J, "You do not have permissions to read Broadcast messages from this channel", "join-unauthorized"),
    (J, "This project only allows private channels", "join-unauthorized"),
    (J, "Realtime was unable to connect to the tenant database", "database-unavailable"),
    (J, "{:error, :tenant_database_unavailable}", "database-unavailable"),
    (J, "Unable to set policies for connection", "database-unavailable"),
    (J, "Realtime is initializing the project connection", "server-restarting"),
    (J, "Connecting to the project database", "server-restarting"),
    (J, "Start channel error: Connecting to the project database", "server-restarting"),
    (J, "Realtime is restarting, please standby", "server-restarting"),
    (J, "Please increase your connection pool size", "database-unavailable"),
    (J, "Database can't accept more connections, Realtime won't connect", "database-unavailable"),
    (J, "Node request timeout", "database-unavailable"),
    (J, "Tenant with the given ID does not exist", "tenant-not-found"),
    (J, "Realtime disabled for this tenant", "realtime-disabled"),
    (
        S,
        'Access token has expired: [message: "Invalid token", claim: "exp", claim_val: 1735000000]',
        "token-expired",
    ),
    (
        S,
        'access token has expired: [message: "Invalid token", claim: "exp", claim_val: 1692674245]',
        "token-expired",
    ),  # supabase/supabase#16684
    (S, "Token as expired 3 seconds ago", "token-expired"),
    (S, "Token hasexpired 3 seconds ago", "token-expired"),
    (S, "Received an invalid access token from client: :missing_claims", "token-invalid"),
    (
        P,
        "Subscribing to PostgreSQL failed: {:error, :malformed_subscription_params}",
        "postgres-changes-error",
    ),  # supabase/realtime#307
    (
        P,
        (
            '{:error, "Unable to subscribe to changes with given parameters. Please check Realtime is enabled for '
            'the given connect parameters: [schema: public, table: todos, filters: []]"}'
        ),
        "postgres-changes-error",
    ),
]


@pytest.mark.parametrize("where, text, code", WIRE)
def test_every_string_is_named_for_what_it_is(where, text, code):
    _cls, finding, entry = catalog.classify(text, where)
    assert entry is not None, f"not in the catalog: {text!r}"
    assert finding == code


def test_every_catalog_entry_has_a_wire_string_here():
    covered = {catalog.lookup(text, where).key for where, text, _ in WIRE if catalog.lookup(text, where)}
    assert covered == set(catalog.BY_KEY), sorted(set(catalog.BY_KEY) - covered)


@pytest.mark.parametrize("where, text, code", [w for w in WIRE if "⟨" not in catalog.lookup(w[1], w[0]).text])
def test_fixed_strings_render_as_sent(where, text, code):
    assert catalog.lookup(text, where).render() == text


def test_rendering_fills_the_variable_parts():
    assert catalog.say("join.expired_token", n=5) == "InvalidJWTToken: Token has expired 5 seconds ago"
    assert catalog.say("join.unauthorized", topic="room") == (
        "Unauthorized: You do not have permissions to read from this Channel topic: room"
    )
    with pytest.raises(KeyError):
        catalog.say("join.unauthorized")


def test_a_reworded_message_is_classified_by_its_code():
    """A later release rewording a message keeps the "<Code>: " prefix of RealtimeChannel.Logging."""
    assert (
        catalog.classify(
            "DatabaseLackOfConnections: Only 91 available connections. At least 126 connections are required."
        )[1]
        == "database-unavailable"
    )  # supabase/realtime#1373
    assert catalog.classify("Something Realtime never said").finding == "join-error"


def test_unknown_system_errors_are_channel_shutdowns():
    assert classify_reason("%MatchError{term: nil}", catalog.SYSTEM) == "channel-shutdown"
    assert classify_reason("Too many messages per second", catalog.SYSTEM) == "rate-limited"


# A database change's `errors`, as realtime.apply_rls writes them (supabase/realtime migrations
# 20211116214523_create_realtime_apply_rls_function.ex, 20211210212804_enable_generic_subscription_claims.ex:
# `array['Error 413: Payload Too Large']`, `array['Error 401: Unauthorized']`,
# `array['Error 400: Bad Request, no primary key']`).
CHANGE_WIRE = [
    (catalog.CHANGE, "Error 413: Payload Too Large", "postgres-changes-error"),
    (catalog.CHANGE, "Error 401: Unauthorized", "postgres-changes-error"),
    (catalog.CHANGE, "Error 400: Bad Request, no primary key", "postgres-changes-error"),
]
WIRE.extend(CHANGE_WIRE)


@pytest.mark.parametrize("where, text, code", CHANGE_WIRE)
def test_a_changes_errors_are_named(where, text, code):
    assert catalog.classify(text, where).finding == code and catalog.lookup(text, where).means
