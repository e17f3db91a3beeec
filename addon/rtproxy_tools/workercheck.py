"""`rtworker check PATH`: a Worker as the user has it, checked against what Realtime needs.

    rtworker check ./my-worker          # a folder: wrangler.toml / wrangler.json(c), or Pages functions/
    rtworker check src/index.ts --json  # one file: module or service-worker syntax, JS or TypeScript

It bundles the Worker as a deploy does (workerproject.py), starts the local Realtime server over TLS (a
local CA workerd is told to trust, so the Worker sees an https:// project URL as in production), serves
the Worker in workerd pointed at it, then runs rtprobe's checks and the real clients (realtime-py, and
realtime-js in Node once `rtworker install` installed it) through it, reads workerd's log (what the
Worker threw, where it tried to go), what the server received (LocalRealtime.seen) and the Worker's
source (workerlint.py), and prints one verdict per defect: the finding, its evidence, the line of the
source, the fix. The Worker reaches loopback only unless --allow-net.

Exit 0 when no defect was found, 1 when one was, 2 when the Worker cannot be run or checked (it went to a
host rtworker blocked) or the arguments are bad.
Keys, JWTs and the Worker's secrets are redacted in all output unless --show-secrets.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import shutil
import signal
import sys
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from rtproxy_core import rules, urls
from rtproxy_core.redact import REDACTED, Redactor
from rtproxy_local.config import ServerConfig
from rtproxy_local.jwt import dev_anon_key
from rtproxy_local.server import LocalRealtime
from rtproxy_local.state import key_digest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from . import client as rtclient
from . import workerlint
from .probe import FAIL, INVALID_KEY, Probe, ProbeResult, Scrubber
from .worker import Workerd, WorkerError
from .workerbase import NPM_INSTALL, npm_node_dir
from .workerproject import WorkerProject, load_project

CHANNEL = "rtworker-check"
# Findings a refused or broken upgrade is reported as by a client-side check; when workerd logged that the
# Worker threw, the exception is the cause (rules/upgrade.py worker-exception).
_REFUSALS = ("upgrade-rejected", "unexplained-failure", "connect-failed", "upstream-unreachable")
# workerd logs an exception a Worker did not catch as "Uncaught <Error>: message" (in a line of its own or
# after "stack = " / "exception = " in its info lines).
_UNCAUGHT = re.compile(
    r"(?:Uncaught(?: \(in promise\))?|uncaught exception)[;:]?\s*(?:.*?(?:stack|exception|desc) = )?(.+)"
)
from rtproxy_tools import version_text

# close() refused a code (workerd src/workerd/api/web-socket.c++ WebSocket::close: "Invalid WebSocket close
# code: 1005."): the reserved-close-code rule's cause, thrown by a close listener.
_CLOSE_THREW = re.compile(r"invalid websocket close code", re.IGNORECASE)
_JSG = re.compile(r"^workerd/\S+: failed: (?:jsg\.)?")
_URL_VAR = re.compile(r"(?i)supabase.*url|url.*supabase|^(?:project|upstream|target|origin)_?url$")
_KEY_VAR = re.compile(r"(?i)supabase.*(?:anon|key)|^(?:anon|api)_?key$")
_SERVICE_VAR = re.compile(r"(?i)service.?role")


@dataclass(slots=True)
class Verdict:
    """One defect: the finding (a code of rules.RULES_BY_CODE), what shows it, where the source does it."""

    code: str
    evidence: list[str] = field(default_factory=list)
    where: list[str] = field(default_factory=list)

    @property
    def fix(self) -> str:
        return rules.RULES_BY_CODE[self.code].fix

    def add(self, line: str) -> None:
        if line and line not in self.evidence:
            self.evidence.append(line)

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "evidence": self.evidence, "where": self.where, "fix": self.fix}


@dataclass(slots=True)
class CheckReport:
    target: str
    form: str  # how it runs: module, service-worker, pages (WorkerProject.form)
    source: str  # what it was: the config file and entry, or the one file
    compat_date: str
    upstream: str
    verdicts: list[Verdict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checks: list[ProbeResult] = field(default_factory=list)
    clients: dict[str, str] = field(default_factory=dict)
    thrown: list[str] = field(default_factory=list)
    # Why the run could not check the Worker (it tried to reach a host rtworker blocked): its verdicts would
    # describe the block, not the Worker, so there are none.
    incomplete: str = ""

    @property
    def ok(self) -> bool:
        return not self.verdicts and not self.incomplete

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "form": self.form,
            "source": self.source,
            "compat_date": self.compat_date,
            "upstream": self.upstream,
            "ok": self.ok,
            "incomplete": self.incomplete,
            "verdicts": [v.as_dict() for v in self.verdicts],
            "notes": self.notes,
            "clients": self.clients,
            "thrown": self.thrown,
            "checks": [r.as_dict() for r in self.checks],
        }


@dataclass(slots=True)
class Options:
    allow_net: bool = False
    tls: bool = True
    timeout: float = 5.0
    compat_date: str | None = None
    compat_flags: list[str] = field(default_factory=list)
    var_overrides: dict[str, str] = field(default_factory=dict)
    clients: tuple[str, ...] = ("realtime-py", "realtime-js")


# ------------------------------------------------------------------------------------------ the run


def point_at(project: WorkerProject, url: str, anon: str) -> tuple[dict[str, str], list[str]]:
    """The vars that make the Worker use the local server: each var naming a Supabase URL gets its URL, each
    naming a key its key (a service_role key: one the local server signs for that role). Without a URL var,
    SUPABASE_URL. Returns the overrides and one note per var changed (names only)."""
    declared = {**project.vars, **project.secrets}
    out: dict[str, str] = {}
    for name, value in declared.items():
        text = value if isinstance(value, str) else ""
        if _URL_VAR.search(name) or re.match(r"https://[a-z0-9]+\.supabase\.co/?$", text):
            out[name] = url
        elif _SERVICE_VAR.search(name):
            out[name] = dev_anon_key(role="service_role")
        elif _KEY_VAR.search(name):
            out[name] = anon
    if not any(out.get(n) == url for n in out):
        out["SUPABASE_URL"] = url
    notes = [f"{', '.join(sorted(out))}: set for this run (the local Realtime server and its keys)"]
    return out, notes


async def run_check(path: Path, opts: Options, scrub: Scrubber) -> CheckReport:
    """Everything `rtworker check` does; raises WorkerError when the Worker cannot be run. `scrub.key` is
    the apikey the probe and the clients send (the local server's anon key)."""
    project = load_project(path)
    anon = scrub.key
    # The real server's timers, without its backoffs before refusals (2 s, 5 s): the verdicts do not
    # depend on them and the run is shorter.
    config = ServerConfig(connect_error_backoff_ms=0, join_error_backoff_ms=0)
    server = LocalRealtime(config, tls=opts.tls)
    lines: list[str] = []
    async with server.running():
        overrides, notes = point_at(project, server.url, anon)
        overrides.update(opts.var_overrides)
        w = Workerd(
            project,
            server.url,
            compat_date=opts.compat_date,
            compat_flags=opts.compat_flags,
            on_line=lines.append,
            allow_net=opts.allow_net,
            trusted_ca=server.ca_pem if opts.tls else None,
            var_overrides=overrides,
            verbose=True,
        )
        async with w:
            report = CheckReport(
                target=str(path),
                form=project.form,
                source=describe(project),
                compat_date=w.compat_date,
                upstream=f"{server.url} ({'TLS, local CA' if opts.tls else 'plain HTTP'})",
            )
            report.notes += list(project.unsupported) + notes
            probe = Probe(urls.resolve(w.url), anon, opts.timeout, scrub)
            jobs: dict[str, Any] = {"probe": probe.run()}
            if "realtime-py" in opts.clients:
                jobs["realtime-py"] = _realtime_py(w.url, anon, opts.timeout)
            if "realtime-js" in opts.clients:
                if why := node_client_missing():
                    report.notes.append(f"realtime-js not run: {why}")
                else:
                    jobs["realtime-js"] = _realtime_js(w.url, anon, opts.timeout)
            done = await asyncio.gather(*jobs.values())
            results = dict(zip(jobs, done, strict=True))
            report.checks = results.pop("probe")
            report.clients = {k: scrub.text(v) for k, v in results.items()}
            await _close_without_code(w.url, anon, opts.timeout)
            await _settle(server, opts.timeout)
    # The Worker's own secrets (.dev.vars) can surface in what it threw ("Invalid URL: <value>").
    secrets = [v for v in project.secrets.values() if len(v) >= 4 and not scrub.redactor.show_secrets]

    def hide(text: str) -> str:
        for value in secrets:
            text = text.replace(value, REDACTED)
        return scrub.text(text)

    report.thrown = [hide(t) for t in thrown(lines)]
    blocked = list(dict.fromkeys(w.blocked))  # already redacted
    files = [
        *project.sources,
        *([project.config_file] if project.config_file else []),
    ]  # the config: its vars
    sources = {
        str(p.relative_to(project.root)): p.read_text("utf-8", "replace") for p in dict.fromkeys(files)
    }
    hits = workerlint.read_sources(sources)
    judge(report, list(server.seen), hits, blocked, anon)
    return report


def describe(project: WorkerProject) -> str:
    entry = (
        project.entry.relative_to(project.root)
        if project.entry.is_relative_to(project.root)
        else project.entry
    )
    if project.config_file is not None:
        return f"{project.config_file.name}, {entry}"
    return f"{entry}" + (", no wrangler config" if project.form != "pages" else "")


async def _settle(server: LocalRealtime, timeout: float) -> None:
    """Until every socket the server saw has ended (a Worker that forwards closes ends them at once), at
    most `timeout` s: what is still open then is what the Worker never closed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while server.connections and loop.time() < deadline:
        await asyncio.sleep(0.05)


async def _close_without_code(url: str, key: str, timeout: float) -> None:
    """One more socket, closed as a browser's ws.close() closes it: a close frame without a code, which the
    other side receives as 1005 (RFC 6455 7.1.5). A Worker that passes event.code on to close() throws
    there (workerd's log says so: judge() reads it)."""
    target = urls.resolve(url)
    try:
        async with asyncio.timeout(timeout * 2):
            async with connect(
                f"{target.socket}?apikey={quote(key, safe='')}&vsn=2.0.0", close_timeout=timeout
            ) as ws:
                await ws.close(None)  # type: ignore[arg-type]  # websockets sends an empty close frame for None
    except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed):
        pass  # the checks above say what is wrong with the upgrade


def node_client() -> Path:
    """realtime-js in Node: tests/node/client.mjs, next to the node_modules `rtworker install` fills
    (a checkout's tests/node, else $RTPROXY_DATA_DIR/node or ~/.local/share/rtproxy/node)."""
    return npm_node_dir() / "client.mjs"


def node_client_missing() -> str:
    if shutil.which("node") is None:
        return "node is not installed"
    if not (node_client().parent / "node_modules" / "@supabase" / "realtime-js").is_dir():
        return f"realtime-js is not installed in {npm_node_dir()}: run `{NPM_INSTALL}` once"
    return ""


class _Collect:
    """rtclient.run's `out`: keeps what happens; a broadcast arriving is enough."""

    def __init__(self) -> None:
        self.said: list[tuple[str, object]] = []
        self.enough = asyncio.Event()

    def __call__(self, kind: str, detail: object = None) -> None:
        self.said.append((kind, detail))
        if kind == "broadcast":
            self.enough.set()


async def _realtime_py(url: str, key: str, timeout: float) -> str:
    """The Supabase Python client joins a channel with broadcast.self and sends one broadcast."""
    args = argparse.Namespace(
        url=url,
        key=key,
        timeout=max(int(timeout), 1),
        hb_interval=25,
        channel=CHANNEL,
        private=False,
        presence=None,
        postgres=[],
        broadcast=("check", '{"n": 1}'),
        listen=timeout,
    )
    out = _Collect()
    await rtclient.run(args, out)  # type: ignore[arg-type]
    told = [
        f"{k} {d}" if d is not None else k for k, d in out.said if k in ("status", "refused", "unreachable")
    ]
    got = "its broadcast came back" if out.enough.is_set() else "no broadcast came back"
    return "; ".join(told or ["nothing happened"]) + (
        f"; {got}" if any(k == "status" for k, _ in out.said) else ""
    )


async def _realtime_js(url: str, key: str, timeout: float) -> str:
    """realtime-js in Node (tests/node/client.mjs): join, one broadcast back, one heartbeat answered."""
    endpoint = urls.resolve(url).endpoint
    env = {**os.environ, "SUPABASE_ANON_KEY": key, "RT_CLIENT_SAFETY_S": str(max(int(timeout * 2), 2))}
    proc = await asyncio.create_subprocess_exec(
        "node", str(node_client()), endpoint, CHANNEL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=env,
    )  # fmt: skip
    stdout, _ = await proc.communicate()
    statuses, extra = [], ""
    for raw in stdout.decode("utf-8", "replace").splitlines():
        try:
            ev = json.loads(raw)
        except ValueError:
            continue
        if ev.get("event") == "status":
            statuses.append(ev["status"] + (f": {ev['error']}" if ev.get("error") else ""))
        elif ev.get("event") == "safety-net":
            extra = f"; after {ev.get('seconds')} s: broadcast {ev.get('broadcast')}, heartbeat {ev.get('heartbeat')}"
    said = ", ".join(dict.fromkeys(statuses)) or "no channel status"
    return f"status {said}{extra}" + ("; its broadcast came back" if proc.returncode == 0 else "")


def thrown(lines: list[str]) -> list[str]:
    """What the Worker threw, as workerd logged it (first line of each, in order, once each)."""
    out: dict[str, str] = {}
    for line in lines:
        if m := _UNCAUGHT.search(line):
            text = _JSG.sub("", m.group(1).strip())  # "workerd/jsg/value.h:1456: failed: jsg.TypeError: …"
            same = re.sub(r"\?\S*", "", text)  # one exception, whatever query the URL in it had
            if text and same not in out:
                out[same] = text[:300]
    return list(out.values())


# ------------------------------------------------------------------------------------------ verdicts


def judge(
    report: CheckReport, seen: list[Any], hits: list[workerlint.SourceHit], blocked: list[str], anon: str
) -> None:
    """Turn what the run showed into verdicts, one per finding, in the rules' order (causes first)."""
    found: dict[str, Verdict] = {}

    def verdict(code: str) -> Verdict:
        return found.setdefault(code, Verdict(code))

    for r in report.checks:
        if r.status != FAIL:
            continue
        code = "worker-exception" if r.code in _REFUSALS and report.thrown else r.code
        verdict(code).add(f"{r.name}: {r.detail}")
    close_threw = [t for t in report.thrown if _CLOSE_THREW.search(t)]
    other_threw = [t for t in report.thrown if t not in close_threw]
    if "worker-exception" in found:
        for t in other_threw[:3]:
            found["worker-exception"].add(f"the Worker threw: {t}")
    elif other_threw:
        report.notes += [f"the Worker threw (not while answering an upgrade): {t}" for t in other_threw[:3]]
    if close_threw:
        v = verdict("reserved-close-code")
        v.add(f"the Worker's close listener threw: {close_threw[0]}")
        v.add("after a client close without a code (a browser's ws.close() sends one), which arrives as 1005")
    upgraded = [s for s in seen if s.answer == "101"]
    # What reached the server: the probe and the clients send the anon key (the probe's c check sends
    # INVALID_KEY and expects it refused), vsn 2.0.0, and close every socket they open.
    if upgraded and all(s.key != key_digest(INVALID_KEY) for s in seen):
        c = next((r for r in report.checks if r.name == "c-upstream-status"), None)
        if c is not None and c.status != FAIL:
            report.notes.append(
                "the Worker replaces the client's apikey with its own: the server never saw the key the "
                "client sent, so any key gets a socket (use the client's, or check it in the Worker)"
            )
    if seen and not any(s.key for s in seen):
        verdict("apikey-missing").add("the server received no apikey on any upgrade")
    # The probe and realtime-js send vsn=2.0.0, realtime-py 1.0.0. When the server spoke 1.0.0 to the probe
    # (b-vsn's failure) and was asked for one vsn on every socket, the Worker sets vsn itself
    # (serializer-mismatch: the fix is not "keep the query"); asked for none, it drops it (vsn-missing).
    asked = {s.vsn for s in seen}
    if "vsn-missing" in found and len(asked) == 1 and None not in asked:
        v = found.pop("vsn-missing")
        told = f"the server was asked for vsn={asked.pop()} on every socket, whatever vsn the client sent"
        verdict("serializer-mismatch").evidence[:0] = [*v.evidence, told]
    open_left = [s for s in upgraded if not s.close]
    no_close = [s for s in upgraded if s.close and s.client_close is None]
    if (
        upgraded
        and (open_left or no_close)
        and len(open_left) + len(no_close) == len(upgraded)
        and "worker-exception" not in found  # the sockets never reached a client to close them
        and not close_threw  # the close was forwarded, and close() threw on its code
    ):
        verdict("close-not-forwarded").add(
            f"every client closed its socket; of the {len(upgraded)} the server had, "
            f"{len(open_left)} were still open and {len(no_close)} ended without a close frame"
        )
    if blocked:
        report.incomplete = (
            f"the Worker tried to reach {', '.join(blocked)}: blocked (only loopback is reachable). It does "
            "not take its Supabase URL from a var rtworker sets: make it read env.SUPABASE_URL (or pass "
            "--var NAME=URL for the var it reads); --allow-net would send the checks' traffic to that host"
        )
        found.clear()  # what failed, failed because of the block
    for hit in hits:
        where = f"{hit.file}:{hit.line}: {hit.text}"
        if hit.code in found:
            found[hit.code].where.append(where)
        else:
            report.notes.append(f"in the code, not seen in this run ({hit.code}): {where}")
    order = {code: i for i, code in enumerate(rules.ORDER)}
    report.verdicts = sorted(found.values(), key=lambda v: order.get(v.code, len(order)))


# ------------------------------------------------------------------------------------------ output


def render_text(report: CheckReport) -> str:
    out = [
        (
            f"rtworker check {report.target}: {report.form} Worker ({report.source}), compatibility date "
            f"{report.compat_date}"
        ),
        f"  upstream: the local Realtime server at {report.upstream}",
    ]
    out += [f"  {name}: {said}" for name, said in report.clients.items()]
    out.append("  probe: " + ", ".join(f"{r.name} {r.status}" for r in report.checks))
    out.append("")
    if report.incomplete:
        out.append(f"could not check: {report.incomplete}")
    elif not report.verdicts:
        out.append(
            "no defect found: every check passed" + (" and every client subscribed" if report.clients else "")
        )
    for v in report.verdicts:
        out.append(f"✖ {v.code}")
        for i, e in enumerate(v.evidence):
            out.append(f"    {'evidence:' if i == 0 else '         '} {e}")
        for i, w in enumerate(v.where):
            out.append(f"    {'code:    ' if i == 0 else '         '} {w}")
        out.append(f"    fix:      {v.fix}")
    if report.notes:
        out += ["", "notes:"] + [f"  - {n}" for n in report.notes]
    return "\n".join(out)


async def _interruptible(check: Coroutine[Any, Any, CheckReport]) -> CheckReport | None:
    """The check, cancelled by SIGINT or SIGTERM: workerd, the server and the clients are stopped on the
    way out (asyncio.run's own ^C handling left the run waiting). None when interrupted."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(check)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        return None
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def main(argv: list[str] | None = None) -> int:
    intro, rest = __doc__.split("\n\n", 1)
    ap = argparse.ArgumentParser(
        prog="rtworker check",
        description=intro,
        epilog=rest,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--version", action="version", version=version_text("rtworker check"))
    ap.add_argument(
        "path", help="the Worker: a project folder (wrangler.toml/json/jsonc, Pages functions/) or one file"
    )
    ap.add_argument("--json", action="store_true", help="print one JSON object (for CI)")
    ap.add_argument("--allow-net", action="store_true", help="let the Worker reach non-loopback addresses")
    ap.add_argument(
        "--no-tls", action="store_true", help="serve the local Realtime server over plain http://"
    )
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for each answer (default 5)")
    ap.add_argument("--compat-date", help="override the Worker's compatibility date (YYYY-MM-DD)")
    ap.add_argument(
        "--compat-flag", action="append", default=[], metavar="FLAG", help="add a compatibility flag"
    )
    ap.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", help="set a var for this run")
    ap.add_argument(
        "--show-secrets", action="store_true", help="do not redact keys, JWTs and the Worker's secrets"
    )
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:
        return 2 if e.code else 0
    # The report says what happened; the local server's and the client's own log lines (a refused
    # handshake's traceback) are not for the user here.
    logging.basicConfig(level=logging.CRITICAL)
    redactor = Redactor(args.show_secrets)
    overrides: dict[str, str] = {}
    for item in args.var:
        name, sep, value = item.partition("=")
        if not sep or not name:
            print(f"rtworker check: --var {item!r}: expected NAME=VALUE", file=sys.stderr)
            return 2
        overrides[name] = value
    if args.timeout <= 0:
        print("rtworker check: --timeout must be positive", file=sys.stderr)
        return 2
    opts = Options(
        allow_net=args.allow_net,
        tls=not args.no_tls,
        timeout=args.timeout,
        compat_date=args.compat_date,
        compat_flags=args.compat_flag,
        var_overrides=overrides,
    )
    scrub = Scrubber(redactor, dev_anon_key())
    try:
        report = asyncio.run(_interruptible(run_check(Path(args.path).expanduser(), opts, scrub)))
    except WorkerError as e:
        print(f"rtworker check: {scrub.text(str(e))}", file=sys.stderr)
        return 2
    if report is None:
        print("rtworker check: interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(scrub.output(report.as_dict()), ensure_ascii=False))
    else:
        print(scrub.output(render_text(report)))
    return 2 if report.incomplete else 0 if report.ok else 1
