"""What a browser says when a WebSocket never connected, and what it means.

Chrome and Edge record the failure of a socket that got no answer in their HAR as the entry's
`response._error`, Chromium's net error name (`net::ERR_CONNECTION_REFUSED`; the names are
net/base/net_error_list.h's, `NET_ERROR(CONNECTION_REFUSED, -102)` spelled `net::ERR_` + name). Each means
something different for a Realtime client: nothing listening, a name that does not resolve, a network that
drops or resets the connection (an ISP that blocks the Supabase host), a certificate refused.
"""

from __future__ import annotations

import re

_NAME = re.compile(r"net::ERR_([A-Z_]+)")

# Chromium's net error name (without net::ERR_) -> what it means for the socket.
MEANING: dict[str, str] = {
    "CONNECTION_REFUSED": "nothing listens at that host and port: the server is down or restarting, or the "
    "port is wrong",
    "NAME_NOT_RESOLVED": "the host name does not resolve: a typo in the URL, or a DNS resolver that does not "
    "answer for it (one that blocks the Supabase host)",
    "NAME_RESOLUTION_FAILED": "DNS failed: no resolver answered",
    "CONNECTION_TIMED_OUT": "nothing answered at all: a firewall or network dropped the connection, or the "
    "host is unreachable",
    "TIMED_OUT": "the connection timed out before the upgrade was answered",
    "CONNECTION_RESET": "the connection was reset before the upgrade was answered: a middlebox (a network or "
    "ISP that blocks the Supabase host) or a server going away",
    "CONNECTION_CLOSED": "the connection was closed before any answer",
    "EMPTY_RESPONSE": "the server closed the connection without answering the upgrade",
    "ADDRESS_UNREACHABLE": "the host's address is unreachable from this network",
    "INTERNET_DISCONNECTED": "the device was offline",
    "NETWORK_CHANGED": "the network changed while connecting (a wake from sleep, Wi-Fi to cellular)",
    "PROXY_CONNECTION_FAILED": "the browser's proxy could not be reached",
    "TUNNEL_CONNECTION_FAILED": "the browser's proxy refused to tunnel to the host",
    "BLOCKED_BY_CLIENT": "the browser or an extension blocked the request",
    "SSL_PROTOCOL_ERROR": "the TLS handshake failed (a hop that does not speak TLS on that port)",
    "CERT_AUTHORITY_INVALID": "the TLS certificate is not trusted (a self-signed or intercepting proxy's)",
    "CERT_COMMON_NAME_INVALID": "the TLS certificate is for another host name",
    "CERT_DATE_INVALID": "the TLS certificate has expired (or the device's clock is wrong)",
}


def net_error(text: str) -> str | None:
    """The Chromium net error name in a browser's error text (`CONNECTION_REFUSED`), if any."""
    m = _NAME.search(text)
    return m[1] if m else None


def meaning(text: str) -> str:
    """What a browser's error for a socket that never connected means; "" for an error it does not name."""
    name = net_error(text)
    return MEANING.get(name, "") if name else ""
