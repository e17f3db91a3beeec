"""Byte-exact forwarding: every WebSocket message crosses mitmdump + rtproxy unchanged, in both directions,
in `fixed` mode (rerouted to rt_supabase_url) and `inspect` mode (reverse proxy, nothing rerouted).

The traffic mixes Realtime frames (2.0.0 arrays, binary kind 3) with text (ASCII and multi-byte UTF-8),
binary that is not UTF-8, fragmented messages (sent as several WebSocket frames; the far side must see
the same message), large messages (hundreds of KB), and empty ones; half the connections negotiate
permessage-deflate on both legs. A recording echo server hashes what it receives and sends it back, with
its own fragmentation; the client hashes what comes back. Sends are pipelined.

RTPROXY_FORWARD_FRAMES sets the number of messages per mode and direction (CI default 20,000;
the issue's full run: RTPROXY_FORWARD_FRAMES=100000).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import time

import pytest
from conftest import TIMEOUT
from rtproxy_core import frames
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

pytestmark = pytest.mark.slow

FRAMES = int(os.environ.get("RTPROXY_FORWARD_FRAMES", "20000"))
CONNECTIONS = 4  # deflate on connections 0 and 2, off on 1 and 3
LARGE_EVERY = 997  # one message in ~1,000 is large (200-600 KB)
WINDOW = 256  # messages in flight per connection


def digest(m: str | bytes) -> tuple[bool, str]:
    data = m.encode() if isinstance(m, str) else m
    return isinstance(m, bytes), hashlib.sha256(data).hexdigest()


UTF8 = 'aé€😀 \n"{}[]\\\u0000\u00ff\u2028'


def make_message(rng: random.Random, i: int) -> tuple[str | bytes, bool]:
    """(message, send it fragmented?)"""
    large = i % LARGE_EVERY == LARGE_EVERY - 1
    if large:
        size = rng.randint(200_000, 600_000)
    elif rng.random() < 0.02:  # around the 16-bit length boundary
        size = rng.choice([65535, 65536, 70_000])
    else:  # Realtime frames are mostly small; 125/126/127 straddle the 7-bit length boundary
        size = rng.choice([0, 1, 2, 16, 100, 125, 126, 127, 300, 1000, 4000])
    kind = rng.randrange(6)
    if kind == 0:  # Realtime 2.0.0 text
        msg: str | bytes = (
            f'["1","{i}","realtime:fwd","broadcast",{{"type":"broadcast","event":"e","payload":'
            f'{{"n":{i},"s":"{"x" * min(size, 2000)}"}}}}]'
        )
    elif kind == 1:  # Realtime binary kind 3
        msg = frames.encode_user_push(
            "realtime:fwd", "e", rng.randbytes(min(size, 5000)), join_ref="1", ref=str(i)
        )
    elif kind == 2:  # text, multi-byte UTF-8
        msg = "".join(rng.choice(UTF8) for _ in range(min(size, 20_000) if not large else size // 4))
    elif kind == 3:  # ASCII text
        msg = "t" * size
    else:  # binary, not UTF-8
        msg = b"\xff\xfe" + rng.randbytes(size)
    fragmented = rng.random() < 0.1 and len(msg) > 3
    return msg, fragmented


def fragments(m: str | bytes, rng: random.Random) -> list:
    cuts = sorted(rng.sample(range(1, len(m)), min(len(m) - 1, rng.randint(1, 4))))
    return [m[a:b] for a, b in zip([0, *cuts], [*cuts, len(m)])]


@pytest.fixture
async def recording_echo():
    """Records (binary?, sha256) of every message received and echoes it, fragmenting some itself."""
    received: dict[str, list[tuple[bool, str]]] = {}
    negotiated: dict[str, str | None] = {}

    async def echo(ws):
        name = ws.request.path
        log = received.setdefault(name, [])
        negotiated[name] = ws.response.headers.get("Sec-WebSocket-Extensions") if ws.response else None
        rng = random.Random(name)
        async for m in ws:
            log.append(digest(m))
            if len(m) > 3 and rng.random() < 0.1:
                await ws.send(fragments(m, rng))
            else:
                await ws.send(m)

    async with serve(echo, "127.0.0.1", 0, max_size=None, compression="deflate") as srv:
        yield srv.sockets[0].getsockname()[1], received, negotiated


async def run_connection(url: str, n: int, seed: int, deflate: bool) -> tuple[list, list, str | None]:
    """Send n messages pipelined; return (sent digests, received digests, negotiated extensions)."""
    rng = random.Random(seed)
    sent: list[tuple[bool, str]] = []
    got: list[tuple[bool, str]] = []
    window = asyncio.Semaphore(WINDOW)
    async with connect(
        url, max_size=None, compression="deflate" if deflate else None, open_timeout=TIMEOUT
    ) as ws:
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions")

        async def send():
            await ws.send('["1","1","realtime:fwd","phx_join",{"config":{}}]')
            sent.append(digest('["1","1","realtime:fwd","phx_join",{"config":{}}]'))
            for i in range(n - 1):
                m, fragmented = make_message(rng, i)
                await window.acquire()
                sent.append(digest(m))
                await ws.send(fragments(m, rng) if fragmented else m)

        async def receive():
            for _ in range(n):
                got.append(digest(await asyncio.wait_for(ws.recv(), TIMEOUT)))
                if len(got) > 1:
                    window.release()

        await asyncio.gather(send(), receive())
    return sent, got, extensions


@pytest.mark.parametrize("mode", ["fixed", "inspect"])
async def test_every_message_arrives_identical_both_ways(mode, recording_echo, mitmdump):
    port, received, negotiated = recording_echo
    if mode == "fixed":
        proxy = await mitmdump(f"rt_supabase_url=http://127.0.0.1:{port}")
    else:
        proxy = await mitmdump("rt_mode=inspect", mode=f"reverse:http://127.0.0.1:{port}")
    per_conn = [FRAMES // CONNECTIONS + (1 if i < FRAMES % CONNECTIONS else 0) for i in range(CONNECTIONS)]
    started = time.monotonic()
    results = await asyncio.gather(
        *(
            run_connection(
                f"ws://127.0.0.1:{proxy.port}/realtime/v1/websocket?vsn=2.0.0&conn={i}", n, i, i % 2 == 0
            )
            for i, n in enumerate(per_conn)
        )
    )
    elapsed = time.monotonic() - started
    for i, (sent, got, extensions) in enumerate(results):
        name = f"/realtime/v1/websocket?vsn=2.0.0&conn={i}"
        assert len(sent) == per_conn[i]
        # client -> upstream: the upstream received exactly what the client sent, in order
        assert received[name] == sent, (
            f"connection {i}: upstream saw {len(received[name])} of {len(sent)}, "
            f"first difference at {_first_diff(received[name], sent)}"
        )
        # upstream -> client: the client received exactly what the upstream sent back
        assert got == sent, f"connection {i}: first difference at {_first_diff(got, sent)}"
        if i % 2 == 0:  # permessage-deflate really negotiated on both legs
            assert extensions and "permessage-deflate" in extensions, extensions
            assert negotiated[name] and "permessage-deflate" in negotiated[name], negotiated[name]
        else:
            assert not extensions and not negotiated[name]
    await proxy.wait_for(r"join realtime:fwd ref=1")
    assert "internal error" not in proxy.output and "Addon error" not in proxy.output
    print(
        f"\n{mode}: {FRAMES} messages each way in {elapsed:.1f} s ({2 * FRAMES / elapsed:.0f} messages/s "
        f"through the proxy)"
    )


def _first_diff(a: list, b: list) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
