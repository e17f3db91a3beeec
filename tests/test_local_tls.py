"""The local Realtime server over TLS (LocalRealtime(tls=True), rtlocal --tls): https:// and wss:// with a
throwaway CA (rtproxy_local/tls.py), so a Worker can be given an https:// project URL as in production.

- the real `realtime` client reaches SUBSCRIBED over wss:// trusting the CA. realtime-py (2.34.1,
  realtime/_async/client.py AsyncRealtimeClient.connect) calls websockets' connect(url, open_timeout=…)
  with no ssl argument, so it cannot be given an SSLContext; websockets then uses
  ssl.create_default_context(), whose default verify paths OpenSSL takes from $SSL_CERT_FILE: that is
  how the test (and a user) makes it trust the CA;
- a client that does not trust the CA fails verification; one that does reaches the socket at every
  loopback name the certificate carries; the emit endpoint answers over https;
- rtlocal --tls --ca-out FILE writes the CA there and prints where.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import urllib.request
from pathlib import Path

import pytest
from conftest import TIMEOUT, OutputProcess, command, fast_config
from realtime import AsyncRealtimeClient
from rtproxy_local.server import LocalRealtime
from rtproxy_local.tls import LocalTLS, client_context
from websockets.asyncio.client import connect

HEARTBEAT = '[null,"1","phoenix","heartbeat",{}]'


@pytest.fixture
async def tls_server():
    async with LocalRealtime(fast_config(), tls=True).running("127.0.0.1", 0) as srv:
        yield srv


def socket_url(srv: LocalRealtime, key: str, host: str | None = None) -> str:
    base = srv.url.replace("https://", "wss://", 1)
    if host is not None:
        base = f"wss://{host}:{srv.port}"
    return f"{base}/realtime/v1/websocket?apikey={key}&vsn=2.0.0"


def test_the_certificates():
    from cryptography import x509

    t = LocalTLS.create()
    ca = x509.load_pem_x509_certificate(t.ca_pem.encode())
    leaf = x509.load_pem_x509_certificate(t.cert_pem.encode())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(a) for a in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert leaf.issuer == ca.subject
    assert (leaf.not_valid_after_utc - leaf.not_valid_before_utc).days <= 3  # short-lived
    assert "PRIVATE" not in repr(t) and "PRIVATE" not in t.ca_pem + t.cert_pem


async def test_url_and_ca(tls_server, anon_key):
    assert tls_server.url == f"https://127.0.0.1:{tls_server.port}"
    assert tls_server.ca_pem is not None and tls_server.ca_pem.startswith("-----BEGIN CERTIFICATE-----")
    async with LocalRealtime(fast_config()).running() as plain:
        assert plain.url.startswith("http://") and plain.ca_pem is None


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sk:
            sk.bind(("::1", 0))
        return True
    except OSError:
        return False


async def test_a_trusting_client_reaches_the_socket_at_every_loopback_name(tls_server, anon_key):
    async def heartbeat(url: str) -> None:
        async with connect(url, ssl=client_context(tls_server.ca_pem), proxy=None) as ws:
            await ws.send(HEARTBEAT)
            assert '"status":"ok"' in await asyncio.wait_for(ws.recv(), TIMEOUT)

    await heartbeat(socket_url(tls_server, anon_key))
    await heartbeat(socket_url(tls_server, anon_key, "localhost"))  # the DNS name (tries ::1, then 127.0.0.1)
    if _has_ipv6_loopback():
        async with LocalRealtime(fast_config(), tls=tls_server.tls).running("::1", 0) as v6:
            assert v6.url == f"https://[::1]:{v6.port}"
            await heartbeat(socket_url(v6, anon_key))


async def test_an_untrusting_client_fails_verification(tls_server, anon_key, monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with pytest.raises(ssl.SSLCertVerificationError):  # the system's CAs only
        await connect(socket_url(tls_server, anon_key), proxy=None, open_timeout=TIMEOUT)
    other = LocalTLS.create()  # another run's CA
    with pytest.raises(ssl.SSLCertVerificationError):
        await connect(socket_url(tls_server, anon_key), ssl=other.client_context(), proxy=None)
    assert tls_server.connections == 0


async def test_the_realtime_client_subscribes_over_wss(tls_server, anon_key, tmp_path, monkeypatch):
    ca = tmp_path / "ca.pem"
    ca.write_text(tls_server.ca_pem)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))  # realtime-py takes no SSLContext (module docstring)
    client = AsyncRealtimeClient(
        f"{tls_server.url}/realtime/v1", token=anon_key, auto_reconnect=False, max_retries=1, timeout=3
    )
    assert client.url.startswith("wss://127.0.0.1:")  # it rewrote https:// itself
    seen: list[str] = []
    subscribed = asyncio.Event()

    def on_status(status, err) -> None:
        seen.append(status.value)
        if status.value == "SUBSCRIBED":
            subscribed.set()

    await client.connect()
    try:
        ch = client.channel("room1", {"config": {"broadcast": {"self": True}}})
        got: asyncio.Future = asyncio.get_running_loop().create_future()
        ch.on_broadcast("cursor", lambda m: got.done() or got.set_result(m))
        await ch.subscribe(on_status)
        await asyncio.wait_for(subscribed.wait(), TIMEOUT)
        # the emit endpoint works the same over https, and what it emits reaches channels
        await ch.send_broadcast("cursor", {"x": 1})
        assert (await asyncio.wait_for(got, TIMEOUT))["payload"] == {"x": 1}
    finally:
        await client.close()
    assert seen[-1] == "SUBSCRIBED", seen


async def test_the_emit_endpoint_over_https(tls_server):
    url = f"{tls_server.url}/local/v1/emit?table=todos&record=%7B%22id%22%3A1%7D"

    def get() -> dict:
        with urllib.request.urlopen(url, context=tls_server.client_ssl(), timeout=TIMEOUT) as r:
            return json.loads(r.read())

    assert await asyncio.to_thread(get) == {"delivered": 0}


class RtLocal(OutputProcess):
    async def start(self, *args: str) -> RtLocal:
        self.args = [command("rtlocal"), "--port", "0", *args]
        import os

        await self._spawn(dict(os.environ, PYTHONUNBUFFERED="1"))

        async def until(n: int) -> None:
            while len(self.lines) < n and self.returncode is None:
                async with self._changed:
                    await self._changed.wait()

        await asyncio.wait_for(until(2), TIMEOUT)
        return self

    async def stop(self) -> None:
        if self.proc and self.returncode is None:
            self.proc.terminate()
            await self.proc.wait()


async def test_rtlocal_tls_writes_the_ca_and_prints_where(tmp_path, anon_key):
    ca = tmp_path / "ca.pem"
    p = await RtLocal([]).start("--tls", "--ca-out", str(ca))
    try:
        first, second = p.lines[:2]
        assert first.startswith("local Realtime server listening at https://127.0.0.1:"), p.lines
        assert second == f"TLS: clients must trust the CA certificate in {ca}"
        url = first.split(" at ", 1)[1].split()[0].replace("https://", "wss://")
        ctx = client_context(Path(ca).read_text())
        async with connect(
            f"{url}/realtime/v1/websocket?apikey={anon_key}&vsn=2.0.0", ssl=ctx, proxy=None
        ) as ws:
            await ws.send(HEARTBEAT)
            assert '"status":"ok"' in await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert "PRIVATE KEY" not in p.output + ca.read_text()
    finally:
        await p.stop()
