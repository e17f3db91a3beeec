"""Replay one connection of a capture (sans-I/O): what each side said and when, as a `Script`, and two
players that run it against a live peer.

- `Script.from_connection(url, events)` (script.py) turns one connection's events (a HAR entry, a flow)
  into the handshake answer, the frames in order (each decoded, with its time since the upgrade and, for a
  server's phx_reply, the client frame it answers), and how the connection ended.
- `ServerPlayer` (server.py) plays the capture's server side to a live client (`rtreplay --serve`): each
  live client frame is matched against the capture's client frames of its topic, in order, by event (so
  heartbeats, on topic `phoenix`, match heartbeats whenever they come, and two channels joined in another
  order still match); the server frames that answered the matched frame follow it at the captured delay;
  the others (a `system` message, phx_close, a broadcast, the close) are sent at their captured offset
  from the last matched client frame. Refs are the live client's: a reply carries the ref of the live push
  it answers, and a push for a channel the live join_ref. Frames are encoded in the live connection's
  vsn. What the live client sends beyond the capture is answered where Realtime's answer is known: a
  heartbeat `ok`, a leave as Phoenix answers one, a join (a client's rejoin after a refusal) as the
  capture's last join on that topic was answered. `refusal` (refusal.py) is a captured refusal as the
  server side answers it.
- `ClientPlayer` (client.py) plays the capture's client side against a live upstream (`rtreplay
  --client`, at `client_url`), each frame at its captured offset from the last thing that happened before
  it (a frame it sent, or the upstream's answer it was waiting for), tokens replaced by the user's key.

Both take the live clock as `now` (any monotonic seconds) and return `Action`s (actions.py) for the I/O
layer (rtproxy_tools/replay.py) to carry out: `Send` a frame, `End` the connection, `Note` a line to print.
Times divide by `speed`. Nothing here prints or sends. A token from the capture never leaves it verbatim:
`Script.from_connection` keeps each frame as rtsanitize stores it (sanitize.message: every JWT keeps header
and claims and loses its signature, every secret key's value becomes the marker) before decoding it, so
neither player holds one to send; `--client` puts the user's key where the capture had its token.
"""

from .actions import Action, End, Note, Send
from .client import ClientPlayer, captured_credentials, client_url, encode_client, with_key
from .refusal import refusal
from .script import CLIENT, SERVER, Script, Step, describe
from .server import ServerPlayer, encode_server

__all__ = [
    "CLIENT",
    "SERVER",
    "Action",
    "ClientPlayer",
    "End",
    "Note",
    "Script",
    "Send",
    "ServerPlayer",
    "Step",
    "captured_credentials",
    "client_url",
    "describe",
    "encode_client",
    "encode_server",
    "refusal",
    "with_key",
]
