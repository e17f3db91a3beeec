"""The local server behaves as the real Realtime server does (supabase/realtime 833cf36 and the Phoenix fork
it pins; docs/sources.md). Each test names the real file and function it follows. Strings on the wire are
literals copied from that source, never the catalog's constants, so a typo in the catalog fails here.
Ordering facts ("nothing else was sent") are proven by a heartbeat's reply arriving next, never by sleeping.
"""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import quote

import pytest
from localrt import KEY, T, heartbeat_is_next, join, raw_get, recv, sock, v1, v2
from realtime import AsyncRealtimeClient
from rtproxy_local.jwt import mint
from websockets.exceptions import ConnectionClosed

ACK = {"broadcast": {"self": False, "ack": True}, "presence": {"key": "", "enabled": False}, "private": False}
PLAIN = {
    "broadcast": {"self": False, "ack": False},
    "presence": {"key": "", "enabled": False},
    "private": False,
}


def token(**claims) -> str:
    return mint({"role": "authenticated", "exp": int(time.time()) + 3600, **claims})


async def no_more(ws, vsn="1.0.0"):
    await heartbeat_is_next(ws, vsn)


# ---------------------------------------------------------------------------------------------- join_ref


async def test_stale_and_missing_join_refs_are_accepted_answered_and_delivered(srv):
    """supabase/phoenix branch v1.8-no-drop-missing-join-refs: socket.ex handle_in/4 sends every push to the
    channel (upstream Phoenix 1.8.3 drops a push whose join_ref is stale or nil). The reply carries the
    channel's join_ref (channel/server.ex handle_reply/2 uses socket.join_ref), whatever the push had."""
    async with sock(srv, "2.0.0") as a, sock(srv, "2.0.0") as b:
        assert (await join(a, vsn="2.0.0", ref="1", config=ACK))["payload"]["status"] == "ok"
        assert (await join(b, vsn="2.0.0", ref="1", config=PLAIN))["payload"]["status"] == "ok"
        body = {"type": "broadcast", "event": "e", "payload": {"n": 1}}
        for n, join_ref in ((1, "stale-9"), (2, None)):
            body["payload"]["n"] = n
            await a.send(v2("realtime:room", "broadcast", body, ref=f"b{n}", join_ref=join_ref))
            assert await recv(a) == [
                "1",
                f"b{n}",
                "realtime:room",
                "phx_reply",
                {"response": {}, "status": "ok"},
            ]
            assert await recv(b) == [None, None, "realtime:room", "broadcast", body]
        # A presence push with a stale join_ref is answered too (PresenceHandler.handle/3).
        await a.send(
            v2(
                "realtime:room",
                "presence",
                {"type": "presence", "event": "untrack"},
                ref="p1",
                join_ref="old",
            )
        )
        assert await recv(a) == ["1", "p1", "realtime:room", "phx_reply", {"response": {}, "status": "ok"}]
        # A leave with a stale join_ref raced a server close: socket.ex keeps that check, no reply.
        await a.send(v2("realtime:room", "phx_leave", {}, ref="l1", join_ref="old"))
        await no_more(a, "2.0.0")


async def test_python_client_acked_broadcast_without_join_ref(srv):
    """realtime-py sends "join_ref": null on every push (message.py); Realtime answers them all."""
    client = AsyncRealtimeClient(f"ws://127.0.0.1:{srv.port}/realtime/v1", token=KEY, auto_reconnect=False)
    await client.connect()
    try:
        ch = client.channel(
            "room",
            {
                "config": {
                    "broadcast": {"self": True, "ack": True},
                    "presence": {"key": "", "enabled": False},
                    "private": False,
                }
            },
        )
        got = asyncio.get_running_loop().create_future()
        ch.on_broadcast("e", lambda m: got.done() or got.set_result(m["payload"]))
        await ch.subscribe()
        await ch.send_broadcast("e", {"x": 1})  # waits for the ack reply
        assert await asyncio.wait_for(got, T) == {"x": 1}
    finally:
        await client.close()


# ---------------------------------------------------------------------------------------------- presence


async def test_presence_state_only_at_join_and_only_when_enabled(srv):
    """realtime_channel.ex join/3: `if presence_enabled?, do: send(self(), :sync_presence)`; a track on a
    channel joined without presence enables it (PresenceHandler.track/2 assigns presence_enabled?) but
    pushes no presence_state. Public members get every presence_diff (MessageDispatcher.dispatch/3)."""
    async with sock(srv, "2.0.0") as ws:
        await join(ws, vsn="2.0.0", config=PLAIN)
        await ws.send(
            v2(
                "realtime:room",
                "presence",
                {"type": "presence", "event": "track", "payload": {"s": 1}},
                ref="2",
                join_ref="1",
            )
        )
        assert await recv(ws) == ["1", "2", "realtime:room", "phx_reply", {"response": {}, "status": "ok"}]
        diff = await recv(ws)
        assert diff[:4] == [None, None, "realtime:room", "presence_diff"]
        await no_more(ws, "2.0.0")  # no presence_state


