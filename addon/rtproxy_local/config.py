"""ServerConfig: every timer and failure knob of the local Realtime server.

Defaults are the real server's (self-host defaults, realtime-protocol.md §5.5), so an unconfigured server
behaves like Supabase's; tests shorten the timers. The server reads the config at the moment it needs a
value, so changing a field at runtime affects the next connection/frame (the socket-level timers and
max_frame_bytes are read when a connection opens).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .jwt import DEV_JWT_SECRET


@dataclass
class ServerConfig:
    # --- upgrade (user_socket.ex connect/3) ---
    jwt_secret: str = DEV_JWT_SECRET
    accept_any_apikey: bool = False  # still 401 when absent; skips JWT checks (join: only expiry)
    tenants: set[str] = field(default_factory=set)  # empty: any Host is a tenant
    disabled_tenants: set[str] = field(default_factory=set)  # 403 "Realtime was disabled for this tenant"
    max_connections: int | None = None  # 429 "Too many connected users" beyond this many open sockets
    connect_error_backoff_ms: int = 2000  # CONNECT_ERROR_BACKOFF_MS, slept before user_socket rejections
    reject_upgrade: tuple[int, str] | None = None  # force (status, error string) on every upgrade

    # --- channels (realtime_channel.ex) ---
    join_error_backoff_ms: int = 5000  # CHANNEL_ERROR_BACKOFF_MS, slept before every join error reply
    join_errors: dict[str, str] = field(default_factory=dict)  # sub-topic -> reason string
    unanswered_joins: set[str] = field(default_factory=set)  # sub-topics whose join never gets a reply
    private_only: bool = False  # public joins get "PrivateOnly: ..."
    binding_mismatch: bool = False  # join ok echoes postgres_changes with a different table
    postgres_errors: set[str] = field(default_factory=set)  # tables whose CDC subscription fails
    shutdown_channels: dict[str, str] = field(default_factory=dict)  # sub-topic -> system error after join
    swallow_heartbeats: bool = False  # never answer heartbeats (proxy-eats-replies scenario)

    # --- socket (Phoenix/cowboy transport) ---
    idle_timeout_s: float | None = 60.0  # close 1000 after this long without client data; None: never
    close_after_s: float | None = None  # close every socket this long after it opened
    close_code: int = 1000  # code for close_after_s; 1006 drops the TCP connection without a close frame
    close_reason: str = ""
    max_frame_bytes: int = 5_000_000  # bigger client messages: close 1009
