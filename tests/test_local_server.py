"""The local Realtime server, over real sockets: raw HTTP for the upgrade, websockets for frames, and the
real Python `realtime` client end to end. Ordering facts ("no reply was sent") are proven by a later
heartbeat's reply arriving next, never by sleeping.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from urllib.parse import quote

import pytest
from localrt import CLI_ANON_KEY, KEY, T, heartbeat_is_next, join, raw_get, recv, sock, v1, v2, ws_url
from realtime import AsyncRealtimeClient
from rtproxy_core import frames
from rtproxy_local import jwt
from rtproxy_local.jwt import DEV_JWT_SECRET, JWTError, dev_anon_key, mint, verify
from rtproxy_local.server import LocalRealtime
from rtproxy_local.state import key_digest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

# ---------------------------------------------------------------------------------------------- jwt


def test_mint_reproduces_the_supabase_cli_anon_key():
    assert mint({"iss": "supabase-demo", "role": "anon", "exp": 1983812996}) == CLI_ANON_KEY
    assert verify(CLI_ANON_KEY, DEV_JWT_SECRET)["role"] == "anon"
    claims = verify(dev_anon_key(60))
    assert claims["role"] == "anon" and claims["iss"] == "supabase-demo" and claims["exp"] > time.time()


@pytest.mark.parametrize(
    "token, kind",
    [
        ("not-a-jwt", jwt.MALFORMED),
        (mint({"role": "anon", "exp": 2**31}, secret="x" * 40), jwt.SIGNATURE),
        (mint({"exp": 2**31}), jwt.CLAIMS),
        (mint({"role": "anon", "exp": 1000}), jwt.EXPIRED),
        ("eyJhbGciOiJFUzI1NiJ9.e30.c2ln", jwt.SIGNER),  # ES256: no JWKS configured
        # JwtAuthToken.token_config/0: exp must be a number after now, iat a number; else a validator fails
        (mint({"role": "anon", "exp": "2099"}), jwt.INVALID_CLAIM),
        (mint({"role": "anon", "exp": 2**31, "iat": "now"}), jwt.INVALID_CLAIM),
        (mint({"role": "anon", "exp": 1000.5}), jwt.INVALID_CLAIM),  # authorize_conn/3 wants an integer exp
        ("bm90LWpzb24." + mint({"role": "anon", "exp": 2**31}).split(".", 1)[1], jwt.BAD_HEADER),
        ("eyJhbGciOiJIUzI1NiJ9.WzFd.c2ln", jwt.NOT_A_MAP),  # claims [1]
    ],
)
def test_verify_errors_name_realtimes_error(token, kind):
    with pytest.raises(JWTError) as e:
        verify(token, DEV_JWT_SECRET)
    assert e.value.kind == kind


def test_expired_token_detail():
    with pytest.raises(JWTError) as e:
        verify(mint({"role": "anon", "exp": 1000}), now=1042)
    assert e.value.seconds_ago == 42


def test_decimal_exp_is_rounded_like_elixir():
    # JwtVerification.round_decimal_numbers/1: Elixir's round/1 takes halves away from zero.
    assert verify(mint({"role": "anon", "exp": 2**31 + 0.5}))["exp"] == 2**31 + 1


# ---------------------------------------------------------------------------------------------- upgrade

NOW = int(time.time())


@pytest.mark.parametrize(
    "apikey, status, error",
    [
        (None, 401, "API key is missing"),
        ("garbage", 401, "The token provided is not a valid JWT"),
        (mint({"role": "anon", "exp": NOW + 999}, secret="y" * 40), 401, "Failed to validate JWT signature"),
        (mint({"role": "anon"}), 401, "Fields `role` and `exp` are required in JWT"),
        (mint({"role": "anon", "exp": NOW - 5}), 401, "Token has expired"),
    ],
)
async def test_upgrade_rejected_like_user_socket(srv, apikey, status, error):
    q = f"?apikey={quote(apikey)}&vsn=2.0.0" if apikey else "?vsn=2.0.0"
    got_status, h, body = await raw_get(srv, "/realtime/v1/websocket" + q)
    assert got_status == status
    assert h["content-type"] == "application/json; charset=utf-8"
    assert json.loads(body) == {"error": error}


async def test_upgrade_status_seen_by_a_websocket_client(srv):
    with pytest.raises(InvalidStatus) as e:
        async with connect(ws_url(srv, apikey=None)):
            pass
    assert e.value.response.status_code == 401
    assert json.loads(e.value.response.body) == {"error": "API key is missing"}


async def test_seen_records_what_reached_the_server_without_the_key(srv):
    """LocalRealtime.seen (rtworker check reads it): path, vsn, a digest of the key, the answer, and the close
    code the server received; the key itself is nowhere in it."""
    _, _, _ = await raw_get(srv, "/realtime/v1/websocket?apikey=garbage&vsn=2.0.0")
    async with sock(srv, "2.0.0") as ws:
        await ws.close(4000, "probe")
    while not srv.seen[-1].close:  # the handler records the close as it ends; the next upgrade waits for it
        await asyncio.sleep(0)
    refused, opened = list(srv.seen)[-2:]
    assert (refused.vsn, refused.answer) == ("2.0.0", "401 The token provided is not a valid JWT")
    assert refused.key == key_digest("garbage") and refused.key != key_digest(KEY)
    assert (opened.path, opened.answer, opened.key) == ("/realtime/v1/websocket", "101", key_digest(KEY))
    assert (opened.client_close, opened.close) == (4000, "client sent 4000")
    assert KEY not in repr(list(srv.seen)) and "garbage" not in repr(list(srv.seen))


async def test_x_api_key_header_wins_over_query(srv):
    status, _, body = await raw_get(srv, f"/socket/websocket?apikey={KEY}", {"x-api-key": "nope"})
    assert (status, json.loads(body)) == (401, {"error": "The token provided is not a valid JWT"})
    status, _, _ = await raw_get(srv, "/socket/websocket?apikey=nope", {"x-api-key": KEY})
    assert status == 101


@pytest.mark.parametrize(
    "vsn, status",
    [
        ("3.0.0", 403),
        ("2.0", 403),
        ("banana", 403),
        ("", 403),
        ("1.9.3", 403),
        ("2.1.0", 403),
        ("2.0.0-rc.1", 403),  # Realtime requires "~> 1.0.0" / "~> 2.0.0"
        ("1.0.7", 101),
        ("2.0.1", 101),
        ("2.0.0%2Bbuild", 101),
    ],
)
async def test_vsn_negotiation(srv, vsn, status):
    got, h, body = await raw_get(srv, f"/realtime/v1/websocket?apikey={KEY}&vsn={vsn}")
    assert got == status
    if status == 403:
        assert body == b"" and "content-type" not in h


async def test_unknown_path_is_a_plain_404(srv):
    status, h, body = await raw_get(srv, f"/realtime/v1/ws?apikey={KEY}")
    assert (status, body) == (404, b"Not Found") and h["content-type"].startswith("text/plain")


async def test_tenant_checks(srv):
    srv.config.tenants = {"proj"}
    target = f"/socket/websocket?apikey={KEY}"
    status, _, body = await raw_get(srv, target)  # Host 127.0.0.1 -> tenant "127"
    assert (status, json.loads(body)) == (404, {"error": "Tenant not found"})
    status, _, _ = await raw_get(srv, target, {"Host": f"proj.localhost:{srv.port}"})
    assert status == 101
    srv.config.disabled_tenants = {"proj"}
    status, _, body = await raw_get(srv, target, {"Host": f"proj.localhost:{srv.port}"})
    assert (status, json.loads(body)) == (403, {"error": "Realtime was disabled for this tenant"})


async def test_max_concurrent_users_and_forced_rejection(srv):
    # TenantRateLimiters.max_concurrent_users_check/1 counts UsersCounter's users: sockets whose join
    # succeeded (RealtimeChannel.join/3 calls UsersCounter.add/2), not open sockets.
    srv.config.max_concurrent_users = 1
    async with sock(srv) as idle:
        await heartbeat_is_next(idle)
        async with sock(srv) as ws:
            assert (await join(ws))["payload"]["status"] == "ok"
            status, _, body = await raw_get(srv, f"/socket/websocket?apikey={KEY}")
            assert (status, json.loads(body)) == (429, {"error": "Too many connected users"})
            # the idle socket was let in before, but a join on it now would make a second user
            assert (await join(idle))["payload"]["response"] == {
                "reason": "ConnectionRateLimitReached: Too many connected users"
            }
    srv.config.max_concurrent_users = None
    srv.config.reject_upgrade = (500, "Error connecting to Realtime")
    status, _, body = await raw_get(srv, f"/socket/websocket?apikey={KEY}")
    assert (status, json.loads(body)) == (500, {"error": "Error connecting to Realtime"})


async def test_accept_any_apikey_still_requires_one(srv):
    srv.config.accept_any_apikey = True
    assert (await raw_get(srv, "/socket/websocket?apikey=sb_publishable_x"))[0] == 101
    assert (await raw_get(srv, "/socket/websocket"))[0] == 401


# ---------------------------------------------------------------------------------------------- python client


async def test_python_client_end_to_end(srv):
    loop = asyncio.get_running_loop()
    got_broadcast, got_change, synced = loop.create_future(), loop.create_future(), loop.create_future()
    client = AsyncRealtimeClient(f"ws://127.0.0.1:{srv.port}/realtime/v1", token=KEY, auto_reconnect=False)
    await client.connect()
    room = client.channel(
        "room1",
        {
            "config": {
                "broadcast": {"self": True, "ack": True},
                "presence": {"key": "alice", "enabled": True},
                "private": False,
            }
        },
    )
    room.on_broadcast("cursor", lambda m: got_broadcast.done() or got_broadcast.set_result(m))
    room.on_postgres_changes(
        "INSERT", lambda c: got_change.done() or got_change.set_result(c), schema="public", table="todos"
    )
    room.on_presence_sync(
        lambda: "alice" in room.presence_state() and not synced.done() and synced.set_result(1)
    )
    statuses = []
    await room.subscribe(lambda status, err: statuses.append((status, err)))
    assert statuses == [("SUBSCRIBED", None)]

    await room.send_broadcast("cursor", {"x": 1, "y": 2})
    message = await asyncio.wait_for(got_broadcast, T)  # the client's model keeps event and payload
    assert (message["event"], message["payload"]) == ("cursor", {"x": 1, "y": 2})
    await room.track({"online_at": "2026-01-01T00:00:00Z"})
    await asyncio.wait_for(synced, T)
    [alice] = room.presence_state()["alice"]
    assert alice["online_at"] == "2026-01-01T00:00:00Z" and alice["presence_ref"]

    assert srv.emit_postgres_change(schema="public", table="todos", type="INSERT", record={"id": 1}) == 1
    change = await asyncio.wait_for(got_change, T)
    assert change["data"]["record"] == {"id": 1} and change["data"]["type"] == "INSERT"
    await client.close()


async def test_python_client_sees_join_error_and_binding_mismatch(srv):
    srv.config.join_errors = {
        "locked": "Unauthorized: You do not have permissions to read from this Channel topic: locked"
    }
    srv.config.binding_mismatch = True
    client = AsyncRealtimeClient(f"ws://127.0.0.1:{srv.port}/realtime/v1", token=KEY, auto_reconnect=False)
    await client.connect()
    seen = []
    await client.channel("locked").subscribe(lambda s, e: seen.append((s, str(e))))
    assert seen == [("CHANNEL_ERROR", json.dumps({"reason": srv.config.join_errors["locked"]}))]
    seen.clear()
    ch = client.channel("db").on_postgres_changes("*", lambda c: None, table="todos")
    await ch.subscribe(lambda s, e: seen.append((s, str(e))))
    assert seen[0] == ("CHANNEL_ERROR", "mismatch between server and client bindings for postgres changes")
    await client.close()


# ---------------------------------------------------------------------------------------------- V2 / binary


async def test_user_broadcast_kind3_to_v2_and_v1(srv):
    cfg = {
        "broadcast": {"self": True, "ack": True},
        "presence": {"key": "", "enabled": False},
        "private": False,
    }
    async with sock(srv, "2.0.0") as a, sock(srv, "2.0.0") as b, sock(srv, "1.0.0") as c:
        assert (await join(a, vsn="2.0.0", config=cfg))["payload"]["status"] == "ok"
        assert (await join(b, vsn="2.0.0"))["payload"]["status"] == "ok"
        assert (await join(c))["payload"]["status"] == "ok"

        await a.send(
            frames.encode_user_push(
                "realtime:room", "cursor", {"x": 1}, join_ref="1", ref="2", meta={"persist": True}
            )
        )
        echo = await recv(a)  # self: true
        assert echo == frames.encode_user_broadcast("realtime:room", "cursor", {"x": 1})  # meta dropped
        m = frames.decode(echo, binary=True, from_client=False)
        assert (m.kind, m.payload) == (
            frames.USER_BROADCAST,
            {"type": "broadcast", "event": "cursor", "payload": {"x": 1}},
        )
        assert await recv(a) == ["1", "2", "realtime:room", "phx_reply", {"response": {}, "status": "ok"}]
        assert await recv(b) == echo
        assert await asyncio.wait_for(c.recv(), T) == (
            '{"ref":null,"event":"broadcast","payload":{"event":"cursor","payload":{"x":1},"type":"broadcast"},'
            '"topic":"realtime:room"}'
        )

        raw = bytearray(frames.encode_user_push("realtime:room", "odd", b'{"b": 1,  "a":[2]}', join_ref="1"))
        raw[6] = frames.ENC_JSON  # a JSON payload whose bytes are not canonical: relayed verbatim
        await a.send(bytes(raw))
        await recv(a)  # self echo
        await recv(a)  # ack
        assert (await recv(b))[-18:] == b'{"b": 1,  "a":[2]}'
        assert await asyncio.wait_for(c.recv(), T) == (
            '{"ref":null,"event":"broadcast","payload":{"event":"odd","payload":{"b": 1,  "a":[2]},'
            '"type":"broadcast"},"topic":"realtime:room"}'
        )

        await a.send(frames.encode_user_push("realtime:room", "blob", b"\x00\xff", join_ref="1", ref="3"))
        await recv(a)  # self echo
        assert (await recv(a))[1] == "3"  # ack: every delivery was queued before it
        got = frames.decode(await recv(b), binary=True, from_client=False)
        assert got.payload == {"type": "broadcast", "event": "blob", "payload": b"\x00\xff"}
        await heartbeat_is_next(c)  # the V1 socket got nothing for the binary payload


async def test_text_broadcast_crosses_serializers(srv):
    async with sock(srv, "1.0.0") as a, sock(srv, "2.0.0") as b:
        await join(a)
        await join(b, vsn="2.0.0")
        body = {"type": "broadcast", "event": "ping", "payload": {"n": 1}}
        await a.send(v1("realtime:room", "broadcast", body, ref="2", join_ref="1"))
        assert await recv(b) == [None, None, "realtime:room", "broadcast", body]
        await heartbeat_is_next(a)  # self false, ack false: nothing for the sender


# ---------------------------------------------------------------------------------------------- channels


async def test_join_ok_reply_and_system_messages(srv):
    srv.config.postgres_errors = {"secret"}
    async with sock(srv, "2.0.0") as ws:
        cfg = {
            "postgres_changes": [{"event": "INSERT", "schema": "public", "table": "todos"}],
            "presence": {"key": "me", "enabled": True},
        }
        reply = await join(ws, vsn="2.0.0", config=cfg)
        [binding] = reply["payload"]["response"]["postgres_changes"]
        assert binding["table"] == "todos" and isinstance(binding["id"], int)
        assert (reply["join_ref"], reply["ref"]) == ("1", "1")
        # join/3 sends itself :postgres_subscribe before :sync_presence (realtime_channel.ex)
        assert await recv(ws) == [
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
        assert await recv(ws) == ["1", None, "realtime:room", "presence_state", {}]
        await join(
            ws,
            "realtime:vault",
            vsn="2.0.0",
            ref="2",
            config={"postgres_changes": [{"event": "*", "schema": "public", "table": "secret"}]},
        )
        system = await recv(ws)
        assert system[3:] == [
            "system",
            {
                "channel": "vault",
                "extension": "postgres_changes",
                "status": "error",
                "message": "Unable to subscribe to changes with given parameters. Please check Realtime is "
                "enabled for the given connect parameters: [event: *, schema: public, "
                "table: secret, filters: [], select: nil]",
            },
        ]
        assert srv.emit_postgres_change(table="secret", record={"id": 1}) == 0


@pytest.mark.parametrize(
    "topic, payload_extra, reason",
    [
        ("realtime:", {}, "TopicNameRequired: You must provide a topic name"),
        ("realtime:room", {"access_token": "nope"}, "MalformedJWT: The token provided is not a valid JWT"),
        (
            "realtime:room",
            {"access_token": mint({"role": "anon", "exp": 1000})},
            re.compile(r"InvalidJWTToken: Token has expired \d+ seconds ago"),
        ),
    ],
)
async def test_join_errors(srv, topic, payload_extra, reason):
    async with sock(srv) as ws:
        reply = await join(ws, topic, **payload_extra)
        assert reply["payload"]["status"] == "error" and reply["ref"] == "1"
        got = reply["payload"]["response"]["reason"]
        assert reason.fullmatch(got) if isinstance(reason, re.Pattern) else got == reason


async def test_join_knobs(srv):
    srv.config.join_errors = {"nope": "RealtimeRestarting: Realtime is restarting, please standby"}
    srv.config.private_only = True
    async with sock(srv) as ws:
        assert (await join(ws, "realtime:nope"))["payload"]["response"] == {
            "reason": "RealtimeRestarting: Realtime is restarting, please standby"
        }
        assert (await join(ws, "realtime:pub", ref="2"))["payload"]["response"] == {
            "reason": "PrivateOnly: This project only allows private channels"
        }
        ok = await join(
            ws, "realtime:priv", ref="3", config={"private": True}, access_token="sb_publishable_x"
        )  # sb_ keys fall back to the connect token
        assert ok["payload"] == {"response": {"postgres_changes": []}, "status": "ok"}


async def test_unanswered_join_and_unmatched_topics(srv):
    srv.config.unanswered_joins = {"void"}
    async with sock(srv, "2.0.0") as ws:
        await ws.send(v2("realtime:void", "phx_join", {"config": {}}, ref="1", join_ref="1"))
        await heartbeat_is_next(ws, "2.0.0")
        await ws.send(v2("realtime:void", "broadcast", {}, ref="2", join_ref="1"))
        assert await recv(ws) == [
            None,
            "2",
            "realtime:void",
            "phx_reply",
            {"response": {"reason": "unmatched topic"}, "status": "error"},
        ]
        await ws.send(v2("room", "phx_join", {}, ref="3", join_ref="3"))
        assert (await recv(ws))[:2] == [None, "3"]


async def test_duplicate_join_closes_the_old_one_after_the_new_reply(srv):
    async with sock(srv, "2.0.0") as ws:
        await join(ws, vsn="2.0.0", ref="1")
        reply = await join(ws, vsn="2.0.0", ref="3")
        assert (reply["ref"], reply["payload"]["status"]) == ("3", "ok")
        assert await recv(ws) == ["1", "1", "realtime:room", "phx_close", {}]
        await ws.send(v2("realtime:room", "broadcast", {}, ref="4", join_ref="1"))  # stale join_ref
        await ws.send(v2("realtime:room", "phx_leave", {}, ref="5", join_ref="1"))  # stale: no reply
        await heartbeat_is_next(ws, "2.0.0")


async def test_leave_replies_then_closes(srv):
    async with sock(srv) as ws:
        await join(ws, ref="1")
        await ws.send(v1("realtime:room", "phx_leave", {}, ref="2", join_ref="1"))
        assert await recv(ws) == {
            "event": "phx_reply",
            "payload": {"response": {}, "status": "ok"},
            "ref": "2",
            "topic": "realtime:room",
        }
        assert await recv(ws) == {"event": "phx_close", "payload": {}, "ref": "1", "topic": "realtime:room"}
        await ws.send(v1("realtime:room", "broadcast", {}, ref="3"))
        assert (await recv(ws))["payload"]["response"] == {"reason": "unmatched topic"}
        await ws.send(v1("realtime:room", "phx_leave", {}, ref="4", join_ref="1"))  # Phoenix: ok anyway
        assert (await recv(ws)) == {
            "event": "phx_reply",
            "payload": {"response": {}, "status": "ok"},
            "ref": "4",
            "topic": "realtime:room",
        }


async def test_expired_access_token_shuts_the_channel(srv):
    async with sock(srv, "2.0.0") as ws:
        await join(ws, vsn="2.0.0")
        await ws.send(v2("realtime:room", "access_token", {"access_token": KEY}, ref="2", join_ref="1"))
        await heartbeat_is_next(ws, "2.0.0")  # the same (valid) token: no reply
        stale = mint({"role": "authenticated", "exp": int(time.time()) - 30})
        await ws.send(v2("realtime:room", "access_token", {"access_token": stale}, ref="3", join_ref="1"))
        jr, ref, _topic, event, payload = await recv(ws)
        assert (jr, ref, event) == ("1", None, "system")
        assert (payload["extension"], payload["status"]) == ("system", "error")
        assert re.fullmatch(r"Token has expired \d+ seconds ago", payload["message"])
        assert await recv(ws) == ["1", "1", "realtime:room", "phx_close", {}]


async def test_malformed_access_token_shuts_the_channel(srv):
    async with sock(srv) as ws:
        await join(ws)
        await ws.send(v1("realtime:room", "access_token", {"access_token": "garbage"}, ref="2", join_ref="1"))
        assert (await recv(ws))["payload"]["message"] == "The token provided is not a valid JWT"
        assert (await recv(ws))["event"] == "phx_close"


async def test_channel_shut_when_its_token_expires(srv):
    soon = mint({"role": "anon", "exp": int(time.time()) + 2})  # whole seconds: expires in 1-2 s
    async with sock(srv) as ws:
        assert (await join(ws, access_token=soon))["payload"]["status"] == "ok"
        system = await recv(ws)  # pushed by the server's expiry timer; nothing else arrives before it
        assert system["event"] == "system" and system["payload"]["message"].startswith("Token has expired")
        assert (await recv(ws))["event"] == "phx_close"


async def test_shutdown_channel_knob(srv):
    srv.config.shutdown_channels = {"room": "Too many messages per second"}
    async with sock(srv) as ws:
        assert (await join(ws))["payload"]["status"] == "ok"
        assert (await recv(ws))["payload"] == {
            "channel": "room",
            "extension": "system",
            "message": "Too many messages per second",
            "status": "error",
        }
        assert (await recv(ws))["event"] == "phx_close"


async def test_presence_diffs_reach_every_member(srv):
    cfg = {"presence": {"key": "bob", "enabled": True}}
    async with sock(srv) as a:
        await join(a, config={"presence": {"key": "ann", "enabled": True}})
        assert (await recv(a))["event"] == "presence_state"
        async with sock(srv, "2.0.0") as b:
            await join(b, vsn="2.0.0", config=cfg)
            assert (await recv(b))[3:] == ["presence_state", {}]
            await b.send(
                v2(
                    "realtime:room",
                    "presence",
                    {"type": "presence", "event": "track", "payload": {"s": 1}},
                    ref="2",
                    join_ref="1",
                )
            )
            assert (await recv(b))[1] == "2"  # reply first
            diff = (await recv(b))[4]
            assert diff["leaves"] == {} and diff["joins"]["bob"]["metas"][0]["s"] == 1
            assert (await recv(a))["payload"] == diff
        left = (await recv(a))["payload"]  # b's socket closed: its presence leaves
        assert left == {"joins": {}, "leaves": diff["joins"]}


async def test_http_emit_endpoint(srv):
    async with sock(srv, "2.0.0") as ws:
        await join(
            ws,
            vsn="2.0.0",
            config={
                "postgres_changes": [
                    {"event": "UPDATE", "schema": "public", "table": "todos", "filter": "id=eq.7"}
                ]
            },
        )
        await recv(ws)  # system: subscribed
        rec, old = quote(json.dumps({"id": 7, "done": True})), quote(json.dumps({"id": 7, "done": False}))
        target = f"/local/v1/emit?schema=public&table=todos&type=UPDATE&record={rec}&old_record={old}"
        status, _h, body = await raw_get(srv, target, upgrade=False)
        assert (status, json.loads(body)) == (200, {"delivered": 1})
        _, _, _, event, payload = await recv(ws)
        assert event == "postgres_changes" and len(payload["ids"]) == 1
        assert payload["data"]["old_record"] == {"id": 7, "done": False}
        other = quote(json.dumps({"id": 8}))
        assert json.loads(
            (await raw_get(srv, f"/local/v1/emit?table=todos&type=UPDATE&record={other}", upgrade=False))[2]
        ) == {"delivered": 0}  # filter id=eq.7
        status, _, body = await raw_get(srv, "/local/v1/emit?table=todos&record=%7Bnope", upgrade=False)
        assert status == 400 and "error" in json.loads(body)


# ---------------------------------------------------------------------------------------------- socket


@pytest.mark.parametrize(
    "vsn, bad",
    [
        ("1.0.0", v2("realtime:room", "phx_join", {}, ref="1", join_ref="1")),
        ("1.0.0", frames.encode_user_push("realtime:room", "e", {}, join_ref="1", ref="1")),
        ("2.0.0", v1("realtime:room", "phx_join", {}, ref="1", join_ref="1")),
        ("2.0.0", "not json at all"),
    ],
)
async def test_frames_of_the_wrong_shape_are_dropped(srv, vsn, bad):
    async with sock(srv, vsn) as ws:
        await ws.send(bad)
        await heartbeat_is_next(ws, vsn)


async def test_swallowed_heartbeats(srv):
    srv.config.swallow_heartbeats = True
    async with sock(srv) as ws:
        await ws.send(v1("phoenix", "heartbeat", {}, ref="1"))
        assert (await join(ws, ref="2"))["ref"] == "2"  # the join reply is the next frame


async def test_idle_close(srv):
    srv.config.idle_timeout_s = 0.05
    async with sock(srv) as ws:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), T)
        assert ws.protocol.close_rcvd.code == 1000 and ws.protocol.close_rcvd_then_sent  # server spoke first


@pytest.mark.parametrize("code, reason", [(4001, "bye"), (1012, "")])
async def test_close_after(srv, code, reason):
    srv.config.close_after_s, srv.config.close_code, srv.config.close_reason = 0.01, code, reason
    async with sock(srv) as ws:
        await ws.wait_closed()
        assert (ws.close_code, ws.close_reason) == (code, reason)


async def test_close_after_with_1006_drops_the_connection(srv):
    srv.config.close_after_s, srv.config.close_code = 0.01, 1006
    async with sock(srv) as ws:
        await asyncio.wait_for(ws.wait_closed(), T)
        assert ws.protocol.close_rcvd is None and ws.close_code == 1006


async def test_oversized_frame_closes_1009(srv):
    srv.config.max_frame_bytes = 1000
    async with sock(srv) as ws:
        await ws.send("x" * 2000)
        await asyncio.wait_for(ws.wait_closed(), T)
        assert ws.close_code == 1009


async def test_shutdown_closes_sockets_1012_and_counts_connections(cfg):
    srv = LocalRealtime(cfg)
    srv.bind("127.0.0.1", 0)
    assert srv.url == f"http://127.0.0.1:{srv.port}"
    task = asyncio.get_running_loop().create_task(srv.serve())
    async with sock(srv) as ws:
        await heartbeat_is_next(ws)
        assert srv.connections == 1
        srv.close()
        await asyncio.wait_for(srv.wait_closed(), T)
        assert ws.close_code == 1012
    await task
    assert srv.connections == 0