async def test_tenant_presence_enabled_syncs_every_join(srv):
    """realtime_channel.ex presence_enabled?/2: the client's flag or the tenant's presence_enabled."""
    srv.config.presence_enabled = True
    async with sock(srv, "2.0.0") as ws:
        await join(ws, vsn="2.0.0", config=PLAIN)
        assert await recv(ws) == ["1", None, "realtime:room", "presence_state", {}]


async def test_client_presence_rate_limit(srv):
    """presence_handler.ex limit_client_presence_event/1: 5 presence pushes per 30 s per channel by default
    (CLIENT_PRESENCE_MAX_CALLS, CLIENT_PRESENCE_WINDOW_MS); the 6th stops the channel, with no reply."""
    async with sock(srv, "2.0.0") as ws:
        await join(ws, vsn="2.0.0", config=PLAIN)
        for i in range(5):
            await ws.send(v2("realtime:room", "presence", {"event": "untrack"}, ref=f"p{i}", join_ref="1"))
            assert (await recv(ws))[1] == f"p{i}"
        await ws.send(v2("realtime:room", "presence", {"event": "untrack"}, ref="p5", join_ref="1"))
        assert await recv(ws) == [
            "1",
            None,
            "realtime:room",
            "system",
            {
                "channel": "room",
                "extension": "system",
                "message": "Client presence rate limit exceeded",
                "status": "error",
            },
        ]
        assert await recv(ws) == ["1", "1", "realtime:room", "phx_close", {}]


async def test_track_over_the_payload_quota_stops_the_channel(srv):
    """realtime_channel.ex handle_in("presence"): {:error, :payload_size_exceeded} -> shutdown_response/2."""
    srv.config.max_payload_size_in_kb = 1  # 1,000 bytes + the 500-byte padding of validate_payload_size/2
    async with sock(srv, "2.0.0") as ws:
        await join(ws, vsn="2.0.0", config=PLAIN)
        await ws.send(
            v2(
                "realtime:room",
                "presence",
                {"event": "track", "payload": {"x": "y" * 2000}},
                ref="2",
                join_ref="1",
            )
        )
        assert (await recv(ws))[4]["message"] == "Track message size exceeded"
        assert (await recv(ws))[3] == "phx_close"


# ---------------------------------------------------------------------------------------------- postgres, tokens


async def test_access_token_refresh_resubscribes_postgres(srv):
    """realtime_channel.ex handle_in("access_token"): a new valid token makes postgres_subscribe() run again
    (after a 1-3 s backoff, shortened here), which pushes "Subscribed to PostgreSQL" once more."""
    srv.config.postgres_resubscribe_s = (0.0, 0.0)
    config = {**PLAIN, "postgres_changes": [{"event": "*", "schema": "public", "table": "todos"}]}
    async with sock(srv, "2.0.0") as ws:
        await join(ws, vsn="2.0.0", config=config)
        subscribed = [
            "1",
            None,
            "realtime:room",
            "system",
            {
                "channel": "room",
                "extension": "postgres_changes",
                "message": "Subscribed to PostgreSQL",
                "status": "ok",
            },
        ]
        assert await recv(ws) == subscribed
        await ws.send(v2("realtime:room", "access_token", {"access_token": token()}, ref="2", join_ref="1"))
        assert await recv(ws) == subscribed  # no reply to the access_token push itself


async def test_token_is_rechecked_every_interval_not_only_at_expiry(srv):
    """realtime_channel.ex confirm_token/1: the next check is in min(@confirm_token_ms_interval (5 min),
    exp - now). With a short interval, a token whose signature stopped verifying (the project's JWT secret
    changed) is caught long before it expires: handle_info(:confirm_token) -> shutdown_response/2 with
    Realtime.Logs.to_log(:signature_error)."""
    srv.config.confirm_token_interval_s = 0.2
    async with sock(srv, "2.0.0") as ws:
        await join(ws, vsn="2.0.0", config=PLAIN)
        srv.config.jwt_secret = "another-secret-another-secret-another-secret"
        assert await recv(ws) == [
            "1",
            None,
            "realtime:room",
            "system",
            {"channel": "room", "extension": "system", "message": ":signature_error", "status": "error"},
        ]
        assert await recv(ws) == ["1", "1", "realtime:room", "phx_close", {}]


@pytest.mark.parametrize(
    "bad, message",
    [
        (mint({"role": "anon", "exp": int(time.time()) + 3600}, secret="z" * 40), ":signature_error"),
        ("eyJhbGciOiJSUzI1NiJ9.eyJyb2xlIjoiYW5vbiJ9.c2ln", ":error_generating_signer"),  # RS256, no JWKS
        ("garbage", "The token provided is not a valid JWT"),
        (mint({"role": "anon"}), "Fields `role` and `exp` are required in JWT"),
    ],
)
async def test_bad_set_auth_stops_the_channel(srv, bad, message):
    """realtime_channel.ex handle_in("access_token"): the refresh fails -> shutdown_response/2; the
    catch-all `{:error, error} -> shutdown_response(socket, inspect(error))` renders atoms."""
    async with sock(srv, "2.0.0") as ws:
        await join(ws, vsn="2.0.0", config=PLAIN)
        await ws.send(v2("realtime:room", "access_token", {"access_token": bad}, ref="2", join_ref="1"))
        assert (await recv(ws))[4] == {
            "channel": "room",
            "extension": "system",
            "message": message,
            "status": "error",
        }
        assert (await recv(ws))[3] == "phx_close"


