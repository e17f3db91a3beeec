"""The tracker's bounds, and Realtime's timers by default."""

MAX_CHANNELS = 500  # per connection; a client that joins more is hostile or broken
MAX_PENDING = 1000  # pushes awaiting a reply
MAX_HISTORY = 20  # system messages and hop events kept per channel / connection
# Ended connections kept for commands and reports: the tracker's finished sessions, and the two-leg view's
# ended pairs and upstream legs no client leg claimed (rtproxy_core.legs), KEEP_FINISHED of each.
KEEP_FINISHED = 100
DUPLICATE_WINDOW_S = 1.0  # clients back off ≥ 1 s before a rejoin; a second join sooner is a duplicate
# Realtime's timers by default (rules.Timers: what the user configured goes first).
CLIENT_HEARTBEAT_S = (
    25.0  # realtime-js (HEARTBEAT_INTERVAL 25000) and realtime-py (DEFAULT_HEARTBEAT_INTERVAL 25)
)
CLIENT_JOIN_TIMEOUT_S = 10.0  # both clients' DEFAULT_TIMEOUT
SERVER_IDLE_S = 60.0  # Realtime closes a socket after this long without a client frame
GAVE_UP_MIN_S = 1.0  # no client times a join out sooner; a leave or rejoin sooner is the app's own doing
