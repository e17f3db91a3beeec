"""TLS for the local Realtime server: a throwaway certificate authority and one server certificate for
loopback, made in memory for each server.

A deployed Worker reaches Supabase over https:// (and many rewrite the project URL to wss:// before a
fetch(), which workerd refuses: its fetch() takes http(s) URLs only), so a local upstream must speak TLS
for a Worker in workerd to see the URL shape it sees in production. `LocalTLS.create()` makes:

- a CA (EC P-256, valid for `days`, basicConstraints CA with pathlen 0, keyCertSign), whose PEM clients
  are given to trust (`ca_pem`; rtlocal --tls --ca-out FILE writes it);
- a leaf for 127.0.0.1, ::1 and localhost (IP and DNS subjectAltNames, serverAuth), signed by the CA.

Private keys stay in this process: `server_context()` loads the leaf's through a 0600 file in a private
temporary directory removed at once (the ssl module loads a certificate chain from files only), and no
key is in any repr or ever written elsewhere. The CA's key is dropped once the leaf is signed.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["LOOPBACK_NAMES", "LocalTLS", "client_context"]

LOOPBACK_NAMES = ("127.0.0.1", "::1", "localhost")
DEFAULT_DAYS = 2  # short: a fresh CA per server run, never one to keep
_SKEW = datetime.timedelta(minutes=5)  # clocks of the clients on this machine may lag a little


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "rtproxy"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _san(names: tuple[str, ...]) -> x509.SubjectAlternativeName:
    general: list[x509.GeneralName] = []
    for n in names:
        try:
            general.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            general.append(x509.DNSName(n))
    return x509.SubjectAlternativeName(general)


@dataclass(frozen=True, slots=True)
class LocalTLS:
    """A throwaway CA and a loopback server certificate: `ca_pem` for clients to trust, `cert_pem` the
    server's certificate, `server_context()` for the server. The leaf's key is kept out of repr."""

    ca_pem: str
    cert_pem: str
    names: tuple[str, ...]
    _key_pem: bytes = field(repr=False)

    @classmethod
    def create(cls, names: tuple[str, ...] = LOOPBACK_NAMES, days: int = DEFAULT_DAYS) -> LocalTLS:
        now = datetime.datetime.now(datetime.UTC)
        start, end = now - _SKEW, now + datetime.timedelta(days=days)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = _name("rtproxy local CA (throwaway)")
        ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
        ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ca_ski, critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = (
            x509.CertificateBuilder()
            .subject_name(_name(names[0]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(_san(names), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        pem = serialization.Encoding.PEM
        key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        return cls(ca.public_bytes(pem).decode(), leaf.public_bytes(pem).decode(), tuple(names), key_pem)

    def server_context(self) -> ssl.SSLContext:
        """A server-side context serving the leaf certificate (TLS 1.2 or later)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        with tempfile.TemporaryDirectory(prefix="rtlocal-tls-") as tmp:  # 0700, removed on exit
            cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
            cert.write_text(self.cert_pem)
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(self._key_pem)
            ctx.load_cert_chain(cert, key)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """A client-side context that trusts this CA only."""
        return client_context(self.ca_pem)


def client_context(ca_pem: str) -> ssl.SSLContext:
    """A verifying client context (hostname checked) trusting `ca_pem` only."""
    return ssl.create_default_context(cadata=ca_pem)