async def test_join_without_config_binds_postgres_from_the_topic(srv):
    """realtime_channel.ex new_api?/1 and pg_change_params/5: a join payload without "config" (legacy raw
    clients) subscribes to changes named by the topic, schema:table:filter; postgres_cdc_rls
    message_dispatcher.ex dispatch/3 sends them the change itself, as event INSERT/UPDATE/DELETE."""
    async with sock(srv) as ws:
        await ws.send(v1("realtime:public:todos:id=eq.7", "phx_join", {}, ref="1"))
        reply = await recv(ws)
        [binding] = reply["payload"]["response"]["postgres_changes"]
        assert {k: binding[k] for k in ("schema", "table", "filter")} == {
            "schema": "public",
            "table": "todos",
            "filter": "id=eq.7",
        }
        assert (await recv(ws))["payload"]["message"] == "Subscribed to PostgreSQL"
        assert srv.emit_postgres_change(table="todos", record={"id": 7}) == 1
        change = await recv(ws)
        assert change["event"] == "INSERT" and change["payload"]["record"] == {"id": 7}
        assert "ids" not in change["payload"]


async def test_postgres_transient_error_is_retried(srv):
    """realtime_channel.ex handle_info(:postgres_subscribe): an error other than bad parameters is pushed and
    retried after postgres_subscribe(5, 10); the retry that succeeds says "Subscribed to PostgreSQL"."""
    srv.config.postgres_transient_errors, srv.config.postgres_retry_s = 1, (0.0, 0.0)
    async with sock(srv, "2.0.0") as ws:
        await join(
            ws, vsn="2.0.0", config={**PLAIN, "postgres_changes": [{"event": "*", "schema": "public"}]}
        )
        assert (await recv(ws))[4] == {
            "channel": "room",
            "extension": "postgres_changes",
            "status": "error",
            "message": '{:error, "Too many database timeouts"}',
        }
        assert (await recv(ws))[4]["message"] == "Subscribed to PostgreSQL"


# ---------------------------------------------------------------------------------------------- frames


async def test_invalid_utf8_text_is_dropped_and_the_socket_stays(srv):
    """endpoint.ex: `validate_utf8: false`; the JSON decode fails and RealtimeWeb.Socket.handle_in/2
    rescues it (MalformedWebSocketMessage): no 1007, no reply."""
    async with sock(srv) as ws:
        await ws.send(b'{"topic":"phoenix","event":"heartbeat","payload":{"x":"\xff"},"ref":"1"}', text=True)
        await no_more(ws)


async def test_broadcast_payload_quota(srv):
    """broadcast_handler.ex handle/3 + tenants.ex validate_payload_size/2: :erlang.external_size of the
    payload over max_payload_size_in_kb (3000) * 1000 + 500 is answered {:error, :payload_size_exceeded}
    when acked, and silently not sent otherwise. The socket closes 1009 only above the endpoint's
    max_frame_size (5,000,000 bytes)."""
    big = {"type": "broadcast", "event": "e", "payload": {"blob": "x" * 3_100_000}}
    fits = {"type": "broadcast", "event": "e", "payload": {"blob": "x" * 2_900_000}}
    async with sock(srv, "2.0.0") as a, sock(srv, "2.0.0", max_size=None) as b, sock(srv, "2.0.0") as quiet:
        await join(a, vsn="2.0.0", config=ACK)
        await join(b, vsn="2.0.0", config=PLAIN)
        await join(quiet, vsn="2.0.0", ref="1", config=PLAIN)
        await a.send(v2("realtime:room", "broadcast", big, ref="2", join_ref="1"))
        assert await recv(a) == [
            "1",
            "2",
            "realtime:room",
            "phx_reply",
            {"response": "payload_size_exceeded", "status": "error"},
        ]
        await quiet.send(v2("realtime:room", "broadcast", big, ref="3", join_ref="1"))  # not acked: dropped
        await a.send(v2("realtime:room", "broadcast", fits, ref="4", join_ref="1"))
        assert (await recv(a))[1] == "4"
        assert (await recv(b))[4] == fits  # the first thing b receives: neither big one was sent
        await a.send(v2("realtime:room", "broadcast", {"payload": "x" * 5_000_001}, ref="5", join_ref="1"))
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(a.recv(), T)
        assert a.close_code == 1009


