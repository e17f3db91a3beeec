"""The page's side of the socket (rt_page_probe): the probe script rtproxy puts first in an HTML document's
<head>, the Content-Security-Policy it adds that one script's hash to, the probe's reports read into
events (events.PageEvent), and the pairing of a page's socket with its wire connection. No I/O.

The probe wraps the page's native WebSocket for Realtime sockets only (the wire's predicate,
session.upgrade.is_realtime_path) and reports to PROBE_PATH on the page's own origin, a path rtproxy
answers itself: per socket the URL the native socket was given and the one it opened, each message's type
as delivered (string, ArrayBuffer, Blob) with the native binaryType then, an app handler that threw,
sends while the socket was not open, the close as the page saw it; per page visibilitychange,
online/offline and freeze/resume. It redacts apikey=/token= values and JWTs before anything leaves the page.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field

from .events import PageEvent
from .session.upgrade import is_realtime_path, url_query

PROBE_PATH = "/__rtproxy/page"
MAX_REPORT = 256 * 1024  # bytes of one report read; the probe sends far less
MAX_EVENTS = 1000  # events of one report read
PAIR_WINDOW_S = 10.0  # a page socket pairs with a wire connection opened this close in time

# Kept small and self-contained: it runs before the page's scripts, and its exact text is hashed into the
# page's policy. The wire's predicate is is_realtime_path's, in JS.
PROBE_JS = r"""(() => {
"use strict";
const N = window.WebSocket;
if (!N || N.__rtproxyProbe) return;
const PATH = "/__rtproxy/page", send = window.fetch && window.fetch.bind(window), q = [];
const page = Math.random().toString(36).slice(2, 12);
let timer = null, n = 0;
const red = (s) => String(s == null ? "" : s)
  .replace(/((?:apikey|access_token|token)=)[^&#\s]*/gi, "$1[redacted]")
  .replace(/eyJ[\w-]*\.[\w-]*\.[\w-]*/g, "[jwt]").slice(0, 500);
const kind = (d) => typeof d === "string" ? "string" : d instanceof ArrayBuffer ? "ArrayBuffer"
  : typeof Blob !== "undefined" && d instanceof Blob ? "Blob" : (d && d.constructor && d.constructor.name) || typeof d;
const size = (d) => typeof d === "string" ? d.length : d ? (d.byteLength ?? d.size ?? 0) : 0;
const flush = (beacon) => {
  timer = null;
  if (!q.length || navigator.onLine === false) return;  // offline: kept until the "online" event's flush
  const events = q.splice(0, q.length), body = JSON.stringify({ probe: 1, page, events });
  const back = () => { q.unshift(...events); q.splice(0, Math.max(0, q.length - 500)); };
  try {
    if (beacon && navigator.sendBeacon) { if (!navigator.sendBeacon(PATH, body)) back(); }
    else if (send) send(PATH, { method: "POST", body, keepalive: true }).catch(back);
  } catch (e) { back(); /* the page goes on */ }
};
const emit = (e) => {
  e.t = Date.now();
  q.push(e);
  if (q.length > 500) q.splice(0, q.length - 500);
  if (!timer) timer = setTimeout(flush, 50);
};
const isRt = (u) => {
  try {
    const p = new URL(u, location.href).pathname.replace(/\/+$/, "");
    return p.endsWith("/websocket") && (p.includes("/realtime/") || p.startsWith("/socket/"));
  } catch (e) { return false; }
};
const wrapped = new WeakMap();
const guard = (ws, h) => {
  if (typeof h !== "function" || !ws.__rt) return h;
  let g = wrapped.get(h);
  if (!g) {
    g = function (ev) {
      try { return h.call(this, ev); } catch (err) {
        emit({ e: "threw", sid: ws.__rt, type: kind(ev.data), error: red(err && (err.name + ": " + err.message)) });
        throw err;
      }
    };
    wrapped.set(h, g);
  }
  return g;
};
const onmessage = Object.getOwnPropertyDescriptor(N.prototype, "onmessage");
class WebSocket extends N {
  constructor(url, protocols) {
    super(url, protocols);
    if (!isRt(this.url)) return;
    const sid = this.__rt = ++n;
    emit({ e: "socket", sid, asked: red(url), url: red(this.url), binaryType: this.binaryType });
    this.addEventListener("open", () => emit({ e: "open", sid }));
    this.addEventListener("message", (ev) => emit({ e: "message", sid, type: kind(ev.data), binaryType: this.binaryType, size: size(ev.data) }));
    this.addEventListener("error", () => emit({ e: "error", sid }));
    this.addEventListener("close", (ev) => emit({ e: "close", sid, code: ev.code, reason: red(ev.reason), wasClean: ev.wasClean }));
  }
  get onmessage() { return this.__rtOn !== undefined ? this.__rtOn : onmessage.get.call(this); }
  set onmessage(h) { this.__rtOn = h; onmessage.set.call(this, guard(this, h)); }
  addEventListener(type, h, o) { return super.addEventListener(type, type === "message" ? guard(this, h) : h, o); }
  removeEventListener(type, h, o) { return super.removeEventListener(type, type === "message" && wrapped.get(h) || h, o); }
  send(data) {
    if (this.__rt && this.readyState !== N.OPEN) emit({ e: "send-not-open", sid: this.__rt, readyState: this.readyState, type: kind(data) });
    return super.send(data);
  }
}
Object.defineProperty(WebSocket, "__rtproxyProbe", { value: true });
window.WebSocket = WebSocket;
emit({ e: "page", url: red(location.href), visibility: document.visibilityState, online: navigator.onLine });
document.addEventListener("visibilitychange", () => {
  emit({ e: "visibility", state: document.visibilityState });
  if (document.visibilityState === "hidden") flush(true);
});
for (const what of ["online", "offline"]) window.addEventListener(what, () => emit({ e: what }));
for (const what of ["freeze", "resume"]) document.addEventListener(what, () => { emit({ e: what }); if (what === "freeze") flush(true); });
window.addEventListener("pagehide", () => flush(true));
})();"""

PROBE_HASH = "'sha256-" + base64.b64encode(hashlib.sha256(PROBE_JS.encode()).digest()).decode() + "'"
PROBE_TAG = f"<script>{PROBE_JS}</script>".encode()

_HEAD = re.compile(rb"<head(?:\s[^>]*)?>", re.IGNORECASE)
_HTML = re.compile(rb"<html(?:\s[^>]*)?>", re.IGNORECASE)
_DOCTYPE = re.compile(rb"\s*<!doctype[^>]*>", re.IGNORECASE)
_BOM = b"\xef\xbb\xbf"


def inject(html: bytes) -> bytes:
    """`html` with the probe first in its <head> (after <html>, or after the doctype, when it has none:
    the parser puts the script in the head it makes)."""
    for rx in (_HEAD, _HTML, _DOCTYPE):
        if m := rx.search(html, 0, len(html) if rx is _HEAD else 4096):
            return html[: m.end()] + PROBE_TAG + html[m.end() :]
    start = len(_BOM) if html.startswith(_BOM) else 0
    return html[:start] + PROBE_TAG + html[start:]


SCRIPT_DIRECTIVES = ("script-src-elem", "script-src")  # either governs an inline <script>, when present


def allow_probe(policy: str) -> str:
    """One Content-Security-Policy header value with the probe's hash added where the policy decides
    whether an inline <script> runs: script-src-elem and script-src, or default-src when neither is
    there. Nothing else changes: a directive that already runs any inline script ('unsafe-inline' with no
    nonce or hash, which a hash would switch off) or none that restricts scripts is left as it is."""
    out = []
    for one in policy.split(","):  # a header value may carry several policies, each enforced
        directives = [d for d in one.split(";")]
        names = [d.split(None, 1)[0].lower() if d.strip() else "" for d in directives]
        targets = [n for n in SCRIPT_DIRECTIVES if n in names] or (
            ["default-src"] if "default-src" in names else []
        )
        for name in targets:
            i = names.index(name)  # the first of a repeated directive is the one enforced
            directives[i] = _with_hash(directives[i])
        out.append(";".join(directives))
    return ",".join(out)


def _with_hash(directive: str) -> str:
    lead = directive[: len(directive) - len(directive.lstrip())]
    tokens = directive.split()
    sources = [t.lower() for t in tokens[1:]]
    inline_ok = "'unsafe-inline'" in sources and not any(
        s.startswith(("'nonce-", "'sha256-", "'sha384-", "'sha512-")) or s == "'strict-dynamic'"
        for s in sources
    )
    if inline_ok or PROBE_HASH in tokens:
        return directive
    kept = [t for t in tokens[1:] if t.lower() != "'none'"]  # 'none' with a source is no longer 'none'
    trail = " " if directive.endswith(" ") else ""
    return lead + " ".join([tokens[0], *kept, PROBE_HASH]) + trail


def read_report(body: bytes, received: float) -> tuple[str, list[PageEvent]]:
    """The page id and events of one probe report (ValueError: not one). Times are the page's clock,
    in seconds; an event without one gets `received`."""
    if len(body) > MAX_REPORT:
        raise ValueError(f"report of {len(body)} bytes")
    data = json.loads(body)
    if not isinstance(data, dict) or data.get("probe") != 1 or not isinstance(data.get("events"), list):
        raise ValueError("not a probe report")
    page = str(data.get("page", ""))[:40]
    out = []
    for raw in data["events"][:MAX_EVENTS]:
        if not isinstance(raw, dict) or not isinstance(raw.get("e"), str):
            continue
        t = raw.get("t")
        time = t / 1000 if isinstance(t, int | float) and not isinstance(t, bool) else received
        sid = raw.get("sid")
        detail = {
            str(k)[:40]: v if isinstance(v, bool | int | float) or v is None else str(v)[:500]
            for k, v in raw.items()
            if k not in ("e", "t", "sid")
        }
        out.append(PageEvent(raw["e"][:40], sid if isinstance(sid, int) else None, detail, time))
    return page, out


PAGE_WIDE = frozenset({"page", "visibility", "online", "offline", "freeze", "resume"})


def socket_key(url: str) -> tuple[str, tuple[tuple[str, str], ...]] | None:
    """What pairs a page's socket with a wire connection: the path and the query without its secrets
    (the page redacts them; a wrapper may change the host). None: no Realtime socket URL."""
    try:
        from urllib.parse import urlsplit

        path = urlsplit(url).path
    except ValueError:
        return None
    if not is_realtime_path(path):
        return None
    q = url_query(url)
    return path.rstrip("/"), tuple(
        sorted((k, v) for k, v in q.items() if k not in ("apikey", "access_token", "token"))
    )


@dataclass
class Pages:
    """Page sockets and their wire connections, by the page's id and the probe's socket number. `pair`
    takes the connections a socket may be (id, URL, opened at, already paired) and picks the one with
    the same path and query (secrets aside), not yet paired, opened closest in time."""

    sockets: dict[tuple[str, int], str] = field(default_factory=dict)  # (page, sid) -> connection id
    page_wide: dict[str, list[PageEvent]] = field(default_factory=dict)  # the page's own events, kept
    paired: set[str] = field(default_factory=set)

    def pair(
        self, page: str, ev: PageEvent, candidates: list[tuple[str, str | None, float | None]]
    ) -> str | None:
        key = socket_key(str(ev.detail.get("url", "")))
        if key is None or ev.sid is None:
            return None
        best = None
        for conn, url, opened in candidates:
            if conn in self.paired or url is None or opened is None or socket_key(url) != key:
                continue
            gap = abs(opened - ev.time)
            if gap <= PAIR_WINDOW_S and (best is None or gap < best[0]):
                best = (gap, conn)
        if best is None:
            return None
        self.paired.add(best[1])
        self.sockets[(page, ev.sid)] = best[1]
        if len(self.sockets) > 10000:  # bounded: the oldest pairings go
            old = next(iter(self.sockets))
            self.paired.discard(self.sockets.pop(old))
        return best[1]

    def keep(self, page: str, ev: PageEvent) -> None:
        kept = self.page_wide.setdefault(page, [])
        kept.append(ev)
        del kept[:-100]
        while len(self.page_wide) > 1000:
            self.page_wide.pop(next(iter(self.page_wide)))

    def conns_of(self, page: str) -> list[str]:
        return [c for (p, _), c in self.sockets.items() if p == page]
