"""Channels of the local Realtime server: joins, broadcast, presence, access tokens, postgres_changes.

No sockets here: a Conn is the server's handle on one open WebSocket (its vsn, its connect-time token and
a queue of outgoing frames that server.py drains in order); server.py feeds decoded client frames to
Hub.handle one at a time, awaiting each, because Phoenix's socket process runs a `phx_join` inside
itself: while a join sleeps its error backoff the socket answers nothing else.

Followed from supabase/realtime 833cf36 (docs/sources.md): RealtimeChannel (realtime_channel.ex join/3,
handle_in/3, handle_info/2), BroadcastHandler, PresenceHandler, MessageDispatcher, the V2 serializer, and
Phoenix's socket.ex and channel/server.ex as Realtime's fork runs them. Every string the server says
comes from rtproxy_core.catalog. Wire details: replies carry the channel's join_ref (join_ref || ref of
the join) and the push's ref; channel pushes (system, presence_state) carry that join_ref and ref null;
fastlane deliveries (broadcast, presence_diff, postgres_changes) carry neither; phx_close and phx_error
carry the join's own join_ref as both refs; server maps are Jason-encoded, hence sorted keys.

Hub is one class put together from a module per part of a channel's life: each holds a class on the
shared state (base.py) and uses only the modules listed before it:
- base.py: HubBase, the sockets, the members of each topic group, the tenants' rate counters, and how a
  channel ends (phx_close, phx_error, a system error first) and leaves its group;
- reasons.py: what the server says when a configured database or policy condition fails, or a token does;
- postgres.py: the CDC subscription after a join and the changes it delivers;
- tokens.py: the token check a joined channel runs until its exp, and access_token pushes;
- presence.py: presence_state, track / untrack and their presence_diff;
- broadcast.py: a broadcast push and its delivery to the group (text, kind 3 and kind 0 pushes);
- joins.py: phx_join, RealtimeChannel.join/3's checks in its order, and what a join starts;
- hub.py: Hub, which takes the decoded client frames (Phoenix.Socket's handle_in).
"""

from .hub import Hub

__all__ = ["Hub"]