async def test_kind3_enc_and_meta_as_the_v2_serializer_reads_them(srv):
    """v2_serializer.ex decode_binary/1: `if user_payload_encoding == 0, do: :binary, else: :json` and the
    metadata is any JSON (Jason.decode!); broadcast_handler.ex build_broadcast/2 drops the metadata and
    fastlane!/1 writes enc 1 for :json. A JSON payload reaches a 1.0.0 socket as a broadcast embedding the
    bytes (user_broadcast.ex convert_to_json_broadcast/1)."""
    async with sock(srv, "2.0.0") as a, sock(srv, "2.0.0") as b, sock(srv, "1.0.0") as c:
        await join(a, vsn="2.0.0", config=ACK)
        await join(b, vsn="2.0.0", config=PLAIN)
        await join(c, config=PLAIN)
        # kind 3, enc 2, meta [1] (not an object), user payload {"a":1}
        push = bytes.fromhex("0301010d010302") + b"12" + b"realtime:room" + b"e" + b"[1]" + b'{"a":1}'
        await a.send(push)
        assert (await recv(a))[1] == "2"  # acked
        assert await recv(b) == bytes.fromhex("040d010001") + b"realtime:room" + b"e" + b'{"a":1}'
        assert await asyncio.wait_for(c.recv(), T) == (
            '{"ref":null,"event":"broadcast","payload":{"event":"e","payload":{"a":1},"type":"broadcast"},'
            '"topic":"realtime:room"}'
        )


async def test_kind0_broadcast_is_relayed_as_kind2(srv):
    """v2_serializer.ex decode_binary/1 (kind 0 -> %Message{payload: {:binary, data}}), broadcast_handler.ex
    build_broadcast/2 (a %Broadcast{} with that payload) and fastlane!/1 (kind 2 to 2.0.0 sockets). A 1.0.0
    socket gets what Jason writes for the tuple through lib/realtime/logs.ex's Tuple encoder: not JSON."""
    async with sock(srv, "2.0.0") as a, sock(srv, "2.0.0") as b, sock(srv, "1.0.0") as c:
        await join(a, vsn="2.0.0", config=ACK)
        await join(b, vsn="2.0.0", config=PLAIN)
        await join(c, config=PLAIN)
        # kind 0: jr "1", ref "7", topic realtime:room (13), event broadcast (9), payload 00 ff
        await a.send(
            bytes.fromhex("0001010d09") + b"1" + b"7" + b"realtime:room" + b"broadcast" + b"\x00\xff"
        )
        assert (await recv(a))[1] == "7"
        assert await recv(b) == bytes.fromhex("020d09") + b"realtime:roombroadcast\x00\xff"
        assert await asyncio.wait_for(c.recv(), T) == (
            '{"ref":null,"event":"broadcast","payload":%{error: "unable to parse response"},'
            '"topic":"realtime:room"}'
        )


# ---------------------------------------------------------------------------------------------- join config


async def test_flexible_booleans_and_ack_reply_join_ref(srv):
    """payloads/flexible_boolean.ex cast/1 takes booleans and strings that downcase to "true"/"false"; the
    ack reply carries the channel's join_ref (join_ref || ref of the join) even for a push without one."""
    config = {
        "broadcast": {"self": "True", "ack": "TRUE"},
        "presence": {"enabled": "true"},
        "private": "false",
    }
    async with sock(srv, "2.0.0") as ws:
        assert (await join(ws, vsn="2.0.0", ref="1", config=config))["payload"]["status"] == "ok"
        assert (await recv(ws))[3] == "presence_state"  # presence.enabled "true"
        await ws.send(
            v2(
                "realtime:room",
                "broadcast",
                {"type": "broadcast", "event": "e", "payload": {}},
                ref="9",
                join_ref=None,
            )
        )
        assert (await recv(ws))[3] == "broadcast"  # self "True"
        assert await recv(ws) == ["1", "9", "realtime:room", "phx_reply", {"response": {}, "status": "ok"}]


async def test_a_value_that_is_not_a_boolean_keeps_the_default(srv):
    """Join.validate/1 only logs InvalidJoinPayload; the join goes on with what did cast."""
    async with sock(srv, "2.0.0") as ws:
        await join(ws, vsn="2.0.0", config={"broadcast": {"self": "yes", "ack": 1}})
        await ws.send(
            v2(
                "realtime:room",
                "broadcast",
                {"type": "broadcast", "event": "e", "payload": {}},
                ref="2",
                join_ref="1",
            )
        )
        await no_more(ws, "2.0.0")  # no self echo, no ack


@pytest.mark.parametrize(
    "params, status",
    [
        ({"user_token": "EXPIRED", "access_token": "VALID"}, "error"),  # user_token wins over access_token
        (
            {"access_token": "sb_publishable_x", "user_token": "EXPIRED"},
            "ok",
        ),  # an sb_ key: the connect token
        ({"access_token": "VALID"}, "ok"),
        ({"access_token": "EXPIRED"}, "error"),
        ({}, "ok"),  # no token: the connect token
    ],
)
async def test_token_precedence_at_join(srv, params, status):
    """realtime_channel.ex assign_access_token/2 and handle_access_token/2."""
    values = {"EXPIRED": mint({"role": "anon", "exp": int(time.time()) - 60}), "VALID": token()}
    params = {k: values.get(v, v) for k, v in params.items()}
    async with sock(srv) as ws:
        reply = await join(ws, config=PLAIN, **params)
        assert reply["payload"]["status"] == status
        if status == "error":
            assert reply["payload"]["response"]["reason"].startswith("InvalidJWTToken: Token has expired ")


