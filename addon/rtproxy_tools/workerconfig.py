"""The workerd config rtworker writes (capnp text format; workerd src/workerd/server/workerd.capnp)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from rtproxy_tools.workerbase import WorkerError


def capnp_text(value: str, *, multiline: bool = False) -> str:
    """A Cap'n Proto text-format string literal (C-style escapes). Newlines only where `multiline` (a
    PEM certificate); other control characters are refused."""
    if multiline:
        value = value.replace("\r\n", "\n")
    bad = [c for c in value if (ord(c) < 0x20 and not (multiline and c == "\n")) or ord(c) == 0x7F]
    if bad:
        raise WorkerError(f"control characters are not accepted in {value!r}", status=2)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


@dataclass
class Config:
    """What config_text needs. `script` is the file name of the Worker's script beside the config;
    `service_worker`: it is a service-worker script (bindings become globals) rather than an ES module.
    `text` and `json` are the Worker's bindings (a json value is given as Python data); `kv` the names of
    its KV namespaces, each served by its own in-memory KV service (kv.js); `allow` the network service's
    allow list; `trusted_ca` PEM text the network service trusts besides the browser CAs; `allow_net`:
    the egress guard lets non-loopback requests through."""

    script: str
    compat_date: str
    compat_flags: list[str] = field(default_factory=list)
    service_worker: bool = False
    text: dict[str, str] = field(default_factory=dict)
    json: dict[str, Any] = field(default_factory=dict)
    kv: list[str] = field(default_factory=list)
    allow: list[str] = field(default_factory=lambda: ["local"])
    trusted_ca: str | None = None
    allow_net: bool = False
    egress: bool = True


def config_text(c: Config) -> str:
    """The socket has no address: rtworker passes its own listening socket (--socket-fd http=FD). The
    Worker's globalOutbound (what its global fetch() and `new WebSocket()` use) is the egress guard
    (egress.js), whose own globalOutbound is the network service "internet"; workerd's default network
    service allows public addresses only (workerd.capnp, Config.services: `allow = ["public"]`,
    `tlsOptions = (trustBrowserCas = true)`), so loopback needs "local"."""
    q = capnp_text
    bindings = [f"    (name = {q(k)}, text = {q(v)})," for k, v in c.text.items()]
    bindings += [f"    (name = {q(k)}, json = {q(json.dumps(v))})," for k, v in c.json.items()]
    bindings += [f"    (name = {q(name)}, kvNamespace = {q('kv-' + name)})," for name in c.kv]
    tls = ["trustBrowserCas = true"]
    if c.trusted_ca:
        tls.append(f"trustedCertificates = [{q(c.trusted_ca, multiline=True)}]")
    code = (
        f"serviceWorkerScript = embed {q(c.script)}"
        if c.service_worker
        else f"modules = [(name = {q(c.script)}, esModule = embed {q(c.script)})]"
    )
    outbound = "egress" if c.egress else "internet"
    lines = [
        "# Written by rtproxy's rtworker; removed when it stops.",
        'using Workerd = import "/workerd/workerd.capnp";',
        "",
        "const config :Workerd.Config = (",
        "  services = [",
        '    (name = "worker", worker = .worker),',
        *(['    (name = "egress", worker = .egress),'] if c.egress else []),
        *(f"    (name = {q('kv-' + name)}, worker = .kv{i})," for i, name in enumerate(c.kv)),
        '    (name = "internet", network = (',
        f"      allow = [{', '.join(q(a) for a in c.allow)}],",
        f"      tlsOptions = ({', '.join(tls)}),",
        "    )),",
        "  ],",
        '  sockets = [(name = "http", http = (), service = "worker")],',
        ");",
        "",
        "const worker :Workerd.Worker = (",
        f"  {code},",
        f"  compatibilityDate = {q(c.compat_date)},",
        f"  compatibilityFlags = [{', '.join(q(f) for f in c.compat_flags)}],",
        "  bindings = [",
        *bindings,
        "  ],",
        f"  globalOutbound = {q(outbound)},",
        ");",
        "",
    ]
    if c.egress:
        lines += [
            "const egress :Workerd.Worker = (",
            '  modules = [(name = "egress.js", esModule = embed "egress.js")],',
            f"  compatibilityDate = {q(c.compat_date)},",
            f'  bindings = [(name = "ALLOW_NET", json = {q(json.dumps(c.allow_net))})],',
            '  globalOutbound = "internet",',
            ");",
            "",
        ]
    for i, _ in enumerate(c.kv):
        lines += [
            f"const kv{i} :Workerd.Worker = (",
            '  modules = [(name = "kv.js", esModule = embed "kv.js")],',
            f"  compatibilityDate = {q(c.compat_date)},",
            ");",
            "",
        ]
    return "\n".join(lines)
