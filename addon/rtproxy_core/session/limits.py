"""The tracker's bounds, and Realtime's timers by default.

Every table a Session keeps is bounded in entries AND in bytes: a value that can be arbitrarily long
(a ref, a topic, a join_ref, a presence key, an event name) is kept in the form `key` gives it (itself
when it has at most MAX_KEY characters, else a fixed-size digest key with a clipped display form); one
function on the push side and the reply side, so pairing works as before. A text kept for the report (a
reason, an error message, a system message, a hop's detail) is clipped (clip.clip) to MAX_TEXT characters with its
length noted. So each table's bytes are at most its entries cap × a fixed entry size:

| table | where | entries | each at most |
|---|---|---|---|
| `channels`, `current`, `_by_ref`, `_joins` | state.py | MAX_CHANNELS | a Channel (below) + 3 keys |
| `pending` (pushes awaiting a reply) | state.py | MAX_PENDING | (key, key) → (key, time, channel) |
| `pending_null` | state.py | MAX_PENDING | (event key, time, channel) |
| `heartbeats.pending`, `.pending_null` | heartbeats.py | MAX_PENDING each | key → time |
| `heartbeats.gaps` | heartbeats.py | 64 | a float |
| `hops` | state.py | MAX_HISTORY | a Hop: detail clipped, its frame's data cut to MAX_TEXT bytes |
| `hop_counts` | state.py | HopKind's members | a count |
| `error_frames` | state.py | MAX_HISTORY | a FrameError, its text clipped |
| `dropped_frames` | state.py | MAX_HISTORY + 1 | a clipped reason → count |
| `binary_broadcasts` | state.py | MAX_HISTORY | (time, topic key, event ≤ 100 chars) |
| `rejection_headers` | state.py | MAX_HEADERS | (clipped name, clipped value) |
| `url`, `upstream_url`, `apikey` | state.py | 1 each | MAX_URL characters |
| `findings`, `fired` | state.py | rule codes × (topics + 1) | a Finding built from the bounded fields |
| Channel `system`, `push_errors`, `change_errors` | channel.py | MAX_HISTORY each | clipped texts |
| Channel `bindings`, `server_bindings`, `binding_ids` | channel.py | MAX_BINDINGS for the whole connection | a binding of ≤ MAX_BINDING_KEYS keyed fields |
| Channel `presence` | channel.py | MAX_PRESENCE for the whole connection | a key |
| PageView `threw`, `states` | pageview.py | MAX_HISTORY | clipped texts |
| PageView `delivered` | pageview.py | MAX_HISTORY + 1 kinds | a count |
| PageView `sends_not_open` | pageview.py | 5 readyStates | a count |

Around the Sessions, the mitmproxy layer (rtproxy_mitm) keeps per connection only: the kept messages
(trim.py: ≤ max(rt_keep_bytes, the newest message) of content, ≤ rt_keep_messages of them, and a `Kept`
of two ints), one entry in each part's table of open flows (tracker `live`/`flows`, faults `plans`/
`flows`/`last_frame_at`, sanitize `flows` (counts by kind)/`copies`/`waiting`/`unanswered`, legs
`flows`/`sessions`), the faults' `tasks` (their timers and the frames still held back; a delivered one
leaves), framenotes' `pending` (frames a fault announced, until they arrive) and ≤ framenotes.MAX_NOTES
notes in the flow's metadata. Across connections: the tracker's `ended` and the two-leg view's ended
pairs (KEEP_FINISHED each), `page_pending` (≤ 100 sockets × 1,000 events), Pages' `page_wide` (100 per
page), `counts` (by finding code), diagnosis.Diagnoser's `_recent` (200) and `_loops` (MAX_LOOPS).

tests/test_bounded.py feeds a Session the worst a client can send and checks its deep size stays under
SESSION_MAX_BYTES, the figure the README states for rtproxy's own state of one connection.
"""

from __future__ import annotations

import hashlib
import re

MAX_CHANNELS = 500  # per connection; a client that joins more is hostile or broken
MAX_PENDING = 1000  # pushes awaiting a reply
MAX_HISTORY = 20  # system messages and hop events kept per channel / connection
MAX_KEY = 256  # characters of a ref, topic, join_ref or presence key kept as given; longer: key()
KEY_HEAD = 64  # characters of a long key kept for display
# (key marks what it cuts with ASCII "...", as clip.clip does: one "…" would make Python store the whole
# string with two bytes a character.)
MAX_TEXT = 500  # characters of a stored text (a reason, an error message) kept; longer: clip.clip
MAX_URL = 16384  # characters of the upgrade URL and apikey kept (browsers and gateways send less)
MAX_HEADERS = 100  # headers of a refused upgrade kept
MAX_BINDINGS = 1000  # postgres_changes bindings kept per connection, client's and server's together
MAX_BINDING_KEYS = 8  # fields kept of one binding (Realtime reads event, schema, table, filter)
MAX_PRESENCE = 10000  # presence keys kept per connection, all channels together
# rtproxy's own state of one connection at most, measured by tests/test_bounded.py with every table full
# of the longest values; the README's "what one connection can cost" adds rt_keep_bytes to it.
SESSION_MAX_BYTES = 48 * 2**20
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


def key(value: str) -> str:
    """The form a ref, topic, join_ref or presence key is kept and matched in: itself when it has at most
    MAX_KEY characters; else its first KEY_HEAD characters, its length and a SHA-256 digest, a fixed size
    (≤ 120 characters). One function for the push and the reply side, so a reply still finds its push;
    two long values share a key only if they share the digest."""
    if len(value) <= MAX_KEY:
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"{value[:KEY_HEAD]}...[{len(value)} chars #{digest}]"


_KEYED = re.compile(r".*\.\.\.\[(\d+) chars #[0-9a-f]{32}\]", re.DOTALL)


def was_keyed(value: str) -> bool:
    """Is `value` a key() of a longer value (the value itself is not kept)?"""
    m = _KEYED.fullmatch(value)
    return m is not None and int(m.group(1)) > MAX_KEY


def opt_key(value: str | None) -> str | None:
    return None if value is None else key(value)