@pytest.mark.parametrize(
    "claims", [{"exp": "4102444800"}, {"exp": 4102444800, "iat": "now"}, {"exp": 1000.5}]
)
async def test_jwt_claims_that_are_not_numbers_refuse_the_upgrade_500(srv, claims):
    """jwt_verification.ex JwtAuthToken.token_config/0 (exp: is_number and > now; iat: is_number) and
    channels_authorization.ex authorize_conn/3 (only an integer exp is "expired"): any other failure falls
    to user_socket.ex error_response/1's catch-all."""
    apikey = mint({"role": "anon", **claims})
    status, _, body = await raw_get(srv, f"/realtime/v1/websocket?apikey={quote(apikey)}&vsn=1.0.0")
    assert (status, json.loads(body)) == (500, {"error": "Error connecting to Realtime"})


async def test_jwt_claims_that_are_not_numbers_at_join(srv):
    """The same token in a join: realtime_channel.ex join/3's catch-all `{:error, error}`."""
    async with sock(srv) as ws:
        reply = await join(ws, config=PLAIN, access_token=mint({"role": "anon", "exp": "soon"}))
        assert reply["payload"]["response"] == {"reason": "Unknown Error on Channel"}


# ---------------------------------------------------------------------------------------------- sockets


async def test_channelless_sockets_are_dropped_without_a_close_frame(srv):
    """realtime_channel/tracker.ex handle_info(:check_channels): every NO_CHANNEL_TIMEOUT_IN_MS the
    Tracker kills transports whose channel count is 0 (Process.exit(pid, :kill): no close frame, the client
    sees 1006). A socket that never joined has no entry and survives the same sweep."""
    srv.config.no_channel_timeout_s = 0.2
    async with sock(srv) as left, sock(srv) as never:
        await join(left, config=PLAIN)
        await left.send(v1("realtime:room", "phx_leave", {}, ref="2", join_ref="1"))
        assert (await recv(left))["event"] == "phx_reply"
        assert (await recv(left))["event"] == "phx_close"
        await asyncio.wait_for(left.wait_closed(), T)
        assert left.protocol.close_rcvd is None and left.close_code == 1006
        await no_more(never)


async def test_tenant_drain(srv):
    """user_socket.ex disconnect/1: a fastlane `system` "Server requested disconnect" (status ok, no
    `channel` key, no refs) to every joined channel, then :socket_drain, which Phoenix closes with 1012."""
    async with sock(srv, "2.0.0") as ws, sock(srv) as other:
        await join(ws, vsn="2.0.0", config=PLAIN)
        await join(ws, "realtime:two", vsn="2.0.0", ref="2", config=PLAIN)
        await heartbeat_is_next(other)
        assert srv.disconnect("127") == 2
        got = [await recv(ws), await recv(ws)]
        assert sorted(g[2] for g in got) == ["realtime:room", "realtime:two"]
        for g in got:
            assert g[:2] == [None, None] and g[3:] == [
                "system",
                {"extension": "system", "message": "Server requested disconnect", "status": "ok"},
            ]
        await asyncio.wait_for(ws.wait_closed(), T)
        assert ws.close_code == 1012
        await asyncio.wait_for(other.wait_closed(), T)  # a socket without channels is drained too
        assert other.close_code == 1012


async def test_join_rate_limit_then_1001(srv):
    """realtime_channel.ex limit_joins/2: the tenant's joins/s RateCounter average (rate_counter.ex
    handle_info(:tick)) at the limit -> "ClientJoinRateLimitReached: Too many joins per second", and a
    %Phoenix.Socket.Broadcast{event: "disconnect"}, which Phoenix 1.8 closes with 1001 after the reply."""
    srv.config.max_joins_per_second, srv.config.rate_tick_s = 1, 0.05
    async with sock(srv) as ws:
        await join(ws, config=PLAIN)  # one join in the first tick: an average of 10/s
        rate = srv.hub.rate("127", "joins")
        rate.ticked.clear()
        await asyncio.wait_for(rate.ticked.wait(), T)
        assert (await join(ws, "realtime:two", ref="2", config=PLAIN))["payload"]["response"] == {
            "reason": "ClientJoinRateLimitReached: Too many joins per second"
        }
        await asyncio.wait_for(ws.wait_closed(), T)
        assert ws.close_code == 1001
        # TenantRateLimiters.check_tenant/1 refuses new sockets meanwhile
        status, _, body = await raw_get(srv, f"/realtime/v1/websocket?apikey={KEY}")
        assert (status, json.loads(body)) == (429, {"error": "Too many joins per second"})


