"""ServerConfig: every timer, limit and failure knob of the local Realtime server.

Defaults are the real server's (supabase/realtime 833cf36: config/runtime.exs and the tenant schema's
defaults), so an unconfigured server behaves like Supabase's and fails where it fails; tests shorten the
timers. The server reads the config at the moment it needs a value, so changing a field at runtime
affects the next connection, join or frame (the socket-level timers and max_frame_bytes are read when a
connection opens).

The failure knobs name a condition of the server, not a string: `database = "unavailable"` makes the
project database unreachable, and each path says what the real one says then (a join reason, a
`system` message, silence), in the catalog's words.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .jwt import DEV_JWT_SECRET

# Connect.lookup_or_start_connection/2 outcomes (every join; access_token refreshes; private pushes).
DATABASE_CONDITIONS = (
    "initializing",
    "connecting",
    "no-connections",
    "connect-rate",
    "unavailable",
    "rpc-timeout",
    "rpc-error",
)
# maybe_assign_policies/3 outcomes (private channels' RLS query).
POLICY_CONDITIONS = ("pool", "unable-to-set", "query-canceled", "missing-partition", "rls-error")


@dataclass
class ServerConfig:
    # --- upgrade (user_socket.ex connect/3, TenantRateLimiters.check_tenant/1) ---
    jwt_secret: str = DEV_JWT_SECRET
    accept_any_apikey: bool = False  # still 401 when absent; skips JWT checks (join: only expiry)
    tenants: set[str] = field(default_factory=set)  # empty: any Host is a tenant
    disabled_tenants: set[str] = field(default_factory=set)  # suspended: 403 at the upgrade
    max_concurrent_users: int | None = 200  # TENANT_MAX_CONCURRENT_USERS: sockets that joined a channel
    max_joins_per_second: int | None = 100  # TENANT_MAX_JOINS_PER_SECOND (a 5 s x 12 RateCounter average)
    connect_error_backoff_ms: int = 2000  # CONNECT_ERROR_BACKOFF_MS, slept before user_socket rejections
    reject_upgrade: tuple[int, str] | None = None  # force (status, error string) on every upgrade

    # --- tenant settings (the tenants row) ---
    private_only: bool = False  # public joins get "PrivateOnly: ..."
    presence_enabled: bool = False  # tenant-wide presence: presence_state at every join
    max_channels_per_client: int = 100  # TENANT_MAX_CHANNELS_PER_CLIENT
    max_events_per_second: int | None = 100  # TENANT_MAX_EVENTS_PER_SECOND, tenant-wide
    max_presence_events_per_second: int | None = 1000
    max_payload_size_in_kb: int = 3000  # broadcast and presence payload quota (external term size)
    client_presence_max_calls: int = 5  # CLIENT_PRESENCE_MAX_CALLS per channel...
    client_presence_window_ms: int = 30_000  # ...per CLIENT_PRESENCE_WINDOW_MS
    rate_tick_s: float = 5.0  # RateCounter tick (12 buckets): joins, events and presence averages

    # --- channels (realtime_channel.ex) ---
    join_error_backoff_ms: int = 5000  # CHANNEL_ERROR_BACKOFF_MS, slept before every join error reply
    confirm_token_interval_s: float = (
        300.0  # @confirm_token_ms_interval: token re-check, min(this, exp - now)
    )
    restarting: bool = False  # SIGTERM received (SignalHandler): joins get "RealtimeRestarting: ..."
    database: str | None = None  # one of DATABASE_CONDITIONS: the project database's state
    policies: str | None = None  # one of POLICY_CONDITIONS: the RLS query of private channels fails so
    denied_topics: set[str] = field(default_factory=set)  # private sub-topics whose RLS grants no read
    replication_ready: bool = True  # config.broadcast.replication_ready joins: is it established?
    replication_ready_timeout_s: float = 60.0  # replication_ready_timeout
    postgres_errors: set[str] = field(default_factory=set)  # tables (or schema.table) not in the publication
    postgres_transient_errors: int = 0  # CDC subscribe attempts that fail with a database error first
    postgres_retry_s: tuple[float, float] = (5.0, 10.0)  # postgres_subscribe(5, 10) after an error
    postgres_resubscribe_s: tuple[float, float] = (1.0, 3.0)  # postgres_subscribe() after access_token

    # --- rtproxy's own knobs, for failures a hop or an older server produces ---
    join_errors: dict[str, str] = field(default_factory=dict)  # sub-topic -> reason string
    unanswered_joins: set[str] = field(default_factory=set)  # sub-topics whose join never gets a reply
    binding_mismatch: bool = False  # join ok echoes postgres_changes with a different table (old servers)
    shutdown_channels: dict[str, str] = field(default_factory=dict)  # sub-topic -> system error after join
    swallow_heartbeats: bool = False  # never answer heartbeats (proxy-eats-replies scenario)

    # --- socket (Phoenix/cowboy transport, RealtimeChannel.Tracker) ---
    idle_timeout_s: float | None = 60.0  # close 1000 after this long without client data; None: never
    no_channel_timeout_s: float | None = 600.0  # NO_CHANNEL_TIMEOUT_IN_MS: the Tracker's sweep interval
    close_after_s: float | None = None  # close every socket this long after it opened
    close_code: int = 1000  # code for close_after_s; 1006 drops the TCP connection without a close frame
    close_reason: str = ""
    max_frame_bytes: int = 5_000_000  # max_frame_size: bigger client messages close 1009