async def test_tenant_not_found_at_join_then_1001(srv):
    """realtime_channel.ex join/3: the tenant vanished after connect ->
    "TenantNotFound: Tenant with the given ID does not exist", then the disconnect broadcast (1001)."""
    srv.config.tenants = {"127"}
    async with sock(srv) as ws:
        srv.config.tenants = {"someone-else"}
        assert (await join(ws, config=PLAIN))["payload"]["response"] == {
            "reason": "TenantNotFound: Tenant with the given ID does not exist"
        }
        await asyncio.wait_for(ws.wait_closed(), T)
        assert ws.close_code == 1001


async def test_too_many_channels(srv):
    """realtime_channel.ex limit_channels/2: max_channels_per_client (100 by default) channels per socket."""
    srv.config.max_channels_per_client = 2
    async with sock(srv) as ws:
        for i in range(2):
            assert (await join(ws, f"realtime:c{i}", ref=str(i), config=PLAIN))["payload"]["status"] == "ok"
        assert (await join(ws, "realtime:c2", ref="9", config=PLAIN))["payload"]["response"] == {
            "reason": "ChannelRateLimitReached: Too many channels"
        }


async def test_too_many_messages_per_second_stops_the_channel(srv):
    """realtime_channel.ex handle_info(:update_rate_counter): every delivery counts against the tenant's
    events/s; once its RateCounter average reaches max_events_per_second the receiving channel stops."""
    srv.config.max_events_per_second, srv.config.rate_tick_s = 1, 0.05
    async with sock(srv, "2.0.0") as a, sock(srv, "2.0.0") as b:
        await join(a, vsn="2.0.0", config=PLAIN)
        await join(b, vsn="2.0.0", config=PLAIN)
        body = {"type": "broadcast", "event": "e", "payload": {}}
        await a.send(v2("realtime:room", "broadcast", body, ref="2", join_ref="1"))
        assert (await recv(b))[3] == "broadcast"
        rate = srv.hub.rate("127", "events")
        rate.ticked.clear()
        await asyncio.wait_for(rate.ticked.wait(), T)
        await a.send(v2("realtime:room", "broadcast", body, ref="3", join_ref="1"))
        assert (await recv(b))[3] == "broadcast"
        assert (await recv(b))[4] == {
            "channel": "room",
            "extension": "system",
            "status": "error",
            "message": "Too many messages per second",
        }
        assert (await recv(b))[3] == "phx_close"


# ---------------------------------------------------------------------------------------------- conditions


@pytest.mark.parametrize(
    "condition, reason",
    [
        ("initializing", "InitializingProjectConnection: Realtime is initializing the project connection"),
        ("connecting", "InitializingProjectConnection: Connecting to the project database"),
        (
            "no-connections",
            "DatabaseLackOfConnections: Database can't accept more connections, Realtime won't connect",
        ),
        (
            "connect-rate",
            "DatabaseConnectionRateLimitReached: Too many database connections attempts per second",
        ),
        ("unavailable", "UnableToConnectToProject: Realtime was unable to connect to the project database"),
        ("rpc-timeout", "TimeoutOnRpcCall: Node request timeout"),
        ("rpc-error", "ErrorOnRpcCall: RPC call error: :noconnection"),
    ],
)
async def test_database_conditions_at_join(srv, condition, reason):
    """realtime_channel.ex join/3 else clauses for Connect.lookup_or_start_connection/2's errors."""
    srv.config.database = condition
    async with sock(srv) as ws:
        assert (await join(ws, config=PLAIN))["payload"]["response"] == {"reason": reason}


@pytest.mark.parametrize(
    "condition, reason",
    [
        ("pool", "IncreaseConnectionPool: Please increase your connection pool size"),
        ("unable-to-set", "Realtime was unable to connect to the project database"),
        (
            "missing-partition",
            "MissingPartition: Realtime was unable to find the expected messages partition",
        ),
        ("rls-error", "Unauthorized: You do not have permissions to read from this Channel topic: room"),
    ],
)
async def test_policy_conditions_at_a_private_join(srv, condition, reason):
    """realtime_channel.ex maybe_assign_policies/3 and join/3: only private channels run the RLS query."""
    srv.config.policies = condition
    async with sock(srv) as ws:
        assert (await join(ws, "realtime:pub", config=PLAIN))["payload"]["status"] == "ok"
        assert (await join(ws, ref="2", config={**PLAIN, "private": True}))["payload"]["response"] == {
            "reason": reason
        }


async def test_query_canceled_at_a_private_join(srv):
    srv.config.policies = "query-canceled"
    async with sock(srv) as ws:
        reason = (await join(ws, config={**PLAIN, "private": True}))["payload"]["response"]["reason"]
        assert reason.startswith("QueryCanceled: %Postgrex.Error{") and "code: :query_canceled" in reason


@pytest.mark.parametrize(
    "condition, policies, message",
    [
        ("unavailable", None, "Realtime was unable to connect to the project database"),
        ("rpc-timeout", None, "Node request timeout"),
        ("connecting", None, ":tenant_database_connection_initializing"),
        (None, "query-canceled", "Query was cancelled, please try again"),
        (None, "missing-partition", "Realtime was unable to connect to the project database"),
    ],
)
async def test_database_conditions_at_an_access_token_refresh(srv, condition, policies, message):
    """realtime_channel.ex handle_in("access_token") else clauses: a running channel is told in `system`."""
    async with sock(srv, "2.0.0") as ws:
        await join(ws, vsn="2.0.0", config={**PLAIN, "private": True})
        srv.config.database, srv.config.policies = condition, policies
        await ws.send(v2("realtime:room", "access_token", {"access_token": token()}, ref="2", join_ref="1"))
        assert (await recv(ws))[4]["message"] == message
        assert (await recv(ws))[3] == "phx_close"


async def test_restarting(srv):
    """realtime_channel.ex join/3: SignalHandler.shutdown_in_progress?/0 after SIGTERM."""
    srv.config.restarting = True
    async with sock(srv) as ws:
        assert (await join(ws, config=PLAIN))["payload"]["response"] == {
            "reason": "RealtimeRestarting: Realtime is restarting, please standby"
        }


async def test_replication_ready_opt_in(srv):
    """realtime_channel.ex handle_info(:notify_replication_ready): config.broadcast.replication_ready gets
    "Replication connection established", or the channel stops when the deadline passes."""
    async with sock(srv, "2.0.0") as ws:
        await join(ws, vsn="2.0.0", config={**PLAIN, "broadcast": {"replication_ready": True}})
        assert (await recv(ws))[4] == {
            "channel": "room",
            "extension": "system",
            "status": "ok",
            "message": "Replication connection established",
        }
    srv.config.replication_ready, srv.config.replication_ready_timeout_s = False, 0.0
    async with sock(srv, "2.0.0") as ws:
        await join(ws, vsn="2.0.0", config={**PLAIN, "broadcast": {"replication_ready": True}})
        assert (await recv(ws))[4]["message"] == "Replication connection was not established in time"
        assert (await recv(ws))[3] == "phx_close"


@pytest.mark.parametrize(
    "config, reason",
    [
        (
            {"broadcast": {"replay": {"since": 0}}},
            "UnableToReplayMessages: Replay is not allowed for public channels",
        ),
        (
            {"private": True, "broadcast": {"replay": {"since": "yesterday"}}},
            "UnableToReplayMessages: Replay params are not valid",
        ),
    ],
)
async def test_replay_parameters(srv, config, reason):
    """realtime_channel.ex maybe_replay_messages/5 and messages.ex replay/5 (since and limit integers)."""
    async with sock(srv) as ws:
        assert (await join(ws, config=config))["payload"]["response"] == {"reason": reason}


# ---------------------------------------------------------------------------------------------- review fixes


async def test_join_error_backoff_holds_every_frame_of_the_socket(srv):
    """Phoenix.Channel.Server.join/4 runs in the socket process and realtime_channel.ex join_error/1 sleeps
    there: a broadcast for the socket's other channel waits until the refused join's reply is out."""
    srv.config.join_error_backoff_ms, srv.config.restarting = 300, False
    async with sock(srv, "2.0.0") as ws, sock(srv, "2.0.0") as sender:
        await join(ws, vsn="2.0.0", config=PLAIN)
        await join(sender, vsn="2.0.0", config=ACK)
        srv.config.restarting = True
        await ws.send(v2("realtime:two", "phx_join", {"config": PLAIN}, ref="5", join_ref="5"))
        await sender.send(
            v2(
                "realtime:room",
                "broadcast",
                {"type": "broadcast", "event": "e", "payload": {}},
                ref="2",
                join_ref="1",
            )
        )
        assert (await recv(sender))[1] == "2"  # the broadcast was sent during ws's backoff
        assert (await recv(ws))[:4] == ["5", "5", "realtime:two", "phx_reply"]
        assert (await recv(ws))[3] == "broadcast"


@pytest.mark.parametrize(
    "params, subscribed",
    [
        ({"event": "*", "schema": "public", "table": "t", "filter": "id=in.(1,2,3)"}, True),
        ({"event": "*", "schema": "public", "table": "t", "filter": 'name=eq."a,b"'}, True),
        ({"event": "*", "schema": "*", "select": ["a"]}, False),
        ({"event": "*", "schema": "public", "table": "t", "filter": None}, False),
    ],
)
async def test_postgres_params_parsed_as_subscriptions_ex_does(srv, params, subscribed):
    """subscriptions.ex parse_subscription_params/1: split_top_level/6 keeps commas inside parentheses
    and quotes, unquote_value/1, reject_select_on_wildcard/3, a `filter` that is not a string."""
    async with sock(srv, "2.0.0") as ws:
        await join(ws, vsn="2.0.0", config={**PLAIN, "postgres_changes": [params]})
        message = (await recv(ws))[4]["message"]
        assert (message == "Subscribed to PostgreSQL") == subscribed, message
    if params.get("filter") is None and "filter" in params:
        assert message == (
            "No subscription params provided. Please provide at least a `schema` or `table` "
            'to subscribe to: %{"event" => "*", "filter" => nil, "schema" => "public", '
            '"table" => "t"}'
        )
    if "select" in params:
        assert message == (
            "Column selection is not supported for wildcard subscriptions. Provide an explicit "
            "schema and table name."
        )


async def test_in_filter_delivers(srv):
    async with sock(srv, "2.0.0") as ws:
        await join(
            ws,
            vsn="2.0.0",
            config={
                **PLAIN,
                "postgres_changes": [
                    {"event": "*", "schema": "public", "table": "t", "filter": "id=in.(1,2,3)"}
                ],
            },
        )
        await recv(ws)
        assert srv.emit_postgres_change(table="t", record={"id": 2}) == 1
        assert srv.emit_postgres_change(table="t", record={"id": 9}) == 0


async def test_key_order_of_realtimes_own_keys(srv):
    """Jason writes small maps in Erlang term order, where atoms sort before binaries: the :id that
    add_id_to_postgres_changes/1 puts in a binding, and Phoenix.Presence's :phx_ref, come first."""
    async with sock(srv, "2.0.0", max_size=None) as ws:
        await ws.send(
            v2(
                "realtime:room",
                "phx_join",
                {"config": {**PLAIN, "postgres_changes": [{"event": "*", "schema": "public", "table": "t"}]}},
                ref="1",
                join_ref="1",
            )
        )
        raw = await asyncio.wait_for(ws.recv(), T)
        assert '"postgres_changes":[{"id":' in raw and raw.index('"event"') > raw.index('"id"')
        await recv(ws)  # subscribed
        await ws.send(
            v2("realtime:room", "presence", {"event": "track", "payload": {"a": 1}}, ref="2", join_ref="1")
        )
        await recv(ws)  # reply
        diff = await asyncio.wait_for(ws.recv(), T)
        assert '"metas":[{"phx_ref":' in diff


async def test_self_ack_then_rate_shutdown_order(srv):
    """The sender's own :update_rate_counter is handled after its reply: broadcast, ack, system, phx_close."""
    srv.config.max_events_per_second, srv.config.rate_tick_s = 1, 0.05
    config = {**PLAIN, "broadcast": {"self": True, "ack": True}}
    async with sock(srv, "2.0.0") as ws:
        await join(ws, vsn="2.0.0", config=config)
        rate = srv.hub.rate("127", "events")
        rate.add()
        rate.ticked.clear()
        await asyncio.wait_for(rate.ticked.wait(), T)
        await ws.send(
            v2(
                "realtime:room",
                "broadcast",
                {"type": "broadcast", "event": "e", "payload": {}},
                ref="2",
                join_ref="1",
            )
        )
        assert [(await recv(ws))[3] for _ in range(4)] == ["broadcast", "phx_reply", "system", "phx_close"]


async def test_broadcast_payload_that_is_not_a_map_crashes_the_sender(srv):
    """V2Serializer.fastlane!/1 raises on a non-map broadcast payload, in the sender's dispatch."""
    async with sock(srv, "2.0.0") as a, sock(srv, "2.0.0") as b:
        await join(a, vsn="2.0.0", config=ACK)
        await join(b, vsn="2.0.0", config=PLAIN)
        await a.send(v2("realtime:room", "broadcast", ["not", "a", "map"], ref="2", join_ref="1"))
        assert await recv(a) == ["1", "1", "realtime:room", "phx_error", {}]
        await no_more(b, "2.0.0")


async def test_replay_limit_null_means_25(srv):
    async with sock(srv) as ws:
        reply = await join(
            ws, config={**PLAIN, "private": True, "broadcast": {"replay": {"since": 0, "limit": None}}}
        )
        assert reply["payload"]["status"] == "ok"


async def test_repeated_x_api_key_takes_the_first(srv):
    """user_socket.ex access_token/2: :proplists.lookup finds the first x-api-key header."""
    r, w = await asyncio.open_connection("127.0.0.1", srv.port)
    w.write(
        (
            "GET /socket/websocket HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"x-api-key: {KEY}\r\nx-api-key: nope\r\n\r\n"
        ).encode()
    )
    head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), T)
    w.close()
    assert head.startswith(b"HTTP/1.1 101")


async def test_private_presence_enabled_by_track_gets_diffs_through_the_channel(srv):
    """message_dispatcher.ex: presence_read? nil (a private channel joined without presence) routes the
    diff to the channel process, which pushes it: with the channel's join_ref."""
    async with sock(srv, "2.0.0") as ws:
        await join(ws, vsn="2.0.0", ref="3", config={**PLAIN, "private": True})
        await ws.send(
            v2("realtime:room", "presence", {"event": "track", "payload": {"a": 1}}, ref="4", join_ref="3")
        )
        assert (await recv(ws))[1] == "4"
        assert (await recv(ws))[:4] == ["3", None, "realtime:room", "presence_diff"]
